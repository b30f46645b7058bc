"""Which step a tool call belongs to, for tools that need to know (fault injection, keys).

The executor sets it for the duration of one step; each step runs in its own copy of the context,
so parallel steps never see each other's value.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class StepIdentity:
    """The step a tool is being called for."""

    run_id: str
    step_id: str
    attempt: int


_CURRENT: ContextVar[StepIdentity | None] = ContextVar("planexec_step", default=None)


def current_step() -> StepIdentity | None:
    """The step whose tool call is running, or None outside a step."""
    return _CURRENT.get()


@contextmanager
def running_step(identity: StepIdentity) -> Iterator[None]:
    token = _CURRENT.set(identity)
    try:
        yield
    finally:
        _CURRENT.reset(token)
