"""Server-side limits from the process environment: a run's context cannot widen them."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.store.memory import InMemoryStore
from langgraph.types import Command

from app.context import Context
from app.limits import LimitRefused, ServerLimits, context_problems, enforce
from graphs.plan_execute import build_graph
from tests.helpers import clean_env, run_cli
from tests.scripted_runs import write_scenario

SCRIPT = {
    "name": "limits",
    "goal": "g",
    "tools": ["read_file"],
    "planner": {"steps": [{"id": "s1", "description": "read"}]},
    "executor": {
        "s1": [
            {"tool_calls": [{"name": "read_file", "args": {"path": "passwd"}}]},
            {"content": "done"},
        ]
    },
    "replanner": [{"action": "finish", "reason": "done", "response": "ok"}],
}


def _ctx(**values) -> Context:
    return Context.every_role("scripted:demo", **values)


def test_workspace_must_lie_under_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "ok").mkdir(parents=True)
    (root / "escape").symlink_to("/etc", target_is_directory=True)
    limits = ServerLimits(workspace_root=root.resolve())
    assert context_problems(_ctx(workspace=str(root / "ok" / "ws")), limits) == []
    for workspace in ("/etc", str(root / ".." / "x"), str(root / "escape")):
        (problem,) = context_problems(_ctx(workspace=workspace), limits)
        assert problem.startswith(f"workspace {workspace!r} is outside")
        assert "PLANEXEC_WORKSPACE_ROOT" in problem


def test_scenario_files_only_from_the_scenario_folder(tmp_path: Path) -> None:
    folder = tmp_path / "scenarios"
    folder.mkdir()
    inside, outside = folder / "a.json", tmp_path / "b.json"
    limits = ServerLimits(scenario_dir=folder.resolve())
    assert context_problems(_ctx(), limits) == []  # a bundled name
    assert context_problems(Context.every_role(f"scripted:{inside}"), limits) == []
    problems = context_problems(Context.every_role(f"scripted:{outside}"), limits)
    assert len(problems) == 3 and all("PLANEXEC_SCENARIO_DIR" in p for p in problems)
    assert context_problems(Context.every_role("scripted:/etc/passwd"), limits)
    # Inside only by its spelling: `..` back out, or a link in the folder to a file outside.
    (folder / "link.json").symlink_to(outside)
    for sneaky in (folder / ".." / "b.json", folder / "link.json"):
        problems = context_problems(Context.every_role(f"scripted:{sneaky}"), limits)
        assert len(problems) == 3, sneaky
    off = ServerLimits(scripted_allowed=False)
    assert "scripted models off" in context_problems(_ctx(), off)[0]


def test_sql_databases_only_from_the_list(tmp_path: Path) -> None:
    allowed = (tmp_path / "shop.sqlite").resolve()
    folder = (tmp_path / "dbs").resolve()
    limits = ServerLimits(sql_databases=(allowed, folder))
    assert context_problems(_ctx(sql_database=str(allowed)), limits) == []
    assert context_problems(_ctx(sql_database=str(folder / "x.sqlite")), limits) == []
    (problem,) = context_problems(_ctx(sql_database="/var/lib/other.sqlite"), limits)
    assert "PLANEXEC_SQL_DATABASES" in problem


def test_limits_come_from_the_environment(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PLANEXEC_WORKSPACE_ROOT", str(tmp_path))
    monkeypatch.setenv("PLANEXEC_SCRIPTED", "off")
    monkeypatch.setenv("PLANEXEC_SQL_DATABASES", f"{tmp_path}/a.sqlite, {tmp_path}/b")
    limits = ServerLimits.from_env()
    assert limits.workspace_root == tmp_path.resolve()
    assert not limits.scripted_allowed
    assert limits.sql_databases == (tmp_path.resolve() / "a.sqlite", tmp_path.resolve() / "b")


@pytest.mark.parametrize("value", ["off", "0", "false", "no", " OFF ", "False"])
def test_every_off_spelling_turns_scripted_models_off(monkeypatch, value: str) -> None:
    """An operator who writes PLANEXEC_SCRIPTED=0 or =false (not only =off) gets scripted
    models refused: a spelling the server silently reads as "on" would widen the limit."""
    monkeypatch.setenv("PLANEXEC_SCRIPTED", value)
    assert not ServerLimits.from_env().scripted_allowed
    problems = context_problems(_ctx(planner_model="scripted:demo"))
    assert any("scripted models off" in p for p in problems)
    monkeypatch.setenv("PLANEXEC_SCRIPTED", "on")
    assert ServerLimits.from_env().scripted_allowed


def test_a_run_asking_for_more_is_refused_before_anything_runs(monkeypatch, tmp_path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd").write_text("root:x:0:0")
    monkeypatch.setenv("PLANEXEC_WORKSPACE_ROOT", str(tmp_path / "root"))
    spec = f"scripted:{write_scenario(tmp_path, SCRIPT)}"
    graph = build_graph(checkpointer=InMemorySaver(), store=InMemoryStore())
    config = {"configurable": {"thread_id": "t"}}
    ctx = Context.every_role(spec, tools=["read_file"], workspace=str(outside))
    events = list(graph.stream({"goal": "g"}, config, context=ctx, stream_mode="custom"))
    values = graph.get_state(config).values
    assert values["status"] == "failed"
    assert "exceeds this server's limits" in values["reason"]
    assert [e["event"] for e in events] == ["finished"]  # no plan, no step
    assert values.get("usage", {}).get("planner", {}).get("calls", 0) == 0


def test_a_context_widened_mid_run_is_refused_by_the_executor(monkeypatch, tmp_path) -> None:
    """The planner checked the run's context; a state edit (update_state, as the server allows)
    can change the recorded context before the steps run."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd").write_text("root:x:0:0")
    root = tmp_path / "root"
    monkeypatch.setenv("PLANEXEC_WORKSPACE_ROOT", str(root))
    spec = f"scripted:{write_scenario(tmp_path, SCRIPT)}"
    graph = build_graph(checkpointer=InMemorySaver(), store=InMemoryStore())
    config = {"configurable": {"thread_id": "t"}}
    inside = Context.every_role(
        spec, tools=["read_file"], workspace=str(root / "ws"), approve_plan=True
    )
    list(graph.stream({"goal": "g"}, config, context=inside))
    assert graph.get_state(config).interrupts, "paused for approval"
    recorded = dict(graph.get_state(config).values["context"])
    graph.update_state(config, {"context": {**recorded, "workspace": str(outside)}})
    list(graph.stream(Command(resume={"action": "approve"}), config, context=inside))
    values = graph.get_state(config).values
    assert values["status"] == "failed"
    assert "PLANEXEC_WORKSPACE_ROOT" in values["reason"]
    assert "root:x" not in repr(values)


