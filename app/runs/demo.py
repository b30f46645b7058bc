"""The bundled demo: its workspace and SQLite database, made from the files in demo_data/."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: the CLI reads DEMO_WORKSPACE at startup
    from app.context import Context

DATA_DIR = Path(__file__).parent / "demo_data"
DEMO_SCENARIO = "demo"
DEMO_WORKSPACE = ".planexec/demo"


def prepare_workspace(workspace: Path) -> Path:
    """Create `workspace` with the demo's shop.sqlite (kept if it exists, so a resumed demo sees
    the same data) and return the database's path."""
    workspace.mkdir(parents=True, exist_ok=True)
    db = workspace / "shop.sqlite"
    if not db.exists():
        tmp = db.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        with sqlite3.connect(tmp) as conn:
            conn.executescript((DATA_DIR / "shop.sql").read_text(encoding="utf-8"))
        conn.close()
        tmp.replace(db)  # atomic: a half-written database never appears
    return db


def demo_context(workspace: Path, scenario: str = DEMO_SCENARIO, **overrides: object) -> Context:
    """A Context whose three roles play `scenario`, over the demo workspace and database."""
    from app.context import Context
    from app.scripted.scenarios import load_scenario

    db = prepare_workspace(workspace)
    spec = f"scripted:{scenario}"
    values: dict = {
        "tools": list(load_scenario(scenario).tools),
        "workspace": str(workspace),
        "sql_database": str(db),
    }
    return Context.every_role(spec, **{**values, **overrides})
