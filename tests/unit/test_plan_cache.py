"""The plan cache through the real graph in-process (graphs/plan_cache.py), and its placeholders.

Runs play tests/scenarios/plan_cache.json with scripted models; the store is a real InMemoryStore
shared between runs, as a SQLite or Postgres store is between CLI runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.store.memory import InMemoryStore

from app.context import Context
from app.plan_templates import TemplateError, check_params, load_templates, parse_params
from graphs import plan_cache
from graphs.plan_execute import build_graph
from graphs.plan_placeholders import Ambiguous, instantiate, templatise
from tests.helpers import SCENARIOS

SCENARIO = SCENARIOS / "plan_cache.json"
GOAL = "Write the sales note for region {region}."


def run(
    tmp_path: Path,
    store: InMemoryStore,
    region: str,
    *,
    thread: str,
    scenario: Path = SCENARIO,
    planner: Path = SCENARIO,
    template: str = "region-note",
    goal: str = GOAL,
    **context: Any,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One run of the template with `region` (`goal` filled with it): its final state and its
    events."""
    ctx = Context.of(
        planner_model=f"scripted:{planner}",
        executor_model=f"scripted:{scenario}",
        replanner_model=f"scripted:{scenario}",
        tools=["write_file"],
        workspace=str(tmp_path / "ws"),
        template=template,
        params={"region": region},
        **context,
    )
    graph = build_graph(checkpointer=InMemorySaver(), store=store)
    config = {"configurable": {"thread_id": thread}}
    events = list(
        graph.stream(
            {"goal": goal.format(region=region)}, config, context=ctx, stream_mode="custom"
        )
    )
    return dict(graph.get_state(config).values), events


def cache_events(events: list[dict[str, Any]]) -> list[str]:
    return [e["action"] for e in events if e["event"] == "plan_cache"]


def replanning(tmp_path: Path) -> Path:
    """The scenario with one replan (a step added after the summary) before the finish."""
    script = json.loads(SCENARIO.read_text())
    script["replanner"] = [
        {"action": "replan", "reason": "one more", "steps": [
            {"id": "again", "description": "Check the note.", "depends_on": ["summary"],
             "tools": ["write_file"]}]},
        script["replanner"][0],
    ]  # fmt: skip
    script["executor"]["again"] = [{"content": "checked"}]
    path = tmp_path / "replanning.json"
    path.write_text(json.dumps(script))
    return path


def failing(tmp_path: Path) -> dict[str, Any]:
    """`run` arguments for a run that executes the plan and then fails (an invalid end
    decision)."""
    script = json.loads(SCENARIO.read_text())
    script["replanner"] = [{"attempts": [{"raw": "not json"}] * 3}]  # invalid: the run fails
    path = tmp_path / "failing.json"
    path.write_text(json.dumps(script))
    # JSON end decisions: as text (plan lines, the default) "not json" would be an answer.
    return {"scenario": path, "plan_format": "json"}


def test_second_run_uses_the_cached_plan_with_its_own_values(tmp_path: Path) -> None:
    store = InMemoryStore()
    first, events = run(tmp_path, store, "Berlin", thread="t1")
    assert first["status"] == "done"
    assert cache_events(events) == ["miss", "stored"]
    assert first["usage"]["planner"]["calls"] == 1
    [entry] = plan_cache.entries(store)
    assert entry["goal"] == GOAL
    assert entry["steps"][0]["args"] == {
        "path": "notes/{region}.txt",
        "content": "Sales note: {region}",
    }
    assert entry["steps"][1]["description"] == "Summarise the sales note of {region} in one line."

    second, events = run(tmp_path, store, "Paris", thread="t2")
    assert second["status"] == "done"
    assert cache_events(events) == ["hit"]
    assert "planner" not in second["usage"]  # no planner call at all
    assert second["plan_cache"]["from_cache"] is True
    assert second["plan"][1]["description"] == "Summarise the sales note of Paris in one line."
    # The tool step ran with the new value: the file is named for Paris.
    assert (tmp_path / "ws" / "notes" / "Paris.txt").read_text() == "Sales note: Paris"
    assert plan_cache.entries(store)[0]["hits"] == 1