def test_an_executor_model_edited_mid_run_is_refused_before_its_file_is_read(
    monkeypatch, tmp_path
) -> None:
    """A state edit before the executor names a scenario file outside PLANEXEC_SCENARIO_DIR as
    the executor's model. The executor loaded the model before it checked the limits, and the
    scenario's validation error quoted the file's values in the run's reason."""
    folder = tmp_path / "scenarios"
    folder.mkdir()
    secret = tmp_path / "creds.json"
    secret.write_text(json.dumps({"aws_secret_access_key": "AKIA-TOP-SECRET"}))
    monkeypatch.setenv("PLANEXEC_SCENARIO_DIR", str(folder))
    spec = f"scripted:{write_scenario(folder, SCRIPT)}"
    graph = build_graph(checkpointer=InMemorySaver(), store=InMemoryStore())
    config = {"configurable": {"thread_id": "t"}}
    ctx = Context.every_role(
        spec, tools=["read_file"], workspace=str(tmp_path / "ws"), stream_plan=False
    )  # steps start in the executor node, not while the plan streams
    list(graph.stream({"goal": "g"}, config, context=ctx, interrupt_before=["executor"]))
    assert graph.get_state(config).next == ("executor",)
    recorded = dict(graph.get_state(config).values["context"])
    graph.update_state(config, {"context": {**recorded, "executor_model": f"scripted:{secret}"}})
    list(graph.stream(None, config))
    values = graph.get_state(config).values
    assert values["status"] == "failed"
    assert "PLANEXEC_SCENARIO_DIR" in values["reason"]
    assert "AKIA" not in repr(values)


