"""The CLI's live view, driven by progress events."""

from __future__ import annotations

import io

from rich.console import Console

from app.cli.view import LiveView, print_outcome, usage_table


def rendered(view: LiveView) -> str:
    console = Console(record=True, width=140)
    console.print(view._render())
    return console.export_text()


def test_live_view_shows_parallel_steps_running_at_once() -> None:
    view = LiveView(Console(width=140))
    steps = [
        {"id": "a", "description": "first", "depends_on": []},
        {"id": "b", "description": "second", "depends_on": []},
        {"id": "c", "description": "third", "depends_on": ["a", "b"]},
    ]
    view.handle({"event": "plan", "steps": steps})
    view.handle({"event": "step_started", "step_id": "a"})
    view.handle({"event": "step_started", "step_id": "b"})

    text = rendered(view)
    assert "2 step(s) running" in text
    assert text.count("running") == 3  # a, b, and the summary line

    view.handle({"event": "step_finished", "step_id": "a", "status": "done", "result": "A!"})
    view.handle(
        {
            "event": "step_finished",
            "step_id": "b",
            "status": "done",
            "result": "",
            "surprise": "no rows",
        }
    )
    view.handle(
        {
            "event": "replanned",
            "replans": 1,
            "reason": "rows missing",
            "steps": [{"id": "d", "description": "fourth", "depends_on": ["a"]}],
        }
    )
    text = rendered(view)
    assert "running" not in text
    assert "replan 1: rows missing" in text
    assert "fourth" in text and "third" not in text  # the revision replaced c
    assert "A!" in text  # completed steps stay in the table


def test_usage_table_says_unknown_price_rather_than_zero() -> None:
    usage = {
        "planner": {
            "calls": 1,
            "input_tokens": 1000,
            "output_tokens": 10,
            "cost_usd": 0.0026,
            "model": "gpt-4o",
        },
        "executor": {
            "calls": 3,
            "input_tokens": 900,
            "output_tokens": 30,
            "cost_usd": None,
            "model": "my-local-model",
        },
    }
    console = Console(record=True, width=140)
    console.print(usage_table(usage, {"planner": "openai:gpt-4o", "executor": "openai:local"}))
    text = console.export_text()
    assert "$0.0026" in text
    assert text.count("unknown price") == 2  # the executor, and therefore the total


def test_show_marks_steps_blocked_by_a_failure_and_retries_not_yet_run() -> None:
    from app.cli.view import steps_table

    state = {
        "plan": [
            {"id": "a", "description": "fails", "depends_on": [], "attempt": 1},
            {"id": "b", "description": "needs a", "depends_on": ["a"], "attempt": 1},
            {"id": "c", "description": "retried", "depends_on": [], "attempt": 2},
        ],
        "results": {
            "a": {"id": "a", "status": "failed", "error": "boom", "attempts": 1},
            "c": {"id": "c", "status": "failed", "error": "first try", "attempts": 1},
        },
    }
    console = Console(record=True, width=160)
    console.print(steps_table(state))
    text = console.export_text()
    assert "blocked" in text and "waits on a failed step" in text
    assert "pending (attempt 2)" in text


def test_live_view_notes_a_restarted_step_and_a_budget_hit() -> None:
    view = LiveView(Console(width=140))
    view.handle({"event": "plan", "steps": [{"id": "s1", "description": "d", "depends_on": []}]})
    view.handle(
        {"event": "step_restarted", "step_id": "s1", "execution": 2, "journaled_model_turns": 1}
    )
    view.handle({"event": "budget_exceeded", "budget": "max_cost_usd", "limit": 0.5})
    text = rendered(view)
    assert "s1 restarted (execution 2): replaying 1 journaled model turn(s)" in text
    assert "budget max_cost_usd=0.5 reached" in text


def screen(view: LiveView, width: int = 80, height: int = 24) -> list[str]:
    """The view's lines as an 80x24 terminal would draw them."""
    console = Console(record=True, width=width, height=height, file=io.StringIO())
    console.print(view._render())
    return console.export_text().splitlines()


