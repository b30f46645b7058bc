"""What the CLI shows: the run's progress (a live table on a terminal, one plain line per event
otherwise) and summaries of runs.

Everything shown here may come from a model, a tool, a user or a file, so no text from a run is
ever handed to rich as markup: it goes into `Text` objects (which never interpret `[...]`), and
`visible()` first turns control characters (ANSI escapes, carriage returns, bidi overrides) into
visible escapes such as `\\x1b`, so a result cannot move the cursor or recolour the terminal.

The live view fits the terminal it is drawn on: every row is one line, running and pending steps
always have a row, finished steps scroll away (most recent kept) when rows run short, and the
last decision (replan, review, edit) stays below the table. The failure reason is printed in
the outcome panel's body, where it wraps, not in its title, where it was cut off.
"""

from __future__ import annotations

import itertools
import json
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any, TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from app.cli.text import labelled, one_line, plain, visible
from app.pricing import PRICES_AS_OF
from app.usage import ROLES, hit_rate_text, total_usage

STATUS_STYLE = {
    "pending": "dim",
    "running": "bold yellow",
    "done": "green",
    "failed": "bold red",
    "blocked": "dim red",
}
FINISHED = ("done", "failed", "blocked")
RESULT_CHARS = 300  # of a result kept per row: rows are one line, so more is never seen
PLAIN_RESULT_CHARS = 200  # of a result on a piped output line
_TABLE_CHROME = 5  # title, top border, header, header rule, bottom border


def result_text(step: dict[str, Any]) -> str:
    """What a step row shows: its result, or its error; a surprise first."""
    text = str(step.get("error") or step.get("result") or "")
    if step.get("surprise"):
        text = f"[surprise] {step['surprise']} | {text}"
    return text


def make_view(console: Console, plan: list[dict] | None = None, results: dict | None = None):
    """The live table on a terminal; one plain line per event when stdout is a pipe or file."""
    if console.is_terminal:
        return LiveView(console, plan, results)
    return PlainView(console.file)


