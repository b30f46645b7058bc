"""Routing recorded in the state, so a state edit routes the way the node did.

The replanner and approval nodes decide where the run goes and say so with `Command(goto=...)`.
LangGraph does not replay a node to apply `update_state(..., as_node=...)` (Studio's "edit state"),
so after a node that routes by `Command` an edited checkpoint would have nowhere to go and the run
would stop there. `recorded_route(node)` turns the node's `Command(goto=X, update=U)` into the
update `U` plus `route: X`, and the graph routes after the node with `follow_route`, an ordinary
conditional edge over the state, which LangGraph does evaluate for an update.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from langgraph.graph import END
from langgraph.types import Command


def recorded_route(node: Callable[..., Any]) -> Callable[..., Any]:
    """`node`, returning its `Command`'s update with the destination as `route`."""
    if inspect.iscoroutinefunction(node):

        @functools.wraps(node)
        async def async_node(state: Any, runtime: Any) -> Any:
            return _as_update(await node(state, runtime))

        return async_node

    @functools.wraps(node)
    def sync_node(state: Any, runtime: Any) -> Any:
        return _as_update(node(state, runtime))

    return sync_node


def _as_update(out: Any) -> Any:
    if not isinstance(out, Command):
        return out
    if not isinstance(out.goto, str) or out.graph is not None or out.resume is not None:
        raise TypeError(f"a routed node must return Command(goto=<node name>, update=...): {out}")
    update = dict(out.update or {})
    update["route"] = out.goto
    return update


def follow_route(state: dict[str, Any]) -> str:
    """The destination the last routing node recorded (END when there is none)."""
    return state.get("route") or END
