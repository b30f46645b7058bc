"""The plan cache: a templated goal's validated plan, reused by later runs of the template.

A run that names a template (`Context.template`, `Context.params`) asks `lookup` before the planner
model is called. An entry is keyed by template, the run's tool set, the planner model and the
planner's look-up tools (if it may look anything up), and lives in the graph's LangGraph Store
under ("planexec", "plan_cache", TEMPLATE) — SQLite or Postgres for the CLI, the server's store
under `langgraph dev`. A usable entry is instantiated with the
run's parameters, checked with the same rules as a fresh plan (graphs/schemas.py `plan_problems`,
against this run's tools and caps) and becomes the run's plan: no planner call.

What happens to an entry is decided when the run's outcome is known, in whichever node ends the
run (`settling` wraps every node; nodes themselves know nothing of the cache): a run that planned
afresh and ended `done` with no replan stores its plan, its parameter values made placeholders
(graphs/plan_placeholders.py; a plan that cannot be templatised safely is not stored); a run
whose plan came from the cache and needed a replan, or did not end `done`, drops the entry. A
plan the planner wrote after looking things up (Context.planner_tools) is never stored: it
followed data it read (untrusted, and maybe this run's alone), not the template. An
entry older than `Context.plan_cache_max_age_s` is dropped at lookup. Every decision is a
`plan_cache` event (docs/events.md) and is recorded in `State.plan_cache`.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from langchain_core.tools import BaseTool
from langgraph.runtime import Runtime
from langgraph.store.base import BaseStore
from pydantic import ValidationError

from app.context import Context
from app.plan_templates import TemplateError, check_params, check_template_name
from app.usage import RESET_KEY
from graphs import events
from graphs.plan_placeholders import Ambiguous, instantiate, templatise
from graphs.run_context import run_context
from graphs.schemas import Plan, PlanStep, plan_problems
from graphs.state import DONE, RUNNING
from graphs.structured import StructuredResult

NAMESPACE = ("planexec", "plan_cache")
_STEP_FIELDS = ("id", "description", "depends_on", "tools", "tool", "args")


def namespace(template: str) -> tuple[str, ...]:
    return (*NAMESPACE, template)


def entry_key(
    tool_names: Iterable[str], planner_model: str, lookup_tools: Iterable[str] = ()
) -> str:
    """The entry's key within its template: the run's tool set, planner model and the tools
    the planner may look things up with (none: the key runs without look-ups always had)."""
    key: dict[str, Any] = {"tools": sorted(tool_names), "planner_model": planner_model}
    if lookups := sorted(lookup_tools):
        key["lookup_tools"] = lookups
    blob = json.dumps(key)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class Lookup:
    """What the planner learns from the cache: nothing (no template), an error (bad template or
    parameters: the run fails), or a marker for its update and, on a hit, the plan."""

    marker: dict[str, Any] | None = None
    hit: StructuredResult | None = None
    error: str = ""

    def mark(self, update: dict[str, Any]) -> dict[str, Any]:
        """The planner's `update` carrying the marker (what `settling` decides with later)."""
        if self.marker is None or "plan" not in update:
            return update
        history = update.get("history") or []
        looked = any(isinstance(h, dict) and h.get("action") == "looked_up" for h in history)
        marker = {**self.marker, "run_id": update.get("run_id", ""), "looked_up": looked}
        return {**update, "plan_cache": marker}


