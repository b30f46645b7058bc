"""The real CLI, as a subprocess: hostile text, honest exit codes, databases checked, piped output.

Hostile text (markup brackets, ANSI escapes, control characters) goes in through every door a
user or model has: the scenario's plan, results, reasons and answer, `--thread`, the thread id
given to `show`, and environment variables. Nothing may crash, and the text must come out as
given (control characters as visible escapes: ESC -> `\\x1b`).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from app.cli.view import visible
from app.runs.demo import prepare_workspace
from tests.helpers import clean_env, cli, fanout_args, instant_demo, run_cli

pytestmark = pytest.mark.integration

HOSTILE = "[/x] [bold]b[/bold] [link=https://evil.example]l[/link] \x1b[31mred\x1b[0m \x07 ]["
EXIT_CONFIG = 4


def hostile_scenario(tmp_path: Path) -> Path:
    """A one-step scenario whose plan, result, reason and answer are all HOSTILE."""
    scenario = {
        "name": "hostile",
        "goal": HOSTILE,
        "tools": [],
        "planner": {"steps": [{"id": "a", "description": HOSTILE, "depends_on": []}]},
        "executor": {"a": [{"content": f"result {HOSTILE}"}]},
        "replanner": [{"action": "finish", "reason": HOSTILE, "response": f"answer {HOSTILE}"}],
    }
    path = tmp_path / "hostile.json"
    path.write_text(json.dumps(scenario), encoding="utf-8")
    return path


def no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    assert "MarkupError" not in proc.stderr + proc.stdout


def test_hostile_model_text_is_printed_as_given_by_run_show_and_runs(tmp_path: Path) -> None:
    db = str(tmp_path / "runs.sqlite")
    scenario = str(hostile_scenario(tmp_path))
    args = ("--db", db)
    # Thread ids may hold markup, not '.' (the store's namespaces refuse it) nor control
    # characters (refused: an id is typed back), so those are left out of this one (exit 4).
    thread = " ".join("".join(c for c in HOSTILE.replace(".", "_") if c.isprintable()).split())
    wide = {**clean_env(), "COLUMNS": "400"}  # no wrapping inside the text
    run = ("run", HOSTILE, "--scenario", scenario, "--thread", thread)
    proc = run_cli(*run, *args, cwd=tmp_path, env=wide)
    no_traceback(proc)
    assert proc.returncode == 0
    shown = visible(HOSTILE)
    assert f"result {shown}" in proc.stdout  # the piped line of the step
    assert f"answer {shown}" in proc.stdout  # the outcome panel
    assert "\x1b" not in proc.stdout

    show = run_cli("show", thread, *args, cwd=tmp_path, env=wide)
    no_traceback(show)
    assert show.returncode == 0
    assert show.stdout.count(shown) >= 2  # the goal, the step's description
    assert visible(thread) in show.stdout

    runs = run_cli("runs", *args, cwd=tmp_path, env=wide)
    no_traceback(runs)
    assert shown in runs.stdout and visible(thread) in runs.stdout  # goal and thread id

    report = run_cli("report", thread, *args, "-o", str(tmp_path / "r.html"), cwd=tmp_path)
    no_traceback(report)
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "[link=https://evil.example]" in page and "<a " not in page


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (("show", "[/x]", "--db", "memory://"), {}, "no run with thread id '[/x]'"),
        (("demo", "--db", "memory://"), {"PLANEXEC_MAX_REPLANS": "[/x]"}, "REPLANS='[/x]'"),
        (("runs", "--db", "[/x]://h"), {}, "unsupported database '[/x]://h'"),
        (("run", "x", "--db", "memory://", "--tools", "[/x]"), {}, "unknown tool '[/x]'"),
        (
            ("run", "x", "--db", "memory://", "--unknown-outcome", "[/x]"),
            {},
            "--unknown-outcome '[/x]': use 'repeat' or 'surprise'",
        ),
        (("bench", "--quick", "--task", "[/x]"), {}, "unknown task(s) [/x]"),
        (("bench", "--quick", "--check", "[/x].json"), {}, "baseline '[/x].json'"),
        # Output files are checked before the benchmark runs, not after.
        (("bench", "--quick", "--json", "."), {}, "--json '.': is a folder"),
        (("bench", "--quick", "--write-baseline", "no/b.json"), {}, "folder 'no' does not exist"),
        # nan passes every `<=` check: a worker that never idles out, never heartbeats.
        (("worker", "--db", "memory://", "--idle-exit", "nan"), {}, "--idle-exit is nan"),
        (("worker", "--db", "memory://", "--idle-exit", "-1"), {}, "give 0 or more seconds"),
        (("worker", "--db", "memory://", "--heartbeat", "nan"), {}, "--heartbeat is nan"),
        (("worker", "--db", "memory://", "--stalled-check", "nan"), {}, "--stalled-check is nan"),
        (("worker", "--db", "memory://", "--grace", "inf"), {}, "--grace is inf"),
    ],
)
def test_hostile_input_in_errors_is_printed_as_given(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str], says: str
) -> None:
    proc = run_cli(*args, cwd=tmp_path, env={**clean_env(), "COLUMNS": "400", **env})
    no_traceback(proc)
    assert proc.returncode == EXIT_CONFIG
    assert says in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1  # one line saying what to change


def test_help_keeps_the_env_note_and_the_demo_its_surprise_prefix(tmp_path: Path) -> None:
    help_text = run_cli("run", "--help", cwd=tmp_path, env={**clean_env(), "COLUMNS": "200"})
    assert "[env: PLANEXEC_DB]" in help_text.stdout
    scenario = str(instant_demo(tmp_path))
    shop = str(prepare_workspace(tmp_path / "ws"))
    args = ("--scenario", scenario, "--sql-database", shop, "--workspace", str(tmp_path / "ws"))
    proc = run_cli("run", "g", *args, "--db", "memory://", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "[surprise] No order matched" in proc.stdout


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (("",), "the goal is empty"),
        (("   ", "--tools", "calculator"), "the goal is empty"),
        (("g", "--tools", "calculator,bogus"), "unknown tool 'bogus'"),
        (("g", "--workspace", "a_file"), "is a file; give --workspace a folder"),
        (("g", "--sql-database", "missing.sqlite"), "is not a file"),
        (("g", "--sql-database", "."), "is not a file"),  # a folder is not a database
        (("g", "--sql-database", "a_file"), "/a_file' is not an SQLite file"),
        (("g", "--db", "mysql://u@h/db"), "unsupported database"),
        (("g", "--db", "sqlite://x"), "sqlite:////absolute/path"),
        (("g", "--scenario", "no-such-scenario"), "no scenario named"),
        (("g", "--thread", "a.b"), "contains '.'"),
        (("g", "--unknown-outcome", "maybe"), "--unknown-outcome 'maybe': use 'repeat' or"),
        (("g", "--planner-tools", "write_file"), "may name only read-only tools"),
        (("g", "--planner-tools", "sql_query", "--max-planner-tool-calls", "50"), "give 0 to 10"),
        (("g", "--max-planner-tool-calls", "11"), "give 0 to 10"),  # with no planner tools too
        (("g", "--workspace", "a_file/sub"), "/a_file' is a file; give --workspace a folder"),
        (("g", "--thread", "-x"), "starts with '-'"),
        (("g", "--thread", "a\x1b[2Jb"), "holds control characters"),
        (("g", "--max-cost", "inf"), "'max_cost_usd' must be a number, got inf"),
        (("g", "--max-replans", str(2**64)), "less than or equal to 2147483647"),
    ],
)
def test_input_errors_exit_4_before_anything_is_paid_or_recorded(
    tmp_path: Path, extra: tuple[str, ...], says: str
) -> None:
    (tmp_path / "a_file").write_text("not a folder")
    # A scenario model that would answer: the checks must refuse before it is asked.
    scenario = ("--scenario", str(instant_demo(tmp_path)))
    if "--scenario" in extra:
        scenario = ()
    goal, *options = extra
    db = [] if "--db" in options else ["--db", str(tmp_path / "runs.sqlite")]
    proc = run_cli("run", goal, *scenario, *db, *options, cwd=tmp_path)
    no_traceback(proc)
    assert proc.returncode == EXIT_CONFIG, proc.stdout + proc.stderr
    assert says in proc.stderr
    assert "planner" not in proc.stdout  # no usage table: no model was called
    assert not (tmp_path / "runs.sqlite").exists()  # nothing recorded, not even the database
    assert not (tmp_path / "mysql:").exists()


ONE_STEP = {"steps": [{"id": "s1", "description": "Look.", "depends_on": []}]}
CYCLE = {
    "steps": [
        {"id": "a", "description": "A.", "depends_on": ["b"]},
        {"id": "b", "description": "B.", "depends_on": ["a"]},
    ]
}
# How a run ends -> (the scenario's roles, its exit code). A run that ends badly must never exit
# 0, nor with another ending's code: scripts and CI read the exit code, not the output.
ENDINGS = {
    # Three plans with a cycle: the planner gives up and the run fails.
    "failed": ({"planner": {"attempts": [CYCLE, CYCLE, CYCLE]}, "executor": {}}, 1),
    # A surprise, and the replanner asks for a revision that --max-replans 0 does not allow.
    "replan_limit": (
        {
            "planner": ONE_STEP,
            "executor": {
                "s1": [
                    {"tool_calls": [{"name": "flag_surprise", "args": {"reason": "odd"}}]},
                    {"content": "odd data"},
                ]
            },
            "replanner": [
                {
                    "action": "replan",
                    "reason": "again",
                    "steps": [{"id": "s2", "description": "B."}],
                }
            ],
        },
        3,
    ),
}


@pytest.mark.parametrize("status", list(ENDINGS))
def test_the_exit_code_says_how_the_run_ended(tmp_path: Path, status: str) -> None:
    roles, code = ENDINGS[status]
    scenario = tmp_path / "ending.json"
    scenario.write_text(
        json.dumps({"name": "ending", "goal": "g", "tools": [], **roles}), encoding="utf-8"
    )
    args = ("--scenario", str(scenario), "--max-replans", "0", "--db", str(tmp_path / "r.sqlite"))
    proc = run_cli("run", "g", *args, "--json", cwd=tmp_path)
    no_traceback(proc)
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert events[-1]["event"] == "result" and events[-1]["status"] == status, proc.stdout
    assert proc.returncode == code, proc.stderr


def test_a_database_with_foreign_tables_is_refused_and_left_unchanged(tmp_path: Path) -> None:
    db = tmp_path / "other.sqlite"
    with sqlite3.connect(db) as conn:  # an application's own database, with a same-named table
        conn.execute("CREATE TABLE checkpoints (id INTEGER PRIMARY KEY, note TEXT)")
        conn.execute("INSERT INTO checkpoints (note) VALUES ('mine')")
    conn.close()
    before = db.read_bytes()
    scenario = str(instant_demo(tmp_path))
    for args in (("run", "g", "--scenario", scenario), ("runs",), ("show", "t"), ("report", "t")):
        proc = run_cli(*args, "--db", str(db), cwd=tmp_path)
        no_traceback(proc)
        assert proc.returncode == EXIT_CONFIG, (args, proc.stderr)
        assert "holds tables planexec did not create (checkpoints)" in " ".join(proc.stderr.split())
    assert db.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("other")) == [
        "other.sqlite"
    ]  # no -wal or -shm: it was never opened for writing
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    conn.close()


def test_a_corrupt_or_locked_database_is_an_error_line_not_a_traceback(tmp_path: Path) -> None:
    """The database opens but a page is damaged (or another process holds it): every command
    that reads or records runs says so in one line, exit 4."""
    db = tmp_path / "runs.sqlite"
    scenario = str(instant_demo(tmp_path))
    assert (
        run_cli("run", "g", "--scenario", scenario, "--db", str(db), cwd=tmp_path).returncode == 0
    )
    with sqlite3.connect(db) as conn:
        (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'store'").fetchone()
        page = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    data = bytearray(db.read_bytes())
    data[(root - 1) * page : root * page] = b"Z" * page  # the store table's root page
    db.write_bytes(bytes(data))
    for args in (("run", "g2", "--scenario", scenario), ("runs",), ("prune", "--older-than", "0d")):
        proc = run_cli(*args, "--db", str(db), cwd=tmp_path)
        no_traceback(proc)
        assert proc.returncode == EXIT_CONFIG, (args, proc.stderr)
        assert "database error: DatabaseError: database disk image is malformed" in proc.stderr


def test_a_demo_with_a_bad_thread_id_creates_nothing(tmp_path: Path) -> None:
    """The demo's workspace and shop database were made before the thread id was checked."""
    for args in (
        ("demo", "--thread", "a.b"),
        ("run", "g", "--scenario", "demo", "--thread", "a.b"),
    ):
        proc = run_cli(*args, "--db", "memory://", cwd=tmp_path)
        assert proc.returncode == EXIT_CONFIG and "contains '.'" in proc.stderr, args
    assert list(tmp_path.iterdir()) == []