def test_live_view_fits_80x24_scrolling_finished_steps_away() -> None:
    view = LiveView(Console(width=80, height=24, file=io.StringIO()))
    steps = [{"id": f"s{i:02d}", "description": f"step number {i} " * 4, "depends_on": []}
             for i in range(30)]  # fmt: skip
    view.handle({"event": "plan", "steps": steps})
    for i in range(22):
        view.handle({"event": "step_started", "step_id": f"s{i:02d}"})
        view.handle(
            {"event": "step_finished", "step_id": f"s{i:02d}", "status": "done", "result": "ok"}
        )
    for i in (22, 23, 24):
        view.handle({"event": "step_started", "step_id": f"s{i:02d}"})
    view.handle({"event": "reviewed", "reason": "the figures agree so far " * 3})

    lines = screen(view)
    text = "\n".join(lines)
    assert len(lines) <= 23  # one line is left for the cursor
    for running in ("s22", "s23", "s24"):
        assert running in text
    assert "s29" in text  # pending steps keep their rows
    assert "s21" in text and "s00" not in text  # the latest finished stay, the oldest go
    shown_finished = sum(f"s{i:02d}" in text for i in range(22))
    assert f"{22 - shown_finished} more finished" in text
    assert "replanner: continue" in text  # the last decision stays visible
    assert "3 step(s) running" in text


def test_a_long_note_cannot_take_the_rows_of_steps_still_to_run() -> None:
    """A 5,000-character replan reason was kept whole and took the screen: the new steps got no
    row and were counted as finished."""
    view = LiveView(Console(width=80, height=24, file=io.StringIO()))
    steps = [{"id": f"n{i}", "description": "new step", "depends_on": []} for i in range(1, 5)]
    view.handle({"event": "replanned", "replans": 1, "reason": "R" * 5_000, "steps": steps})
    view.handle({"event": "step_started", "step_id": "n1"})
    lines = screen(view)
    text = "\n".join(lines)
    assert len(lines) <= 23
    assert all(f"n{i}" in text for i in range(1, 5)), text
    assert "more finished" not in text
    assert text.count("R") <= 2 * 80


def test_rows_that_run_out_say_how_many_steps_are_not_finished() -> None:
    from app.cli.view import _hidden_label

    steps = [{"id": "d", "status": "done"}, {"id": "p"}, {"id": "r", "status": "running"}]
    assert _hidden_label(steps, steps[2:]) == "2 more: 1 finished, 1 not finished"
    assert _hidden_label(steps, steps[1:]) == "1 more finished"


def test_a_long_failure_reason_wraps_inside_the_panel_not_in_its_title() -> None:
    reason = "step fetch failed: Connection refused by 10.0.0.7:5432 " + "and more detail " * 8
    console = Console(record=True, width=80, file=io.StringIO())
    print_outcome(console, {"status": "failed", "reason": reason, "response": ""})
    lines = console.export_text().splitlines()
    assert "Connection refused" not in lines[0]  # the title is the status only
    body = " ".join(line.strip("│ ") for line in lines[1:])
    assert " ".join(reason.split()) in " ".join(body.split())


def test_an_approved_edit_replaces_the_plan_shown() -> None:
    view = LiveView(Console(width=140, file=io.StringIO()))
    view.handle({"event": "plan", "steps": [{"id": "a", "description": "old", "depends_on": []}]})
    view.handle(
        {"event": "plan_edited", "steps": [{"id": "b", "description": "new", "depends_on": []}]}
    )
    text = rendered(view)
    assert "new" in text and "old" not in text
    assert "plan edited" in text


