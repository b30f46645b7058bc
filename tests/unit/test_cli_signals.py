"""The exit code of a run stopped by signals is the first signal's (app/cli/commands.py)."""

from __future__ import annotations

import signal

import pytest

from app.cli import commands


@pytest.mark.parametrize(
    ("received", "code"),
    [
        ([], 130),
        ([signal.SIGINT], 130),
        ([signal.SIGTERM], 143),
        ([signal.SIGTERM, signal.SIGINT], 143),  # a Ctrl-C after SIGTERM does not change it
        ([signal.SIGINT, signal.SIGTERM], 130),
    ],
)
def test_the_first_stop_signal_sets_the_exit_code(
    monkeypatch: pytest.MonkeyPatch, received: list[int], code: int
) -> None:
    monkeypatch.setattr(commands, "_received", received)
    assert commands._stop_code() == code
