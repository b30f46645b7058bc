"""`planexec report` opened in real headless Chromium (Debian's /usr/bin/chromium, over CDP).

The report of a demo run must render: the plan graph and the timeline present with non-zero
sizes, one node per step of every plan (the two the replan replaced marked so), a bar per step,
the planner and replanner calls, the replan marker, and no console error. A screenshot is kept as
a test artifact: in $PLANEXEC_TEST_ARTIFACTS if set, else in the test's tmp folder.
"""

from __future__ import annotations

import json
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from app.runs.demo import prepare_workspace
from tests import browser
from tests.helpers import instant_demo, run_cli

pytestmark = pytest.mark.integration

MEASURE = """(() => {
  const size = (el) => { const r = el.getBoundingClientRect(); return [r.width, r.height]; };
  const all = (sel) => [...document.querySelectorAll(sel)];
  const one = (sel) => document.querySelector(sel);
  return {
    graph: one('#plan-graph') && size(one('#plan-graph')),
    timeline: one('#timeline') && size(one('#timeline')),
    nodes: all('#plan-graph g.node').map(g => ({
      step: g.dataset.step, cls: g.getAttribute('class'), size: size(g)})),
    edges: all('#plan-graph path.edge').length,
    bars: all('#timeline rect.step').map(size),
    calls: all('#timeline rect.call').map(r => r.getAttribute('class')),
    replans: all('#timeline .replan-mark').length,
    step_costs: all('#usage-steps tr td:last-child').map(td => td.textContent),
    role_heads: all('#usage-roles th').map(th => th.textContent),
    role_rows: all('#usage-roles tr[data-role]').map(tr => [...tr.cells].map(c => c.textContent)),
    scripts: document.scripts.length,
    images: document.images.length,
    pwned: window.pwned || 0,
    text: document.body.innerText,
    all_text: document.body.textContent,
  };
})()"""


