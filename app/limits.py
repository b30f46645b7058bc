"""Server-side limits: what a run's context may ask for, set by whoever runs the process.

Through the LangGraph server the run's context comes from the caller, so a caller could point the
file tools at `/etc` or load a scenario file from anywhere on the server's disk. These limits come
from the *process environment* only (never from the context) and are checked before anything runs
(the planner, see graphs/planner.py) and again before tools are built (the executor node: a state
edit, `update_state`, can change the context a paused run recorded). A context that asks for more is
refused with the reason; nothing is widened.

    PLANEXEC_WORKSPACE_ROOT   workspaces must lie under this folder
    PLANEXEC_SCENARIO_DIR     `scripted:` scenario files must lie under this folder (bundled
                              scenarios, named without a path, are always allowed)
    PLANEXEC_SCRIPTED=off     refuse `scripted:` models altogether
    PLANEXEC_SQL_DATABASES    comma-separated SQLite files, or folders holding them, that
                              sql_query may read
    PLANEXEC_NET_ALLOW        internal hosts/networks the network tools may reach (read by
                              tools/netguard.py; a context has no field for it)
    PLANEXEC_CEILINGS         the most a context may ask of its caps, budgets and timeouts:
                              `max_concurrency=8,max_cost_usd=0.5,...` (CEILING_FIELDS); under
                              a budget's ceiling, 0 ("no limit") is refused too

An unset limit does not restrict (a developer's own CLI runs); a server deployment sets them all
(docs/security.md, .env.example).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from app.context import Context, ContextError, checked

SCRIPTED_PREFIX = "scripted:"
_BUNDLED_NAME = re.compile(r"[A-Za-z0-9_-]+")
_MODEL_FIELDS = ("planner_model", "executor_model", "replanner_model")


# The fields a ceiling may bound: every number that says how much a run may do or wait. The
# budgets among them mean "no limit" at 0, so under a ceiling 0 is the most, not the least.
CEILING_FIELDS = (
    "max_replans",
    "max_steps",
    "max_tool_calls_per_step",
    "max_concurrency",
    "max_planner_tool_calls",
    "model_timeout_s",
    "tool_timeout_s",
    "max_total_tokens",
    "max_cost_usd",
    "max_wall_seconds",
    "max_total_tool_calls",
    "step_deadline_seconds",
)
ZERO_IS_NO_LIMIT = frozenset(
    {
        "max_total_tokens",
        "max_cost_usd",
        "max_wall_seconds",
        "max_total_tool_calls",
        "step_deadline_seconds",
    }
)


class LimitRefused(ValueError):
    """A context asked for more than the server's limits allow."""


class LimitsMisconfigured(ValueError):
    """A server limit in the environment cannot be read: every run is refused until it is
    fixed (a limit that silently did not apply would be worse)."""


@dataclass(frozen=True)
class ServerLimits:
    workspace_root: Path | None = None
    scenario_dir: Path | None = None
    scripted_allowed: bool = True
    sql_databases: tuple[Path, ...] | None = None
    ceilings: tuple[tuple[str, float], ...] = ()

    @classmethod
    def from_env(cls) -> ServerLimits:
        env = os.environ

        def folder(name: str) -> Path | None:
            value = env.get(name, "").strip()
            return Path(value).expanduser().resolve() if value else None

        databases = env.get("PLANEXEC_SQL_DATABASES")
        listed = None
        if databases is not None:
            listed = tuple(
                Path(p.strip()).expanduser().resolve() for p in databases.split(",") if p.strip()
            )
        return cls(
            workspace_root=folder("PLANEXEC_WORKSPACE_ROOT"),
            scenario_dir=folder("PLANEXEC_SCENARIO_DIR"),
            scripted_allowed=env.get("PLANEXEC_SCRIPTED", "on").strip().lower()
            not in ("off", "0", "false", "no"),
            sql_databases=listed,
            ceilings=parse_ceilings(env.get("PLANEXEC_CEILINGS", "")),
        )


def parse_ceilings(raw: str) -> tuple[tuple[str, float], ...]:
    """PLANEXEC_CEILINGS (`name=value,...`) as (field, ceiling) pairs, each value checked as its
    Context field's type. Raises LimitsMisconfigured naming what is wrong, and also when a run
    that leaves a field at its default (PLANEXEC_<FIELD> included) would be refused: the
    deployment would refuse every caller who did not know to ask for less."""
    ceilings: dict[str, float] = {}
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        name, sep, value = (x.strip() for x in part.partition("="))
        if not sep or name not in CEILING_FIELDS:
            raise LimitsMisconfigured(
                f"PLANEXEC_CEILINGS entry {part[:80]!r} is not NAME=VALUE with NAME one of "
                + ", ".join(CEILING_FIELDS)
            )
        try:
            ceiling = float(checked(name, _number(value), source="PLANEXEC_CEILINGS"))
        except ContextError as exc:
            raise LimitsMisconfigured(str(exc)) from None
        except ValueError:
            raise LimitsMisconfigured(
                f"PLANEXEC_CEILINGS {name}={value[:40]!r} is not a number"
            ) from None
        if name in ZERO_IS_NO_LIMIT and ceiling == 0:
            raise LimitsMisconfigured(
                f"PLANEXEC_CEILINGS {name}=0 would allow no limit; give the most a run may use"
            )
        ceilings[name] = ceiling
    try:
        defaults = Context()  # what a caller who sets nothing gets, the environment applied
    except ContextError as exc:
        raise LimitsMisconfigured(str(exc)) from None
    for name, ceiling in ceilings.items():
        if _exceeds(name, getattr(defaults, name), ceiling):
            raise LimitsMisconfigured(
                f"PLANEXEC_CEILINGS {name}={_shown(ceiling)} is below what a run gets by "
                f"default ({_asked(name, getattr(defaults, name))}): set "
                f"PLANEXEC_{name.upper()} to {_shown(ceiling)} or less as well"
            )
    return tuple(ceilings.items())


