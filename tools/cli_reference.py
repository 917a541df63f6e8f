"""Refresh docs/cli.md's option blocks from the commands' own ``--help`` (run after changing an option).

    python tools/cli_reference.py [docs/cli.md]

Each ``## `cavnet NAME``` section's first fenced block is replaced by ``cavnet NAME --help``; the prose
around the blocks is kept. ``tests/test_cli.py`` fails when an option is missing from the page.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click

from cavnet.cli import main


def help_text(name: str) -> str:
    cmd = main.commands[name]
    with click.Context(main, info_name="cavnet", terminal_width=100, **main.context_settings) as parent:
        with click.Context(cmd, info_name=name, parent=parent) as ctx:
            return cmd.get_help(ctx)


def refresh(page: str) -> str:
    lines, out, i = page.splitlines(keepends=True), [], 0
    done = set()
    while i < len(lines):
        out.append(lines[i])
        m = re.match(r"## `cavnet ([\w-]+)`", lines[i])
        i += 1
        if not m or m.group(1) not in main.commands:
            continue
        while i < len(lines) and lines[i].rstrip() != "```" and not lines[i].startswith("## "):
            out.append(lines[i])
            i += 1
        if i == len(lines) or lines[i].startswith("## "):
            raise SystemExit(f"cli_reference: no fenced block in the section of `cavnet {m.group(1)}`")
        end = lines.index("```\n", i + 1)
        out.append("```\n" + help_text(m.group(1)).rstrip() + "\n```\n")
        done.add(m.group(1))
        i = end + 1
    missing = sorted(set(main.commands) - done)
    if missing:
        raise SystemExit(f"cli_reference: docs have no section for {', '.join(missing)}")
    return "".join(out)


if __name__ == "__main__":
    path = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "docs" / "cli.md")
    path.write_text(refresh(path.read_text()))
    print(f"refreshed {path}")