@pytest.mark.parametrize(
    ("env", "option", "said"),
    [
        (
            {"PLANEXEC_WORKSPACE_ROOT": "root"},
            ("--workspace", "/etc"),
            "workspace '/etc' is outside",
        ),
        (
            {"PLANEXEC_CEILINGS": "max_tool_calls_per_step=6,max_total_tool_calls=9",
             "PLANEXEC_MAX_TOTAL_TOOL_CALLS": "9"},
            ("--max-tool-calls", "50"),
            "max_total_tool_calls 50 is above 9",
        ),
        ({"PLANEXEC_CEILINGS": "max_stepz=3"}, (), "limits cannot be read, so no run may start"),
    ],
)  # fmt: skip
def test_the_cli_refuses_a_run_past_the_limits_before_recording_it(
    tmp_path: Path, env: dict, option: tuple, said: str
) -> None:
    """Exit 4 with the reason, nothing recorded: a run recorded and failed by the planner left
    a resume hint that could not work (resume has no option for most of these settings)."""
    env = {k: str(tmp_path / v) if k.endswith("_ROOT") else v for k, v in env.items()}
    db = tmp_path / "runs.sqlite"
    args = ("run", "g", "--scenario", "demo", "--db", str(db), *option)
    proc = run_cli(*args, cwd=tmp_path, env={**clean_env(), **env})
    said_all = " ".join(proc.stderr.split())  # the console wraps long lines
    assert proc.returncode == 4 and said in said_all, proc.stderr
    assert "Traceback" not in proc.stderr and "resume" not in said_all
    assert not db.exists() or "g" not in run_cli("runs", "--db", str(db), cwd=tmp_path).stdout


def test_a_bare_scenario_name_that_is_a_file_is_held_to_the_scenario_folder(
    monkeypatch, tmp_path: Path
) -> None:
    """`scripted:NAME` plays ./NAME when such a file exists (app/scripted/scenarios.py), so a
    name with no folder and no suffix can still be a file outside PLANEXEC_SCENARIO_DIR."""
    folder = tmp_path / "scenarios"
    folder.mkdir()
    (tmp_path / "evil").write_text(json.dumps({**SCRIPT, "name": "evil"}))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PLANEXEC_SCENARIO_DIR", str(folder))
    limits = ServerLimits.from_env()
    assert context_problems(_ctx(), limits) == [], "a bundled name is always allowed"
    problems = context_problems(Context.every_role("scripted:evil"), limits)
    assert len(problems) == 3 and all("names a file outside" in p for p in problems)

    graph = build_graph(checkpointer=InMemorySaver(), store=InMemoryStore())
    config = {"configurable": {"thread_id": "t"}}
    ctx = Context.every_role("scripted:evil", tools=["read_file"], workspace=str(tmp_path / "ws"))
    events = list(graph.stream({"goal": "g"}, config, context=ctx, stream_mode="custom"))
    values = graph.get_state(config).values
    assert values["status"] == "failed"
    assert "PLANEXEC_SCENARIO_DIR" in values["reason"]
    assert [e["event"] for e in events] == ["finished"]
    assert values.get("usage", {}).get("planner", {}).get("calls", 0) == 0


