"""The one exception type the CLI turns into a one-line message and exit code 2, and the one line any other
exception is reported as (a video's status message, a worker's failure)."""

import re

_MAX_MESSAGE = 240


class CavnetError(ValueError):
    """Bad input from the user: a missing path, a malformed file, a store that does not match."""


def error_message(exc: BaseException) -> str:
    """One short line: exception type and text."""
    text = re.sub(r"\s+", " ", str(exc)).strip()
    line = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return line[:_MAX_MESSAGE]
