"""The plan cache through the real CLI, as subprocesses: `planexec run --template` twice on one
database (SQLite and Postgres), the second with no planner call; `planexec cache list|show|clear`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import SCENARIOS, run_cli, run_json
from tests.integration.pg import temporary_schema

pytestmark = pytest.mark.integration

SCENARIO = SCENARIOS / "plan_cache.json"
TEMPLATES = """\
templates:
  - name: region-note
    goal: "Write the sales note for region {region}."
    params: [region]
"""


def templated_run(tmp_path: Path, db: str, region: str, thread: str) -> tuple[int, list[dict]]:
    (tmp_path / "templates.yaml").write_text(TEMPLATES, encoding="utf-8")
    return run_json(
        "run", "--scenario", str(SCENARIO), "--templates", "templates.yaml",
        "--template", "region-note", "--param", f"region={region}",
        "--workspace", "ws", "--db", db, "--thread", thread, cwd=tmp_path,
    )  # fmt: skip


def cache_actions(events: list[dict]) -> list[str]:
    return [e["action"] for e in events if e["event"] == "plan_cache"]


def second_run_skips_the_planner(tmp_path: Path, db: str) -> None:
    code, first = templated_run(tmp_path, db, "Berlin", "t1")
    assert code == 0, first[-1]
    assert cache_actions(first) == ["miss", "stored"]
    assert first[-1]["usage"]["planner"]["calls"] == 1

    code, second = templated_run(tmp_path, db, "Paris", "t2")
    assert code == 0, second[-1]
    assert cache_actions(second) == ["hit"]
    assert "planner" not in second[-1]["usage"]  # the planner model was never called
    [plan] = [e for e in second if e["event"] == "plan"]
    assert plan["steps"][1]["description"] == "Summarise the sales note of Paris in one line."
    assert (tmp_path / "ws" / "notes" / "Paris.txt").read_text() == "Sales note: Paris"

    shown = run_cli("show", "t2", "--db", db, cwd=tmp_path)
    assert "plan from cache (template region-note)" in shown.stdout
    listed = run_cli("cache", "list", "--db", db, "--json", cwd=tmp_path)
    [entry] = json.loads(listed.stdout)
    assert (entry["template"], entry["hits"], entry["params"]) == ("region-note", 1, ["region"])
    detail = json.loads(run_cli("cache", "show", "region-note", "--db", db, "--json",
                                cwd=tmp_path).stdout)  # fmt: skip
    assert detail[0]["steps"][0]["args"]["path"] == "notes/{region}.txt"

    cleared = run_cli("cache", "clear", "region-note", "--db", db, "--json", cwd=tmp_path)
    assert json.loads(cleared.stdout) == {"removed": 1, "template": "region-note"}
    code, third = templated_run(tmp_path, db, "Rome", "t3")
    assert cache_actions(third) == ["miss", "stored"]
    assert third[-1]["usage"]["planner"]["calls"] == 1


def test_second_templated_run_skips_the_planner_sqlite(tmp_path: Path) -> None:
    second_run_skips_the_planner(tmp_path, str(tmp_path / "runs.sqlite"))


def test_second_templated_run_skips_the_planner_postgres(tmp_path: Path) -> None:
    with temporary_schema() as schema:
        second_run_skips_the_planner(tmp_path, schema.url)


def test_bad_templates_and_params_exit_4_naming_the_problem(tmp_path: Path) -> None:
    (tmp_path / "templates.yaml").write_text(TEMPLATES.replace("[region]", "[region, month]"))
    proc = run_cli("run", "--templates", "templates.yaml", "--template", "region-note",
                   "--param", "region=EU", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 4
    assert "param 'month' does not appear in the goal as {month}" in proc.stderr
    proc = run_cli("run", "x", "--param", "region=EU", cwd=tmp_path)
    assert proc.returncode == 4 and "--param and --templates need --template NAME" in proc.stderr
    proc = run_cli("run", "x", "--templates", "templates.yaml", "--template", "region-note",
                   "--param", "region=EU", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 4 and "give GOAL or --templates FILE, not both" in proc.stderr
    proc = run_cli("cache", "show", "nothing-here", "--db", str(tmp_path / "no.sqlite"),
                   cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 4 and "no cached plan for template 'nothing-here'" in proc.stderr
    assert not (tmp_path / "no.sqlite").exists()  # looking creates no database


def test_cache_commands_print_model_text_escaped(tmp_path: Path) -> None:
    hostile = "[bold]b[/bold] \x1b[31mred\x1b[0m \x07"
    scenario = {
        "name": "hostile_cache",
        "goal": "g",
        "tools": [],
        "planner": {"steps": [{"id": "a", "description": hostile, "depends_on": []}]},
        "executor": {"a": [{"content": "ok"}]},
        "replanner": [{"action": "finish", "reason": "r", "response": "done"}],
    }
    (tmp_path / "hostile.json").write_text(json.dumps(scenario), encoding="utf-8")
    db = str(tmp_path / "runs.sqlite")
    code, events = run_json("run", "a goal", "--scenario", "hostile.json", "--template", "h",
                            "--workspace", "ws", "--db", db, cwd=tmp_path)  # fmt: skip
    assert code == 0 and cache_actions(events) == ["miss", "stored"]
    shown = run_cli("cache", "show", "h", "--db", db, cwd=tmp_path)
    assert shown.returncode == 0
    assert "\x1b" not in shown.stdout and "\x07" not in shown.stdout
    assert "[bold]b[/bold] \\x1b[31mred\\x1b[0m \\x07" in shown.stdout


def test_cache_show_and_clear_name_one_template_only(tmp_path: Path) -> None:
    """`cache show NAME` and `cache clear NAME` act on that template's plans: clearing one
    template must not make every other template's runs pay for a planner call again."""
    db = str(tmp_path / "runs.sqlite")
    for template in ("first", "second"):
        code, events = run_json("run", "Write the sales note for region Berlin.", "--scenario",
                                str(SCENARIO), "--template", template, "--workspace", "ws",
                                "--db", db, "--thread", template, cwd=tmp_path)  # fmt: skip
        assert code == 0 and cache_actions(events) == ["miss", "stored"], events[-1]

    shown = json.loads(run_cli("cache", "show", "first", "--db", db, "--json",
                               cwd=tmp_path).stdout)  # fmt: skip
    assert [e["template"] for e in shown] == ["first"]
    cleared = run_cli("cache", "clear", "first", "--db", db, "--json", cwd=tmp_path)
    assert json.loads(cleared.stdout) == {"removed": 1, "template": "first"}
    listed = json.loads(run_cli("cache", "list", "--db", db, "--json", cwd=tmp_path).stdout)
    assert [e["template"] for e in listed] == ["second"]


