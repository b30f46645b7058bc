"""What the planner and replanner must return, and the rules a plan must keep.

Pydantic checks the shape; `plan_problems` checks what a schema cannot: unique ids, known
dependencies, no cycles, the step cap, tool steps (a tool the run may use, arguments that fit
its schema, references only to declared dependencies: graphs/tool_args.py), and that each step's
tool allow-list names only the run's tools. Its messages go back to the model on a retry, so they
say what is wrong and with which step.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from langchain_core.tools import BaseTool
from pydantic import BaseModel, ConfigDict, Field

from graphs.tool_args import tool_step_problems

# The integers a plan may hold: checkpoints are written with msgpack, which has no larger ones,
# so one past them (a model's 400-digit number) would fail the run's next checkpoint write.
INT64 = range(-(2**63), 2**63)


class PlanStep(BaseModel):
    """One step of a plan."""

    id: str = Field(description="Short unique id, e.g. 's1'.")
    description: str = Field(
        default="", description="What to do, self-contained; may be left out for a tool step."
    )
    depends_on: list[str] = Field(
        default_factory=list, description="Ids of the steps whose results this step needs."
    )
    tool: str = Field(default="", description="Tool step: the tool it calls, with no model.")
    args: dict[str, Any] = Field(
        default_factory=dict, description="Tool step: the tool's arguments."
    )
    tools: list[str] | None = Field(
        default=None,
        description="Names of the tools this step may use ([] for none); its executor is offered "
        "only these. Left out, the step may use every tool of the run.",
    )


class Plan(BaseModel):
    """A structured plan: steps with ids and dependencies."""

    steps: list[PlanStep] = Field(description="The steps, in a sensible order.")


class ReplanDecision(BaseModel):
    """The replanner's decision after reading the results so far."""

    action: Literal["continue", "replan", "finish"] = Field(
        description="continue the plan, replace the remaining steps, or finish with an answer."
    )
    reason: str = Field(default="", description="Why, in one or two sentences.")
    steps: list[PlanStep] | None = Field(
        default=None, description="With 'replan': the steps that replace all remaining steps."
    )
    response: str | None = Field(
        default=None, description="With 'finish': the final answer for the user."
    )


class EndDecision(BaseModel):
    """Finish with the answer, or give more steps."""

    # The lean form of the same decision (the end-of-run call): the model sees one tool name.
    model_config = ConfigDict(title="ReplanDecision")

    # "continue" is refused by decision_problems with a reason, better than a schema error.
    action: Literal["finish", "replan", "continue"]
    response: str = ""
    reason: str = ""
    steps: list[dict] = []


def as_decision(value: ReplanDecision | EndDecision) -> ReplanDecision:
    """A lean end-of-run decision as a full one (its steps checked as PlanSteps); ValueError
    (a pydantic ValidationError) when they do not fit."""
    if isinstance(value, ReplanDecision):
        return value
    return ReplanDecision.model_validate(value.model_dump())


def plan_problems(
    steps: Sequence[PlanStep],
    *,
    max_steps: int,
    completed: Iterable[str] = (),
    tools: Mapping[str, BaseTool] | None = None,
) -> list[str]:
    """Everything wrong with `steps`; empty when the plan is valid.

    `completed` are ids of steps already done (for a revision): new steps may depend on them but
    may not reuse their ids. `tools` are the tools the run may use, by name; without them a tool
    step is refused.
    """
    done = set(completed)
    problems: list[str] = []
    if not steps:
        problems.append("the plan has no steps; give at least one")
    if len(steps) > max_steps:
        problems.append(f"the plan has {len(steps)} steps; the limit is {max_steps}")
    seen: set[str] = set()
    for step in steps:
        if not step.id.strip():
            problems.append(f"a step has an empty id (description: {step.description!r})")
        elif step.id in seen:
            problems.append(f"step id {step.id!r} is used more than once; ids must be unique")
        elif step.id in done:
            problems.append(f"step id {step.id!r} belongs to a completed step; use a new id")
        seen.add(step.id)
    for step in steps:
        for dep in step.depends_on:
            if dep == step.id:
                problems.append(f"step {step.id!r} depends on itself")
            elif dep not in seen and dep not in done:
                problems.append(f"step {step.id!r} depends on unknown step {dep!r}")
    for step in steps:
        if step.tool:
            if _too_large_number(step.args):
                problems.append(
                    f"step {step.id!r} has a number past 64 bits in its args; write it as a string"
                )
                continue
            problems += tool_step_problems(
                step.id, step.tool, step.args or {}, step.depends_on, tools or {}
            )
        else:
            if step.args:
                problems.append(f"step {step.id!r} has args but no tool; give the tool, or no args")
            if not step.description.strip():
                problems.append(
                    f"step {step.id!r} has no description; say what the executor must do"
                )
    if tools is not None:
        problems += step_tool_problems(steps, set(tools))
    cycle = _find_cycle(steps)
    if cycle:
        problems.append("the dependencies form a cycle: " + " -> ".join(cycle))
    return problems


