"""Build tool instances by name, each bound to one ToolSettings."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from langchain_core.tools import BaseTool

from tools.calculator import make_calculator_tools
from tools.files import make_file_tools
from tools.http import make_http_tools
from tools.settings import ToolSettings
from tools.sql import make_sql_tools

Factory = Callable[[ToolSettings], list[BaseTool]]

# tool name -> the factory of its family (one factory can build several tools).
_FACTORIES: dict[str, Factory] = {
    "calculator": make_calculator_tools,
    "read_file": make_file_tools,
    "write_file": make_file_tools,
    "list_files": make_file_tools,
    "sql_query": make_sql_tools,
    "http_get": make_http_tools,
    "http_request": make_http_tools,
}

TOOL_NAMES: tuple[str, ...] = tuple(_FACTORIES)
# http_request changes things on remote services: a run gets it only when its context names it,
# so an operator opts in to side effects rather than every plan being offered them.
DEFAULT_TOOLS: tuple[str, ...] = tuple(name for name in TOOL_NAMES if name != "http_request")


def build_tools(names: Sequence[str], settings: ToolSettings) -> list[BaseTool]:
    """Fresh tools for `names`, in that order (duplicates once); ValueError on an unknown name.

    A name is a registry tool, `mcp:SERVER[/TOOL]` (tools/mcp.py) or an import path
    `package.module:attribute` (tools/imported.py)."""
    if isinstance(names, str):  # a bare "calculator" would otherwise iterate per letter
        names = [names]
    wanted = list(dict.fromkeys(names))
    external = {name: external_tools(name) for name in wanted if name not in _FACTORIES}
    built: dict[str, BaseTool] = {}
    # Call each family factory once, so e.g. read_file and write_file share one setup.
    for factory in dict.fromkeys(_FACTORIES[name] for name in wanted if name in _FACTORIES):
        built.update((tool.name, tool) for tool in factory(settings))
    return _unique(
        [t for name in wanted for t in (external[name] if name in external else [built[name]])]
    )


def tool_names(names: Sequence[str]) -> list[str]:
    """The names of the tools `names` stand for, checked without building registry tools;
    ValueError with every entry that cannot be used and why."""
    problems, resolved = [], []
    for name in dict.fromkeys([names] if isinstance(names, str) else names):
        try:
            resolved += [name] if name in _FACTORIES else [t.name for t in external_tools(name)]
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        raise ValueError("; ".join(problems))
    return list(dict.fromkeys(resolved))


def external_tools(name: str) -> list[BaseTool]:
    """The tools an MCP or import-path entry stands for; ValueError for anything else."""
    from tools.imported import imported_tools, is_import_path
    from tools.mcp import is_mcp_entry, mcp_tools

    if is_mcp_entry(name):
        tools, how = mcp_tools(name), "name the server otherwise (its tools are SERVER_TOOL)"
    elif is_import_path(name):
        tools, how = imported_tools(name), "give the tool another name"
    else:
        raise ValueError(
            f"unknown tool {name!r}; available tools: {', '.join(TOOL_NAMES)}, "
            "'mcp:SERVER' for an MCP server's tools, or 'package.module:attribute' for your own"
        )
    # A name is what plans, allow-lists and reports go by: one that reads as a built-in tool
    # (http_get, with its network guard) must not be another tool, in the run or not.
    if clash := sorted(t.name for t in tools if t.name in _FACTORIES):
        raise ValueError(
            f"{name!r} gives a tool named {clash[0]!r}, the name of a built-in tool; {how}"
        )
    return tools


def _unique(tools: list[BaseTool]) -> list[BaseTool]:
    """Tools with distinct names; ValueError when two different tools share one."""
    seen: dict[str, BaseTool] = {}
    for t in tools:
        if t.name in seen and seen[t.name] is not t:
            raise ValueError(f"two tools are named {t.name!r}; leave one out of the tools setting")
        seen[t.name] = t
    return list(seen.values())