class PlanProgress:
    """The steps of the current plan and the decisions so far, updated from events."""

    def __init__(self, plan: list[dict] | None = None, results: dict | None = None):
        self.steps: dict[str, dict[str, Any]] = {}
        self.notes: list[str] = []
        self._order = itertools.count()  # when each step finished, to scroll oldest away
        self._set_plan(plan or [], results or {})

    def _set_plan(self, plan: list[dict], results: dict) -> None:
        kept = {k: v for k, v in self.steps.items() if v["status"] == "done"}
        self.steps = kept
        for step in plan:
            result = results.get(step["id"]) or {}
            self.steps[step["id"]] = {
                **step,
                "status": result.get("status", "pending"),
                "result": result_text(result),
                "finished": next(self._order) if result else None,
            }

    def apply(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "plan":
            # With a streamed plan, steps may have started (or finished) before the plan event.
            seen = {i: s for i, s in self.steps.items() if s.get("status", "pending") != "pending"}
            self._set_plan(event.get("steps", []), {})
            for step_id, step in seen.items():
                if step_id in self.steps:
                    self.steps[step_id].update(
                        status=step["status"],
                        result=step.get("result", ""),
                        finished=step.get("finished"),
                    )
        elif kind == "replanned":
            self.notes.append(f"replan {event.get('replans')}: {event.get('reason', '')}")
            self._set_plan(event.get("steps", []), {})
        elif kind == "plan_edited":
            self.notes.append(f"plan edited by a person: {len(event.get('steps', []))} step(s)")
            self._set_plan(event.get("steps", []), {})
        elif kind == "step_started":
            step = self.steps.setdefault(
                event["step_id"],
                {"id": event["step_id"], "description": event.get("description", "")},
            )
            step.update(status="running", started=time.time())
        elif kind == "step_finished":
            step = self.steps.setdefault(event["step_id"], {"id": event["step_id"]})
            step.update(
                status=event.get("status", "done"),
                result=result_text(event),
                finished=next(self._order),
            )
        elif kind == "reviewed":
            self.notes.append(f"replanner: continue ({event.get('reason', '')})")
        elif kind == "step_restarted":  # it was in flight when an earlier process stopped
            self.notes.append(
                f"{event.get('step_id')} restarted (execution {event.get('execution')}): "
                f"replaying {event.get('journaled_model_turns', 0)} journaled model turn(s)"
            )
        elif kind == "budget_exceeded":
            self.notes.append(f"budget {event.get('budget')}={event.get('limit')} reached")
        elif kind == "planner_lookup":
            self.notes.append(lookup_line(event))


class LiveView(PlanProgress):
    """The plan as a table whose step statuses change as events arrive, fitted to the terminal."""

    def __init__(
        self, console: Console, plan: list[dict] | None = None, results: dict | None = None
    ):
        super().__init__(plan, results)
        self.console = console
        self.live: Live | None = None
        # Live redraws from its own thread (on a timer, and on resize) while events arrive.
        self._lock = threading.Lock()

    def __enter__(self) -> LiveView:
        self.live = Live(
            console=self.console,
            get_renderable=self._render,
            refresh_per_second=4,
            transient=False,
        )
        self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.refresh()
            self.live.__exit__(*exc)
            self.console.print()

    def handle(self, event: dict[str, Any]) -> None:
        with self._lock:
            self.apply(event)
        if self.live is not None:
            self.live.refresh()

    def _render(self, height: int | None = None) -> Group:
        with self._lock:
            return self._layout(height or self.console.size.height)

    def _layout(self, height: int) -> Group:
        width = self.console.size.width
        # At most two screen lines a note: a 5,000-character replan reason took every row
        # (`show` has it whole).
        notes = [one_line(n, 2 * width) for n in self.notes[-3:]]
        running = sum(s.get("status") == "running" for s in self.steps.values())
        # Lines besides the rows: the table's chrome, the running count, one spare line for
        # the cursor, and the notes (the last decision always; older ones if they fit).
        budget = height - _TABLE_CHROME - (1 if running else 0) - 1
        note_lines = [_lines(n, width) for n in notes]
        while notes and budget - sum(note_lines) < min(len(self.steps), 3) and len(notes) > 1:
            notes, note_lines = notes[1:], note_lines[1:]
        budget -= sum(note_lines)
        rows, hidden = _fit_rows(list(self.steps.values()), max(budget, 1))
        table = Table(title="plan", expand=True, show_lines=False)
        table.add_column("step", no_wrap=True, max_width=16, overflow="ellipsis")
        table.add_column("description", ratio=3, no_wrap=True, overflow="ellipsis")
        table.add_column("after", no_wrap=True, max_width=12, overflow="ellipsis")
        table.add_column("status", no_wrap=True)
        table.add_column("result", ratio=3, no_wrap=True, overflow="ellipsis")
        if hidden:
            table.add_row("…", Text(_hidden_label(list(self.steps.values()), rows), style="dim"))
        for step in rows:
            status = step.get("status", "pending")
            table.add_row(
                plain(one_line(step["id"])),
                plain(one_line(step.get("description", ""), RESULT_CHARS)),
                plain(one_line(", ".join(step.get("depends_on", [])))),
                Text(status, style=STATUS_STYLE.get(status, "")),
                plain(one_line(step.get("result", ""), RESULT_CHARS)),
            )
        parts: list[Any] = [table]
        if running:
            parts.append(Text(f"{running} step(s) running", style="yellow"))
        parts += [Text(n, style="magenta") for n in notes]
        return Group(*parts)


def _hidden_label(steps: list[dict[str, Any]], shown: list[dict[str, Any]]) -> str:
    """What the rows not shown are: finished ones, and any others (when rows run out)."""
    ids = {id(s) for s in shown}
    hidden = [s for s in steps if id(s) not in ids]
    done = sum(s.get("status") in FINISHED for s in hidden)
    if done == len(hidden):
        return f"{done} more finished"
    return f"{len(hidden)} more: {done} finished, {len(hidden) - done} not finished"


def _lines(text: str, width: int) -> int:
    return max(1, -(-len(text) // max(width, 1)))


def _fit_rows(steps: list[dict[str, Any]], budget: int) -> tuple[list[dict[str, Any]], int]:
    """The steps to show in `budget` rows, in plan order, and how many finished ones are not.

    Running and pending steps are kept; finished steps go oldest first. One row is given to the
    "scrolled away" line when anything is hidden."""
    if len(steps) <= budget:
        return steps, 0
    finished = sorted(
        (s for s in steps if s.get("status") in FINISHED), key=lambda s: s.get("finished") or 0
    )
    active = len(steps) - len(finished)
    keep_finished = max(0, budget - 1 - active)
    dropped = {id(s) for s in finished[: len(finished) - keep_finished]}
    shown = [s for s in steps if id(s) not in dropped]
    if len(shown) > budget - 1:  # more active steps than rows: running ones first
        shown.sort(key=lambda s: s.get("status") != "running")
        shown = shown[: max(budget - 1, 1)]
        order = {id(s): i for i, s in enumerate(steps)}
        shown.sort(key=lambda s: order[id(s)])
    return shown, len(steps) - len(shown)


class PlainView:
    """One plain line per event, written and flushed as it happens (stdout is not a terminal)."""

    def __init__(self, out: TextIO | None = None):
        self.out = out or sys.stdout

    def __enter__(self) -> PlainView:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.out.flush()

    def handle(self, event: dict[str, Any]) -> None:
        line = event_line(event)
        if line:
            self.out.write(line + "\n")
            self.out.flush()


def event_line(event: dict[str, Any]) -> str:
    """One line of plain text for a progress event (docs/events.md), control characters
    escaped; empty for kinds that need no line."""
    kind = event.get("event", "")

    def ids(steps: Iterable[dict]) -> str:
        return ", ".join(str(s.get("id", "")) for s in steps)

    if kind == "plan":
        line = f"plan: {len(event.get('steps', []))} step(s): {ids(event.get('steps', []))}"
    elif kind == "step_started":
        line = f"step {event.get('step_id')} started: {event.get('description', '')}"
    elif kind == "step_finished":
        recovered = " (recovered from the journal)" if event.get("recovered") else ""
        text = result_text(event)
        line = f"step {event.get('step_id')} {event.get('status')}{recovered}: {text}"
    elif kind == "replanned":
        line = (
            f"replan {event.get('replans')}: {event.get('reason', '')} -> "
            f"{ids(event.get('steps', []))}"
        )
    elif kind == "plan_edited":
        line = f"plan edited by a person -> {ids(event.get('steps', []))}"
    elif kind == "planner_lookup":
        line = f"{lookup_line(event)}: {event.get('output', '')}"
    elif kind == "reviewed":
        line = f"replanner: continue ({event.get('reason', '')})"
    elif kind == "paused":
        line = "paused for plan approval" + (f": {event['error']}" if event.get("error") else "")
        line += f" ({event['budget']})" if event.get("budget") else ""
    elif kind == "plan_cache":
        line = f"plan cache {event.get('action')} ({event.get('template')}): {event.get('reason')}"
    elif kind == "finished":
        reason = f": {event['reason']}" if event.get("reason") else ""
        line = f"finished {event.get('status')}{reason}"
    else:
        return ""
    return one_line(line, PLAIN_RESULT_CHARS * 2)


def lookup_line(event: dict[str, Any]) -> str:
    """A planner look-up (graphs/planner_lookups.py) in a few words; the caller escapes it."""
    outcome = "" if event.get("ok") else " (failed)"
    args = json.dumps(event.get("args", {}), ensure_ascii=False)[:120]
    return f"planner looked up {event.get('tool')} {args}{outcome}"


def usage_table(usage: dict[str, dict[str, Any]], models: dict[str, str]) -> Table:
    """Calls, tokens and cost per role, and the total."""
    table = Table(title=f"usage (prices as of {PRICES_AS_OF})")
    for column in ("role", "model", "calls", "tokens in", "cached", "tokens out", "cost USD"):
        table.add_column(column, justify="left" if column in ("role", "model") else "right")
    priced_as = []
    for role in ROLES:
        totals = usage.get(role)
        if not totals:
            continue
        model = models.get(role) or totals.get("model", "")
        if model.startswith("scripted:") and totals.get("model"):
            priced_as.append(f"{role} as {totals['model']}")
        table.add_row(
            role,
            plain(one_line(model)),
            str(totals["calls"]),
            f"{totals['input_tokens']:,}",
            hit_rate_text(totals),
            f"{totals['output_tokens']:,}",
            _money(totals.get("cost_usd")),
        )
    total = total_usage(usage)
    table.add_row(
        "total",
        "",
        str(total["calls"]),
        f"{total['input_tokens']:,}",
        hit_rate_text(total),
        f"{total['output_tokens']:,}",
        _money(total["cost_usd"]),
        style="bold",
    )
    if priced_as:  # scripted calls are priced as the models their scenario stands for
        table.caption = plain(one_line("scripted calls priced as: " + ", ".join(priced_as)))
    return table


def _money(value: float | None) -> str:
    return "unknown price" if value is None else f"${value:.4f}"


def print_outcome(console: Console, state: dict[str, Any]) -> None:
    """The end of a run: status, the reason it ended (wrapped, never cut), answer, usage."""
    status = str(state.get("status", "interrupted"))
    style = "green" if status == "done" else "red"
    body: list[RenderableType] = []
    if state.get("reason"):
        body += [labelled("reason:", state["reason"], style="bold " + style), Text("")]
    body.append(plain(state.get("response") or "(no answer)"))
    console.print(Panel(Group(*body), title=plain(status), border_style=style))
    if cache_line := plan_cache_line(state):
        console.print(plain(cache_line))
    ctx = state.get("context") or {}
    models = {r: ctx.get(f"{r}_model", "") for r in ROLES}
    if state.get("usage"):
        console.print(usage_table(state["usage"], models))


def plan_cache_line(state: dict[str, Any]) -> str:
    """What the plan cache did for a templated run (graphs/plan_cache.py), or ""."""
    marker = state.get("plan_cache") or {}
    if not marker or marker.get("run_id") != state.get("run_id"):
        return ""
    source = "plan from cache" if marker.get("from_cache") else "plan from the planner"
    line = f"{source} (template {marker.get('template')})"
    if marker.get("outcome"):
        line += f"; cache entry {marker['outcome'].replace('_', ' ')}: {marker.get('reason', '')}"
    return one_line(line)


def run_header(thread_id: str, goal: str | None = None, db: str | None = None) -> Text:
    """`run ID · db URL` or `ID  goal: GOAL`, the parts from the run shown as given."""
    if goal is None:
        return Text.assemble("run ", (one_line(thread_id), "bold"), " · db ", one_line(db or ""))
    return Text.assemble((one_line(thread_id), "bold"), "  goal: ", visible(goal))


def runs_table(rows: list[dict[str, Any]]) -> Table:
    """The `planexec runs` table: one row per run summary."""
    table = Table(title=f"runs ({len(rows)})")
    # The thread id is what `resume`, `show` and `report` take: not cut at 80 columns (the
    # goal gives way; it wraps).
    for column in ("thread", "status", "steps done", "replans"):
        table.add_column(column, no_wrap=True)
    table.add_column("goal", ratio=1)
    for r in rows:
        table.add_row(
            *(plain(one_line(r[k])) for k in ("thread_id", "status", "steps", "replans")),
            plain(one_line(r["goal"], RESULT_CHARS)),
        )
    return table


def steps_table(state: dict[str, Any]) -> Table:
    """Each step of a run's plan with its status, attempts and result (for `planexec show`)."""
    results = state.get("results", {})
    table = Table(title=f"plan ({state.get('replans', 0)} revision(s))", expand=True)
    for column in ("step", "description", "after", "status", "attempts", "result"):
        table.add_column(column)
    listed = set()
    for step in state.get("plan", []):
        listed.add(step["id"])
        result = results.get(step["id"])
        if result and result.get("attempts", 0) < step.get("attempt", 1):
            result = {**result, "status": f"pending (attempt {step['attempt']})"}
        elif result is None and any(
            results.get(d, {}).get("status") == "failed" for d in step.get("depends_on", [])
        ):
            result = {"status": "blocked", "error": "waits on a failed step", "attempts": 0}
        table.add_row(*_step_row(step, result))
    # Steps in no plan: a revision dropped them (e.g. failed ones), or, with no plan yet, they
    # started while the plan streamed and the run stopped before the plan was whole.
    note = "replaced" if state.get("plan") else "plan unfinished"
    for step_id, result in results.items():
        if step_id not in listed:
            table.add_row(*_step_row({"id": step_id, **result}, result, note=note))
    return table


def _attempts(result: dict) -> str:
    """Attempts, and the executions beyond one (a step restarted after a crash) if any."""
    shown = str(result.get("attempts", 0))
    if result.get("executions", 1) > 1:
        shown += f" ({result['executions']} executions, {result.get('tool_calls_made', 0)} calls)"
    return shown


def _step_row(step: dict, result: dict | None, note: str = "") -> list[Any]:
    status = str(result["status"]) if result else "pending"
    if result and result.get("journaled"):
        status += " (journaled)"
    if note:
        status += f" ({note})"
    return [
        plain(one_line(step["id"])),
        plain(one_line(step.get("description", ""))),
        plain(one_line(", ".join(step.get("depends_on", [])))),
        Text(visible(status), style=STATUS_STYLE.get(status.split()[0], "")),
        _attempts(result or {}),
        plain(one_line(result_text(result or {}), RESULT_CHARS)),
    ]
