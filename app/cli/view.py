"""What the CLI shows: a live table of the plan driven by the run's events, and summaries."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from app.pricing import PRICES_AS_OF
from app.usage import ROLES, total_usage

STATUS_STYLE = {
    "pending": "dim",
    "running": "bold yellow",
    "done": "green",
    "failed": "bold red",
    "blocked": "dim red",
}


class LiveView:
    """The plan as a table whose step statuses change as events arrive."""

    def __init__(
        self, console: Console, plan: list[dict] | None = None, results: dict | None = None
    ):
        self.console = console
        self.steps: dict[str, dict[str, Any]] = {}
        self.notes: list[str] = []
        self.live: Live | None = None
        self._set_plan(plan or [], results or {})

    def __enter__(self) -> LiveView:
        self.live = Live(
            self._render(), console=self.console, refresh_per_second=8, transient=False
        )
        self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.update(self._render())
            self.live.__exit__(*exc)
            self.console.print()

    def _set_plan(self, plan: list[dict], results: dict) -> None:
        kept = {k: v for k, v in self.steps.items() if v["status"] == "done"}
        self.steps = kept
        for step in plan:
            result = results.get(step["id"])
            status = result["status"] if result else "pending"
            self.steps[step["id"]] = {
                **step,
                "status": status,
                "result": (result or {}).get("result") or (result or {}).get("error", ""),
            }

    def handle(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "plan":
            self._set_plan(event["steps"], {})
        elif kind == "replanned":
            self.notes.append(f"replan {event.get('replans')}: {event.get('reason', '')}")
            self._set_plan(event["steps"], {})
        elif kind == "step_started":
            self.steps.setdefault(event["step_id"], {"id": event["step_id"]})
            self.steps[event["step_id"]].update(status="running", started=time.time())
        elif kind == "step_finished":
            step = self.steps.setdefault(event["step_id"], {"id": event["step_id"]})
            step["status"] = event["status"]
            step["result"] = event.get("error") or event.get("result", "")
            if event.get("surprise"):
                step["result"] = f"[surprise] {event['surprise']} | {step['result']}"
        elif kind == "reviewed":
            self.notes.append(f"replanner: continue ({event.get('reason', '')})")
        elif kind == "step_restarted":  # it was in flight when an earlier process stopped
            self.notes.append(
                f"{event['step_id']} restarted (execution {event.get('execution')}): replaying "
                f"{event.get('journaled_model_turns', 0)} journaled model turn(s)"
            )
        elif kind == "budget_exceeded":
            self.notes.append(f"budget {event.get('budget')}={event.get('limit')} reached")
        if self.live is not None:
            self.live.update(self._render())

    def _render(self) -> Group:
        table = Table(title="plan", expand=True, show_lines=False)
        table.add_column("step", no_wrap=True)
        table.add_column("description", ratio=3)
        table.add_column("after", no_wrap=True)
        table.add_column("status", no_wrap=True)
        table.add_column("result", ratio=3, overflow="ellipsis", no_wrap=True)
        running = 0
        for step in self.steps.values():
            status = step.get("status", "pending")
            running += status == "running"
            table.add_row(
                step["id"],
                step.get("description", ""),
                ", ".join(step.get("depends_on", [])),
                Text(status, style=STATUS_STYLE.get(status, "")),
                " ".join(str(step.get("result", "")).split())[:200],
            )
        parts: list[Any] = [table]
        if running:
            parts.append(Text(f"{running} step(s) running", style="yellow"))
        parts += [Text(n, style="magenta") for n in self.notes[-5:]]
        return Group(*parts)


def usage_table(usage: dict[str, dict[str, Any]], models: dict[str, str]) -> Table:
    """Calls, tokens and cost per role, and the total."""
    table = Table(title=f"usage (prices as of {PRICES_AS_OF})")
    for column in ("role", "model", "calls", "tokens in", "tokens out", "cost USD"):
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
            model,
            str(totals["calls"]),
            f"{totals['input_tokens']:,}",
            f"{totals['output_tokens']:,}",
            _money(totals.get("cost_usd")),
        )
    total = total_usage(usage)
    table.add_row(
        "total",
        "",
        str(total["calls"]),
        f"{total['input_tokens']:,}",
        f"{total['output_tokens']:,}",
        _money(total["cost_usd"]),
        style="bold",
    )
    if priced_as:  # scripted calls are priced as the models their scenario stands for
        table.caption = "scripted calls priced as: " + ", ".join(priced_as)
    return table


def _money(value: float | None) -> str:
    return "unknown price" if value is None else f"${value:.4f}"


def print_outcome(console: Console, state: dict[str, Any]) -> None:
    """The end of a run: status, answer, usage."""
    status = state.get("status", "interrupted")
    style = "green" if status == "done" else "red"
    title = f"{status}" + (f": {state['reason']}" if state.get("reason") else "")
    console.print(Panel(state.get("response") or "(no answer)", title=title, border_style=style))
    ctx = state.get("context") or {}
    models = {r: ctx.get(f"{r}_model", "") for r in ROLES}
    if state.get("usage"):
        console.print(usage_table(state["usage"], models))


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
    for step_id, result in results.items():  # steps a revision dropped (e.g. failed ones)
        if step_id not in listed:
            table.add_row(*_step_row({"id": step_id, **result}, result, dropped=True))
    return table


def _attempts(result: dict) -> str:
    """Attempts, and the executions beyond one (a step restarted after a crash) if any."""
    shown = str(result.get("attempts", 0))
    if result.get("executions", 1) > 1:
        shown += f" ({result['executions']} executions, {result.get('tool_calls_made', 0)} calls)"
    return shown


def _step_row(step: dict, result: dict | None, dropped: bool = False) -> list[Any]:
    status = result["status"] if result else "pending"
    if result and result.get("journaled"):
        status += " (journaled)"
    if dropped:
        status += " (replaced)"
    text = (result or {}).get("result") or (result or {}).get("error") or ""
    return [
        step["id"],
        step.get("description", ""),
        ", ".join(step.get("depends_on", [])),
        Text(status, style=STATUS_STYLE.get(status.split()[0], "")),
        _attempts(result or {}),
        " ".join(str(text).split())[:300],
    ]
