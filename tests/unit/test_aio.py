"""graphs/aio.py: the one background event loop the sync graph API runs async nodes on.

Each case runs in its own interpreter (the loop is process-wide, and a broken loop hangs its
caller), under a timeout, so a regression fails the test instead of hanging the suite."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )


def test_after_the_loop_dies_the_next_call_gets_a_new_loop_not_a_hang() -> None:
    # A KeyboardInterrupt raised inside a task ends the loop's run_forever. Its waiter gets an
    # error; the next call must start a new loop at once: the dead one, not running but not yet
    # closed by its thread, used to be handed the work, which then never ran.
    out = _run(
        """
        from graphs.aio import run_sync

        async def dies():
            raise KeyboardInterrupt

        async def answer():
            return 42

        for _ in range(30):
            try:
                run_sync(dies())
            except RuntimeError as exc:
                assert "event loop stopped" in str(exc), exc
            assert run_sync(answer()) == 42
        print("ok")
        """
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok"


def test_an_interrupted_wait_cancels_the_coroutine_it_waited_for() -> None:
    # Ctrl-C while the CLI waits on a node: the node's coroutine must be cancelled (its model
    # calls and tools stop), not left running on the background loop.
    out = _run(
        """
        import asyncio, os, signal, threading, time
        from graphs.aio import run_sync

        cancelled = threading.Event()

        async def long_node():
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.set()
                raise

        threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        started = time.monotonic()
        try:
            run_sync(long_node())
        except KeyboardInterrupt:
            pass
        assert time.monotonic() - started < 10, "the wait was not interrupted"
        assert cancelled.wait(5), "the coroutine kept running"
        print("ok")
        """
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok"
