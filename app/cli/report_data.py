"""What a run report shows, gathered from the run's checkpoints, state and step journal.

Nothing here is recorded for the report's sake; it reads what a run keeps anyway:

- the checkpoint history: each checkpoint's time and the node(s) due next give the span of every
  planner, replanner and approval call, and each plan the run had in turn (so steps a revision
  replaced stay visible as replaced);
- the state: the final plan, results, decisions (`history`, with each replan's reason) and usage
  per role (with the cached input tokens and the prompt-cache hit rate they give);
- the step journal: every attempt of every step with its own times, tool calls and usage
  (`graphs.journal.run_records`, across the run's node executions).

Model turns inside a step are not timed separately: a step is model turn, tool calls, model turn,
... so the gaps between its timed tool calls are its model turns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.runs import runner
from app.runs.persistence import Persistence
from app.usage import with_cache_hit_rates
from graphs.journal import run_records

TEXT_CHARS = 2_000  # of a result or error kept in the report: the report stays small


def cut(text: str, chars: int) -> str:
    """`text`, or its first `chars` characters and how long it was: every text a report shows
    comes from a model, a tool or a person, and a 1 MB reason made a 2 MB report."""
    if len(text) <= chars:
        return text
    return text[:chars] + f" … [cut: {len(text):,} characters in all]"


TOOL_OUTPUT_CHARS = 300
CALL_NODES = ("planner", "replanner", "approval")


@dataclass
class Segment:
    kind: str  # "model" | "tool"
    start: float
    end: float
    label: str = ""
    ok: bool = True


@dataclass
class Attempt:
    number: int
    status: str
    start: float
    end: float
    segments: list[Segment] = field(default_factory=list)
    usage: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class StepView:
    id: str
    description: str
    depends_on: list[str]
    status: str  # done, failed, running, pending, blocked, replaced
    tool: str = ""  # a tool step's tool (plan steps with a `tool` field)
    replaced: bool = False  # dropped by a later revision of the plan
    plan_version: int = 0  # the plan that introduced it
    result: str = ""
    error: str = ""
    surprise: str = ""
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def cost_usd(self) -> float | None:
        costs = [u.get("cost_usd") for a in self.attempts for u in a.usage.values()]
        return None if any(c is None for c in costs) else sum(costs)

    @property
    def tokens(self) -> tuple[int, int]:
        usage = [u for a in self.attempts for u in a.usage.values()]
        return (
            sum(u.get("input_tokens", 0) for u in usage),
            sum(u.get("output_tokens", 0) for u in usage),
        )

    @property
    def cached_input_tokens(self) -> int:
        """Input tokens of its model calls that the provider read from its prompt cache."""
        return sum(u.get("cached_input_tokens", 0) for a in self.attempts for u in a.usage.values())


@dataclass
class Call:
    node: str  # planner, replanner, approval
    start: float
    end: float


@dataclass
class Decision:
    action: str  # replan, continue, finish, approved, edited, rejected, ...
    reason: str
    at: float
    by: str = "replanner"
    steps: list[str] = field(default_factory=list)


@dataclass
class RunReport:
    thread_id: str
    goal: str
    status: str
    reason: str
    response: str
    start: float
    end: float
    steps: list[StepView]
    calls: list[Call]
    decisions: list[Decision]
    usage: dict[str, dict[str, Any]]
    """Per role: the state's usage totals, with each role's `cache_hit_rate` added."""
    models: dict[str, str]
    plan_versions: int


def gather(persistence: Persistence, thread_id: str) -> RunReport:
    """Everything the report shows about run `thread_id` (RunNotFound if there is none)."""
    state = runner.run_state(persistence, thread_id)
    snapshots = _history(persistence, thread_id)
    plans = _plans(snapshots)
    records: dict[tuple[str, int], dict[str, Any]] = {}
    for record in run_records(persistence.store, thread_id, state.get("run_id", "")):
        result = record.get("result") or {}
        records[(str(result.get("id")), int(result.get("attempts") or 1))] = record
    steps = _steps(state, plans, records)
    calls = _calls(snapshots)
    times = [c.start for c in calls] + [c.end for c in calls]
    times += [t for s in steps for a in s.attempts for t in (a.start, a.end)]
    start = min(times, default=state.get("created_at") or 0.0)
    end = max(times, default=start)
    ctx = state.get("context") or {}
    return RunReport(
        thread_id=thread_id,
        goal=cut(str(state.get("goal", "")), TEXT_CHARS),
        status=str(state.get("status", "")),
        reason=cut(str(state.get("reason", "") or ""), TEXT_CHARS),
        response=str(state.get("response", "") or "")[: TEXT_CHARS * 2],
        start=start,
        end=max(end, start + 0.001),
        steps=steps,
        calls=calls,
        decisions=_decisions(state),
        usage=with_cache_hit_rates(state.get("usage")),
        models={r: str(ctx.get(f"{r}_model", "")) for r in ("planner", "executor", "replanner")},
        plan_versions=len(plans),
    )


def _history(persistence: Persistence, thread_id: str) -> list[Any]:
    """The thread's checkpoints, oldest first."""
    config = {"configurable": {"thread_id": thread_id}}
    return list(persistence.graph.get_state_history(config))[::-1]