def test_commands_about_an_existing_run_create_no_files(tmp_path: Path) -> None:
    runs = run_cli("runs", cwd=tmp_path)
    assert runs.returncode == 0 and "no runs yet at .planexec/planexec.sqlite" in runs.stdout
    for args in (("show", "t"), ("resume", "t"), ("resume", "t", "--queue"), ("approve", "t")):
        proc = run_cli(*args, cwd=tmp_path)
        assert proc.returncode == EXIT_CONFIG and "no run with thread id 't'" in proc.stderr, args
    report = run_cli("report", "t", "--db", "sqlite:///sub/r.sqlite", cwd=tmp_path)
    assert report.returncode == EXIT_CONFIG
    assert list(tmp_path.iterdir()) == []


def test_sqlite_urls_follow_sqlalchemy_three_slashes_relative_four_absolute(
    tmp_path: Path,
) -> None:
    scenario = str(hostile_scenario(tmp_path))
    rel = run_cli("run", "g", "--scenario", scenario, "--db", "sqlite:///rel.sqlite", cwd=tmp_path)
    assert rel.returncode == 0, rel.stderr
    assert (tmp_path / "rel.sqlite").exists()
    absolute = tmp_path / "abs" / "a.sqlite"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    url = f"sqlite:///{absolute}"  # sqlite:////tmp/...: four slashes
    proc = run_cli("run", "g", "--scenario", scenario, "--db", url, cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    assert absolute.exists()
    assert not [p for p in elsewhere.rglob("*.sqlite")]  # not read as relative to the cwd


def test_piped_output_prints_each_event_as_it_happens(tmp_path: Path) -> None:
    """stdout is a pipe: a line per event arrives while the run still goes on."""
    args = fanout_args(tmp_path / "ws", str(tmp_path / "runs.sqlite"), "piped")
    proc = subprocess.Popen(
        cli(*args), cwd=tmp_path, env=clean_env(), stdout=subprocess.PIPE, text=True
    )
    lines: list[tuple[str, bool]] = []  # (line, was the process still running)
    deadline = time.monotonic() + 60
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append((line.rstrip("\n"), proc.poll() is None))
            assert time.monotonic() < deadline
    finally:
        proc.kill()
        proc.wait(timeout=10)
    early = [line for line, running in lines if running]
    assert any(line.startswith("step fast done") for line in early), lines
    assert any(line.startswith("plan: 5 step(s)") for line in early)
    assert not any("\x1b" in line for line, _ in lines)  # plain text, no cursor movement


def test_an_approved_edit_is_announced_and_shown(tmp_path: Path) -> None:
    """`approve --edit` sends a plan_edited event; the piped view prints the edited plan."""
    shop = str(prepare_workspace(tmp_path / "ws"))
    db = str(tmp_path / "runs.sqlite")
    start = ("run", "g", "--scenario", str(instant_demo(tmp_path)), "--approve", "--db", db)
    paused = run_cli(*start, "--sql-database", shop, "--thread", "ed", "--json", cwd=tmp_path)
    assert paused.returncode == 5, paused.stderr
    edit = tmp_path / "edit.yaml"
    edit.write_text("- {id: s1, description: Only list the tables., depends_on: []}\n")

    proc = run_cli("approve", "ed", "--edit", str(edit), "--db", db, cwd=tmp_path)
    no_traceback(proc)
    assert "plan edited by a person -> s1" in proc.stdout
    assert "step s1 started: Only list the tables." in proc.stdout


# C1 controls (CSI U+009B, DCS/ST), bidi overrides and isolates, backspaces: not ESC, not CR.
CONTROLS = "\x9b31m \u202etxt.exe \u2067isolated\u2069 \x08\x08\x08 \x90q\x9c \x07"
RAW_CONTROLS = set(CONTROLS) - set(" abcdeilmostqx.13")


def test_c1_controls_and_bidi_overrides_are_escaped_by_run_show_and_the_approval_table(
    tmp_path: Path,
) -> None:
    """The other tests' expectations are computed with `visible()` itself; this one names the
    characters. No raw C1 control, bidi override or backspace from model text may reach the
    terminal, from the piped run, `show`, or the table of a plan waiting for approval (which
    also must not read the markup brackets in HOSTILE)."""
    assert RAW_CONTROLS == {"\x9b", "\u202e", "\u2067", "\u2069", "\x08", "\x90", "\x9c", "\x07"}
    text = f"{HOSTILE} {CONTROLS}"
    scenario = {
        "name": "controls",
        "goal": text,
        "tools": [],
        "planner": {"steps": [{"id": "a", "description": text, "depends_on": []}]},
        "executor": {"a": [{"content": f"result {text}"}]},
        "replanner": [{"action": "finish", "reason": text, "response": f"answer {text}"}],
    }
    path = tmp_path / "controls.json"
    path.write_text(json.dumps(scenario), encoding="utf-8")
    db = ("--db", str(tmp_path / "runs.sqlite"))
    wide = {**clean_env(), "COLUMNS": "400"}
    shown = visible(CONTROLS)
    assert "\\x9b31m \\u202etxt.exe \\u2067isolated\\u2069 \\x08\\x08\\x08" in shown

    run = run_cli("run", "g", "--scenario", str(path), "--thread", "c", *db, cwd=tmp_path, env=wide)
    show = run_cli("show", "c", *db, cwd=tmp_path, env=wide)
    paused = run_cli(
        *("run", "g", "--scenario", str(path), "--thread", "p", "--approve", *db),
        cwd=tmp_path,
        env=wide,
        stdin=subprocess.DEVNULL,
    )
    for proc, code in ((run, 0), (show, 0), (paused, 5)):
        no_traceback(proc)
        assert proc.returncode == code, proc.stderr
        output = proc.stdout + proc.stderr
        assert not RAW_CONTROLS & set(output), sorted(RAW_CONTROLS & set(output))
        assert shown in proc.stdout
    assert f"result {visible(HOSTILE)} {shown}" in run.stdout
    assert "plan waiting for approval" in paused.stdout
    assert f"{visible(HOSTILE)} {shown}" in paused.stdout  # the step's description, as given


def test_a_budget_stop_names_the_option_that_raises_it_and_a_memory_run_offers_no_resume(
    tmp_path: Path,
) -> None:
    scenario = str(instant_demo(tmp_path))
    db = str(tmp_path / "runs.sqlite")
    base = ("run", "g", "--scenario", scenario, "--max-tool-calls", "1")
    wide = {**clean_env(), "COLUMNS": "400"}
    stopped = run_cli(*base, "--thread", "b1", "--db", db, cwd=tmp_path, env=wide)
    assert stopped.returncode == 6, stopped.stderr
    said = " ".join((stopped.stdout + stopped.stderr).split())
    hint = f"Raise the budget and go on with: planexec resume b1 --db {db} --max-tool-calls N"
    assert hint in said
    in_memory = run_cli(*base, "--db", "memory://", cwd=tmp_path, env=wide)
    assert in_memory.returncode == 6
    assert "go on with" not in in_memory.stdout + in_memory.stderr, "nothing was kept"


NAN = float("nan")


def _strict_json(text: str) -> object:
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_json_output_is_json_when_a_model_gives_nan_as_an_argument(tmp_path: Path) -> None:
    """A model's tool arguments may hold NaN (Python reads it in JSON; JSON has no NaN):
    `show --json` and the event lines printed it bare, which other parsers refuse."""
    scenario = {
        "name": "nan",
        "goal": "g",
        "tools": ["calculator"],
        "planner": {"steps": [{"id": "a", "description": "compute"}]},
        "executor": {"a": [
            {"tool_calls": [{"name": "calculator", "args": {"expression": "1", "x": NAN}}]},
            {"content": "done"}]},
        "replanner": [{"action": "finish", "reason": "r", "response": "ok"}],
    }  # fmt: skip
    (tmp_path / "nan.json").write_text(json.dumps(scenario), encoding="utf-8")
    db = str(tmp_path / "runs.sqlite")
    run = run_cli("run", "g", "--scenario", "nan.json", "--db", db, "--thread", "n", "--json",
                  cwd=tmp_path)  # fmt: skip
    assert run.returncode == 0 and [_strict_json(line) for line in run.stdout.splitlines()]
    shown = run_cli("show", "n", "--db", db, "--json", cwd=tmp_path)
    assert shown.returncode == 0
    [call] = _strict_json(shown.stdout)["results"]["a"]["tool_calls"]
    assert call["args"]["x"] == "nan", "the argument is there, as text"


def test_prune_shows_a_missing_database_s_path_escaped(tmp_path: Path) -> None:
    db = str(tmp_path / "no\x1b]52;c;SGk=\x07where" / "x.sqlite")
    proc = run_cli("prune", "--older-than", "1d", "--db", db, cwd=tmp_path)
    assert proc.returncode == 0 and "\x1b" not in proc.stdout and "\x07" not in proc.stdout
    assert "no\\x1b]52;c;SGk=\\x07where" in proc.stdout


def test_a_second_run_on_a_thread_and_resuming_a_finished_run_say_what_to_do(
    tmp_path: Path,
) -> None:
    """The hint to continue a thread's run must name the database it is in (the default one
    held no such run), and resuming a run that is over says so rather than only reprinting it."""
    db = str(tmp_path / "my runs.sqlite")
    args = ("run", "g", "--scenario", str(instant_demo(tmp_path)), "--workspace", "ws",
            "--db", db, "--thread", "t")  # fmt: skip
    assert run_cli(*args, cwd=tmp_path).returncode == 0
    again = run_cli(*args, cwd=tmp_path)
    assert again.returncode == 4
    assert f"`planexec resume t --db '{db}'`" in " ".join(again.stderr.split())
    resumed = run_cli("resume", "t", "--db", db, cwd=tmp_path)
    assert resumed.returncode == 0 and "run t ended done already: nothing to resume" in " ".join(
        resumed.stderr.split()
    )
