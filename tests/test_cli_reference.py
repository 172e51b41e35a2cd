"""docs/cli.md is the commands' own --help: this fails when one changes without the other."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _generator():
    spec = importlib.util.spec_from_file_location("gen_cli_reference", ROOT / "docs" / "gen_cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_matches_the_help():
    gen = _generator()
    expected = gen.render()
    page = (ROOT / "docs" / "cli.md").read_text()
    assert page == expected, "docs/cli.md is out of date: run .venv/bin/python docs/gen_cli_reference.py"


def test_every_command_is_documented():
    import typer

    from nw2.cli import app

    gen = _generator()
    page = (ROOT / "docs" / "cli.md").read_text()
    commands = [" ".join(path) for path, _ in gen._commands(typer.main.get_command(app))]
    assert {"ingest", "metrics", "balance", "pretrain", "samples list"} <= set(commands)
    for command in commands:
        assert f"## nw2 {command}\n" in page