def step_tool_problems(steps: Sequence[PlanStep], run_tools: set[str]) -> list[str]:
    """A step may name only tools the run has; a tool step (one `tool`) names that one only."""
    problems = []
    available = ", ".join(sorted(run_tools)) or "none"
    for step in steps:
        for name in step.tools or ():
            if name not in run_tools:
                problems.append(
                    f"step {step.id!r} names tool {name!r}, which this run does not have "
                    f"(the run's tools: {available})"
                )
        single = step.tool  # a tool step (graphs/tool_step.py) names exactly that one tool
        if single and step.tools is not None and list(step.tools) != [single]:
            problems.append(
                f"step {step.id!r} calls tool {single!r}, so its tools list must be "
                f"[{single!r}] or left out"
            )
    return problems


def plan_tool_set(plan: Iterable[dict]) -> set[str] | None:
    """The tools a plan's steps were given, together; None when a step was given no list (it
    may use every tool of the run). A tool step with no list uses its one tool."""
    names: set[str] = set()
    for step in plan:
        if step.get("tools") is not None:
            names.update(step["tools"])
        elif step.get("tool"):
            names.add(step["tool"])
        else:
            return None
    return names


def revision_tool_problems(steps: Sequence[PlanStep], plan_tools: set[str] | None) -> list[str]:
    """The replanner reads untrusted results, so its new steps may not use a tool the plan it
    revises did not already use: text read by a step cannot widen what later steps can do. A
    model step with no list is no problem: it is given the plan's tools (`confined`)."""
    if plan_tools is None:
        return []
    problems = []
    for step in steps:
        # A tool step's list is its one tool (step_tool_problems refuses any other list).
        names = step.tools if step.tools is not None else ([step.tool] if step.tool else [])
        extra = sorted(set(names) - plan_tools)
        if extra:
            problems.append(
                f"step {step.id!r} names {', '.join(map(repr, extra))}, which the plan did not "
                f"use; a revision may only use the plan's tools: {', '.join(sorted(plan_tools))}"
            )
    return problems


def confined(steps: Sequence[PlanStep], plan_tools: set[str] | None) -> list[PlanStep]:
    """A revision's steps, each model step that names no tools given the plan's tools: without
    a list a step may use every tool of the run, which would widen a plan that used fewer, and
    the end call's MORE STEPS lines carry no lists."""
    if plan_tools is None:
        return list(steps)
    return [
        s.model_copy(update={"tools": sorted(plan_tools)}) if s.tools is None and not s.tool else s
        for s in steps
    ]


def _too_large_number(value: Any) -> bool:
    """Whether `value` holds an integer outside INT64. (Nesting too deep for it fails the
    check, which graphs/structured.py tells the model as a problem.)"""
    if isinstance(value, int) and not isinstance(value, bool):
        return value not in INT64
    if isinstance(value, dict):
        return any(_too_large_number(v) for v in value.values())
    if isinstance(value, list):
        return any(_too_large_number(v) for v in value)
    return False


def _find_cycle(steps: Sequence[PlanStep]) -> list[str] | None:
    """One dependency cycle among `steps` as a path of ids, or None (self-loops are reported
    separately). Depth-first with a stack of its own: a model's chain of a few thousand steps
    must not reach Python's recursion limit."""
    ids = {s.id for s in steps}
    deps = {s.id: [d for d in s.depends_on if d != s.id and d in ids] for s in steps}
    finished: set[str] = set()
    for start in deps:
        if start in finished:
            continue
        path, on_path = [start], {start}
        pending = [iter(deps[start])]  # per node on the path: the dependencies left to visit
        while pending:
            dep = next(pending[-1], None)
            if dep is None:  # every dependency of the path's last node is done
                finished.add(path[-1])
                on_path.discard(path.pop())
                pending.pop()
            elif dep in on_path:
                return path[path.index(dep) :] + [dep]
            elif dep not in finished:
                path.append(dep)
                on_path.add(dep)
                pending.append(iter(deps[dep]))
    return None
