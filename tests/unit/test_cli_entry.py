"""The `planexec` command's entry point (app/cli/entry.py, pyproject's [project.scripts])."""

from __future__ import annotations

import sys
import tomllib
import types
from pathlib import Path

import pytest

from app.cli import entry

REPO = Path(__file__).resolve().parents[2]


def test_the_command_is_the_entry_point() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["planexec"] == "app.cli.entry:main"


def test_ctrl_c_while_the_cli_loads_exits_130(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C lands in whatever module is being imported then; it must not print a traceback."""

    class Loading(types.ModuleType):
        def __getattr__(self, name: str) -> object:
            raise KeyboardInterrupt

    monkeypatch.setitem(sys.modules, "app.cli.commands", Loading("app.cli.commands"))
    with pytest.raises(SystemExit) as stopped:
        entry.main()
    assert stopped.value.code == 130