def test_an_empty_database_list_allows_no_database(monkeypatch, tmp_path: Path) -> None:
    """PLANEXEC_SQL_DATABASES set but empty allows none (unset would allow any)."""
    database = tmp_path / "shop.sqlite"
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE secrets (v TEXT)")
        db.execute("INSERT INTO secrets VALUES ('s3cr3t')")
    db.close()
    monkeypatch.setenv("PLANEXEC_SQL_DATABASES", "")
    limits = ServerLimits.from_env()
    assert limits.sql_databases == ()
    assert context_problems(_ctx(), limits) == [], "a run that reads no database is fine"
    (problem,) = context_problems(_ctx(sql_database=str(database)), limits)
    assert problem.endswith("is not one this server allows (PLANEXEC_SQL_DATABASES: none)")

    script = {
        **SCRIPT,
        "tools": ["sql_query"],
        "executor": {
            "s1": [
                {"tool_calls": [{"name": "sql_query", "args": {"query": "SELECT v FROM secrets"}}]},
                {"content": "{last_tool_result}"},
            ]
        },
    }
    spec = f"scripted:{write_scenario(tmp_path, script)}"
    graph = build_graph(checkpointer=InMemorySaver(), store=InMemoryStore())
    config = {"configurable": {"thread_id": "t"}}
    ctx = Context.every_role(
        spec, tools=["sql_query"], workspace=str(tmp_path / "ws"), sql_database=str(database)
    )
    list(graph.stream({"goal": "g"}, config, context=ctx, stream_mode="custom"))
    values = graph.get_state(config).values
    assert values["status"] == "failed"
    assert "PLANEXEC_SQL_DATABASES" in values["reason"]
    assert "s3cr3t" not in repr(values)


# --- Ceilings (PLANEXEC_CEILINGS): the most a context may ask of its caps, budgets, timeouts ---


def _ceilings(monkeypatch, raw: str, **defaults: str) -> ServerLimits:
    monkeypatch.setenv("PLANEXEC_CEILINGS", raw)
    for name, value in defaults.items():
        monkeypatch.setenv(f"PLANEXEC_{name.upper()}", value)
    return ServerLimits.from_env()


def test_a_context_above_a_ceiling_is_refused_and_one_at_it_is_not(monkeypatch) -> None:
    limits = _ceilings(
        monkeypatch,
        "max_concurrency=8, model_timeout_s=30",
        max_concurrency="8",
        model_timeout_s="30",
    )
    assert limits.ceilings == (("max_concurrency", 8.0), ("model_timeout_s", 30.0))
    assert context_problems(Context.of(max_concurrency=8, model_timeout_s=30.0), limits) == []
    problems = context_problems(Context.of(max_concurrency=9, model_timeout_s=30.5), limits)
    assert problems == [
        "max_concurrency 9 is above 8, the most this server allows (PLANEXEC_CEILINGS); ask "
        "for 8 or less",
        "model_timeout_s 30.5 is above 30, the most this server allows (PLANEXEC_CEILINGS); "
        "ask for 30 or less",
    ]


def test_under_a_budget_ceiling_no_limit_is_the_most_not_the_least(monkeypatch) -> None:
    """A budget of 0 means no limit: a caller asking for 0 under a $0.50 ceiling asks for more
    than the ceiling, not less."""
    limits = _ceilings(monkeypatch, "max_cost_usd=0.5", max_cost_usd="0.25")
    assert context_problems(Context.of(max_cost_usd=0.5), limits) == []
    (problem,) = context_problems(Context.of(max_cost_usd=0.0), limits)
    assert problem.startswith("max_cost_usd 0 (no limit) is above 0.5")
    # max_replans=0 allows no revision: there 0 is the least, and stays allowed.
    limits = _ceilings(monkeypatch, "max_replans=2", max_replans="2")
    assert context_problems(Context.of(max_replans=0), limits) == []
    assert context_problems(Context.of(max_replans=3), limits)


