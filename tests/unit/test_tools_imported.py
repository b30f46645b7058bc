"""Own LangChain tools named by import path in the tools setting (tools/imported.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools import ToolSettings, build_tools, tool_names


def test_an_import_path_offers_the_tool_under_its_own_name(tmp_path: Path) -> None:
    built = build_tools(["calculator", "tests.custom_tools:shout"], ToolSettings(tmp_path))
    assert [t.name for t in built] == ["calculator", "shout"]
    assert built[1].invoke({"text": "hi"}) == "HI"


def test_a_list_of_tools_offers_each(tmp_path: Path) -> None:
    assert tool_names(["tests.custom_tools:VOICES"]) == ["shout", "whisper"]


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("tests.no_such_module:x", "cannot import 'tests.no_such_module': ModuleNotFoundError"),
        ("tests.custom_tools:missing", "module 'tests.custom_tools' has no 'missing'"),
        ("tests.custom_tools:NOT_A_TOOL", "is a str, not a LangChain tool"),
        ("tests.custom_tools:plain_function", "is a function, not a LangChain tool"),
        ("tests.custom_tools:MIXED", "is a list, not a LangChain tool"),
        ("os.system", "unknown tool 'os.system'"),
        ("os:system; rm", "is not an import path"),
    ],
)
def test_unusable_entries_are_refused_with_the_reason(entry: str, reason: str) -> None:
    with pytest.raises(ValueError) as info:
        tool_names(["calculator", entry])
    assert reason in str(info.value)


def test_every_unusable_entry_is_named_at_once() -> None:
    with pytest.raises(ValueError) as info:
        tool_names(["nope", "tests.custom_tools:missing"])
    assert "'nope'" in str(info.value) and "'missing'" in str(info.value)


def test_two_tools_with_one_name_are_refused(tmp_path: Path) -> None:
    entries = ["tests.custom_tools:shout", "tests.custom_tools:shout_again"]
    with pytest.raises(ValueError, match="two tools are named 'shout'"):
        build_tools(entries, ToolSettings(tmp_path))


def test_a_tool_named_like_a_built_in_is_refused_even_without_it(tmp_path: Path) -> None:
    """Plans, allow-lists and reports go by name: a 'calculator' that is not the calculator is
    refused whether or not the built-in is in the run."""
    for entries in (
        ["tests.custom_tools:another_calculator"],
        ["calculator", "tests.custom_tools:another_calculator"],
    ):
        with pytest.raises(ValueError, match="'calculator', the name of a built-in tool; give"):
            build_tools(entries, ToolSettings(tmp_path))


@pytest.mark.parametrize("entry", ["uvicorn.__main__:main", "tests._private:x", "os._exit:x"])
def test_main_and_private_modules_are_never_imported(entry: str) -> None:
    with pytest.raises(ValueError, match="private and __main__ modules are not imported"):
        tool_names([entry])


def test_a_deployment_can_confine_imports_to_its_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANEXEC_TOOL_PACKAGES", "mypkg, tests.custom_tools")
    assert tool_names(["tests.custom_tools:shout"]) == ["shout"]
    with pytest.raises(ValueError, match="outside the packages this deployment allows"):
        tool_names(["tests.custom_toolsX:shout"])
    with pytest.raises(ValueError, match="outside the packages this deployment allows"):
        tool_names(["json:loads"])
