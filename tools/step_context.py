"""Which step, and which tool call of it, is running: for tools that need to know.

The executor sets the step for the duration of one step and the tool call around each call; each
step runs in its own copy of the context, so parallel steps never see each other's values.
Scenario fault injection reads the step; tools with side effects read `idempotency_key()` and pass
it to their callee (an `Idempotency-Key` header, a marker in a written file) so that a call repeated
after a crash is recognised as the same call.
"""

from __future__ import annotations

import hashlib
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

    @property
    def run(self) -> str:
        """The run's id alone: `run_id` carries the node execution after a "/" when there is
        one (graphs/scheduler.py), so that a fork's calls get keys of their own."""
        return self.run_id.partition("/")[0]


@dataclass(frozen=True)
class ToolCallIdentity:
    """One tool call of one attempt of a step: `index` counts the step's tool calls from 0, in the
    order the executor makes them, so it is the same when a resumed step replays its turns."""

    step: StepIdentity
    index: int

    @property
    def idempotency_key(self) -> str:
        raw = f"{self.step.run_id}\x1f{self.step.step_id}\x1f{self.step.attempt}\x1f{self.index}"
        return "planexec-" + hashlib.sha256(raw.encode()).hexdigest()[:32]


_STEP: ContextVar[StepIdentity | None] = ContextVar("planexec_step", default=None)
_CALL: ContextVar[ToolCallIdentity | None] = ContextVar("planexec_tool_call", default=None)


def current_step() -> StepIdentity | None:
    """The step whose tool call is running, or None outside a step."""
    return _STEP.get()


def current_tool_call() -> ToolCallIdentity | None:
    """The tool call running now, or None outside one."""
    return _CALL.get()


def idempotency_key() -> str | None:
    """The key of the tool call running now: stable across resumes of the same run, step, attempt
    and call index. None when a tool is called outside a planexec step (e.g. directly in a test)."""
    call = _CALL.get()
    return call.idempotency_key if call is not None else None


@contextmanager
def running_step(identity: StepIdentity) -> Iterator[None]:
    token = _STEP.set(identity)
    try:
        yield
    finally:
        _STEP.reset(token)


@contextmanager
def calling_tool(identity: ToolCallIdentity) -> Iterator[None]:
    token = _CALL.set(identity)
    try:
        yield
    finally:
        _CALL.reset(token)