@pytest.mark.parametrize(
    ("raw", "said"),
    [
        ("max_concurrency", "entry 'max_concurrency' is not NAME=VALUE"),
        ("workspace=/", "entry 'workspace=/' is not NAME=VALUE"),
        ("max_steps=2.5", "'max_steps' from PLANEXEC_CEILINGS must be an integer"),
        ("max_steps=0", "greater than or equal to 1"),
        ("max_cost_usd=nan", "must be a number, got nan"),
        ("max_cost_usd=lots", "PLANEXEC_CEILINGS max_cost_usd='lots' is not a number"),
        ("max_cost_usd=0", "max_cost_usd=0 would allow no limit"),
        # A run that sets nothing would be refused: the operator must lower the default too.
        ("max_concurrency=8", "set PLANEXEC_MAX_CONCURRENCY to 8 or less as well"),
        ("max_wall_seconds=60", "by default (0 (no limit)): set PLANEXEC_MAX_WALL_SECONDS"),
    ],
)
def test_a_ceiling_that_cannot_be_read_refuses_every_run(monkeypatch, raw: str, said: str) -> None:
    """Fail closed: a misspelt ceiling that silently did not apply would widen the limit."""
    monkeypatch.setenv("PLANEXEC_CEILINGS", raw)
    with pytest.raises(LimitRefused) as refused:
        enforce(_ctx())
    assert said in str(refused.value)
    assert "limits cannot be read, so no run may start" in str(refused.value)


