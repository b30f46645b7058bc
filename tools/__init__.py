"""LangChain tools for the planexec executor, plus the registry that builds them."""

from tools.registry import DEFAULT_TOOLS, TOOL_NAMES, build_tools, tool_names
from tools.settings import ToolSettings

__all__ = ["DEFAULT_TOOLS", "TOOL_NAMES", "ToolSettings", "build_tools", "tool_names"]
