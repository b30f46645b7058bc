"""Tool faults a scenario injects: the scripted side wraps the run's tools, so the graph never
knows a scenario is playing. A wrapped tool asks `tools.step_context` which step calls it."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool

from app.scripted.scenarios import Fault
from graphs.aio import awaits_natively
from tools.step_context import current_step


class _FaultyTool(BaseTool):
    """`inner`, except for the steps (and attempts) a fault names."""

    inner: BaseTool
    faults: list[Fault]

    def _fault(self) -> Fault | None:
        step = current_step()
        if step is None:
            return None
        for fault in self.faults:
            if fault.step == step.step_id and fault.attempt in (None, step.attempt):
                return fault
        return None

    def invoke(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
        fault = self._fault()
        if fault is None:
            return self.inner.invoke(input, config, **kwargs)
        if fault.kind == "raise":
            raise RuntimeError(fault.message)
        call_id = input.get("id", "") if isinstance(input, dict) else ""
        return ToolMessage(content="", tool_call_id=call_id or "", name=self.name)

    async def ainvoke(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
        if self._fault() is None:
            return await self.inner.ainvoke(input, config, **kwargs)
        return self.invoke(input, config, **kwargs)

    @property
    def native_async(self) -> bool:
        """As `inner`: the executor calls a wrapped sync tool's `invoke` in a thread of its own."""
        return awaits_natively(self.inner)

    def _run(self, *args: Any, **kwargs: Any) -> Any:  # never reached: invoke is overridden
        raise NotImplementedError


def with_faults(tools: list[BaseTool], faults: list[Fault]) -> list[BaseTool]:
    """`tools`, each one a scenario's fault names wrapped to misbehave on cue."""
    wrapped: list[BaseTool] = []
    for tool_ in tools:
        mine = [f for f in faults if f.tool == tool_.name]
        if not mine:
            wrapped.append(tool_)
            continue
        wrapped.append(
            _FaultyTool(
                name=tool_.name,
                description=tool_.description,
                args_schema=tool_.args_schema,
                inner=tool_,
                faults=mine,
            )
        )
    return wrapped