def test_a_replan_from_the_cached_plan_drops_the_entry(tmp_path: Path) -> None:
    store = InMemoryStore()
    run(tmp_path, store, "Berlin", thread="t1")
    state, events = run(tmp_path, store, "Paris", thread="t2", scenario=replanning(tmp_path))
    assert state["status"] == "done"
    assert cache_events(events) == ["hit", "dropped"]
    assert state["plan_cache"]["reason"] == "a run from the cached plan needed a replan"
    assert plan_cache.entries(store) == []
    # Next time the planner is asked again, and a clean run stores a new entry.
    state, events = run(tmp_path, store, "Rome", thread="t3")
    assert cache_events(events) == ["miss", "stored"]
    assert state["usage"]["planner"]["calls"] == 1


def test_a_failed_run_from_the_cached_plan_drops_the_entry(tmp_path: Path) -> None:
    store = InMemoryStore()
    run(tmp_path, store, "Berlin", thread="t1")
    state, events = run(tmp_path, store, "Paris", thread="t2", **failing(tmp_path))
    assert state["status"] == "failed"
    assert cache_events(events) == ["hit", "dropped"]
    assert plan_cache.entries(store) == []


def test_a_fresh_plan_that_needed_a_replan_is_not_stored(tmp_path: Path) -> None:
    """Only a plan that carried the run to `done` on its own is worth reusing: one the
    replanner had to patch would make every later run pay for the same surprise."""
    store = InMemoryStore()
    state, events = run(tmp_path, store, "Berlin", thread="t1", scenario=replanning(tmp_path))
    assert state["status"] == "done" and state["replans"] == 1
    assert cache_events(events) == ["miss", "not_stored"]
    assert state["plan_cache"]["reason"] == "the plan was not stored: it needed a replan"
    assert plan_cache.entries(store) == []


def test_the_plan_of_a_failed_run_is_not_stored(tmp_path: Path) -> None:
    """A run that did not end `done` proves nothing about its plan: later runs must ask the
    planner, not repeat it."""
    store = InMemoryStore()
    state, events = run(tmp_path, store, "Berlin", thread="t1", **failing(tmp_path))
    assert state["status"] == "failed" and not state.get("replans")
    assert cache_events(events) == ["miss", "not_stored"]
    assert state["plan_cache"]["reason"] == "the plan was not stored: it ended failed"
    assert plan_cache.entries(store) == []
    _, events = run(tmp_path, store, "Paris", thread="t2")
    assert cache_events(events) == ["miss", "stored"]


def test_a_run_of_the_template_with_another_goal_does_not_take_its_plan(tmp_path: Path) -> None:
    """The template name is the caller's word; the goal is what the plan was made for. A goal
    that is not the cached goal with this run's values gets a plan of its own."""
    store = InMemoryStore()
    run(tmp_path, store, "Berlin", thread="t1")
    other = "Delete every sales note of region {region}."
    state, events = run(tmp_path, store, "Paris", thread="t2", goal=other)
    miss = [e for e in events if e["event"] == "plan_cache"][0]
    assert miss["action"] == "miss"
    assert miss["reason"] == "this run's goal is not the cached plan's goal with these parameters"
    assert state["plan_cache"]["from_cache"] is False
    assert state["usage"]["planner"]["calls"] == 1


def test_an_expired_entry_is_removed_even_when_the_run_stores_none(tmp_path: Path) -> None:
    """An expired entry is deleted at lookup, not only replaced by the next stored plan: a run
    that fails leaves no stale entry behind for `planexec cache list` to show."""
    store = InMemoryStore()
    run(tmp_path, store, "Berlin", thread="t1")
    [item] = store.search(plan_cache.namespace("region-note"))
    store.put(
        item.namespace, item.key, {**item.value, "created_at": item.value["created_at"] - 100}
    )
    state, events = run(
        tmp_path, store, "Paris", thread="t2", plan_cache_max_age_s=50.0, **failing(tmp_path)
    )
    assert state["status"] == "failed"
    assert cache_events(events) == ["dropped", "miss", "not_stored"]
    assert plan_cache.entries(store) == []


