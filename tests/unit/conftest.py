"""Unit tests see no PLANEXEC_* settings from the developer's shell."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _no_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("PLANEXEC_")]:
        monkeypatch.delenv(name)
