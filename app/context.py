"""Run configuration: the graph's `context_schema`.

Every field has a default and a description so LangGraph Studio can render a form for it. A field
left at its default is filled from the environment variable of the same name in upper case with a
`PLANEXEC_` prefix (`PLANEXEC_PLANNER_MODEL=openai:gpt-4.1 planexec run ...`), as LangGraph's
templates do; the prefix keeps generic names such as WORKSPACE (set by CI systems) out of it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from functools import lru_cache
from typing import Annotated, Any, Literal, get_type_hints

from pydantic import Field, TypeAdapter, ValidationError

from tools import DEFAULT_TOOLS

# Numeric fields carry their range in their type, so it is checked wherever the value comes from
# (a CLI option, PLANEXEC_*, a server caller, a recorded run). Floats must be finite: inf and nan
# pass a `> 0` check, and JSON has no spelling for them (a recorded run came back as null).
# Integers fit a database's 64-bit column with room to spare.
MAX_INT = 2**31 - 1
Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]  # a wait that must have an end
Limit = Annotated[float, Field(ge=0, allow_inf_nan=False)]  # 0 = no limit
Count = Annotated[int, Field(ge=0, le=MAX_INT)]
AtLeastOne = Annotated[int, Field(ge=1, le=MAX_INT)]


@dataclass(kw_only=True)
class Context:
    """How a run is configured: which models play which role, which tools, which caps."""

    planner_model: str = field(
        default="openai:gpt-4o",
        metadata={"description": "Model that writes the plan: 'provider:model' or 'scripted:NAME'"},
    )
    executor_model: str = field(
        default="openai:gpt-4o-mini",
        metadata={"description": "Cheaper model that runs one step at a time with tools."},
    )
    replanner_model: str = field(
        default="openai:gpt-4o",
        metadata={"description": "Model that continues, revises the rest of the plan, or answers"},
    )
    max_replans: Count = field(
        default=5,
        metadata={"description": "Plan revisions allowed before the run ends as replan_limit."},
    )
    max_steps: AtLeastOne = field(
        default=12, metadata={"description": "Most steps a plan (or a revision) may have."}
    )
    max_tool_calls_per_step: AtLeastOne = field(
        default=6, metadata={"description": "Most tool calls one step may make before it fails."}
    )
    replan_every: Count = field(
        default=0,
        metadata={
            "description": "Call the replanner after every N completed steps; 0 calls it only "
            "on surprises and when the plan is done."
        },
    )
    # 16: `planexec bench` runs its fan-out of 10 look-ups in one wave (8 needs two, 4 three;
    # docs/performance.md). Waiting steps cost a thread each, nothing more.
    max_concurrency: AtLeastOne = field(
        default=16, metadata={"description": "Most steps that run at the same time."}
    )
    approve_plan: bool = field(
        default=False,
        metadata={
            "description": "Pause for a person to approve, edit or reject the plan, after the "
            "planner and after every revision."
        },
    )
    stream_plan: bool = field(
        default=True,
        metadata={
            "description": "Stream the planner's reply and start each step as soon as its "
            "definition is complete and its dependencies are done (not with approve_plan)."
        },
    )
    plan_format: Literal["lines", "json"] = field(
        default="lines",
        metadata={
            "description": "How the planner writes its plan: 'lines', one compact line per "
            "step (about half the output tokens, so steps start sooner), or 'json' through "
            "the provider's structured output."
        },
    )
    planner_tools: list[str] = field(
        default_factory=list,
        metadata={
            "description": "Read-only tools the planner may call before it writes the plan "
            "(calculator, list_files, read_file, sql_query, http_get); none by default."
        },
    )
    max_planner_tool_calls: Count = field(
        default=3,
        metadata={"description": "Most look-ups the planner may make with planner_tools (0-10)."},
    )
    tools: list[str] = field(
        default_factory=lambda: list(DEFAULT_TOOLS),
        metadata={"description": "Tool names from the registry the executor may use."},
    )
    workspace: str = field(
        default=".planexec/workspace",
        metadata={"description": "Folder the file tools are confined to."},
    )
    sql_database: str = field(
        default="",
        metadata={"description": "SQLite file the read-only sql_query tool reads."},
    )
    model_timeout_s: Seconds = field(
        default=60.0,
        metadata={
            "description": "Seconds one model request may take before it fails (the planner "
            "and replanner then try again, up to 3 attempts in all)."
        },
    )

    # --- Exactly-once and budgets (issue 8; graphs/executor.py, graphs/budget.py) ---
    unknown_outcome: str = field(
        default="repeat",
        metadata={
            "description": "A tool call started before a crash with no recorded result: "
            "'repeat' it with the same idempotency key, or 'surprise': do not repeat it, fail "
            "the step with 'outcome unknown' for the replanner."
        },
    )
    max_total_tokens: Count = field(
        default=0, metadata={"description": "Run budget: input+output tokens; 0 = no limit."}
    )
    max_cost_usd: Limit = field(
        default=0.0,
        metadata={
            "description": "Run budget in USD (genai-prices); 0 = no limit. Models with no "
            "known price are refused when it is set."
        },
    )
    max_wall_seconds: Limit = field(
        default=0.0,
        metadata={
            "description": "Run budget: seconds the run has worked since it started (waits for "
            "a plan approval or for a resume after a stop are left out); 0 = no limit."
        },
    )
    max_total_tool_calls: Count = field(
        default=0, metadata={"description": "Run budget: tool calls of all steps; 0 = no limit."}
    )
    step_deadline_seconds: Limit = field(
        default=0.0,
        metadata={
            "description": "A step still working after this many seconds fails (checked between "
            "its model turns and tool calls, and a tool call running then is stopped); "
            "0 = no deadline."
        },
    )
    tool_timeout_s: Seconds = field(
        default=300.0,
        metadata={
            "description": "Seconds one tool call may take; a call still running then fails "
            "(its step fails, for the replanner). Must be above 0: every wait has an end."
        },
    )

    # --- Plan cache (issue 13; graphs/plan_cache.py, docs/plan-cache.md) ---
    template: str = field(
        default="",
        metadata={
            "description": "The goal is an instance of this template: its cached plan is used "
            "(no planner call) when one fits; a successful run without one stores its plan."
        },
    )
    params: dict[str, str] = field(
        default_factory=dict,
        metadata={"description": "The template's parameter values, by name."},
    )
    plan_cache_max_age_s: Limit = field(
        default=7 * 24 * 3600.0,
        metadata={
            "description": "A cached plan older than this many seconds is dropped and the "
            "planner asked again; 0 = no age limit."
        },
    )

    @classmethod
    def of(cls, **explicit: Any) -> Context:
        """`explicit` values exactly as given, the environment filling only the rest.

        `Context(max_concurrency=4)` cannot tell 4 from "left at the default", so a
        PLANEXEC_MAX_CONCURRENCY would win over it; values set here always win."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(explicit) - names)
        if unknown:
            raise TypeError(f"unknown Context field(s): {', '.join(unknown)}")
        ctx = cls()
        for name, value in explicit.items():
            setattr(ctx, name, checked(name, value))
        return ctx

    @classmethod
    def every_role(cls, model: str, **values: Any) -> Context:
        """A Context whose planner, executor and replanner are all `model` (e.g. one
        'scripted:...' scenario playing every role)."""
        roles = {f"{role}_model": model for role in ("planner", "executor", "replanner")}
        return cls.of(**{**roles, **values})

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            env_name = f"PLANEXEC_{f.name.upper()}"
            env_value = os.environ.get(env_name)
            if env_value is not None and value == _default_of(f):
                setattr(self, f.name, _parse_env(f.name, env_name, env_value))
            else:
                setattr(self, f.name, checked(f.name, value))


