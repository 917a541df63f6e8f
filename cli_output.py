"""How the ``cavnet`` command line ends and prints: usage errors and ``CavnetError`` as one line and exit
code 2, Ctrl-C as ``cavnet: aborted`` (130), and every printed line escaped (``extract.files.terminal``)."""

from __future__ import annotations

import sys
import warnings

import click

from cavnet.errors import CavnetError
from cavnet.extract.files.terminal import safe_line


class Group(click.Group):
    """Maps usage errors and ``CavnetError`` to ``cavnet: error: ...`` and exit code 2."""

    def main(self, args=None, prog_name=None, **kwargs):  # type: ignore[override]
        warnings.showwarning = _show_warning  # one escaped line per warning, not Python's two
        try:
            return super().main(args=args, prog_name=prog_name, standalone_mode=False, **kwargs)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            echo("cavnet: aborted", err=True)
            sys.exit(130)
        except click.exceptions.ClickException as exc:
            fail(exc.format_message())
        except CavnetError as exc:
            fail(str(exc))


def fail(message: str) -> None:
    echo("cavnet: error: " + " ".join(str(message).split()), err=True)
    sys.exit(2)


def echo(message: object = "", err: bool = False) -> None:
    """Every line the CLI prints: names from the disk (paths, labels, captions) with their control characters
    escaped, so a file name cannot set the terminal's title or clear its screen."""
    click.echo(safe_line(message), err=err)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    echo(f"warning: {message}", err=True)
