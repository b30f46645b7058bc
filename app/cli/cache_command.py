"""`planexec cache list|show|clear`: the plan cache's entries (graphs/plan_cache.py), and the goal
of a templated `planexec run`.

Registered on the CLI's Typer app by `register(app)`; LangGraph is imported only when a command
runs. Entries hold text a model wrote (step descriptions, arguments): printed escaped.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from app.cli.text import json_text, labelled, one_line, plain

DbOption = Annotated[
    str | None,
    typer.Option("--db", help="memory://, a SQLite path or postgresql://… \\[env: PLANEXEC_DB]"),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def templated_goal(
    goal: str | None, template: str | None, params: list[str], templates: Path | None
) -> tuple[str, dict[str, Any]]:
    """The run's goal and its Context fields for `run GOAL --template NAME --param K=V
    [--templates FILE]`; TemplateError (exit 4) for a combination that cannot be run."""
    from app.plan_templates import TemplateError, check_template_name, parse_params, template_goal

    if not template:
        if params or templates:
            raise TemplateError("--param and --templates need --template NAME")
        return goal or "", {}
    check_template_name(template)
    values = parse_params(params)
    if templates is not None:
        if goal:
            raise TemplateError("give GOAL or --templates FILE, not both: the file says the goal")
        goal = template_goal(templates, template, values)
    elif not goal:
        raise TemplateError(f"give GOAL, or --templates FILE declaring template {template!r}")
    return goal, {"template": template, "params": values}


def register(app: typer.Typer) -> None:
    """Add `cache list|show|clear` to `app`."""
    cache = typer.Typer(help="The plan cache: templates' stored plans (docs/plan-cache.md).")
    app.add_typer(cache, name="cache")

    @cache.command("list")
    def list_entries(db: DbOption = None, as_json: JsonOption = False) -> None:
        """Every cached plan: template, planner model, tools, steps, age, hits."""
        raise typer.Exit(_guarded(lambda: _list(db, None, as_json)))

    @cache.command("show")
    def show(
        name: Annotated[str, typer.Argument(help="The template's name.")],
        db: DbOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """A template's cached plans, step by step, with their {placeholders}."""
        raise typer.Exit(_guarded(lambda: _show(db, name, as_json)))

    @cache.command("clear")
    def clear(
        name: Annotated[
            str | None, typer.Argument(help="Only this template's (default: every entry).")
        ] = None,
        db: DbOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Remove cached plans: the next run of the template asks the planner again."""
        raise typer.Exit(_guarded(lambda: _clear(db, name, as_json)))


def _guarded(fn: Any) -> int:
    """The CLI's guard (app/cli/commands.py): bad input, and a database that is corrupt,
    read-only or locked, as one line and exit code 4, never a traceback."""
    from app.cli.commands import _guarded as guarded

    return guarded(fn)


def _entries(db: str | None, name: str | None) -> list[dict[str, Any]]:
    from app.plan_templates import check_template_name
    from app.runs.persistence import NoDatabase, open_persistence
    from graphs.plan_cache import entries

    if name is not None:
        check_template_name(name)
    try:
        with open_persistence(db, create=False) as persistence:
            return entries(persistence.store, name)
    except NoDatabase:  # nothing cached yet; and nothing is created by looking
        return []


def _list(db: str | None, name: str | None, as_json: bool) -> int:
    found = _entries(db, name)
    if as_json:
        print(json.dumps([_summary(e) for e in found], indent=2))
        return 0
    table = Table(title=f"plan cache: {len(found)} entr{'y' if len(found) == 1 else 'ies'}")
    for column in ("template", "key", "planner model", "tools", "params", "steps", "age", "hits"):
        table.add_column(column)
    for entry in found:
        row = _summary(entry)
        table.add_row(
            *(plain(one_line(row[k], 80)) for k in ("template", "key", "planner_model")),
            plain(one_line(", ".join(row["tools"]), 80)),
            plain(one_line(", ".join(row["params"]), 80)),
            str(row["steps"]),
            _age(row["age_s"]),
            str(row["hits"]),  # numbers (_summary): nothing here is read as markup
        )
    console = Console()
    if not console.is_terminal:  # piped: the whole table, not one cut to 80 columns
        console = Console(width=160)
    console.print(table)
    return 0


def _show(db: str | None, name: str, as_json: bool) -> int:
    found = _entries(db, name)
    if not found:
        raise ValueError(f"no cached plan for template {name!r} (`planexec cache list` lists them)")
    if as_json:
        print(json_text(found, indent=2))
        return 0
    console = Console()
    for entry in found:
        row = _summary(entry)
        console.print(plain(
            f"template {row['template']} · key {row['key']} · planner {row['planner_model']} · "
            f"age {_age(row['age_s'])} · hits {row['hits']}"
        ), soft_wrap=True)  # fmt: skip
        console.print(labelled("goal:", entry.get("goal", ""), style="bold"), soft_wrap=True)
        table = Table()
        for column in ("id", "depends on", "description / tool call"):
            table.add_column(column)
        steps = entry.get("steps")
        for step in steps if isinstance(steps, list) else []:
            if not isinstance(step, dict):  # a database row: shown as far as it has the shape
                continue
            what = step.get("description", "")
            if step.get("tool"):
                what = f"{step['tool']} {json.dumps(step.get('args', {}), default=str)}"
            after = step.get("depends_on")
            table.add_row(
                plain(one_line(step.get("id", ""), 40)),
                plain(one_line(", ".join(map(str, after)) if isinstance(after, list) else "", 80)),
                plain(one_line(what, 300)),
            )
        console.print(table)
    return 0


def _clear(db: str | None, name: str | None, as_json: bool) -> int:
    from app.plan_templates import check_template_name
    from app.runs.persistence import NoDatabase, open_persistence
    from graphs.plan_cache import clear

    if name is not None:
        check_template_name(name)
    try:
        with open_persistence(db, create=False) as persistence:
            removed = clear(persistence.store, name)
    except NoDatabase:
        removed = 0
    if as_json:
        print(json.dumps({"removed": removed, "template": name}))
    else:
        which = f"template {name!r}" if name else "every template"
        Console().print(plain(f"removed {removed} cached plan(s) of {which}"))
    return 0


def _summary(entry: dict[str, Any]) -> dict[str, Any]:
    """An entry as listed. It is a database row, so each field is held to its type: text as
    text, counts as numbers (an edited row's "hits" had reached the terminal as markup, and a
    text "created_at" crashed the listing)."""

    def texts(value: Any) -> list[str]:
        return [str(v) for v in value] if isinstance(value, list) else []

    def number(value: Any) -> float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return value if ok and math.isfinite(value) else 0

    steps = entry.get("steps")
    return {
        "template": str(entry.get("template", "")),
        "key": str(entry.get("key", "")),
        "planner_model": str(entry.get("planner_model", "")),
        "tools": texts(entry.get("tools")),
        "params": texts(entry.get("params")),
        "steps": len(steps) if isinstance(steps, list) else 0,
        "age_s": round(time.time() - number(entry.get("created_at")), 1),
        "hits": int(number(entry.get("hits"))),
    }


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"
