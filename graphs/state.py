"""The run's state as the checkpointer stores it and the server returns it.

Values are plain dicts and lists so the state reads the same from Python, from the CLI's
SQLite file and through the LangGraph server's JSON API. Fields that parallel steps write at once
(`results`, `usage`) merge through reducers.
"""

from __future__ import annotations

from typing import Annotated, Any

from typing_extensions import TypedDict  # pydantic needs it before 3.12 (the server's schemas)

from app.usage import RESET_KEY, merge_usage

# Run statuses. `running` is only ever seen in a checkpoint of an unfinished run.
DONE = "done"
FAILED = "failed"
REPLAN_LIMIT = "replan_limit"
REJECTED = "rejected"
RUNNING = "running"
BUDGET_EXCEEDED = "budget_exceeded"  # a run budget was reached; resumable with a raised one


# A new run on a thread that held one before starts from empty accumulators: the planner sends
# RESET (for dicts) or [RESET] (for lists) through the reducers below.
RESET: dict[str, Any] = {RESET_KEY: True}


def merge_results(
    left: dict[str, dict[str, Any]] | None, right: dict[str, dict[str, Any]] | None
) -> dict[str, dict[str, Any]]:
    """Reducer: results keyed by step id; a newer attempt of a step replaces the older."""
    if right and RESET_KEY in right:
        return {k: v for k, v in right.items() if k != RESET_KEY}
    return {**(left or {}), **(right or {})}


def append_history(
    left: list[dict[str, Any]] | None, right: list[dict[str, Any]] | None
) -> list[dict[str, Any]]:
    """Reducer: decisions in order; [RESET, ...] starts a new run's history."""
    if right and right[0] == RESET:
        return list(right[1:])
    return [*(left or []), *(right or [])]


class InputState(TypedDict):
    """What a caller passes to start a run."""

    goal: str


class State(TypedDict, total=False):
    """A plan-and-execute run."""

    goal: str
    """The user's goal, as given."""
    run_id: str
    """The planner's id for this run (a thread may hold several runs, one after another)."""
    context: dict[str, Any]
    """The run's Context as the planner received it; later nodes use this one (so a resume
    without a context keeps the run's configuration). Edit it to reconfigure a paused run."""
    plan: list[dict[str, Any]]
    """Current plan: {id, description, depends_on, attempt}. Completed steps stay in it."""
    results: Annotated[dict[str, dict[str, Any]], merge_results]
    """Step id -> latest result: status, result text, error, surprise, attempts, tool calls."""
    replans: int
    """Plan revisions made so far (capped by Context.max_replans)."""
    replanner_calls: int
    """Times the replanner was asked, whatever it decided."""
    batch_cut: bool
    """The executor stopped starting steps on request (Ctrl-C), not for the replanner: the
    run goes back to the executor when it resumes."""
    reviewed_done: int
    """Completed steps when the replanner last looked (for Context.replan_every)."""
    reviewed_at: float
    """When the replanner last looked (Unix time): results after it are news to it."""
    history: Annotated[list[dict[str, Any]], append_history]
    """The replanner's decisions, in order: action, reason, and the new steps of a revision."""
    status: str
    """running, done, failed, replan_limit, rejected or budget_exceeded."""
    started_at: float
    """When the planner started this run (Unix time): the wall-clock budget counts from it."""
    paused_seconds: float
    """Seconds the run waited for a person (plan approval) or for `planexec resume` after a
    budget or a failure stopped it: the wall-clock budget does not count them
    (graphs/run_clock.py)."""
    budget: dict[str, Any]
    """The budget hit, when status is budget_exceeded: {budget, limit, spent}."""
    budget_scope: str
    """The journal scope (graphs/journal.py) of the node execution a budget stopped: the turns of
    the steps it stopped mid-way are there, so the executor that continues the run (a resume with
    a raised budget, which starts a new node execution) reads and writes that journal, and a
    call those steps already made is replayed, not made again under a new key. Cleared once
    that executor visit ends."""
    counted_turns: dict[str, int]
    """Per step the budget stopped mid-way (by journal key, graphs/journal.step_key): how many
    of its journaled model turns `usage` already holds, so the resumed step replays them
    without counting them twice. Written with that usage in one checkpoint (a mark kept in the
    store beside it could outlive a kill that lost the usage); cleared with `budget_scope`."""
    reason: str
    """Why the run ended as it did (set for every status but done)."""
    response: str
    """The final answer."""
    route: str
    """Where the replanner or approval sent the run next (graphs/routes.py)."""
    summary: str
    """What the node that wrote this checkpoint did, in one line (graphs/summaries.py): what a
    person reads in the thread's history to pick a checkpoint to fork from or edit."""
    usage: Annotated[dict[str, dict[str, Any]], merge_usage]
    """Per role: calls, input_tokens, output_tokens, cost_usd (None if the price is unknown)."""
    plan_cache: dict[str, Any]
    """A templated run's plan cache (graphs/plan_cache.py): template, key, tools, `from_cache`
    (the plan came from the cache, no planner call), `run_id`, and once the run's outcome is
    known `outcome` (stored, dropped, not_stored) and `reason`."""
    approval_error: str
    """Why the last answer to the approval pause was refused (shown when it pauses again); the
    refused answer itself is not kept."""


def settled(step: dict[str, Any], results: dict[str, dict[str, Any]]) -> bool:
    """Whether `step`'s current attempt has a result (done or failed)."""
    result = results.get(step["id"])
    return result is not None and result.get("attempts", 0) >= step.get("attempt", 1)


def is_done(step_id: str, results: dict[str, dict[str, Any]]) -> bool:
    return results.get(step_id, {}).get("status") == DONE


def ready_steps(
    plan: list[dict[str, Any]], results: dict[str, dict[str, Any]], skip: set[str] = frozenset()
) -> list[dict[str, Any]]:
    """Steps not yet settled whose dependencies are all done, in plan order."""
    return [
        s
        for s in plan
        if s["id"] not in skip
        and not settled(s, results)
        and all(is_done(d, results) for d in s.get("depends_on", []))
    ]


def remaining_steps(
    plan: list[dict[str, Any]], results: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Steps whose current attempt has not run yet."""
    return [s for s in plan if not settled(s, results)]
