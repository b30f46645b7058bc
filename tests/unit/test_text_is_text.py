"""Text from a model, tool, user or file is shown as given, wherever the CLI prints it.

Random text made of markup-like brackets, ANSI/OSC escapes, control characters and ordinary
characters goes through the live view, the piped lines, `show`, `runs`, the error printers and
the HTML report. Nothing may crash, and the text must appear as given, with control characters
written as visible escapes (ESC -> `\\x1b`, U+202E -> `\\u202e`: `app.cli.view.visible`) and, in
one-line table cells, whitespace runs collapsed to one space.
"""

from __future__ import annotations

import io
import re
from html.parser import HTMLParser

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from app.cli import commands
from app.cli.report_data import Attempt, Decision, RunReport, Segment, StepView
from app.cli.report_html import render
from app.cli.view import (
    LiveView,
    PlainView,
    one_line,
    print_outcome,
    run_header,
    runs_table,
    steps_table,
    visible,
)

HOSTILE = [
    "[/x]", "[bold]", "[/]", "[link=https://evil.example/]", "[red]", "[/data]", "[", "]", "\\",
    "\x1b[31m", "\x1b]8;;https://evil.example\x1b\\", "\x1b[2J", "\r", "\x07", "\x00", "\x7f",
    "\x9b", "\u202e", ":smile:", "<script>alert(1)</script>", "</svg>", "&amp;", "é", "中", " ",
    "\n", "\t", "step",
]  # fmt: skip
_BOX = re.compile("[\u2500-\u257f]")  # table and panel borders
# Ordinary characters too, but not box drawing (the borders are stripped before comparing).
ordinary = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",)).filter(lambda c: not _BOX.match(c)),
    max_size=6,
)
texts = (
    st.lists(st.sampled_from(HOSTILE) | ordinary, min_size=1, max_size=10)
    .map("".join)
    .map(lambda t: f"⟦{t}⟧")  # delimited, so counting where it appears counts only it
)
# No example database: it would be a .hypothesis folder in the repository.
fast = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def printed(renderable: object, width: int = 4000) -> str:
    """What a console shows for `renderable`, borders stripped, whitespace runs collapsed."""
    console = Console(record=True, width=width, file=io.StringIO(), color_system="truecolor")
    console.print(renderable)
    return " ".join(_BOX.sub(" ", console.export_text()).split())


def expected(text: str) -> str:
    return " ".join(visible(text).split())


def assert_shown(text: str, output: str) -> None:
    assert expected(text) in output
    assert "\x1b" not in output and "\r" not in output


@fast
@given(texts)
def test_live_view_shows_any_text_as_given(text: str) -> None:
    view = LiveView(Console(width=4000, height=200, file=io.StringIO()))
    view.handle({"event": "plan", "steps": [{"id": text, "description": text, "depends_on": []}]})
    view.handle({"event": "step_started", "step_id": text})
    view.handle({"event": "step_finished", "step_id": text, "status": "done", "result": text})
    view.handle({"event": "replanned", "replans": 1, "reason": text, "steps": []})
    output = printed(view._render(), width=4000)
    assert output.count(expected(text)) >= 3  # the id, the description, the result
    assert_shown(f"replan 1: {text}", output)
    # And at 80x24 it still renders, within the screen.
    small = LiveView(Console(width=80, height=24, file=io.StringIO()))
    for event in view_events(text):
        small.handle(event)
    assert len(_lines(small._render(), 80)) <= 24


def view_events(text: str) -> list[dict]:
    return [
        {"event": "plan", "steps": [{"id": "a", "description": text, "depends_on": [text]}]},
        {"event": "step_started", "step_id": "a"},
        {"event": "step_finished", "step_id": "a", "status": "failed", "error": text},
        {"event": "reviewed", "reason": text},
    ]


def _lines(renderable: object, width: int) -> list[str]:
    console = Console(record=True, width=width, file=io.StringIO())
    console.print(renderable)
    return console.export_text().splitlines()