# Recorded before their ranges were checked (2026-11-26), these values meant the same as the
# range's end: the scheduler ran max(1, max_concurrency) steps, a negative replan_every was off
# and a negative max_replans allowed none. Read back as that end, a paused or interrupted run
# of an earlier version can go on. (Budgets are not among them: a negative one ended the run
# at once, and 0 would mean no limit.)
_RECORDED_LOWS = {"max_concurrency": 1, "replan_every": 0, "max_replans": 0}


def restore_context(values: dict[str, Any]) -> Context:
    """A recorded Context exactly as stored: the environment is not applied again, so a run
    resumed from another shell or worker keeps its configuration. ContextError when `values`
    is not an object (a state edit's `"context": "x"` read as all defaults skipped approval)."""
    if not isinstance(values, dict):
        raise ContextError(
            f"the run's recorded context is {type(values).__name__}, not an object of Context "
            "fields; set it to one (or leave it out to use the caller's)"
        )
    ctx = object.__new__(Context)
    for f in fields(Context):
        value = values[f.name] if f.name in values else _default_of(f)
        low = _RECORDED_LOWS.get(f.name)
        if low is not None and type(value) is int and value < low:
            value = low
        setattr(ctx, f.name, checked(f.name, value))
    return ctx


def replaced(ctx: Context, **changes: Any) -> Context:
    """`ctx` with `changes`, every other field exactly as it is. Not `dataclasses.replace`: that
    runs `__post_init__` again, which fills every field still at its default from PLANEXEC_*,
    so a recorded run resumed with a raised budget took the resuming shell's settings."""
    return restore_context({**{f.name: getattr(ctx, f.name) for f in fields(Context)}, **changes})