def artifact_dir(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("PLANEXEC_TEST_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def chromium_present() -> None:
    if not Path(browser.CHROMIUM).exists():
        pytest.fail(
            f"{browser.CHROMIUM} is missing: `apt-get install -y chromium` (.ci/run does it)",
            pytrace=False,
        )


def report_of_run(tmp_path: Path, *run_args: str) -> Path:
    db = str(tmp_path / "runs.sqlite")
    run = run_cli("run", "g", *run_args, "--db", db, "--thread", "r", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    out = tmp_path / "report.html"
    report = run_cli("report", "r", "--db", db, "-o", str(out), cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    return out


def test_demo_report_renders_in_chromium(tmp_path: Path, chromium_present: None) -> None:
    shop = prepare_workspace(tmp_path / "ws")
    page = report_of_run(
        tmp_path,
        "--scenario",
        str(instant_demo(tmp_path)),
        "--workspace",
        str(tmp_path / "ws"),
        "--sql-database",
        str(shop),
    )
    html = page.read_text(encoding="utf-8")
    outside = html.replace("http://www.w3.org/2000/svg", "")  # a namespace name, not a fetch
    assert "http://" not in outside and "https://" not in outside

    loaded = browser.load(page.as_uri(), MEASURE)
    (artifact_dir(tmp_path) / "demo-report.png").write_bytes(loaded.screenshot)
    assert loaded.errors == []
    m = loaded.measured
    assert m["graph"][0] > 300 and m["graph"][1] > 100
    assert m["timeline"][0] > 300 and m["timeline"][1] > 100
    # The demo plans s1-s4, the replan replaces s3 and s4 with s5-s9.
    steps = {n["step"]: n for n in m["nodes"]}
    assert set(steps) == {f"s{i}" for i in range(1, 10)}
    assert all(n["size"][0] > 50 and n["size"][1] > 20 for n in m["nodes"])
    assert {s for s, n in steps.items() if "replaced" in n["cls"]} == {"s3", "s4"}
    assert all("done" in steps[f"s{i}"]["cls"] for i in (1, 2, 5, 6, 7, 8, 9))
    assert m["edges"] >= 8
    assert len(m["bars"]) == 7 and all(w > 0 and h > 0 for w, h in m["bars"])
    assert sorted(m["calls"]) == ["call planner", "call replanner", "call replanner"]
    assert m["replans"] == 1
    assert len(m["step_costs"]) == 7 and all(c.startswith("$0.0") for c in m["step_costs"])
    # Cached input tokens and the hit rate per role: the demo's prompts are all under OpenAI's
    # 1,024-token minimum, so none are cached (docs/performance.md#prompt-caching).
    assert m["role_heads"][3:6] == ["tokens in", "cached in", "cache hit rate"]
    rows = {cells[0]: cells for cells in m["role_rows"]}
    assert list(rows) == ["planner", "executor", "replanner", "total"]
    assert all(cells[4:6] == ["0", "0%"] for cells in rows.values())
    assert "order_date is probably not ISO text" in m["text"]  # the replan's reason
    assert re.search(r"cost: \$0\.0\d{3}", m["text"])  # the run's cost, priced


def test_script_and_svg_tags_in_model_text_are_inert(
    tmp_path: Path, chromium_present: None
) -> None:
    attack = "<script>window.pwned=1</script></svg><img src=x onerror='window.pwned=2'>"
    scenario = {
        "name": "attack",
        "goal": attack,
        "tools": [],
        "planner": {"steps": [{"id": "a", "description": attack, "depends_on": []}]},
        "executor": {"a": [{"content": attack}]},
        "replanner": [{"action": "finish", "reason": attack, "response": attack}],
    }
    path = tmp_path / "attack.json"
    path.write_text(json.dumps(scenario), encoding="utf-8")
    page = report_of_run(tmp_path, "--scenario", str(path))

    loaded = browser.load(page.as_uri(), MEASURE)
    (artifact_dir(tmp_path) / "attack-report.png").write_bytes(loaded.screenshot)
    m = loaded.measured
    assert m["scripts"] == 0 and m["images"] == 0 and m["pwned"] == 0
    # The answer, the step's description and result, the replan reason: shown as text.
    assert m["all_text"].count(attack) >= 4
    assert m["graph"][0] > 0 and m["timeline"][0] > 0  # the </svg> did not end the drawings
    assert loaded.errors == []


def test_the_page_policy_blocks_scripts_and_fetches_even_if_escaping_failed(
    tmp_path: Path, chromium_present: None
) -> None:
    """The second line of defence: the report's Content-Security-Policy. Markup spliced into a
    real report, as if an escape had been missed, must neither run nor reach the network (a
    recording server on 127.0.0.1 stands for the attacker's)."""
    requests: list[str] = []

    class Record(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - name fixed by http.server
            requests.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    collector = ThreadingHTTPServer(("127.0.0.1", 0), Record)
    threading.Thread(target=collector.serve_forever, args=(0.05,), daemon=True).start()
    base = f"http://127.0.0.1:{collector.server_address[1]}"
    try:
        page = report_of_run(tmp_path, "--scenario", str(instant_demo(tmp_path)))
        spliced = (
            f"<img src='{base}/img'><link rel=stylesheet href='{base}/css'>"
            f"<script src='{base}/js'></script><script>window.pwned=1</script>"
            f"<iframe src='{base}/frame'></iframe><object data='{base}/object'></object>"
        )
        html = page.read_text(encoding="utf-8")
        assert html.count("<body>") == 1
        page.write_text(html.replace("<body>", "<body>" + spliced), encoding="utf-8")
        loaded = browser.load(page.as_uri(), "({pwned: window.pwned || 0})")
    finally:
        collector.shutdown()
        collector.server_close()
    assert requests == []
    assert loaded.measured == {"pwned": 0}


def test_the_report_stays_small_whatever_the_texts_it_shows(tmp_path: Path) -> None:
    """A 1 MB reason (the run's, and its decision's: shown in the summary, the decisions and a
    tooltip) and 15,000-character descriptions (six places each) made a 2.2 MB report."""
    scenario = {
        "name": "huge",
        "goal": "g",
        "tools": [],
        "planner": {"steps": [{"id": "a", "description": "d" * 15_000}]},
        "executor": {},
        "replanner": [],
    }
    path = tmp_path / "huge.json"
    path.write_text(json.dumps(scenario), encoding="utf-8")
    db = str(tmp_path / "runs.sqlite")
    args = ("run", "g", "--scenario", str(path), "--approve", "--db", db, "--thread", "r")
    assert run_cli(*args, cwd=tmp_path).returncode == 5  # paused
    reject = run_cli("approve", "r", "--reject", "R" * 100_000, "--db", db, cwd=tmp_path)
    assert reject.returncode == 1, reject.stderr  # rejected
    out = tmp_path / "report.html"
    assert run_cli("report", "r", "--db", db, "-o", str(out), cwd=tmp_path).returncode == 0
    page = out.read_text(encoding="utf-8")
    assert len(page) < 60_000, len(page)
    # The run's reason ("plan rejected: R…") and its decision's ("R…"), each cut once.
    assert len(re.findall(r"R … \[cut: 100,0\d\d characters in all\]", page)) == 2
    assert "[cut: 15,000 characters in all]" in page