def test_clearing_one_template_leaves_the_others(tmp_path: Path) -> None:
    """`planexec cache clear NAME` removes that template's plans only."""
    store = InMemoryStore()
    run(tmp_path, store, "Berlin", thread="t1")
    run(tmp_path, store, "Berlin", thread="t2", template="other-note")
    assert sorted(e["template"] for e in plan_cache.entries(store)) == ["other-note", "region-note"]
    assert plan_cache.clear(store, "region-note") == 1
    assert [e["template"] for e in plan_cache.entries(store)] == ["other-note"]
    assert [e["template"] for e in plan_cache.entries(store, "other-note")] == ["other-note"]
    assert plan_cache.clear(store) == 1 and plan_cache.entries(store) == []


def test_an_old_entry_is_dropped_and_the_planner_asked(tmp_path: Path) -> None:
    store = InMemoryStore()
    run(tmp_path, store, "Berlin", thread="t1")
    [item] = store.search(plan_cache.namespace("region-note"))
    store.put(
        item.namespace, item.key, {**item.value, "created_at": item.value["created_at"] - 100}
    )
    state, events = run(tmp_path, store, "Paris", thread="t2", plan_cache_max_age_s=50.0)
    assert cache_events(events) == ["dropped", "miss", "stored"]
    assert state["usage"]["planner"]["calls"] == 1


def test_other_tools_or_planner_model_do_not_share_an_entry(tmp_path: Path) -> None:
    store = InMemoryStore()
    run(tmp_path, store, "Berlin", thread="t1")
    other_planner = tmp_path / "other.json"
    other_planner.write_text(SCENARIO.read_text())
    _, events = run(tmp_path, store, "Paris", thread="t2", planner=other_planner)
    assert cache_events(events) == ["miss", "stored"]
    assert len(plan_cache.entries(store)) == 2


def test_a_plan_written_after_look_ups_is_not_stored(tmp_path: Path) -> None:
    """The planner read workspace text (untrusted, and this run's) before it planned: its plan
    is not the template's alone, so no later run may take it, with look-ups or without."""
    script = json.loads(SCENARIO.read_text())
    look = {"tool_calls": [{"name": "list_files", "args": {"path": "."}}]}
    script["planner"] = {"attempts": [look, script["planner"]]}
    looking = tmp_path / "looking.json"
    looking.write_text(json.dumps(script))
    store = InMemoryStore()
    first, events = run(
        tmp_path, store, "Berlin", thread="t1", planner=looking, planner_tools=["list_files"]
    )
    assert first["status"] == "done", first.get("reason")
    assert any(h.get("action") == "looked_up" for h in first["history"])
    assert cache_events(events) == ["miss", "not_stored"]
    assert "looked things up" in first["plan_cache"]["reason"]
    assert plan_cache.entries(store) == []
    second, events = run(tmp_path, store, "Paris", thread="t2", planner=looking)
    assert cache_events(events) == ["miss", "stored"], "nothing cached: the planner is asked"


def test_runs_that_may_look_things_up_do_not_share_an_entry_with_runs_that_may_not(
    tmp_path: Path,
) -> None:
    store = InMemoryStore()
    _, events = run(tmp_path, store, "Berlin", thread="t1", planner_tools=["list_files"])
    assert cache_events(events) == ["miss", "stored"]  # it could have looked, and did not
    _, events = run(tmp_path, store, "Paris", thread="t2")
    assert cache_events(events) == ["miss", "stored"]
    _, events = run(tmp_path, store, "Rome", thread="t3", planner_tools=["list_files"])
    assert cache_events(events) == ["hit"]
    assert len(plan_cache.entries(store)) == 2


def test_a_cached_plan_is_checked_against_the_run_s_caps(tmp_path: Path) -> None:
    store = InMemoryStore()
    run(tmp_path, store, "Berlin", thread="t1")
    state, events = run(tmp_path, store, "Paris", thread="t2", max_steps=1)
    # Two steps do not fit max_steps=1: the planner is asked (and its plan fails the same way).
    miss = [e for e in events if e["event"] == "plan_cache"][0]
    assert miss["action"] == "miss" and "the limit is 1" in miss["reason"]
    assert state["usage"]["planner"]["calls"] >= 1