def test_cache_commands_hold_an_edited_entry_to_its_types_and_a_locked_database_exits_4(
    tmp_path: Path,
) -> None:
    """An entry is a database row: its "hits" reached the terminal as markup (a real OSC 8
    link, a clipboard write), a text "created_at" crashed `cache list`; and `cache clear` on a
    locked database printed a traceback where every other command exits 4 with one line."""
    import sqlite3

    db = str(tmp_path / "runs.sqlite")
    code, events = run_json("run", "Write the sales note for region Berlin.", "--scenario",
                            str(SCENARIO), "--template", "t", "--workspace", "ws", "--db", db,
                            cwd=tmp_path)  # fmt: skip
    assert code == 0 and cache_actions(events) == ["miss", "stored"]
    hostile = "[link=https://evil.example]x[/link] \x1b]52;c;SGk=\x07"
    with sqlite3.connect(db) as conn:
        [(value,)] = conn.execute("SELECT value FROM store WHERE prefix LIKE 'planexec%cache%'")
        entry = json.loads(value)
        entry.update(hits=hostile, created_at="yesterday", steps=[5, {"id": "a", "depends_on": 7}])
        conn.execute("UPDATE store SET value = ? WHERE prefix LIKE 'planexec%cache%'",
                     (json.dumps(entry),))  # fmt: skip
    for command in ("list", "show"):
        shown = run_cli("cache", command, *(["t"] if command == "show" else []), "--db", db,
                        cwd=tmp_path)  # fmt: skip
        assert shown.returncode == 0, shown.stderr
        assert "\x1b" not in shown.stdout and "evil.example" not in shown.stdout

    locker = sqlite3.connect(db, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        cleared = run_cli("cache", "clear", "t", "--db", db, cwd=tmp_path, timeout=60)
    finally:
        locker.close()
    assert cleared.returncode == 4 and "Traceback" not in cleared.stderr
    assert "database error:" in cleared.stderr and "locked" in cleared.stderr
