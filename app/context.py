"""Run configuration: the graph's `context_schema`.

Every field has a default and a description so LangGraph Studio can render a form for it. A field
left at its default is filled from the environment variable of the same name in upper case with a
`PLANEXEC_` prefix (`PLANEXEC_PLANNER_MODEL=openai:gpt-4.1 planexec run ...`), as LangGraph's
templates do; the prefix keeps generic names such as WORKSPACE (set by CI systems) out of it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any

from tools import DEFAULT_TOOLS


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
    max_replans: int = field(
        default=5,
        metadata={"description": "Plan revisions allowed before the run ends as replan_limit."},
    )
    max_steps: int = field(
        default=12, metadata={"description": "Most steps a plan (or a revision) may have."}
    )
    max_tool_calls_per_step: int = field(
        default=6, metadata={"description": "Most tool calls one step may make before it fails."}
    )
    replan_every: int = field(
        default=0,
        metadata={
            "description": "Call the replanner after every N completed steps; 0 calls it only "
            "on surprises and when the plan is done."
        },
    )
    max_concurrency: int = field(
        default=4, metadata={"description": "Most steps that run at the same time."}
    )
    approve_plan: bool = field(
        default=False,
        metadata={
            "description": "Pause for a person to approve, edit or reject the plan, after the "
            "planner and after every revision."
        },
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

    # --- Exactly-once and budgets (issue 8; graphs/executor.py, graphs/budget.py) ---
    unknown_outcome: str = field(
        default="repeat",
        metadata={
            "description": "A tool call started before a crash with no recorded result: "
            "'repeat' it with the same idempotency key, or 'surprise': do not repeat it, fail "
            "the step with 'outcome unknown' for the replanner."
        },
    )
    max_total_tokens: int = field(
        default=0, metadata={"description": "Run budget: input+output tokens; 0 = no limit."}
    )
    max_cost_usd: float = field(
        default=0.0,
        metadata={
            "description": "Run budget in USD (genai-prices); 0 = no limit. Models with no "
            "known price are refused when it is set."
        },
    )
    max_wall_seconds: float = field(
        default=0.0,
        metadata={"description": "Run budget: seconds since the run started; 0 = no limit."},
    )
    max_total_tool_calls: int = field(
        default=0, metadata={"description": "Run budget: tool calls of all steps; 0 = no limit."}
    )
    step_deadline_seconds: float = field(
        default=0.0,
        metadata={
            "description": "A step still working after this many seconds fails (checked between "
            "its model turns and tool calls); 0 = no deadline."
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
            setattr(ctx, name, value)
        return ctx

    @classmethod
    def every_role(cls, model: str, **values: Any) -> Context:
        """A Context whose planner, executor and replanner are all `model` (e.g. one
        'scripted:...' scenario playing every role)."""
        roles = {f"{role}_model": model for role in ("planner", "executor", "replanner")}
        return cls.of(**{**roles, **values})

    def __post_init__(self) -> None:
        for f in fields(self):
            env_value = os.environ.get(f"PLANEXEC_{f.name.upper()}")
            if env_value is None or getattr(self, f.name) != _default_of(f):
                continue
            try:
                setattr(self, f.name, _parse_env(f.type, env_value))
            except ValueError as exc:
                raise ValueError(
                    f"PLANEXEC_{f.name.upper()}={env_value!r} is not a valid {f.type}: {exc}"
                ) from exc


def restore_context(values: dict[str, Any]) -> Context:
    """A recorded Context exactly as stored: the environment is not applied again, so a run
    resumed from another shell or worker keeps its configuration."""
    ctx = object.__new__(Context)
    for f in fields(Context):
        setattr(ctx, f.name, values[f.name] if f.name in values else _default_of(f))
    return ctx


def _default_of(f: Any) -> Any:
    return f.default_factory() if callable(f.default_factory) else f.default


def _parse_env(type_name: Any, raw: str) -> Any:
    # Annotations are strings under `from __future__ import annotations`.
    if type_name in ("int", int):
        return int(raw)
    if type_name in ("float", float):
        return float(raw)
    if type_name in ("bool", bool):
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if type_name in ("list[str]",):
        return [part.strip() for part in raw.split(",") if part.strip()]
    return raw


def resolve_context(value: Context | dict | None) -> Context:
    """The context a node should use: LangGraph passes None when the caller gave none."""
    if value is None:
        return Context()
    if isinstance(value, dict):
        return Context(**value)
    return value