def test_an_ambiguous_value_is_not_templatised(tmp_path: Path) -> None:
    store = InMemoryStore()
    state, events = run(tmp_path, store, "note", thread="t1")  # "note" is also in "Sales note"
    assert state["status"] == "done"
    assert cache_events(events) == ["miss", "not_stored"]
    assert "cannot be templatised" in state["plan_cache"]["reason"]
    assert plan_cache.entries(store) == []


def test_bad_params_fail_the_run_with_the_reason(tmp_path: Path) -> None:
    state, _ = run(tmp_path, InMemoryStore(), "", thread="t1")
    assert state["status"] == "failed"
    assert "parameter 'region' is empty" in state["reason"]


# placeholders --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "params", "why"),
    [
        ("the report is ready", {"x": "port"}, "inside a word"),
        ("BERLIN sales", {"city": "Berlin"}, "appears as 'BERLIN'"),
        ("EU sales", {"region": "EU"}, "shorter than 3"),
        ("New York and York", {"a": "New York", "b": "York"}, "overlap"),
        ("keep {region} as is", {"region": "Paris"}, "already contains {region}"),
        ("same value twice", {"a": "value", "b": "value"}, "overlap"),
        ("route A-B-C", {"start": "A-B", "end": "B-C"}, "overlap"),  # by one character
    ],
)
def test_ambiguous_text_is_refused(text: str, params: dict[str, str], why: str) -> None:
    with pytest.raises(Ambiguous, match=why):
        templatise(text, params)


def test_a_value_whose_edge_is_not_a_word_character_may_touch_a_word() -> None:
    """Word boundaries matter only where the value's own edge is a word character."""
    assert templatise("Sales(EU) by month", {"region": "(EU)"}) == "Sales{region} by month"


def test_values_become_placeholders_in_text_and_args_only() -> None:
    args = {"path": "out/Berlin-2024.csv", "n": 3, "tags": ["Berlin", "x"], "Berlin?": None}
    with pytest.raises(Ambiguous, match="a key"):
        templatise(args, {"city": "Berlin"})
    with pytest.raises(Ambiguous, match="not text"):
        templatise({"year": 2024}, {"year": "2024"})
    args.pop("Berlin?")
    done = templatise(args, {"city": "Berlin", "year": "2024"})
    assert done == {"path": "out/{city}-{year}.csv", "n": 3, "tags": ["{city}", "x"]}
    assert instantiate(done, {"city": "Paris", "year": "2025"})["path"] == "out/Paris-2025.csv"
    # A value that does not appear leaves the text alone; a short one then is no problem.
    assert templatise("no values here", {"region": "EU"}) == "no values here"
    # Filled in one pass: a value that looks like a placeholder is not filled again.
    assert instantiate("{a} {b}", {"a": "{b}", "b": "x"}) == "{b} x"


# templates file ------------------------------------------------------------------------------


def test_templates_file_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        "templates:\n  - name: r\n    goal: 'Report for {region}'\n    params: [region]\n"
    )
    assert load_templates(path)["r"].render({"region": "EU"}) == "Report for EU"
    with pytest.raises(TemplateError, match="missing --param region"):
        load_templates(path)["r"].render({})
    with pytest.raises(TemplateError, match="unknown parameter 'month'"):
        load_templates(path)["r"].render({"region": "EU", "month": "May"})
    path.write_text("templates:\n  - name: r\n    goal: 'Report for {region} in {month}'\n"
                    "    params: [region]\n")  # fmt: skip
    with pytest.raises(TemplateError, match=r"uses \{month\}, which is not in params"):
        load_templates(path)
    path.write_text("templates:\n  - name: 'a.b'\n    goal: 'x'\n")
    with pytest.raises(TemplateError, match="templates.0.name"):
        load_templates(path)
    path.write_text("templates: [")
    with pytest.raises(TemplateError, match="is not valid"):
        load_templates(path)
    path.write_text("templates:\n  - {name: r, goal: 'x'}\n  - {name: r, goal: 'y'}\n")
    with pytest.raises(TemplateError, match="template 'r' is declared twice"):
        load_templates(path)
    with pytest.raises(TemplateError, match="must be KEY=VALUE"):
        parse_params(["region"])
    with pytest.raises(TemplateError, match="given twice"):
        parse_params(["a=1", "a=2"])