def _when(snapshot: Any) -> float:
    return datetime.fromisoformat(snapshot.created_at).timestamp() if snapshot.created_at else 0.0


def _plans(snapshots: list[Any]) -> list[list[dict[str, Any]]]:
    """Each plan the run had, in order (a new version whenever the plan's steps change)."""
    plans: list[list[dict[str, Any]]] = []
    for snapshot in snapshots:
        plan = snapshot.values.get("plan") or []
        key = [(s["id"], s.get("description"), s.get("attempt", 1)) for s in plan]
        if plan and (
            not plans
            or key != [(s["id"], s.get("description"), s.get("attempt", 1)) for s in plans[-1]]
        ):
            plans.append(plan)
    return plans


def _calls(snapshots: list[Any]) -> list[Call]:
    """Planner, replanner and approval calls: from the checkpoint before each to the one after."""
    calls = []
    for before, after in zip(snapshots, snapshots[1:], strict=False):
        for node in before.next:
            if node in CALL_NODES:
                calls.append(Call(node, _when(before), _when(after)))
    return calls


def _decisions(state: dict[str, Any]) -> list[Decision]:
    return [
        Decision(
            action=str(entry.get("action", "")),
            reason=cut(str(entry.get("reason", "")), TEXT_CHARS),
            at=float(entry.get("at") or 0.0),
            by=str(entry.get("by", "replanner")),
            steps=[str(s.get("id", "")) for s in entry.get("steps") or []],
        )
        for entry in state.get("history") or []
        if isinstance(entry, dict) and entry.get("action")
    ]


def _steps(
    state: dict[str, Any],
    plans: list[list[dict[str, Any]]],
    records: dict[tuple[str, int], dict[str, Any]],
) -> list[StepView]:
    """Every step any plan had: the final plan's in order, then the ones revisions replaced."""
    results = state.get("results", {})
    final = state.get("plan", []) or (plans[-1] if plans else [])
    final_ids = {s["id"] for s in final}
    introduced: dict[str, int] = {}
    latest: dict[str, dict[str, Any]] = {}
    for version, plan in enumerate(plans, start=1):
        for step in plan:
            introduced.setdefault(step["id"], version)
            latest[step["id"]] = step
    for step in final:
        latest[step["id"]] = step
    ordered = [s["id"] for s in final] + [i for i in latest if i not in final_ids]
    ordered += [i for i in results if i not in latest]  # results of steps no plan lists now
    views = []
    for step_id in ordered:
        step = latest.get(step_id) or {"id": step_id, **results.get(step_id, {})}
        result = results.get(step_id) or {}
        replaced = step_id not in final_ids
        status = str(result.get("status") or ("replaced" if replaced else "pending"))
        if (
            not result
            and not replaced
            and any(
                results.get(d, {}).get("status") == "failed" for d in step.get("depends_on", [])
            )
        ):
            status = "blocked"
        views.append(
            StepView(
                id=str(step_id),
                description=cut(str(step.get("description", "")), TEXT_CHARS),
                depends_on=[str(d) for d in step.get("depends_on", [])],
                status=status,
                tool=str(step.get("tool") or ""),
                replaced=replaced,
                plan_version=introduced.get(step_id, 1),
                result=str(result.get("result", ""))[:TEXT_CHARS],
                error=str(result.get("error", ""))[:TEXT_CHARS],
                surprise=str(result.get("surprise", ""))[:TEXT_CHARS],
                attempts=_attempts(step_id, result, records),
            )
        )
    return views


def _attempts(
    step_id: str, result: dict[str, Any], records: dict[tuple[str, int], dict[str, Any]]
) -> list[Attempt]:
    """Each journaled attempt of a step (or the state's result when no journal holds it)."""
    attempts = []
    for number in range(1, int(result.get("attempts", 0) or 0) + 1):
        record = records.get((step_id, number))
        if record is None and number == result.get("attempts"):
            record = {"result": result, "usage": {}}
        if record is None:
            continue
        r = record["result"]
        if not r.get("started_at") or not r.get("finished_at"):
            continue
        attempts.append(
            Attempt(
                number=number,
                status=str(r.get("status", "")),
                start=float(r["started_at"]),
                end=float(r["finished_at"]),
                segments=_segments(r),
                usage=dict(record.get("usage") or {}),
            )
        )
    return attempts


def _segments(result: dict[str, Any]) -> list[Segment]:
    """Model turns and tool calls of one attempt, in time order."""
    start, end = float(result["started_at"]), float(result["finished_at"])
    tools = [
        c for c in result.get("tool_calls") or [] if c.get("started_at") and c.get("finished_at")
    ]
    segments: list[Segment] = []
    cursor = start
    for call in sorted(tools, key=lambda c: c["started_at"]):
        if call["started_at"] > cursor:
            segments.append(Segment("model", cursor, call["started_at"], "model turn"))
        label = f"{call.get('name', '')}: {str(call.get('output', ''))[:TOOL_OUTPUT_CHARS]}"
        segments.append(
            Segment("tool", call["started_at"], call["finished_at"], label, bool(call.get("ok")))
        )
        cursor = max(cursor, call["finished_at"])
    if tools and end > cursor:
        segments.append(Segment("model", cursor, end, "model turn"))
    return segments
