"""The deployment files: langgraph.json, the Dockerfile `langgraph dockerfile` makes from it, what
.dockerignore keeps out of the image, and .env.example listing every setting."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pathspec
import pytest
from dotenv.main import DotEnv
from langgraph_cli.config import validate_config_file

from app.context import Context
from tests.helpers import REPO, clean_env

pytestmark = pytest.mark.integration


def test_langgraph_json_is_a_valid_deployable_config() -> None:
    raw = json.loads((REPO / "langgraph.json").read_text(encoding="utf-8"))
    assert raw["$schema"] == "https://langgra.ph/schema.json"
    assert raw["env"] == ".env"
    config = validate_config_file(REPO / "langgraph.json")  # the CLI's own checks
    assert config["python_version"] == "3.11"
    assert config["graphs"] == {"planexec": "./graphs/plan_execute.py:graph"}


def test_a_missing_env_file_is_no_error() -> None:
    """CI has no .env: `langgraph dev` reads the file with python-dotenv, which gives nothing for a
    missing one (the session's server, started from this repository, shows the rest)."""
    assert DotEnv(dotenv_path=REPO / "no-such-dir" / ".env").dict() == {}


def test_langgraph_dockerfile_installs_the_package_and_serves_the_graph(tmp_path: Path) -> None:
    out = tmp_path / "Dockerfile"
    proc = subprocess.run(
        [sys.executable, "-m", "langgraph_cli", "dockerfile", "-c", "langgraph.json", str(out)],
        cwd=REPO,
        env={**clean_env(), "LANGGRAPH_CLI_NO_ANALYTICS": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    dockerfile = out.read_text(encoding="utf-8")
    assert dockerfile.startswith("FROM langchain/langgraph-api:3.11")
    [added] = re.findall(r"^ADD \. (/deps/\S+)$", dockerfile, re.MULTILINE)
    assert "uv pip install --system --no-cache-dir -c /api/constraints.txt -e ." in dockerfile
    graphs = json.loads(re.search(r"^ENV LANGSERVE_GRAPHS='(.+)'$", dockerfile, re.M).group(1))
    assert graphs == {"planexec": f"{added}/graphs/plan_execute.py:graph"}
    # Settings come from the server's environment at run time, never baked into the image.
    assert "OPENAI" not in dockerfile and "PLANEXEC_" not in dockerfile


def build_context(paths: list[str]) -> set[str]:
    """Which of `paths` (relative, files) a build of the repository would copy."""
    lines = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    spec = pathspec.PathSpec.from_lines("gitignore", lines)
    return {p for p in paths if not spec.match_file(p)}


def test_dockerignore_keeps_secrets_and_local_state_out_and_the_package_in() -> None:
    left_out = [
        ".env",
        ".env.production",
        ".venv/bin/python",
        ".git/HEAD",
        ".planexec/planexec.sqlite",
        ".planexec/workspace/report.md",
        ".langgraph_api/.langgraph_checkpoint.1.pckl",
        "runs.sqlite",
        "runs.sqlite-wal",
        "data/nested/state.db",
        "app/__pycache__/context.cpython-311.pyc",
        "certs/server.key",
        "tests/unit/test_context.py",
        "planexec.egg-info/PKG-INFO",
    ]
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    needed = [
        p
        for p in tracked
        if p.split("/")[0] in ("app", "graphs", "tools", "prompts")
        or p in ("pyproject.toml", "README.md", "langgraph.json", ".env.example")
    ]
    assert "app/runs/demo_data/shop.sql" in needed and "prompts/planner.txt" in needed

    assert build_context(left_out) == set()
    assert build_context(needed) == set(needed)


def test_env_example_lists_every_setting() -> None:
    example = (REPO / ".env.example").read_text(encoding="utf-8")
    listed = set(re.findall(r"^# ?([A-Z][A-Z0-9_]+)=", example, re.MULTILINE))
    fields = {f"PLANEXEC_{f.name.upper()}" for f in dataclasses.fields(Context)}
    read_in_code = {
        name
        for folder in ("app", "graphs", "tools")
        for path in (REPO / folder).rglob("*.py")
        for name in re.findall(r"PLANEXEC_[A-Z][A-Z0-9_]*[A-Z0-9]", path.read_text("utf-8"))
    }
    assert fields - listed == set(), "Context fields missing from .env.example"
    assert read_in_code - listed == set(), "settings read in code missing from .env.example"
    assert {"OPENAI_API_KEY", "OPENAI_BASE_URL"} <= listed
