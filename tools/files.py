"""read_file / write_file / list_files, confined to `settings.workspace`."""

from __future__ import annotations

from pathlib import Path, PurePath

from langchain_core.tools import BaseTool, StructuredTool, ToolException
from pydantic import BaseModel, Field

from tools.settings import ToolSettings

# list_files output beyond this many entries is cut, to keep the model's context small.
MAX_LIST_ENTRIES = 500


def resolve_in_workspace(workspace: Path, path: str, tool: str) -> Path:
    """Map a workspace-relative path to a real path, refusing anything that escapes.

    The string checks (absolute, '..') give clear messages for the common mistakes;
    the resolve() check is the real guard, because it follows symlinks.
    """
    if not path or not path.strip():
        raise ToolException(f"{tool} refused an empty path. Give a path relative to the workspace.")
    relative = PurePath(path)
    if relative.is_absolute() or path.startswith(("/", "\\")):
        raise ToolException(
            f"{tool} refused '{path}': absolute paths are not allowed. "
            "Use a path relative to the workspace, e.g. 'notes/report.md'."
        )
    if ".." in relative.parts:
        raise ToolException(
            f"{tool} refused '{path}': '..' is not allowed. "
            "Use a path inside the workspace, e.g. 'notes/report.md'."
        )
    root = _ensure_workspace(workspace)
    target = (root / relative).resolve()
    if not target.is_relative_to(root):
        raise ToolException(
            f"{tool} refused '{path}': it resolves outside the workspace (through a symlink). "
            "Only files inside the workspace can be used."
        )
    return target


def _ensure_workspace(workspace: Path) -> Path:
    workspace.mkdir(parents=True, exist_ok=True)
    return workspace.resolve()


def read_text(settings: ToolSettings, path: str) -> str:
    target = resolve_in_workspace(settings.workspace, path, "read_file")
    if not target.exists():
        raise ToolException(
            f"read_file: there is no file '{path}' in the workspace. "
            "Call list_files to see which files exist."
        )
    if target.is_dir():
        raise ToolException(f"read_file: '{path}' is a folder, not a file. Call list_files on it.")
    if not target.is_file():  # FIFOs and devices would block or never end
        raise ToolException(f"read_file refused '{path}': it is not a regular file.")
    size = target.stat().st_size
    if size > settings.read_max_bytes:
        raise ToolException(
            f"read_file refused '{path}': the file is {size} bytes, over the "
            f"{settings.read_max_bytes}-byte limit. It cannot be read with this tool."
        )
    text = _decode_text(target.read_bytes())
    if text is None:
        raise ToolException(
            f"read_file refused '{path}': it is a binary file, not UTF-8 text. "
            "Only text files can be read."
        )
    return text if text else f"(read_file: '{path}' is empty)"


def _decode_text(data: bytes) -> str | None:
    """UTF-8 text, or None for binary data (NUL bytes decode as UTF-8 but mean binary)."""
    if b"\x00" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def write_text(settings: ToolSettings, path: str, content: str, append: bool = False) -> str:
    target = resolve_in_workspace(settings.workspace, path, "write_file")
    if target.is_dir():
        raise ToolException(
            f"write_file refused '{path}': it is a folder. "
            f"Give a file path, e.g. '{path}/notes.md'."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    data = content.encode("utf-8")
    with target.open("ab" if append else "wb") as handle:
        handle.write(data)
    verb = "appended" if append else "wrote"
    return f"{verb} {len(data)} bytes to {PurePath(path).as_posix()}"


def list_entries(settings: ToolSettings, path: str = ".") -> str:
    target = resolve_in_workspace(settings.workspace, path or ".", "list_files")
    if not target.exists():
        raise ToolException(
            f"list_files: there is no folder '{path}' in the workspace. "
            "Call list_files with '.' to see the top level."
        )
    if not target.is_dir():
        raise ToolException(
            f"list_files: '{path}' is a file, not a folder. Use read_file to read it."
        )
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in target.iterdir())
    if not names:
        return f"(list_files: folder '{path}' is empty)"
    shown = names[:MAX_LIST_ENTRIES]
    if len(names) > len(shown):
        shown.append(f"... {len(names) - len(shown)} more entries not shown")
    return "\n".join(shown)


class ReadFileArgs(BaseModel):
    path: str = Field(description="File path relative to the workspace, e.g. 'data/notes.txt'.")


class WriteFileArgs(BaseModel):
    path: str = Field(description="File path relative to the workspace, e.g. 'report.md'.")
    content: str = Field(description="Text to write (UTF-8).")
    append: bool = Field(
        default=False, description="True to add to the end of the file instead of replacing it."
    )


class ListFilesArgs(BaseModel):
    path: str = Field(default=".", description="Folder relative to the workspace; '.' is the top.")


def make_file_tools(settings: ToolSettings) -> list[BaseTool]:
    """Build read_file, write_file and list_files bound to `settings.workspace`."""
    settings.workspace.mkdir(parents=True, exist_ok=True)

    def read_file(path: str) -> str:
        return read_text(settings, path)

    def write_file(path: str, content: str, append: bool = False) -> str:
        return write_text(settings, path, content, append)

    def list_files(path: str = ".") -> str:
        return list_entries(settings, path)

    return [
        StructuredTool.from_function(
            func=read_file,
            name="read_file",
            description=(
                "Read a UTF-8 text file from the workspace and return its contents. Paths are "
                f"relative to the workspace. Files over {settings.read_max_bytes} bytes and "
                "binary files cannot be read. Call list_files first if unsure of the name."
            ),
            args_schema=ReadFileArgs,
        ),
        StructuredTool.from_function(
            func=write_file,
            name="write_file",
            description=(
                "Write text to a file in the workspace (creating folders as needed) and report "
                "the bytes written. Replaces the file unless append=true. Paths are relative to "
                "the workspace; absolute paths and '..' are refused."
            ),
            args_schema=WriteFileArgs,
        ),
        StructuredTool.from_function(
            func=list_files,
            name="list_files",
            description=(
                "List the files and folders in a workspace folder, sorted, one per line; "
                "folders end with '/'. Use '.' for the top of the workspace."
            ),
            args_schema=ListFilesArgs,
        ),
    ]
