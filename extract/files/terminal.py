"""Text from the disk (file names, labels, captions, error messages that quote them) printed without
letting it drive the terminal: control characters (ESC sequences that set the title or clear the screen,
carriage returns, bells, C1 codes) are shown escaped, as ``\\x1b``."""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_KEEP_LINES = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _escape(match: re.Match) -> str:
    return f"\\x{ord(match.group()):02x}"


def shown(name: object) -> str:
    """One name (a path, a label) as printable text: every control character escaped, tabs and newlines too."""
    return _CONTROL.sub(_escape, str(name))


def safe_line(message: object) -> str:
    """A whole message to print: control characters escaped, except the tabs and newlines it is laid out with."""
    return _CONTROL_KEEP_LINES.sub(_escape, str(message))
