"""`planexec report ID` and `planexec show ID --html`: write a run's HTML report to a file.

The data comes from report_data.py, the page from report_html.py; this module only names and
writes the file.
"""

from __future__ import annotations

import re
from pathlib import Path

from app.cli.report_data import gather
from app.cli.report_html import render
from app.runs.persistence import Persistence


def default_report_path(thread_id: str) -> Path:
    """`<thread id>.html` in the current folder, the id reduced to safe file-name characters
    (a thread id may hold '/', '..' or anything else)."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", thread_id).lstrip(".") or "run"
    return Path(f"{name[:100]}.html")


def write_report(persistence: Persistence, thread_id: str, out: Path | None = None) -> Path:
    """Write run `thread_id`'s report to `out` (default: default_report_path) and return it."""
    path = out or default_report_path(thread_id)
    html = render(gather(persistence, thread_id))
    try:
        path.write_text(html, encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot write the report to {str(path)!r}: {exc}") from exc
    return path