def _default_of(f: Any) -> Any:
    return f.default_factory() if callable(f.default_factory) else f.default


class ContextError(ValueError):
    """A Context value of the wrong type, naming the field, the value and what it should be."""


# Validation is driven by the fields' annotations (pydantic, strict: no "2" for an int, no "abc"
# for a list of names), so a field added to Context is checked with no code here.
@lru_cache(maxsize=1)
def _adapters() -> dict[str, TypeAdapter[Any]]:
    hints = get_type_hints(Context, include_extras=True)  # keeps constraints such as Seconds
    return {f.name: TypeAdapter(hints[f.name]) for f in fields(Context)}


def checked(name: str, value: Any, *, source: str = "") -> Any:
    """`value` for field `name` if its type is right (an int for a float becomes a float);
    ContextError otherwise. `source` says where the value came from, for the message."""
    adapter = _adapters()[name]
    try:
        return adapter.validate_python(value, strict=True)
    except ValidationError as exc:
        raise ContextError(_problem(name, value, adapter, exc, source)) from None


def _problem(
    name: str, value: Any, adapter: TypeAdapter[Any], exc: ValidationError, source: str
) -> str:
    error = exc.errors()[0]
    where = "".join(f"[{p!r}]" for p in error["loc"])
    expected = _type_name(adapter)
    if error["type"] in _RANGE_ERRORS:  # the right type, out of range: say the range
        expected = f"{expected} in range"
    shown = repr(value)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    hint = ""
    if isinstance(value, str) and expected == "a list":
        hint = f" (a list such as [{value!r}], not a string)"
    return (
        f"Context field {name!r}{' from ' + source if source else ''} must be {expected}, "
        f"got {shown}: {error['msg']}{' at ' + where if where else ''}{hint}"
    )


_RANGE_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}


def _type_name(adapter: TypeAdapter[Any]) -> str:
    text = str(adapter.core_schema.get("type", ""))
    if text == "literal":
        return "one of " + ", ".join(repr(v) for v in adapter.core_schema["expected"])
    hints = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}
    if text in hints:
        return hints[text]
    return {"list": "a list", "dict": "an object", "nullable": "a value or null"}.get(text, text)


def _parse_env(name: str, env_name: str, raw: str) -> Any:
    """An environment string as field `name`'s type: JSON for lists and objects (a plain list
    of names may also be comma-separated), pydantic's lenient parsing for numbers and booleans
    ("4", "0.5", "true", "no")."""
    adapter = _adapters()[name]
    kind = adapter.core_schema.get("type")
    if kind == "str":
        return raw
    value: Any = raw
    if raw.strip()[:1] in ("[", "{"):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ContextError(f"{env_name}={raw!r} is not valid JSON: {exc}") from None
    elif kind == "list":
        value = [part.strip() for part in raw.split(",") if part.strip()]
    else:
        try:
            value = adapter.validate_python(raw.strip(), strict=False)
        except ValidationError as exc:
            raise ContextError(_problem(name, raw, adapter, exc, env_name)) from None
    return checked(name, value, source=env_name)


def resolve_context(value: Context | dict | None) -> Context:
    """The context a node should use: LangGraph passes None when the caller gave none."""
    if value is None:
        return Context()
    if isinstance(value, dict):
        return Context(**value)
    if not isinstance(value, Context):
        raise ContextError(
            f"a run's context must be a Context or a dict, got {type(value).__name__}"
        )
    return value
