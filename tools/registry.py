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
    """Fresh tools for `names`, in that order (duplicates once); ValueError on an unknown name."""
    if isinstance(names, str):  # a bare "calculator" would otherwise iterate per letter
        names = [names]
    for name in names:
        if name not in _FACTORIES:
            raise ValueError(f"unknown tool '{name}'; available tools: {', '.join(TOOL_NAMES)}")
    wanted = list(dict.fromkeys(names))
    built: dict[str, BaseTool] = {}
    # Call each family factory once, so e.g. read_file and write_file share one setup.
    for factory in dict.fromkeys(_FACTORIES[name] for name in wanted):
        built.update((tool.name, tool) for tool in factory(settings))
    return [built[name] for name in wanted]
