"""Your own LangChain tools, named by import path in `Context.tools`: "mypkg.tools:search".

So a `langgraph.json` deployment, which cannot call `build_graph(tools=...)`, can offer its own
tools: set PLANEXEC_TOOLS=calculator,mypkg.tools:search (or pass them in the run's context). The
attribute must be a LangChain tool (a `BaseTool`, e.g. made with `@tool`) or a list of them; the
tool is offered under its own name. Only installed modules can be named: an entry is an import,
not code.

Importing runs a module's top-level code, and a run's context can come from whoever reaches the
LangGraph server. So a `__main__` module or a private one (a segment starting with "_") is never
imported (some packages' `__main__` runs their command line on import), and a deployment can
confine imports to its own packages with PLANEXEC_TOOL_PACKAGES (comma-separated package names,
e.g. "mypkg,ourtools"): the allow-list is read from the environment only, so no context widens it.
"""

from __future__ import annotations

import importlib
import os
import re

from langchain_core.tools import BaseTool

# "package.module:attribute", each part a Python identifier.
_IMPORT_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")


PACKAGES_ENV = "PLANEXEC_TOOL_PACKAGES"


class ImportedToolError(ValueError):
    """An import-path entry that does not give LangChain tools, with the reason."""


def is_import_path(name: str) -> bool:
    return ":" in name


def imported_tools(path: str) -> list[BaseTool]:
    """The tool(s) at `path` ("module:attribute"); ImportedToolError saying why not."""
    if not _IMPORT_PATH.match(path):
        raise ImportedToolError(f"tool {path!r} is not an import path 'package.module:attribute'")
    module_name, _, attribute = path.partition(":")
    if any(part.startswith("_") for part in module_name.split(".")):
        raise ImportedToolError(
            f"tool {path!r}: private and __main__ modules are not imported as tool sources"
        )
    allowed = [p.strip() for p in os.environ.get(PACKAGES_ENV, "").split(",") if p.strip()]
    if allowed and not any(module_name == p or module_name.startswith(p + ".") for p in allowed):
        raise ImportedToolError(
            f"tool {path!r}: module {module_name!r} is outside the packages this deployment "
            f"allows ({PACKAGES_ENV}={','.join(allowed)})"
        )
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or the module failed while importing
        raise ImportedToolError(
            f"tool {path!r}: cannot import {module_name!r}: {type(exc).__name__}: {exc}"
        ) from exc
    if not hasattr(module, attribute):
        raise ImportedToolError(f"tool {path!r}: module {module_name!r} has no {attribute!r}")
    value = getattr(module, attribute)
    tools = list(value) if isinstance(value, list | tuple) else [value]
    if not tools or not all(isinstance(t, BaseTool) for t in tools):
        raise ImportedToolError(
            f"tool {path!r} is a {type(value).__name__}, not a LangChain tool: decorate the "
            "function with langchain_core.tools.tool, or point at a BaseTool or a list of them"
        )
    return tools
