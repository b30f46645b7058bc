"""Scenario files: what each role's model answers, turn by turn, for offline runs.

A scenario is played by the scripted model (`scripted:NAME_OR_PATH`). Replies are chosen by role,
step and turn, never by the goal text, so a scenario plays whatever goal a run was started with,
and a run resumed in a new process gets the same replies. The format is documented in
docs/scenarios.md; `Scenario.model_json_schema()` is its JSON Schema.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, ValidationError

BUNDLED_DIR = Path(__file__).parent / "bundled"

Role = Literal["planner", "executor", "replanner"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ToolCallSpec(_Strict):
    """A tool call the executor model makes."""

    name: str = Field(description="Tool name, as registered.")
    args: dict[str, Any] = Field(default_factory=dict, description="Arguments for the tool.")


class ExecutorTurn(_Strict):
    """One executor model reply: tool calls, or the step's final text, or a model error."""

    content: str | None = Field(
        default=None,
        description="The step's result text. '{last_tool_result}' is replaced by the output of "
        "the most recent tool call.",
    )
    tool_calls: list[ToolCallSpec] = Field(default_factory=list)
    error: Literal["quota", "server"] | None = Field(
        default=None, description="Make this model call fail: a quota (429) or a server error."
    )
    message: str = Field(default="", description="Error text when `error` is set.")
    latency: float | None = Field(default=None, description="Seconds this call takes.")


class PlanReply(_Strict):
    """A planner reply: a plan, or malformed output to exercise retries."""

    steps: list[dict[str, Any]] | None = Field(
        default=None,
        description="Steps: {id, description, depends_on}, and for a tool step tool and args.",
    )
    raw: str | None = Field(
        default=None, description="Text returned instead of a structured plan (malformed output)."
    )
    tool_calls: list[ToolCallSpec] | None = Field(
        default=None,
        description="Look-ups (Context.planner_tools) made instead of a plan, answered before "
        "the next reply; '{last_tool_result}' in a later reply's steps is the last one's output.",
    )
    latency: float | None = None
    drop_at: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="Streamed: the connection drops once this share of the reply has arrived, "
        "as when a provider's stream is cut (a transient error: the node is tried again). An "
        "unstreamed call is answered whole.",
    )
    drops: int | None = Field(
        default=None,
        ge=1,
        description="With drop_at: how many streamed calls of this reply drop (per run; per "
        "server for serve-scenario), the later ones stream whole. Every call when unset.",
    )


class ReplanReply(_Strict):
    """A replanner decision."""

    action: Literal["continue", "replan", "finish"] | None = None
    reason: str = ""
    steps: list[dict[str, Any]] | None = Field(
        default=None,
        description="With action 'replan': the steps that replace the remaining ones (tool "
        "steps too).",
    )
    response: str | None = Field(default=None, description="With action 'finish': the answer.")
    raw: str | None = Field(default=None, description="Malformed output instead of a decision.")
    latency: float | None = None


class PlanAttempts(_Strict):
    """Several planner replies for one call: the first, then one per validation retry."""

    attempts: list[PlanReply] = Field(min_length=1)


class ReplanAttempts(_Strict):
    """Several replanner replies for one call: the first, then one per validation retry."""

    attempts: list[ReplanReply] = Field(min_length=1)


class Fault(_Strict):
    """A tool fault injected while one step runs."""

    step: str = Field(description="Step id the fault applies to.")
    tool: str = Field(description="Tool that misbehaves.")
    kind: Literal["raise", "empty"] = Field(
        description="'raise': the tool raises `message`; 'empty': it returns an empty result."
    )
    message: str = "injected fault"
    attempt: int | None = Field(
        default=None,
        description="Only this attempt of the step (1 = the first run); every attempt if unset.",
    )


class Scenario(_Strict):
    """A scripted run: the replies of every role, and the faults to inject."""

    name: str
    description: str = ""
    goal: str = Field(description="The goal `planexec demo`/`run` uses when none is given.")
    tools: list[str] = Field(default_factory=list, description="Tool names the run uses.")
    stands_for: dict[str, str] = Field(
        default_factory=lambda: {
            "planner": "openai:gpt-4o",
            "executor": "openai:gpt-4o-mini",
            "replanner": "openai:gpt-4o",
        },
        description="Model each role's calls are priced as (cost estimates for the scenario).",
    )
    latency: dict[str, float] = Field(
        default_factory=dict,
        description="Default seconds per call, by role: the time to the first token.",
    )
    token_latency: dict[str, NonNegativeFloat] = Field(
        default_factory=dict,
        description="Seconds per output token, by role, added after `latency`. A streamed "
        "reply sends its chunks as they are 'generated'; an unstreamed one arrives whole at the "
        "end, so both take latency + token_latency x output tokens.",
    )
    planner: PlanReply | PlanAttempts
    executor: dict[str, list[ExecutorTurn]] = Field(
        description="Turns per step id; 'ID#2' holds the turns of a step's second attempt."
    )
    replanner: list[ReplanReply | ReplanAttempts] = Field(
        default_factory=list, description="One entry per replanner call, in call order."
    )
    faults: list[Fault] = Field(default_factory=list)


class ScenarioError(ValueError):
    """A scenario cannot be found or does not match the format."""


def scenario_path(name_or_path: str) -> Path:
    """A bundled scenario's file by name, or the file a path names."""
    candidate = Path(name_or_path).expanduser()
    if candidate.suffix in (".json", ".yaml", ".yml") or candidate.exists():
        if not candidate.exists():
            raise ScenarioError(f"scenario file {str(candidate)!r} does not exist")
        if not candidate.is_file():
            kind = "a folder" if candidate.is_dir() else "not a regular file"
            raise ScenarioError(f"scenario file {str(candidate)!r} is {kind}; give a file")
        return candidate.resolve()
    bundled = BUNDLED_DIR / f"{name_or_path}.json"
    if bundled.is_file():
        return bundled
    raise ScenarioError(
        f"no scenario named {name_or_path!r}; bundled scenarios: {', '.join(bundled_names())}. "
        "Pass a path to a .json or .yaml file for your own."
    )


def bundled_names() -> list[str]:
    return sorted(p.stem for p in BUNDLED_DIR.glob("*.json"))


def load_scenario(name_or_path: str) -> Scenario:
    """Load and validate a scenario; cached per file and modification time."""
    path = scenario_path(name_or_path)
    return _load(str(path), path.stat().st_mtime_ns)


@lru_cache(maxsize=64)
def _load(path: str, _mtime_ns: int) -> Scenario:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"scenario {path} is not UTF-8 text: {exc}") from exc
    except OSError as exc:
        raise ScenarioError(f"scenario {path} cannot be read: {exc}") from exc
    try:
        data = yaml.safe_load(text) if path.endswith((".yaml", ".yml")) else json.loads(text)
        return Scenario.model_validate(data)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ScenarioError(f"scenario {path} is not valid JSON/YAML: {exc}") from exc
    except ValidationError as exc:
        raise ScenarioError(f"scenario {path} does not match the format: {exc}") from exc


def pick_attempt(entry: Any, attempt: int) -> Any:
    """The reply for retry `attempt` (0-based) of one call, or None when the script has none."""
    if isinstance(entry, PlanAttempts | ReplanAttempts):
        return entry.attempts[attempt] if attempt < len(entry.attempts) else None
    return entry if attempt == 0 else None