@fast
@given(texts)
def test_piped_lines_show_any_text_as_given(text: str) -> None:
    out = io.StringIO()
    view = PlainView(out)
    view.handle({"event": "step_started", "step_id": "a", "description": text})
    view.handle({"event": "step_finished", "step_id": "a", "status": "done", "surprise": text})
    view.handle({"event": "finished", "status": "failed", "reason": text})
    lines = out.getvalue().splitlines()
    assert len(lines) == 3  # one line per event, whatever newlines the text holds
    assert all(expected(text) in line for line in lines), lines
    assert "[surprise]" in lines[1]
    assert not set("\x1b\r\x00") & set(out.getvalue())


@fast
@given(texts)
def test_show_and_runs_show_any_text_as_given(text: str) -> None:
    state = {
        "goal": text,
        "status": "failed",
        "reason": text,
        "response": text,
        "plan": [{"id": "a", "description": text, "depends_on": [], "attempt": 1}],
        "results": {"a": {"status": "failed", "error": text, "attempts": 1}},
        "usage": {"planner": {"calls": 1, "input_tokens": 1, "output_tokens": 1,
                              "cost_usd": None, "model": text}},
        "context": {"planner_model": text},
    }  # fmt: skip
    assert_shown(text, printed(run_header(text, goal=text)))
    assert printed(steps_table(state)).count(expected(text)) >= 2  # description, error
    console = Console(record=True, width=4000, file=io.StringIO())
    print_outcome(console, state)
    outcome = " ".join(_BOX.sub(" ", console.export_text()).split())
    assert outcome.count(expected(text)) >= 3  # reason, answer, model
    row = {"thread_id": text, "status": "done", "steps": "1/1", "replans": 0, "goal": text}
    assert printed(runs_table([row])).count(expected(text)) >= 2


