"""LangChain tools for the planexec executor, plus the registry that builds them.

The names below are loaded on first use (PEP 562): sql_query's child process imports
tools.sql_engine, and must not pay for LangChain at every query.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tools.registry import DEFAULT_TOOLS, TOOL_NAMES, build_tools, tool_names
    from tools.settings import ToolSettings

__all__ = ["DEFAULT_TOOLS", "TOOL_NAMES", "ToolSettings", "build_tools", "tool_names"]


def __getattr__(name: str) -> Any:
    if name == "ToolSettings":
        from tools.settings import ToolSettings

        return ToolSettings
    if name in __all__:
        from tools import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'tools' has no attribute {name!r}")