def _number(text: str) -> int | float:
    # An integer field takes "8", not "8.0"; a float field takes either (checked() converts).
    try:
        return int(text)
    except ValueError:
        return float(text)


def _exceeds(name: str, value: float, ceiling: float) -> bool:
    return value > ceiling or (name in ZERO_IS_NO_LIMIT and value == 0)


def _shown(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _asked(name: str, value: float) -> str:
    return "0 (no limit)" if name in ZERO_IS_NO_LIMIT and value == 0 else _shown(value)


def context_problems(ctx: Context, limits: ServerLimits | None = None) -> list[str]:
    """Everything in `ctx` the server's limits refuse; empty when the context is within them."""
    limits = limits or ServerLimits.from_env()
    problems: list[str] = []
    if limits.workspace_root is not None:
        workspace = Path(ctx.workspace).expanduser().resolve()
        if not workspace.is_relative_to(limits.workspace_root):
            problems.append(
                f"workspace {ctx.workspace!r} is outside {str(limits.workspace_root)!r}, the only "
                "folder this server lets workspaces use (PLANEXEC_WORKSPACE_ROOT)"
            )
    for field in _MODEL_FIELDS:
        spec = getattr(ctx, field)
        if spec.startswith(SCRIPTED_PREFIX):
            problem = _scripted_problem(field, spec[len(SCRIPTED_PREFIX) :], limits)
            if problem:
                problems.append(problem)
    if ctx.sql_database and limits.sql_databases is not None:
        database = Path(ctx.sql_database).expanduser().resolve()
        if not any(database == p or database.is_relative_to(p) for p in limits.sql_databases):
            allowed = ", ".join(repr(str(p)) for p in limits.sql_databases) or "none"
            problems.append(
                f"sql_database {ctx.sql_database!r} is not one this server allows "
                f"(PLANEXEC_SQL_DATABASES: {allowed})"
            )
    if not problems:  # after the scenario paths were checked: pricing a scenario reads it
        if unpriced := _cost_budget_problem(ctx):
            problems.append(unpriced)
    for name, ceiling in limits.ceilings:
        value = getattr(ctx, name)
        if _exceeds(name, value, ceiling):
            problems.append(
                f"{name} {_asked(name, value)} is above {_shown(ceiling)}, the most this server "
                f"allows (PLANEXEC_CEILINGS); ask for {_shown(ceiling)} or less"
            )
    return problems


def _cost_budget_problem(ctx: Context) -> str:
    # A cost budget on a model with no known price counts nothing (its cost is None): a server
    # caller could name one and spend without end, under any max_cost_usd ceiling too.
    from app.pricing import cost_budget_problem

    try:
        return cost_budget_problem(ctx)
    except Exception:  # a scenario that cannot be read: loading its model says why, unpaid
        return ""


def _scripted_problem(field: str, name: str, limits: ServerLimits) -> str | None:
    if not limits.scripted_allowed:
        return f"{field} 'scripted:{name}' is refused: this server has scripted models off"
    is_path = not _BUNDLED_NAME.fullmatch(name) or Path(name).exists()
    if not is_path or limits.scenario_dir is None:
        return None
    if not Path(name).expanduser().resolve().is_relative_to(limits.scenario_dir):
        return (
            f"{field} 'scripted:{name}' names a file outside {str(limits.scenario_dir)!r}, the "
            "only folder this server loads scenario files from (PLANEXEC_SCENARIO_DIR)"
        )
    return None


def enforce(ctx: Context) -> None:
    """Raise LimitRefused with every reason when `ctx` asks for more than the limits allow, or
    when the limits themselves cannot be read (fail closed)."""
    try:
        problems = context_problems(ctx)
    except LimitsMisconfigured as exc:
        raise LimitRefused(
            f"this server's limits cannot be read, so no run may start: {exc} "
            "(for its operator: docs/security.md)"
        ) from None
    if problems:
        raise LimitRefused("the run's context exceeds this server's limits: " + "; ".join(problems))