@fast
@given(text=texts)
def test_error_printers_show_any_text_as_given(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    console = Console(record=True, width=4000, file=io.StringIO())
    monkeypatch.setattr(commands, "err_console", console)

    def fails() -> int:
        raise ValueError(text)

    assert commands._guarded(fails) == commands.EXIT_CONFIG

    def crashes(on_event: object) -> dict:
        raise RuntimeError(text)

    # The fallback printer for an unexpected error during a run.
    assert commands._drive(None, text, True, crashes) == commands.EXIT_FAILED  # type: ignore[arg-type]
    output = " ".join(console.export_text().split())
    assert output.count(expected(text)) >= 2
    assert "error:" in output and "unexpected error" in output


class _Parsed(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append(tag)

    def handle_endtag(self, tag: str) -> None:
        self.tags.append("/" + tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def strip_svg_text(tags: list[str]) -> list[str]:
    return [t for t in tags if t not in ("text", "/text")]


def report_of(text: str) -> RunReport:
    attempt = Attempt(1, "done", 10.0, 12.0, [Segment("tool", 10.5, 11.0, text)], {})
    steps = [
        StepView(text, text, [], "done", result=text, surprise=text, attempts=[attempt]),
        StepView("b", text, [text], "failed", error=text, tool=text),
        StepView("c", text, [], "replaced", replaced=True),
    ]
    return RunReport(
        thread_id=text, goal=text, status="failed", reason=text, response=text,
        start=9.0, end=13.0, steps=steps, calls=[],
        decisions=[Decision("replan", text, 11.0, steps=[text])],
        usage={}, models={}, plan_versions=2,
    )  # fmt: skip


@fast
@given(texts)
def test_report_html_keeps_any_text_inert(text: str) -> None:
    page, plain_page = _Parsed(), _Parsed()
    page.feed(render(report_of(text)))
    plain_page.feed(render(report_of("plain")))
    # The document's structure does not depend on the text: no tag comes from it (only the
    # number of SVG text lines a description wraps to does).
    assert strip_svg_text(page.tags) == strip_svg_text(plain_page.tags)
    assert "script" not in page.tags
    data = "".join(page.text)
    assert visible(text) in data or one_line(text) in " ".join(data.split())


def test_script_and_svg_end_tags_in_a_result_are_shown_not_obeyed() -> None:
    text = "<script>alert(1)</script></svg><img src=x onerror=alert(2)>"
    page = render(report_of(text))
    assert "<script>" not in page and "</svg><img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;/svg&gt;" in page


def test_every_terminal_control_is_made_visible_literally() -> None:
    """The properties above compare with `visible()` itself, so they cannot see it miss a
    character class; this names each class and its expected escape. C1 controls include CSI
    (U+009B, a one-character ESC [ on many terminals); bidi overrides and isolates reorder a
    line so a filename or a command reads differently from what it is."""
    cases = {
        "\x00": "\\x00",
        "\x07": "\\x07",  # BEL
        "\x08": "\\x08",  # backspace: overwrites what was printed
        "\x0b": "\\x0b",
        "\x0c": "\\x0c",
        "\r": "\\x0d",
        "\x1b": "\\x1b",
        "\x7f": "\\x7f",
        "\x80": "\\x80",
        "\x90": "\\x90",  # DCS
        "\x9b": "\\x9b",  # CSI
        "\x9d": "\\x9d",  # OSC
        "\x9f": "\\x9f",
        "\u202a": "\\u202a",
        "\u202b": "\\u202b",
        "\u202c": "\\u202c",
        "\u202d": "\\u202d",
        "\u202e": "\\u202e",  # right-to-left override
        "\u2066": "\\u2066",
        "\u2067": "\\u2067",
        "\u2068": "\\u2068",
        "\u2069": "\\u2069",
        "\u200e": "\\u200e",  # bidi marks: Trojan Source's table lists them beside overrides
        "\u200f": "\\u200f",
        "\u061c": "\\u061c",
        "\u200b": "\\u200b",  # invisible: hides text, and shifts a table's borders
        "\u2060": "\\u2060",
        "\ufeff": "\\ufeff",
    }
    for char, escape in cases.items():
        assert visible(f"a{char}b") == f"a{escape}b", repr(char)
    # Tab, newline and ordinary text (accents, CJK, the arrow U+2192, Persian with its
    # zero-width non-joiner, an emoji sequence with its joiner) are left as they are.
    ordinary = "a\tb\nc é 中 → می\u200cخواهم 👩\u200d💻"
    assert visible(ordinary) == ordinary


def _attributes(page: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    found: list[tuple[str, list[tuple[str, str | None]]]] = []

    class Collect(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list) -> None:
            found.append((tag, attrs))

    Collect(convert_charrefs=True).feed(page)
    return found


def test_quotes_in_model_text_cannot_add_attributes_to_the_report() -> None:
    """Step ids and statuses go into single-quoted attributes (data-step='…', id='step-…'):
    a quote in them must stay inside the value, never open a new attribute."""
    attack = "a' onmouseover='window.pwned=1' x=\"y"
    page = _attributes(render(report_of(attack)))
    baseline = _attributes(render(report_of("plain")))

    def shape(elements: list) -> list:  # SVG text lines vary with how a description wraps
        return [(t, [n for n, _ in a]) for t, a in elements if t != "text"]

    assert shape(page) == shape(baseline)
    assert not any(n.startswith("on") for _, attrs in page for n, _ in attrs)
    steps = [dict(a)["data-step"] for t, a in page if t == "g" and "data-step" in dict(a)]
    assert steps[0] == attack  # the value, whole
    assert ("details", [("id", f"step-{attack}")]) in page


@pytest.mark.parametrize(
    ("thread_id", "name"),
    [("../../etc/x", "_.._etc_x.html"), (".hidden", "hidden.html"), ("...", "run.html"),
     ("a/b c", "a_b_c.html"), ("r" * 300, "r" * 100 + ".html")],
)  # fmt: skip
def test_the_default_report_file_stays_in_the_current_folder(thread_id: str, name: str) -> None:
    """A thread id may hold '/', '..' or a leading dot: the report's default file name keeps
    only safe characters, is never hidden or a parent path, and is capped in length."""
    from app.cli.report import default_report_path

    assert str(default_report_path(thread_id)) == name


def test_a_line_cut_to_its_limit_says_so() -> None:
    """A plain-output reason cut at its limit ended "ask for 12" where it said 120."""
    assert one_line("ask for 120", 10) == "ask for 1…"
    assert one_line("ask for 120", 11) == "ask for 120"
    assert one_line("a\n\tb", 5) == "a b"
