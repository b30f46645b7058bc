"""Session-wide guards: tests leave nothing behind in the repository.

`git status --porcelain --ignored` is taken before the first test and after the last; any path
that appeared or changed (ignored files too: a stray database is often git-ignored) fails the
session. Left out: the virtualenv and the caches Python and the tools write. (`langgraph dev`
writes `.langgraph_api/` where it runs; the server tests run it in a temporary folder.)

Hypothesis keeps its example database and Unicode tables in `./.hypothesis` unless told
otherwise; it is told to use a temporary folder.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ALLOWED = (".venv/", "__pycache__/", ".pytest_cache/", ".ruff_cache/")
_HYPOTHESIS_HOME = tempfile.mkdtemp(prefix="planexec-hypothesis-")


def pytest_configure(config: pytest.Config) -> None:
    from hypothesis.configuration import set_hypothesis_home_dir

    set_hypothesis_home_dir(_HYPOTHESIS_HOME)


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_HYPOTHESIS_HOME, ignore_errors=True)


def repository_changes() -> set[str]:
    """`git status` lines of the working tree (untracked and ignored files too), minus the
    allowed caches."""
    out = subprocess.run(
        ["git", "status", "--porcelain", "--ignored", "--untracked-files=all"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return {
        line
        for line in out.splitlines()
        if not any(part in line[3:] or line[3:].startswith(part) for part in ALLOWED)
        and ".egg-info/" not in line
    }


@pytest.fixture(scope="session", autouse=True)
def _repository_left_as_found() -> Iterator[None]:
    if not (REPO / ".git").exists():  # an unpacked copy without git: nothing to compare
        yield
        return
    before = repository_changes()
    yield
    new = sorted(repository_changes() - before)
    assert not new, "tests wrote into the repository (use tmp_path):\n" + "\n".join(new)
