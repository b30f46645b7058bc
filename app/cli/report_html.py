"""A run report as one self-contained HTML file: inline CSS and SVG, no script, no network.

The plan graph and the timeline are SVG drawn here, so the file works opened from disk, offline,
and nothing in it runs. Every string from the run (goal, step text, results, tool output,
reasons, model names) is model, tool or user text: it goes through `_e` (html.escape, with
control characters made visible) and nowhere else, so `<script>` or `</svg>` in a result is
shown, not obeyed.
"""

from __future__ import annotations

import html
import math
import textwrap
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from app.cli.report_data import Attempt, RunReport, StepView
from app.cli.text import visible
from app.pricing import PRICES_AS_OF
from app.usage import ROLES, hit_rate_text, total_usage

STATUS_COLOURS = {
    "done": "#2e9d5b",
    "failed": "#d6453d",
    "running": "#e6a700",
    "pending": "#9aa4b1",
    "blocked": "#e89a94",
    "replaced": "#c9ced6",
}
CALL_COLOURS = {"planner": "#6f55c7", "replanner": "#3f78c9", "approval": "#b07a2a"}
NODE_W, NODE_H, GAP_X, GAP_Y = 176, 58, 36, 14
LABEL_W, PLOT_W, ROW_H = 170, 820, 24

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;
max-width:1100px;padding:0 16px;color:#1d2330;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid
#e3e6eb;padding-bottom:4px}.goal{font-size:15px;margin:4px 0 10px}
.badge{display:inline-block;border-radius:10px;padding:1px 10px;color:#fff;font-weight:600}
.facts{display:flex;flex-wrap:wrap;gap:6px 22px;margin:8px 0;color:#4a5263}
.facts b{color:#1d2330}.reason{white-space:pre-wrap;background:#fbeeee;border-left:3px solid
#d6453d;padding:6px 10px;margin:8px 0}.scroll{overflow-x:auto}
svg text{font-family:system-ui,sans-serif}table{border-collapse:collapse;margin:6px 0 10px}
th,td{border-bottom:1px solid #e3e6eb;padding:3px 10px;text-align:left;vertical-align:top}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
pre{white-space:pre-wrap;word-break:break-word;background:#f5f6f8;padding:8px;margin:4px 0}
details{margin:4px 0}summary{cursor:pointer}.legend span{margin-right:14px;white-space:nowrap}
.sw{display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:4px;
vertical-align:-1px}ol.decisions li{margin:4px 0}.muted{color:#6b7383}
"""


def _e(value: object) -> str:
    """Untrusted text, escaped for HTML and SVG, control characters made visible."""
    return html.escape(visible(value), quote=True)


TIP_CHARS = 300  # of a text in a tooltip: the whole text is in the step's or decision's entry


def _short(text: str, chars: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= chars else text[: chars - 1] + "…"


def _two_lines(text: str, chars: int) -> list[str]:
    """`text` wrapped into at most two lines of `chars`, the second cut with an ellipsis."""
    lines = textwrap.wrap(" ".join(text.split()), chars) or [""]
    if len(lines) > 2:
        lines = [lines[0], _short(" ".join(lines[1:]), chars)]
    return lines


def _clock(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if t else "?"


def _money(value: float | None) -> str:
    return "unknown" if value is None else f"${value:.4f}"


def render(report: RunReport) -> str:
    """The whole HTML document."""
    colour = STATUS_COLOURS.get(report.status, "#6b7383")
    total = total_usage(report.usage) if report.usage else None
    facts = [
        ("started", _clock(report.start)),
        ("took", f"{report.end - report.start:.1f} s"),
        ("steps", str(sum(not s.replaced for s in report.steps))),
        ("plans", str(report.plan_versions)),
        ("replans", str(sum(d.action == "replan" for d in report.decisions))),
    ]
    if total:
        facts += [
            ("tokens", f"{total['input_tokens']:,} in / {total['output_tokens']:,} out"),
            ("cached in", hit_rate_text(total)),
            ("cost", _money(total["cost_usd"])),
        ]
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        "<meta name=viewport content='width=device-width,initial-scale=1'>",
        # No network, ever: the page may load nothing, run nothing (it has no script).
        "<meta http-equiv=Content-Security-Policy content=\"default-src 'none'; "
        "style-src 'unsafe-inline'; img-src data:\">",
        f"<title>planexec run {_e(report.thread_id)}</title><style>{CSS}</style></head><body>",
        f"<h1>Run <code>{_e(report.thread_id)}</code> "
        f"<span class=badge style='background:{colour}'>{_e(report.status)}</span></h1>",
        f"<p class=goal><b>Goal:</b> {_e(report.goal)}</p>",
        "<div class=facts>"
        + "".join(f"<span>{k}: <b>{_e(v)}</b></span>" for k, v in facts)
        + "</div>",
    ]
    if report.reason:
        parts.append(f"<div class=reason id=reason>{_e(report.reason)}</div>")
    parts += [
        "<h2>Plan</h2>",
        _legend(),
        f"<div class=scroll>{graph_svg(report.steps)}</div>",
        "<h2>Timeline</h2>",
        "<p class=muted>Each step's attempts, with its tool calls (dark) and the model turns "
        "between them (light); the planner, replanner and approval calls on their own rows; "
        "dashed lines mark replans.</p>",
        f"<div class=scroll>{timeline_svg(report)}</div>",
        "<h2>Decisions</h2>",
        _decisions(report),
        "<h2>Tokens and cost</h2>",
        _usage_tables(report),
        "<h2>Answer</h2>",
        f"<pre id=answer>{_e(report.response or '(no answer)')}</pre>",
        "<h2>Steps</h2>",
        *(_step_details(s) for s in report.steps),
        "</body></html>",
    ]
    return "\n".join(parts)


def _legend() -> str:
    items = [
        f"<span><i class=sw style='background:{c}'></i>{s}</span>"
        for s, c in STATUS_COLOURS.items()
    ]
    items.append("<span>⚙ tool step (one tool call, no model)</span>")
    items.append("<span>dashed: replaced by a later plan</span>")
    return f"<p class='legend muted'>{''.join(items)}</p>"


def _layers(steps: list[StepView]) -> dict[str, int]:
    """Column of each step: one right of its deepest dependency."""
    by_id = {s.id: s for s in steps}
    layer: dict[str, int] = {}

    def depth(step_id: str, seen: frozenset[str]) -> int:
        if step_id in layer:
            return layer[step_id]
        deps = [d for d in by_id[step_id].depends_on if d in by_id and d not in seen]
        value = 1 + max((depth(d, seen | {step_id}) for d in deps), default=-1)
        layer[step_id] = value
        return value

    for s in steps:
        depth(s.id, frozenset())
    return layer


def graph_svg(steps: list[StepView]) -> str:
    """The plan as a left-to-right dependency graph, every step any plan had."""
    if not steps:
        return "<p class=muted>(no plan)</p>"
    layer = _layers(steps)
    rows: dict[int, int] = {}
    pos: dict[str, tuple[float, float]] = {}
    for s in steps:
        col = layer[s.id]
        row = rows.get(col, 0)
        rows[col] = row + 1
        pos[s.id] = (10 + col * (NODE_W + GAP_X), 10 + row * (NODE_H + GAP_Y))
    width = 20 + (max(layer.values()) + 1) * (NODE_W + GAP_X) - GAP_X
    height = 20 + max(rows.values()) * (NODE_H + GAP_Y) - GAP_Y
    out = [
        f"<svg id=plan-graph xmlns='http://www.w3.org/2000/svg' width={width} height={height} "
        f"viewBox='0 0 {width} {height}' role=img aria-label='plan dependency graph'>",
        "<defs><marker id=arrow viewBox='0 0 10 10' refX=10 refY=5 markerWidth=7 "
        "markerHeight=7 orient=auto><path d='M0,0L10,5L0,10z' fill='#7d8696' /></marker></defs>",
    ]
    for s in steps:
        x2, y2 = pos[s.id]
        for d in s.depends_on:
            if d not in pos:
                continue
            x1, y1 = pos[d]
            ax, ay, bx, by = x1 + NODE_W, y1 + NODE_H / 2, x2, y2 + NODE_H / 2
            mid = (ax + bx) / 2
            dash = " stroke-dasharray='4 3'" if s.replaced else ""
            out.append(
                f"<path class=edge d='M{ax:.0f},{ay:.0f} C{mid:.0f},{ay:.0f} {mid:.0f},{by:.0f} "
                f"{bx:.0f},{by:.0f}' fill=none stroke='#9aa4b1' stroke-width=1.4{dash} "
                "marker-end='url(#arrow)' />"
            )
    for s in steps:
        out.append(_node(s, *pos[s.id]))
    out.append("</svg>")
    return "".join(out)


def _node(s: StepView, x: float, y: float) -> str:
    status = "replaced" if s.replaced and s.status in ("pending", "replaced") else s.status
    colour = STATUS_COLOURS.get(status, "#9aa4b1")
    dash = " stroke-dasharray='5 3'" if s.replaced else ""
    fill = "#f3f4f6" if s.replaced else "#fff"
    tip = f"{s.id}: {_short(s.description, TIP_CHARS)}\nstatus: {status}" + (
        f" (replaced; from plan {s.plan_version})" if s.replaced else ""
    )
    if s.tool:
        tip += f"\ntool step: {s.tool}"
    head = ("⚙ " if s.tool else "") + _short(s.id, 18)
    tag = "replaced" if s.replaced else status
    if s.tool:
        tag += f" · {_short(s.tool, 14)}"
    classes = " ".join(["node", status] + ["tool"] * bool(s.tool) + ["replaced"] * s.replaced)
    return (
        f"<g class='{_e(classes)}'"
        f" data-step='{_e(s.id)}'><title>{_e(tip)}</title>"
        f"<rect x={x:.0f} y={y:.0f} width={NODE_W} height={NODE_H} rx=7 fill='{fill}' "
        f"stroke='{colour}' stroke-width={3 if s.tool else 2}{dash} />"
        f"<rect x={x:.0f} y={y:.0f} width=6 height={NODE_H} rx=3 fill='{colour}' />"
        f"<text x={x + 14:.0f} y={y + 18:.0f} font-size=13 font-weight=600>{_e(head)}</text>"
        f"<text x={x + NODE_W - 8:.0f} y={y + 18:.0f} font-size=11 text-anchor=end "
        f"fill='{colour}'>{_e(tag)}</text>"
        + "".join(
            f"<text x={x + 14:.0f} y={y + 36 + 14 * i:.0f} font-size=11 fill='#4a5263'>"
            f"{_e(line)}</text>"
            for i, line in enumerate(_two_lines(s.description, 27))
        )
        + "</g>"
    )


def _ticks(span: float) -> float:
    """A round tick interval giving 4 to 10 ticks over `span` seconds."""
    raw = span / 6
    base = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    return next(m * base for m in (1, 2, 5, 10) if m * base >= raw)


def timeline_svg(report: RunReport) -> str:
    """A Gantt chart: planner/replanner/approval calls and every attempt of every step."""
    start, span = report.start, report.end - report.start

    def x(t: float) -> float:
        return LABEL_W + (t - start) / span * PLOT_W

    rows: list[tuple[str, str, list[str]]] = []  # (label, tooltip, shapes)
    for node in ("planner", "approval", "replanner"):
        calls = [c for c in report.calls if c.node == node]
        if not calls:
            continue
        y = _row_y(len(rows))
        shapes = [
            _bar(
                x(c.start),
                x(c.end),
                y,
                CALL_COLOURS[node],
                f"{node}: {c.end - c.start:.2f} s",
                cls=f"call {node}",
            )
            for c in calls
        ]
        rows.append((node, f"{node} calls", shapes))
    for s in report.steps:
        shapes = []
        for attempt in s.attempts:
            shapes += _attempt_shapes(s, attempt, x, _row_y(len(rows)))
        label = ("⚙ " if s.tool else "") + s.id + (" (replaced)" if s.replaced else "")
        rows.append((label, f"{s.id}: {_short(s.description, TIP_CHARS)}", shapes))
    height = 34 + len(rows) * ROW_H
    width = LABEL_W + PLOT_W + 20
    out = [
        f"<svg id=timeline xmlns='http://www.w3.org/2000/svg' width={width} height={height} "
        f"viewBox='0 0 {width} {height}' role=img aria-label='timeline of the run'>"
    ]
    step = _ticks(span)
    t = 0.0
    while t <= span + 1e-9:
        tx = x(start + t)
        out.append(
            f"<line x1={tx:.1f} y1=20 x2={tx:.1f} y2={height} stroke='#eceef2' />"
            f"<text x={tx:.1f} y=14 font-size=10 text-anchor=middle fill='#6b7383'>"
            f"{t:g} s</text>"
        )
        t += step
    for i, (label, tip, shapes) in enumerate(rows):
        out.append(
            f"<g class=row><title>{_e(tip)}</title><text x=4 y={_row_y(i) + 12} font-size=12>"
            f"{_e(_short(label, 24))}</text></g>"
        )
        out += shapes
    replans = [d for d in report.decisions if d.action == "replan"]
    for n, d in enumerate(replans, start=1):
        if start <= d.at <= report.end:
            dx = x(d.at)
            out.append(
                f"<g class=replan-mark><title>{_e(f'replan {n}: {_short(d.reason, TIP_CHARS)}')}"
                "</title>"
                f"<line x1={dx:.1f} y1=20 x2={dx:.1f} y2={height} stroke='#3f78c9' "
                f"stroke-dasharray='4 3' /><text x={dx + 3:.1f} y={height - 4} font-size=10 "
                f"fill='#3f78c9'>replan {n}</text></g>"
            )
    out.append("</svg>")
    return "".join(out)


def _row_y(row: int) -> int:
    """Top of the bars on timeline row `row`."""
    return 27 + row * ROW_H


def _bar(x1: float, x2: float, y: int, colour: str, tip: str, cls: str = "bar") -> str:
    """A rectangle on a timeline row, at least 2 px wide."""
    return (
        f"<rect class='{cls}' x={x1:.1f} y={y} width={max(x2 - x1, 2):.1f} height=18 rx=3 "
        f"fill='{colour}'><title>{_e(tip)}</title></rect>"
    )


def _attempt_shapes(s: StepView, a: Attempt, x: Callable[[float], float], y: int) -> list[str]:
    colour = STATUS_COLOURS.get(a.status, "#9aa4b1")
    tip = f"{s.id} attempt {a.number}: {a.status}, {a.end - a.start:.2f} s"
    shapes = [_bar(x(a.start), x(a.end), y, colour, tip, cls=f"step {_e(a.status)}")]
    for seg in a.segments:
        shade = "#17324d" if seg.kind == "tool" else "#ffffff"
        opacity = "0.75" if seg.kind == "tool" else "0.35"
        if seg.kind == "tool" and not seg.ok:
            shade = "#7a1510"
        shapes.append(
            f"<rect class='seg {seg.kind}' x={x(seg.start):.1f} y={y} "
            f"width={max(x(seg.end) - x(seg.start), 1.5):.1f} height=18 fill='{shade}' "
            f"fill-opacity={opacity}><title>{_e(f'{seg.label} ({seg.end - seg.start:.2f} s)')}"
            "</title></rect>"
        )
    return shapes


def _decisions(report: RunReport) -> str:
    if not report.decisions:
        return "<p class=muted>(no decisions recorded)</p>"
    items = []
    replan = 0
    for d in report.decisions:
        if d.action == "replan":
            replan += 1
        what = f"replan {replan}" if d.action == "replan" else d.action
        when = f"+{d.at - report.start:.1f} s" if d.at else ""
        steps = f" → new steps: {', '.join(d.steps)}" if d.steps else ""
        items.append(
            f"<li class='decision {_e(d.action)}'><b>{_e(what)}</b> "
            f"<span class=muted>({_e(d.by)}, {when})</span>: {_e(d.reason)}{_e(steps)}</li>"
        )
    return f"<ol class=decisions>{''.join(items)}</ol>"


def _usage_tables(report: RunReport) -> str:
    head = (
        "<tr><th>role</th><th>model</th><th class=n>calls</th><th class=n>tokens in</th>"
        "<th class=n>cached in</th><th class=n>cache hit rate</th>"
        "<th class=n>tokens out</th><th class=n>cost USD</th></tr>"
    )
    rows = []
    for role in ROLES:
        u = report.usage.get(role)
        if not u:
            continue
        model = report.models.get(role) or u.get("model", "")
        priced = f" (priced as {u['model']})" if u.get("model") and u["model"] != model else ""
        rows.append(_usage_row(role, _e(model + priced), u))
    if rows:
        rows.append(_usage_row("total", "", total_usage(report.usage)))
    per_role = (
        f"<table id=usage-roles><caption class=muted>per role (prices as of {PRICES_AS_OF}; "
        "cached in: input tokens the provider read from its prompt cache, billed at its "
        f"cached rate)</caption>{head}{''.join(rows)}</table>"
    )
    step_rows = []
    for s in report.steps:
        if not s.attempts:
            continue
        tin, tout = s.tokens
        step_rows.append(
            f"<tr><td>{_e(s.id)}</td><td class=n>{len(s.attempts)}</td>"
            f"<td class=n>{max(a.end for a in s.attempts) - min(a.start for a in s.attempts):.2f}"
            f" s</td><td class=n>{tin:,}</td><td class=n>{s.cached_input_tokens:,}</td>"
            f"<td class=n>{tout:,}</td><td class=n>{_money(s.cost_usd)}</td></tr>"
        )
    per_step = (
        "<table id=usage-steps><caption class=muted>per step (executor)</caption><tr>"
        "<th>step</th><th class=n>attempts</th><th class=n>time</th><th class=n>tokens in</th>"
        "<th class=n>cached in</th><th class=n>tokens out</th><th class=n>cost USD</th></tr>"
        f"{''.join(step_rows)}</table>"
    )
    return per_role + per_step


def _usage_row(role: str, model_html: str, u: dict[str, Any]) -> str:
    """One row of the per-role table: `role` is a fixed name, `model_html` already escaped."""
    return (
        f"<tr data-role={role}><td>{role}</td><td>{model_html}</td>"
        f"<td class=n>{u.get('calls', 0)}</td><td class=n>{u.get('input_tokens', 0):,}</td>"
        f"<td class=n>{u.get('cached_input_tokens', 0):,}</td>"
        f"<td class=n>{hit_rate_text(u)}</td><td class=n>{u.get('output_tokens', 0):,}</td>"
        f"<td class=n>{_money(u.get('cost_usd'))}</td></tr>"
    )


def _step_details(s: StepView) -> str:
    body = [f"<p>{_e(s.description)}</p>"]
    if s.surprise:
        body.append(f"<p><b>surprise:</b> {_e(s.surprise)}</p>")
    if s.error:
        body.append(f"<p><b>error:</b></p><pre>{_e(s.error)}</pre>")
    if s.result:
        body.append(f"<pre class=result>{_e(s.result)}</pre>")
    for a in s.attempts:
        tools = [seg for seg in a.segments if seg.kind == "tool"]
        if tools:
            body.append(
                f"<p class=muted>attempt {a.number} tool calls:</p><ul>"
                + "".join(f"<li>{_e(seg.label)}</li>" for seg in tools)
                + "</ul>"
            )
    state = "replaced" if s.replaced else s.status
    return (
        f"<details id='step-{_e(s.id)}'><summary><b>{_e(s.id)}</b> — {_e(state)}"
        f"{' · tool ' + _e(s.tool) if s.tool else ''}</summary>{''.join(body)}</details>"
    )
