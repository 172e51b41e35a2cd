#!/usr/bin/env python
"""Write docs/cli.md from the commands' own ``--help`` (the test ``tests/test_cli_reference.py`` fails when the
page and the help drift apart).

Usage::

    .venv/bin/python docs/gen_cli_reference.py           # rewrite docs/cli.md
    .venv/bin/python docs/gen_cli_reference.py --check   # exit 1 when docs/cli.md is out of date
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "cli.md"
WIDTH = "100"


def _commands(group, path=()):
    """(path, command) for every command of the app, groups first, in the order they were added."""
    for name, cmd in group.commands.items():
        if getattr(cmd, "hidden", False):
            continue
        yield (*path, name), cmd
        if hasattr(cmd, "commands"):  # a group (typer vendors its own click, so no isinstance)
            yield from _commands(cmd, (*path, name))


def _help(args: list[str]) -> str:
    from typer.testing import CliRunner

    from nw2.cli import app

    result = CliRunner().invoke(app, [*args, "--help"], prog_name="nw2",
                                env={"COLUMNS": WIDTH, "TERM": "dumb", "NO_COLOR": "1"})
    if result.exit_code != 0:
        raise RuntimeError(f"nw2 {' '.join(args)} --help failed: {result.output}")
    return "\n".join(line.rstrip() for line in result.output.strip("\n").splitlines())


def render() -> str:
    import typer

    from nw2.cli import app

    group = typer.main.get_command(app)
    parts = ["# Command-line reference", "",
             "Generated from each command's `--help` by `docs/gen_cli_reference.py`; "
             "`tests/test_cli_reference.py` fails when this page and the help drift apart.", "",
             "```text", _help([]), "```", ""]
    for path, _ in _commands(group):
        parts += [f"## nw2 {' '.join(path)}", "", "```text", _help(list(path)), "```", ""]
    return "\n".join(parts)


def main() -> int:
    text = render()
    if "--check" in sys.argv[1:]:
        if not PAGE.exists() or PAGE.read_text() != text:
            print(f"{PAGE} is out of date: run {Path(__file__).relative_to(ROOT)}", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text)
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