def test_a_run_above_a_ceiling_ends_before_the_planner_is_paid(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PLANEXEC_CEILINGS", "max_steps=20,max_total_tool_calls=50")
    monkeypatch.setenv("PLANEXEC_MAX_TOTAL_TOOL_CALLS", "50")
    graph = build_graph(checkpointer=InMemorySaver(), store=InMemoryStore())
    config = {"configurable": {"thread_id": "t"}}
    spec = f"scripted:{write_scenario(tmp_path, SCRIPT)}"
    ctx = Context.every_role(spec, tools=["read_file"], workspace=str(tmp_path / "ws"))
    ctx.max_steps = 1000
    list(graph.stream({"goal": "g"}, config, context=ctx))
    values = graph.get_state(config).values
    assert values["status"] == "failed"
    assert "max_steps 1000 is above 20" in values["reason"]
    assert values.get("usage", {}).get("planner", {}).get("calls", 0) == 0


def test_a_budget_lifted_mid_run_past_its_ceiling_is_refused_by_the_executor(
    monkeypatch, tmp_path
) -> None:
    """A state edit (as the server's update_state allows) cannot take off a budget the server
    caps: the recorded context is checked again before the steps run."""
    monkeypatch.setenv("PLANEXEC_CEILINGS", "max_cost_usd=1")
    monkeypatch.setenv("PLANEXEC_MAX_COST_USD", "1")
    graph = build_graph(checkpointer=InMemorySaver(), store=InMemoryStore())
    config = {"configurable": {"thread_id": "t"}}
    spec = f"scripted:{write_scenario(tmp_path, SCRIPT)}"
    ctx = Context.every_role(
        spec, tools=["read_file"], workspace=str(tmp_path / "ws"), stream_plan=False
    )
    list(graph.stream({"goal": "g"}, config, context=ctx, interrupt_before=["executor"]))
    recorded = dict(graph.get_state(config).values["context"])
    assert recorded["max_cost_usd"] == 1.0, "the server's default was recorded"
    graph.update_state(config, {"context": {**recorded, "max_cost_usd": 0.0}})
    list(graph.stream(None, config))
    values = graph.get_state(config).values
    assert values["status"] == "failed"
    assert "max_cost_usd 0 (no limit) is above 1" in values["reason"]
    assert not values.get("results"), "no step ran"


def test_a_cost_budget_on_an_unpriced_model_is_refused_by_the_graph(tmp_path: Path) -> None:
    """The CLI refused it up front; a server caller reaches the graph directly, and a model with
    no known price costs None, which no budget (or max_cost_usd ceiling) could count."""
    unpriced = {role: "acme:mystery-1" for role in ("planner", "executor", "replanner")}
    spec = f"scripted:{write_scenario(tmp_path, {**SCRIPT, 'stands_for': unpriced})}"
    graph = build_graph(checkpointer=InMemorySaver(), store=InMemoryStore())
    config = {"configurable": {"thread_id": "t"}}
    ctx = Context.every_role(
        spec, tools=["read_file"], workspace=str(tmp_path / "ws"), max_cost_usd=0.01
    )
    list(graph.stream({"goal": "g"}, config, context=ctx))
    values = graph.get_state(config).values
    assert values["status"] == "failed"
    assert "priced as 'acme:mystery-1') has no known price" in values["reason"]
    assert values.get("usage", {}).get("planner", {}).get("calls", 0) == 0
    # Without a cost budget the same models run.
    ctx.max_cost_usd = 0.0
    list(graph.stream({"goal": "g"}, {"configurable": {"thread_id": "u"}}, context=ctx))
    assert graph.get_state({"configurable": {"thread_id": "u"}}).values["status"] == "done"


def test_a_default_that_cannot_be_read_refuses_every_run(monkeypatch) -> None:
    """The ceilings are checked against the defaults; a default that cannot be read must not
    drop the ceilings (a caller who set that field would then have none)."""
    ctx = Context.of(max_steps=3, max_concurrency=9)  # a server caller's, set in full
    monkeypatch.setenv("PLANEXEC_CEILINGS", "max_concurrency=4")
    monkeypatch.setenv("PLANEXEC_MAX_CONCURRENCY", "4")
    monkeypatch.setenv("PLANEXEC_MAX_STEPS", "lots")
    with pytest.raises(LimitRefused, match="limits cannot be read.*PLANEXEC_MAX_STEPS"):
        enforce(ctx)


def _documented_ceiling_fields() -> list[str]:
    """The fields docs/security.md says PLANEXEC_CEILINGS takes."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| `PLANEXEC_CEILINGS`"))
    names = row.split("over ", 1)[1].split(". Under", 1)[0]
    return [n.strip(" `") for n in names.split(",")]


@pytest.mark.parametrize("name", _documented_ceiling_fields())
def test_every_documented_ceiling_bounds_its_field(monkeypatch, name: str) -> None:
    from dataclasses import fields

    from app.context import _default_of

    default = next(_default_of(f) for f in fields(Context) if f.name == name)
    ceiling = max(1, int(default)) if isinstance(default, int) else max(1.0, default)
    monkeypatch.setenv("PLANEXEC_CEILINGS", f"{name}={ceiling}")
    monkeypatch.setenv(f"PLANEXEC_{name.upper()}", str(ceiling))
    limits = ServerLimits.from_env()
    assert context_problems(Context.of(**{name: ceiling}), limits) == []
    above = ceiling + 1 if isinstance(ceiling, int) else ceiling * 2
    (problem,) = context_problems(Context.of(**{name: above}), limits)
    assert problem.startswith(f"{name} ")
    if default == 0:  # a budget or deadline: 0 is "no limit", the most of all
        (problem,) = context_problems(Context.of(**{name: type(default)(0)}), limits)
        assert "0 (no limit) is above" in problem


def test_a_role_a_scenario_prices_as_nothing_is_refused_under_a_cost_budget(
    tmp_path: Path,
) -> None:
    """The check priced a scenario's stand-ins, not each role's: a scenario naming none for its
    executor passed, its executor's calls cost None, and the run stopped at once."""
    from app.pricing import cost_budget_problem

    partial = {"planner": "openai:gpt-4o", "replanner": "openai:gpt-4o"}
    spec = f"scripted:{write_scenario(tmp_path, {**SCRIPT, 'stands_for': partial})}"
    ctx = Context.every_role(spec, max_cost_usd=1.0)
    assert "its executor priced as ''" in cost_budget_problem(ctx)
    assert cost_budget_problem(Context.every_role(spec)) == ""


def test_a_call_is_priced_by_the_reply_the_provider_and_then_the_configured_model() -> None:
    """A reply's model name without the provider, or a proxy's spelling, must not make a call
    cost None: a cost budget would stop the run at once, and raising it would not help."""
    from langchain_core.messages import AIMessage

    from app.pricing import cost_usd
    from app.usage import usage_of_call

    def cost(answered_by: str, model: str) -> float | None:
        reply = AIMessage(
            "",
            response_metadata={"model_name": answered_by},
            usage_metadata={"input_tokens": 1000, "output_tokens": 100, "total_tokens": 1100},
        )
        return usage_of_call("executor", reply, model)["executor"]["cost_usd"]

    mini = cost_usd("openai:gpt-4o-mini", 1000, 100)
    assert mini is not None
    assert cost("openai/gpt-4o-mini", "openai:gpt-4o-mini") == mini  # a proxy's spelling
    groq = cost_usd("groq:llama-3.3-70b-versatile", 1000, 100)
    assert groq is not None
    assert cost("llama-3.3-70b-versatile", "groq:llama-3.3-70b-versatile") == groq
    # The reply's own model wins when it has a price (a dated snapshot, priced as itself).
    assert cost("gpt-4o", "openai:gpt-4o-mini") == cost_usd("openai:gpt-4o", 1000, 100)
    assert cost("mystery-1", "acme:mystery-1") is None


def test_a_cost_budget_that_cannot_be_counted_says_so_not_to_raise_it() -> None:
    from graphs.budget import Spend, describe

    hit = Spend(Context.of(max_cost_usd=1.0), {"usage": {"x": {"calls": 1}}}).exceeded()
    said = describe(hit)
    assert "cannot be kept: a call's cost is unknown" in said and "Raise it" not in said


def test_resume_refuses_a_budget_past_a_ceiling_before_recording_it(tmp_path: Path) -> None:
    """Recorded first, a raised budget past the ceiling failed the run, and every later resume
    with it, until one gave a budget under the ceiling."""
    env = {
        **clean_env(),
        "PLANEXEC_CEILINGS": "max_total_tool_calls=100",
        "PLANEXEC_MAX_TOTAL_TOOL_CALLS": "1",
    }
    db = str(tmp_path / "runs.sqlite")
    run = run_cli("demo", "--thread", "d1", "--db", db, "--workspace", str(tmp_path / "ws"),
                  cwd=tmp_path, env=env)  # fmt: skip
    assert run.returncode == 6, run.stderr  # the tool-call budget of 1
    over = run_cli("resume", "d1", "--db", db, "--max-tool-calls", "1000", cwd=tmp_path, env=env)
    assert over.returncode == 4 and "max_total_tool_calls 1000 is above 100" in " ".join(
        over.stderr.split()
    )
    shown = run_cli("show", "d1", "--db", db, "--json", cwd=tmp_path, env=env).stdout
    assert json.loads(shown)["context"]["max_total_tool_calls"] == 1, "the refused one was kept"
    done = run_cli("resume", "d1", "--db", db, "--max-tool-calls", "100", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr


def test_a_scenario_file_refused_by_the_folder_rule_is_never_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pricing a run under a cost budget reads its scenario (the models it stands for): that
    must come after the folder check, or a server caller makes the server read any file."""
    import app.scripted.scenarios as scenarios

    folder = tmp_path / "scenarios"
    folder.mkdir()
    outside = tmp_path / "elsewhere.json"
    outside.write_text('{"name": "x", "stands_for": {"planner": "nowhere:unpriced"}}')
    read: list[str] = []
    real = scenarios.load_scenario
    monkeypatch.setattr(scenarios, "load_scenario", lambda name: read.append(name) or real(name))
    ctx = Context.every_role(f"scripted:{outside}", max_cost_usd=1.0)
    problems = context_problems(ctx, ServerLimits(scenario_dir=folder.resolve()))
    assert problems and all("PLANEXEC_SCENARIO_DIR" in p for p in problems)
    assert read == []
