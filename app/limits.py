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

An unset limit does not restrict (a developer's own CLI runs); a server deployment sets them all
(docs/security.md, .env.example).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from app.context import Context

SCRIPTED_PREFIX = "scripted:"
_BUNDLED_NAME = re.compile(r"[A-Za-z0-9_-]+")
_MODEL_FIELDS = ("planner_model", "executor_model", "replanner_model")


class LimitRefused(ValueError):
    """A context asked for more than the server's limits allow."""


@dataclass(frozen=True)
class ServerLimits:
    workspace_root: Path | None = None
    scenario_dir: Path | None = None
    scripted_allowed: bool = True
    sql_databases: tuple[Path, ...] | None = None

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
        )


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
    return problems


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
    """Raise LimitRefused with every reason when `ctx` asks for more than the limits allow."""
    problems = context_problems(ctx)
    if problems:
        raise LimitRefused("the run's context exceeds this server's limits: " + "; ".join(problems))
