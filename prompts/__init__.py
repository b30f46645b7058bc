"""Prompt texts, kept as plain files beside this module and filled with named placeholders."""

from __future__ import annotations

from functools import cache
from pathlib import Path

_DIR = Path(__file__).parent


@cache
def _text(name: str) -> str:
    return (_DIR / f"{name}.txt").read_text(encoding="utf-8")


def render(name: str, **values: object) -> str:
    """The prompt `name` (planner, executor, replanner) with its {placeholders} filled."""
    return _text(name).format(**values)