async def lookup(
    ctx: Context, runtime: Runtime[Context], goal: str, tools: dict[str, BaseTool]
) -> Lookup:
    """The cached plan for this run's template, if one applies (see the module docstring)."""
    if not ctx.template:
        return Lookup()
    try:
        check_template_name(ctx.template)
        check_params(ctx.params)
    except TemplateError as exc:
        return Lookup(error=f"the template setting cannot be used: {exc}")
    lookup_tools = ctx.planner_tools if ctx.max_planner_tool_calls else []
    key = entry_key(tools, ctx.planner_model, lookup_tools)
    marker = {"template": ctx.template, "key": key, "tools": sorted(tools), "from_cache": False}
    store = runtime.store
    if store is None:
        _emit(runtime, "miss", ctx.template, "the graph has no store to keep plans in")
        return Lookup(marker)
    item = await asyncio.to_thread(store.get, namespace(ctx.template), key)
    entry = item.value if item is not None else None
    steps, why = _usable(entry, ctx, goal, tools)
    if steps is None:
        if why.startswith("expired"):
            await asyncio.to_thread(store.delete, namespace(ctx.template), key)
            _emit(runtime, "dropped", ctx.template, why)
        _emit(runtime, "miss", ctx.template, why)
        return Lookup(marker)
    used = {**entry, "hits": entry.get("hits", 0) + 1, "last_used_at": time.time()}
    await asyncio.to_thread(store.put, namespace(ctx.template), key, used, index=False)
    age = time.time() - entry["created_at"]
    _emit(runtime, "hit", ctx.template, f"plan from cache (stored {age:.0f} s ago)")
    return Lookup({**marker, "from_cache": True}, StructuredResult(value=Plan(steps=steps)))


def _usable(
    entry: dict[str, Any] | None, ctx: Context, goal: str, tools: dict[str, BaseTool]
) -> tuple[list[PlanStep] | None, str]:
    """(the entry's plan for this run, "") or (None, why it cannot be used)."""
    if entry is None:
        return None, "no cached plan for this template, tools and planner model yet"
    age = time.time() - entry.get("created_at", 0)
    if ctx.plan_cache_max_age_s and age > ctx.plan_cache_max_age_s:
        return (
            None,
            (
                f"expired: stored {age:.0f} s ago, plan_cache_max_age_s is "
                f"{ctx.plan_cache_max_age_s:g}"
            ),
        )
    if sorted(entry.get("params", [])) != sorted(ctx.params):
        return None, (
            f"the cached plan's parameters are {sorted(entry.get('params', []))}, "
            f"this run's are {sorted(ctx.params)}"
        )
    if instantiate(entry.get("goal", ""), ctx.params) != goal:
        return None, "this run's goal is not the cached plan's goal with these parameters"
    try:
        steps = [PlanStep.model_validate(instantiate(s, ctx.params)) for s in entry["steps"]]
    except (ValidationError, KeyError, TypeError) as exc:
        return None, f"the cached plan is malformed: {str(exc)[:200]}"
    problems = plan_problems(steps, max_steps=ctx.max_steps, tools=tools)
    if problems:
        return None, f"the cached plan does not fit this run: {problems[0]}"
    return steps, ""


def settling(node: Callable[..., Any]) -> Callable[..., Any]:
    """`node` (sync or async, taking state and runtime) with the cache settled after its update
    when the run's outcome is known."""
    if inspect.iscoroutinefunction(node):

        @functools.wraps(node)
        async def async_node(state: Any, runtime: Any) -> Any:
            out = await node(state, runtime)
            decision = _decide(state, out)
            if decision is None:
                return out
            settled = await asyncio.to_thread(decision.apply, runtime.store)
            return _emit_settled(runtime, out, settled)

        return async_node

    @functools.wraps(node)
    def sync_node(state: Any, runtime: Any) -> Any:
        out = node(state, runtime)
        decision = _decide(state, out)
        if decision is None:
            return out
        return _emit_settled(runtime, out, decision.apply(runtime.store))

    return sync_node


@dataclass
class _Decision:
    """What to do with the run's cache entry now that its outcome is known."""

    marker: dict[str, Any]
    action: str  # "store", "drop" or "skip" (nothing to store: the run did not succeed)
    reason: str
    state: dict[str, Any]  # the run's state with the node's update applied (the fields used)

    def apply(self, store: BaseStore | None) -> dict[str, Any]:
        """The marker, settled: `outcome` (stored, dropped, not_stored) and `reason`."""
        ns = namespace(self.marker["template"])
        if store is None or self.action == "skip":
            return {**self.marker, "outcome": "not_stored", "reason": self.reason}
        if self.action == "drop":
            store.delete(ns, self.marker["key"])
            return {**self.marker, "outcome": "dropped", "reason": self.reason}
        try:
            entry = _entry(self.marker, self.state)
        except Ambiguous as exc:
            reason = f"the plan cannot be templatised safely: {exc}"
            return {**self.marker, "outcome": "not_stored", "reason": reason}
        store.put(ns, self.marker["key"], entry, index=False)
        return {**self.marker, "outcome": "stored", "reason": self.reason}