def test_parameter_values_are_checked_however_they_come() -> None:
    """Values come from --param and from server callers' Context.params alike: both are
    refused past the limits, so no caller can store or fill an oversized plan."""
    assert parse_params(["region=" + "x" * 500]) == {"region": "x" * 500}
    with pytest.raises(TemplateError, match="longer than 500 characters"):
        parse_params(["region=" + "x" * 501])
    with pytest.raises(TemplateError, match="21 parameters given; at most 20"):
        parse_params([f"p{i}=v" for i in range(21)])
    with pytest.raises(TemplateError, match="parameter 'region' must be a string, got int"):
        check_params({"region": 7})
    with pytest.raises(TemplateError, match="parameter name '1x'"):
        check_params({"1x": "v"})


def test_a_later_run_on_the_thread_does_not_settle_the_earlier_run_s_entry(
    tmp_path: Path,
) -> None:
    store = InMemoryStore()
    run(tmp_path, store, "Berlin", thread="t1")
    saver = InMemorySaver()
    graph = build_graph(checkpointer=saver, store=store)
    config = {"configurable": {"thread_id": "t2"}}
    ctx = Context.every_role(
        f"scripted:{SCENARIO}", tools=["write_file"], workspace=str(tmp_path / "ws"),
        template="region-note", params={"region": "Paris"},
    )  # fmt: skip
    graph.invoke({"goal": GOAL.format(region="Paris")}, config, context=ctx)
    assert graph.get_state(config).values["plan_cache"]["from_cache"] is True
    # A new run on the thread that fails before planning (no template) leaves the entry alone.
    bad = Context.every_role(f"scripted:{SCENARIO}", tools=["nope"], workspace=str(tmp_path))
    state = graph.invoke({"goal": "something else"}, config, context=bad)
    assert state["status"] == "failed"
    assert len(plan_cache.entries(store)) == 1


def test_a_value_whose_case_changes_its_length_is_refused_in_another_case() -> None:
    """IGNORECASE does not match "ß" against "SS": the template kept the first run's street."""
    with pytest.raises(Ambiguous, match="appears in another case"):
        templatise("Find HAUPTSTRASSE 5", {"street": "Hauptstraße 5"})
    assert templatise("Find Hauptstraße 5", {"street": "Hauptstraße 5"}) == "Find {street}"


def test_a_previous_runs_marker_settles_nothing_for_this_run() -> None:
    """The marker names the run it was made for: a later run on the thread that ends `done`
    must not store (or drop) an entry from the earlier run's marker."""
    marker = {"template": "t", "key": "k", "run_id": "old", "from_cache": False}
    state = {"plan_cache": marker, "run_id": "old", "status": "running", "plan": []}
    later = {"run_id": "new", "status": "done", "plan": [{"id": "s1", "description": "x"}]}
    assert plan_cache._decide(state, later) is None
    ours = {**later, "run_id": "old"}
    decision = plan_cache._decide(state, ours)
    assert decision is not None and decision.action == "store"


def test_a_cached_plan_with_other_parameter_names_is_not_used(tmp_path: Path) -> None:
    """An entry stored with params {region} must not serve a run whose params differ by name:
    a placeholder the run has no value for would stay in its plan."""
    import time

    entry = {
        "created_at": time.time(),
        "params": ["region", "unit"],
        "goal": GOAL,
        "steps": [{"id": "s1", "description": "Note {region} in {unit}."}],
    }
    ctx = Context.every_role(
        f"scripted:{SCENARIO}", tools=["write_file"], workspace=str(tmp_path / "ws"),
        template="region-note", params={"region": "Paris"},
    )  # fmt: skip
    steps, why = plan_cache._usable(entry, ctx, GOAL.format(region="Paris"), {})
    assert steps is None
    assert why == "the cached plan's parameters are ['region', 'unit'], this run's are ['region']"