def test_usage_total_hit_rate_is_over_every_role_and_the_caption_is_plain_text() -> None:
    """The total row's cache hit rate is cached over input for all roles together (not one
    role's rate); the caption naming the priced-as models is the reply's `model_name`, which an
    OpenAI-compatible server chooses, so it is shown as given, never read as markup."""
    usage = {
        "planner": {"calls": 1, "input_tokens": 1000, "cached_input_tokens": 0,
                    "output_tokens": 10, "cost_usd": 0.01, "model": "[bold]gpt-4o[/bold]"},
        "executor": {"calls": 2, "input_tokens": 3000, "cached_input_tokens": 3000,
                     "output_tokens": 20, "cost_usd": 0.02, "model": "gpt-4o-mini"},
    }  # fmt: skip
    console = Console(record=True, width=160)
    console.print(usage_table(usage, {"planner": "scripted:demo", "executor": "scripted:demo"}))
    text = console.export_text()
    total = next(line for line in text.splitlines() if "total" in line)
    assert "75%" in total  # 3000 of 4000 input tokens; the planner alone had 0%
    assert "planner as [bold]gpt-4o[/bold]" in " ".join(text.split())


def test_show_marks_a_step_blocked_when_any_one_of_its_dependencies_failed() -> None:
    """One failed dependency is enough to block a step, even when its others are done."""
    from app.cli.view import steps_table

    state = {
        "plan": [
            {"id": "a", "description": "fails", "depends_on": []},
            {"id": "b", "description": "works", "depends_on": []},
            {"id": "c", "description": "needs both", "depends_on": ["a", "b"]},
        ],
        "results": {
            "a": {"id": "a", "status": "failed", "error": "boom", "attempts": 1},
            "b": {"id": "b", "status": "done", "result": "ok", "attempts": 1},
        },
    }
    console = Console(record=True, width=160)
    console.print(steps_table(state))
    row = next(line for line in console.export_text().splitlines() if "needs both" in line)
    assert "blocked" in row and "waits on a failed step" in row


def test_runs_shows_whole_thread_ids_at_80_columns() -> None:
    """The id is what `resume`, `show` and `report` take: the goal wraps, the id is not cut."""
    from app.cli.view import runs_table

    row = {
        "thread_id": "run-20261126-204109-b8bc",
        "status": "budget_exceeded",
        "steps": "7/7",
        "replans": 1,
        "goal": "a long goal " * 8,
    }
    out = io.StringIO()
    Console(width=80, file=out).print(runs_table([row]))
    text = out.getvalue()
    assert "run-20261126-204109-b8bc" in text and "budget_exceeded" in text
    assert max(len(line) for line in text.splitlines()) <= 80


def test_a_streamed_plans_event_keeps_steps_that_started_or_finished_before_it() -> None:
    from app.cli.view import PlanProgress

    progress = PlanProgress()
    for event in (
        {"event": "step_started", "step_id": "s1", "description": "One."},
        {"event": "step_finished", "step_id": "s1", "status": "done", "result": "1"},
        {"event": "step_started", "step_id": "s2", "description": "Two."},
    ):
        progress.apply(event)
    steps = [{"id": i, "description": i, "depends_on": []} for i in ("s1", "s2", "s3")]
    progress.apply({"event": "plan", "steps": steps})
    assert progress.steps["s1"]["status"] == "done" and progress.steps["s1"]["result"] == "1"
    assert progress.steps["s2"]["status"] == "running"
    assert progress.steps["s3"].get("status", "pending") == "pending"


def test_rows_keep_every_step_that_fits_and_running_ones_when_rows_are_short() -> None:
    from app.cli.view import _fit_rows

    five = [{"id": f"s{i}", "status": "done", "finished": i} for i in range(5)]
    assert _fit_rows(five, 5) == (five, 0), "exactly as many steps as rows: none hidden"
    steps = [{"id": "p", "status": "pending"}] + [
        {"id": f"r{i}", "status": "running"} for i in range(5)
    ]
    shown, hidden = _fit_rows(steps, 3)
    assert [s["id"] for s in shown] == ["r0", "r1"] and hidden == 4


def test_the_cache_line_speaks_only_of_this_runs_marker() -> None:
    from app.cli.view import plan_cache_line

    marker = {"run_id": "old", "template": "t", "from_cache": True}
    assert plan_cache_line({"run_id": "new", "plan_cache": marker}) == ""
    assert (
        plan_cache_line({"run_id": "old", "plan_cache": marker}) == "plan from cache (template t)"
    )