def _decide(state: dict[str, Any], out: Any) -> _Decision | None:
    if not isinstance(out, dict):
        return None
    if RESET_KEY in (out.get("results") or {}) and "plan_cache" not in out:
        return None  # a new run with no template (or one that failed to start) began
    now = {k: out.get(k, state.get(k)) for k in ("plan_cache", "run_id", "status", "replans")}
    now.update(goal=out.get("goal", state.get("goal")), plan=out.get("plan", state.get("plan")))
    marker = now["plan_cache"]
    if not marker or marker.get("outcome") or marker.get("run_id") != now["run_id"]:
        return None  # no template, settled already, or a previous run's marker
    status, replans = now["status"], now["replans"] or 0
    if marker["from_cache"]:
        if replans:
            return _Decision(marker, "drop", "a run from the cached plan needed a replan", now)
        if status not in (DONE, RUNNING, None):
            return _Decision(marker, "drop", f"a run from the cached plan ended {status}", now)
        return None
    if status in (RUNNING, None):
        return None
    if status == DONE and not replans and marker.get("looked_up"):
        why = "the planner looked things up first: its plan followed what it read, not the template"
        return _Decision(marker, "skip", f"the plan was not stored: {why}", now)
    if status == DONE and not replans:
        now["context"] = state.get("context") or {}
        return _Decision(marker, "store", "the run succeeded with no replan", now)
    why = "it needed a replan" if replans else f"it ended {status}"
    return _Decision(marker, "skip", f"the plan was not stored: {why}", now)


def _entry(marker: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    """The cache entry for a successful run's plan; Ambiguous when it cannot be templatised,
    or when filling its placeholders back in would not give the plan that ran."""
    ctx = run_context(state)
    params = ctx.params
    steps = [{k: s[k] for k in _STEP_FIELDS if k in s} for s in state["plan"]]
    stored = [templatise(s, params, f"step {s['id']!r}") for s in steps]
    goal = templatise(state["goal"], params, "the goal")
    if instantiate(stored, params) != steps or instantiate(goal, params) != state["goal"]:
        raise Ambiguous("filling the placeholders back in does not give the plan that ran")
    return {
        "template": marker["template"],
        "goal": goal,
        "params": sorted(params),
        "planner_model": ctx.planner_model,
        "tools": marker["tools"],
        "steps": stored,
        "created_at": time.time(),
        "run_id": state["run_id"],
        "hits": 0,
        "last_used_at": None,
    }


def _emit(runtime: Runtime[Context], action: str, template: str, reason: str) -> None:
    events.emit(runtime.stream_writer, events.PLAN_CACHE, action=action, template=template,
                reason=reason)  # fmt: skip


def _emit_settled(runtime: Runtime[Context], out: dict[str, Any], marker: dict[str, Any]) -> dict:
    _emit(runtime, marker["outcome"], marker["template"], marker["reason"])
    return {**out, "plan_cache": marker}


# --- For `planexec cache` (app/cli/cache_command.py) ---


def entries(store: BaseStore, template: str | None = None) -> list[dict[str, Any]]:
    """Every cache entry (or the template's), each with its `key`, oldest first."""
    if template is not None:
        spaces = [namespace(template)]
    else:
        spaces = store.list_namespaces(prefix=NAMESPACE, limit=10_000)
    found = []
    for ns in spaces:
        for item in store.search(ns, limit=10_000):
            found.append({**item.value, "key": item.key})
    return sorted(found, key=lambda e: e.get("created_at", 0))


def clear(store: BaseStore, template: str | None = None) -> int:
    """Remove every entry (or the template's); how many went."""
    gone = entries(store, template)
    for entry in gone:
        store.delete(namespace(entry["template"]), entry["key"])
    return len(gone)
