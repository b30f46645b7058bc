from pathlib import Path

import pytest
from langchain_core.tools import BaseTool

import tools
from tools import DEFAULT_TOOLS, TOOL_NAMES, ToolSettings, build_tools

ALL = ("calculator", "read_file", "write_file", "list_files", "sql_query", "http_get")


@pytest.fixture
def settings(tmp_path: Path) -> ToolSettings:
    return ToolSettings(workspace=tmp_path / "ws")


def test_public_api() -> None:
    assert set(tools.__all__) == {
        "build_tools",
        "tool_names",
        "TOOL_NAMES",
        "DEFAULT_TOOLS",
        "ToolSettings",
    }
    assert TOOL_NAMES == ALL
    assert tuple(DEFAULT_TOOLS) == ALL


def test_builds_every_tool_in_requested_order(settings: ToolSettings) -> None:
    names = ["http_get", "calculator", "list_files", "sql_query", "write_file", "read_file"]
    built = build_tools(names, settings)
    assert [t.name for t in built] == names
    assert all(isinstance(t, BaseTool) for t in built)
    assert all(t.description for t in built)


def test_default_tools_build(settings: ToolSettings) -> None:
    assert [t.name for t in build_tools(DEFAULT_TOOLS, settings)] == list(ALL)


def test_duplicates_built_once(settings: ToolSettings) -> None:
    built = build_tools(["calculator", "read_file", "calculator"], settings)
    assert [t.name for t in built] == ["calculator", "read_file"]


def test_unknown_name_raises(settings: ToolSettings) -> None:
    with pytest.raises(ValueError) as info:
        build_tools(["calculator", "foo"], settings)
    assert str(info.value).startswith(
        "unknown tool 'foo'; available tools: calculator, read_file, write_file, "
        "list_files, sql_query, http_get, 'mcp:SERVER'"
    )


def test_tools_are_fresh_and_bound_to_settings(tmp_path: Path) -> None:
    first = build_tools(["write_file"], ToolSettings(workspace=tmp_path / "a"))[0]
    second = build_tools(["write_file"], ToolSettings(workspace=tmp_path / "b"))[0]
    assert first is not second
    first.invoke({"path": "x.txt", "content": "A"})
    second.invoke({"path": "x.txt", "content": "B"})
    assert (tmp_path / "a" / "x.txt").read_text() == "A"
    assert (tmp_path / "b" / "x.txt").read_text() == "B"


def test_tools_propagate_errors(settings: ToolSettings) -> None:
    # The executor relies on exceptions, not error strings, to mark a step failed.
    assert all(t.handle_tool_error is False for t in build_tools(DEFAULT_TOOLS, settings))
