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


def test_ctrl_c_while_a_run_is_recorded_says_how_to_start_it(tmp_path, capsys) -> None:
    """Ctrl-C after the run was recorded and before it started printed nothing, and the id
    (made up by the CLI) was never shown: the run could not be found to be resumed."""
    from app.context import Context
    from app.runs import runner
    from app.runs.persistence import open_persistence

    with open_persistence(str(tmp_path / "runs.sqlite")) as persistence:
        assert commands._interrupted_before_start(persistence, "r1") == 130
        assert "interrupted before the run was recorded: nothing ran" in capsys.readouterr().err
        ctx = Context.every_role("scripted:demo", workspace=str(tmp_path / "ws"))
        runner.submit_run(persistence, "g", ctx, "r1")
        assert commands._interrupted_before_start(persistence, "r1") == 130
        said = " ".join(capsys.readouterr().err.split())
        assert "interrupted before the run started. Start it with: planexec resume r1" in said
