"""read_file / write_file / list_files, confined to `settings.workspace` with no check-then-use gap.

A path is never resolved and then opened: each folder on the way is opened relative to the one
before (`dir_fd`) with O_NOFOLLOW|O_DIRECTORY, and the last name with O_NOFOLLOW, so a symlink
swapped in at any moment makes the open fail instead of leading outside. Symbolic links are never
followed, even ones pointing inside. Files with more than one hard link are refused (a hard link is
indistinguishable from the outside file it shares), and so is anything that is not a regular file or
folder (a FIFO would block, a device never end); opens use O_NONBLOCK so a FIFO cannot hang a read.

Writes are atomic: a temporary file in the same folder, fsync, then rename over the target, so a
crash leaves the old or the new content, never half of it, and a symlink put in the target's place
is replaced rather than followed. A write made inside a planexec tool call is idempotent: its key
(`tools.step_context.idempotency_key()`) and the SHA-256 of the content it produced are recorded in
a ledger folder in the workspace (`LEDGER_DIR`, which the tools refuse to touch) *before* the
rename; a replay of the same key finds the record, sees the file already holds that content, and
does not append twice. Recording before the rename closes the crash window: a record whose content
is not in the file means "not applied yet", and the write is made. (An xattr on the file would be
atomic with the rename, but user xattrs are missing on several filesystems — older tmpfs, NFS — and
a file appended to many times would carry many keys.) Each run's records are in a folder of their
own (`ledger_folder`), so `planexec prune` removes them with the run (`remove_run_ledgers`).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import secrets
import stat
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from langchain_core.tools import BaseTool, StructuredTool, ToolException
from pydantic import BaseModel, Field

from tools import step_context
from tools.settings import ToolSettings

# list_files output beyond this many entries is cut, to keep the model's context small.
MAX_LIST_ENTRIES = 500
MAX_PATH_CHARS = 1024
MAX_NAME_BYTES = 255
LEDGER_DIR = ".planexec-writes"
# Writers to one folder take turns (see _folder_lock); one waits at most this long.
LOCK_TIMEOUT_S = 10.0
_TEMP_PREFIX = ".planexec-tmp-"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _encodable(text: str) -> bool:
    """Whether `text` can be written as a file name or content (a model can send a lone
    surrogate such as \\ud800, which no encoding writes)."""
    try:
        text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return False
    return True


def split_workspace_path(path: str, tool: str) -> list[str]:
    """The names of a workspace-relative path, or a ToolException saying what is wrong with it."""
    if not path or not path.strip():
        raise ToolException(f"{tool} refused an empty path. Give a path relative to the workspace.")
    shown = _show(path)
    if "\x00" in path:
        raise ToolException(f"{tool} refused '{shown}': the path contains a NUL byte.")
    if not _encodable(path):
        raise ToolException(
            f"{tool} refused '{shown}': the path is not valid text (a lone surrogate)."
        )
    if len(path) > MAX_PATH_CHARS:
        raise ToolException(
            f"{tool} refused a path of {len(path)} characters; the limit is {MAX_PATH_CHARS}."
        )
    if path.startswith(("/", "\\")) or PurePosixPath(path).is_absolute():
        raise ToolException(
            f"{tool} refused '{shown}': absolute paths are not allowed. "
            "Use a path relative to the workspace, e.g. 'notes/report.md'."
        )
    parts = [p for p in PurePosixPath(path).parts if p != "."]
    if ".." in parts:
        raise ToolException(
            f"{tool} refused '{shown}': '..' is not allowed. "
            "Use a path inside the workspace, e.g. 'notes/report.md'."
        )
    for part in parts:
        if len(part.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
            raise ToolException(
                f"{tool} refused '{shown}': a name in it is longer than {MAX_NAME_BYTES} bytes."
            )
    reserved = parts[:1] == [LEDGER_DIR] or any(p.startswith(_TEMP_PREFIX) for p in parts)
    if reserved:
        raise ToolException(f"{tool} refused '{shown}': it is reserved for planexec's own records.")
    return parts


@contextmanager
def _opened_dir(
    settings: ToolSettings, names: list[str], tool: str, path: str, create: bool
) -> Iterator[int]:
    """A descriptor of the folder `names` inside the workspace, walked one O_NOFOLLOW step at a
    time (created when `create`)."""
    settings.workspace.mkdir(parents=True, exist_ok=True)
    # The workspace itself is the operator's choice and may be reached through a link.
    fd = os.open(settings.workspace, _DIR_FLAGS & ~os.O_NOFOLLOW)
    try:
        for i, name in enumerate(names):
            try:
                next_fd = _open_child_dir(fd, name, create)
            except FileNotFoundError:
                raise _missing(tool, path, names[: i + 1]) from None
            except OSError as exc:
                if exc.errno == errno.ENOTDIR and _is_link(fd, name):
                    exc = OSError(errno.ELOOP, "symbolic link")  # O_DIRECTORY wins over NOFOLLOW
                raise _refusal(tool, path, "/".join(names[: i + 1]), exc) from None
            os.close(fd)
            fd = next_fd
        yield fd
    finally:
        os.close(fd)


def _open_child_dir(fd: int, name: str, create: bool) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=fd)
    except FileNotFoundError:
        if not create:
            raise
    try:
        os.mkdir(name, 0o755, dir_fd=fd)
    except FileExistsError:
        pass  # made by someone else meanwhile: the open below checks what it is
    return os.open(name, _DIR_FLAGS, dir_fd=fd)


def _is_link(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _refusal(tool: str, path: str, where: str, exc: OSError) -> ToolException:
    shown = _show(path)
    if exc.errno in (errno.ELOOP, errno.EMLINK):
        return ToolException(
            f"{tool} refused '{shown}': '{_show(where)}' is a symbolic link; the file tools do not "
            "follow links. Only plain files and folders inside the workspace can be used."
        )
    if exc.errno == errno.ENOTDIR:
        return ToolException(
            f"{tool} refused '{shown}': '{_show(where)}' is a file, not a folder, so nothing can "
            "be under it."
        )
    if exc.errno == errno.ENAMETOOLONG:
        return ToolException(f"{tool} refused '{shown}': the name is too long.")
    return ToolException(f"{tool} could not use '{shown}': {exc.strerror}.")


def _missing(tool: str, path: str, names: list[str]) -> ToolException:
    kind = "folder" if tool == "list_files" else "file"
    return ToolException(
        f"{tool}: there is no {kind} '{_show(path)}' in the workspace. "
        "Call list_files to see which files exist."
    )


def _check_kind(tool: str, path: str, st: os.stat_result) -> None:
    """Refuse anything but a regular file with a single link."""
    shown = _show(path)
    if stat.S_ISDIR(st.st_mode):
        raise ToolException(
            f"{tool}: '{shown}' is a folder, not a file. Call list_files on it, or give a file "
            f"path such as '{shown}/notes.md'."
        )
    if stat.S_ISLNK(st.st_mode):
        raise ToolException(
            f"{tool} refused '{shown}': it is a symbolic link; the file tools do not follow links."
        )
    if not stat.S_ISREG(st.st_mode):
        raise ToolException(
            f"{tool} refused '{shown}': it is not a regular file (a FIFO, socket or device)."
        )
    if st.st_nlink > 1:
        raise ToolException(
            f"{tool} refused '{shown}': it has {st.st_nlink} hard links, so it may be a file "
            "outside the workspace. Only files with a single link can be used."
        )


def _read_at(dir_fd: int, name: str, tool: str, path: str, limit: int) -> bytes:
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        raise _missing(tool, path, [name]) from None
    except OSError as exc:
        raise _refusal(tool, path, path, exc) from None
    try:
        st = os.fstat(fd)
        _check_kind(tool, path, st)
        if st.st_size > limit:
            raise ToolException(
                f"{tool} refused '{_show(path)}': the file is {st.st_size} bytes, over the "
                f"{limit}-byte limit. It cannot be read with this tool."
            )
        # The size can change under us: read at most limit + 1 bytes and check again.
        data = _read_fd(fd, limit + 1)
        if len(data) > limit:
            raise ToolException(
                f"{tool} refused '{_show(path)}': the file is over the {limit}-byte limit."
            )
        return data
    finally:
        os.close(fd)


def _read_fd(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = os.read(fd, min(65536, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def read_text(settings: ToolSettings, path: str) -> str:
    names = split_workspace_path(path, "read_file")
    if not names:
        raise ToolException("read_file: '.' is a folder, not a file. Call list_files on it.")
    with _opened_dir(settings, names[:-1], "read_file", path, create=False) as dir_fd:
        data = _read_at(dir_fd, names[-1], "read_file", path, settings.read_max_bytes)
    text = _decode_text(data)
    if text is None:
        raise ToolException(
            f"read_file refused '{_show(path)}': it is a binary file, not UTF-8 text. "
            "Only text files can be read."
        )
    return text if text else f"(read_file: '{_show(path)}' is empty)"


def _decode_text(data: bytes) -> str | None:
    """UTF-8 text, or None for binary data (NUL bytes decode as UTF-8 but mean binary)."""
    if b"\x00" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def write_text(settings: ToolSettings, path: str, content: str, append: bool = False) -> str:
    names = split_workspace_path(path, "write_file")
    if not names:
        raise ToolException("write_file refused '.': it is a folder. Give a file path.")
    shown = PurePosixPath(*names).as_posix()
    if not _encodable(content):
        raise ToolException(
            f"write_file refused '{_show(path)}': the content is not valid text (a lone surrogate)."
        )
    data = content.encode("utf-8", "surrogateescape")
    limit = settings.write_max_bytes
    if len(data) > limit:
        raise ToolException(
            f"write_file refused '{_show(path)}': the content is {len(data)} bytes, over the "
            f"{limit}-byte limit. Write less, or split it over several files."
        )
    message = f"{'appended' if append else 'wrote'} {len(data)} bytes to {shown}"
    call = step_context.current_tool_call()
    with (
        _opened_dir(settings, names[:-1], "write_file", path, create=True) as dir_fd,
        _folder_lock(dir_fd, path),
    ):
        name = names[-1]
        old = _existing(dir_fd, name, path, limit)
        new = (old or b"") + data if append else data
        if len(new) > limit:
            raise ToolException(
                f"write_file refused '{_show(path)}': appending would make it {len(new)} bytes, "
                f"over the {limit}-byte limit."
            )
        if call is not None:
            ledger, key = _Ledger(settings, call.step.run), call.idempotency_key
            if ledger.already_applied(key, shown, old):
                return message
            ledger.record(key, shown, new)
        _replace_atomically(dir_fd, name, new, path)
    return message


@contextmanager
def _folder_lock(dir_fd: int, path: str) -> Iterator[None]:
    """An exclusive lock on the target's folder for one read-modify-rename: without it, two steps
    appending to one file at once would each rename their own copy and one append would be lost
    (an O_APPEND write never loses one; a rename does). flock on the folder's descriptor holds
    across threads and processes (workers); waiting is bounded."""
    deadline = time.monotonic() + LOCK_TIMEOUT_S
    while True:
        try:
            fcntl.flock(dir_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise ToolException(
                    f"write_file could not write '{_show(path)}': another write to its folder "
                    f"held it for over {LOCK_TIMEOUT_S:g} s. Try again."
                ) from None
            time.sleep(0.005)
    try:
        yield
    finally:
        fcntl.flock(dir_fd, fcntl.LOCK_UN)


def _existing(dir_fd: int, name: str, path: str, limit: int) -> bytes | None:
    """The target's current content, None if it does not exist; refuses links and non-files."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    _check_kind("write_file", path, st)
    return _read_at(dir_fd, name, "write_file", path, limit)


def _replace_atomically(dir_fd: int, name: str, data: bytes, path: str) -> None:
    temp = _TEMP_PREFIX + secrets.token_hex(8)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(temp, flags, 0o644, dir_fd=dir_fd)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        # rename replaces whatever entry has the name (even a symlink put there since the check)
        # and never writes through it.
        os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError as exc:
        _unlink_quietly(temp, dir_fd)
        if isinstance(exc, IsADirectoryError):
            raise ToolException(f"write_file refused '{_show(path)}': it is a folder.") from None
        raise ToolException(
            f"write_file could not write '{_show(path)}': {exc.strerror}."
        ) from None
    os.fsync(dir_fd)


def _unlink_quietly(name: str, dir_fd: int) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass


def ledger_folder(run_id: str) -> str:
    """The folder in LEDGER_DIR that holds one run's write records (a digest: run ids are ours,
    but a name made from one must not depend on what characters it holds)."""
    return "run-" + hashlib.sha256(run_id.encode()).hexdigest()[:32]


class _Ledger:
    """Idempotency keys of one run's applied writes: one small JSON file per key, in the run's
    folder of LEDGER_DIR."""

    def __init__(self, settings: ToolSettings, run_id: str) -> None:
        self.settings = settings
        self.folders = [LEDGER_DIR, ledger_folder(run_id)]

    def already_applied(self, key: str, path: str, current: bytes | None) -> bool:
        """True when `key` was recorded for `path` and the file holds the content it produced.
        A record is looked for in the run's folder, then where versions before run folders
        kept them (LEDGER_DIR itself), so a run they started is still written once when
        resumed."""
        raw = self._read(self.folders, key) or self._read(self.folders[:1], key)
        if raw is None:
            return False
        try:
            entry = json.loads(raw)
        except ValueError:
            return False
        digest = hashlib.sha256(current).hexdigest() if current is not None else None
        return entry.get("path") == path and entry.get("sha256") == digest

    def _read(self, folders: list[str], key: str) -> bytes | None:
        try:
            with _opened_dir(self.settings, folders, "write_file", LEDGER_DIR, True) as fd:
                return _read_at(fd, key, "write_file", key, 4096)
        except ToolException:
            return None

    def record(self, key: str, path: str, content: bytes) -> None:
        entry = {"path": path, "sha256": hashlib.sha256(content).hexdigest()}
        with _opened_dir(self.settings, self.folders, "write_file", LEDGER_DIR, True) as fd:
            _replace_atomically(fd, key, json.dumps(entry).encode(), key)


def remove_run_ledgers(workspace: Path, run_ids: Iterable[str], *, dry_run: bool = False) -> int:
    """Remove the write records of these runs from `workspace` (once a run's checkpoints are
    gone nothing can replay its writes, so its records are dead weight); the number of records
    removed (with `dry_run`, found). Nothing is created or followed: a missing workspace or
    folder removes nothing, a link in the way is not walked, only regular files are unlinked."""
    removed = 0
    try:
        ledger = os.open(workspace / LEDGER_DIR, _DIR_FLAGS)
    except OSError:
        return 0
    try:
        for folder in sorted({ledger_folder(r) for r in run_ids}):
            try:
                fd = os.open(folder, _DIR_FLAGS, dir_fd=ledger)
            except OSError:
                continue
            try:
                with os.scandir(fd) as entries:
                    files = [e.name for e in entries if e.is_file(follow_symlinks=False)]
                for name in files if not dry_run else ():
                    os.unlink(name, dir_fd=fd)
            finally:
                os.close(fd)
            removed += len(files)
            if not dry_run:
                try:
                    os.rmdir(folder, dir_fd=ledger)
                except OSError:
                    pass  # something not ours was left in it: keep the folder
    finally:
        os.close(ledger)
    return removed


def list_entries(settings: ToolSettings, path: str = ".") -> str:
    names = split_workspace_path(path or ".", "list_files")
    listed = []
    with _opened_dir(settings, names, "list_files", path, create=False) as fd:
        with os.scandir(fd) as entries:
            for entry in entries:
                hidden = entry.name.startswith(_TEMP_PREFIX) or (
                    not names and entry.name == LEDGER_DIR
                )
                if not hidden:
                    listed.append(entry.name + ("/" if entry.is_dir(follow_symlinks=False) else ""))
    listed.sort()
    if not listed:
        return f"(list_files: folder '{_show(path)}' is empty)"
    shown = listed[:MAX_LIST_ENTRIES]
    if len(listed) > len(shown):
        shown.append(f"... {len(listed) - len(shown)} more entries not shown")
    return "\n".join(shown)


def _show(path: str, limit: int = 120) -> str:
    """The path as it may be printed: control characters escaped, long paths cut."""
    text = path if path.isprintable() else path.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextmanager
def _os_errors_as_tool_errors(tool: str, path: str) -> Iterator[None]:
    """A file changed under a call (a race, a full disk) ends as a tool error, never a crash."""
    try:
        yield
    except OSError as exc:
        raise ToolException(
            f"{tool} could not use '{_show(path)}': {exc.strerror or exc}. "
            "The workspace changed during the call; try again."
        ) from None


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
        with _os_errors_as_tool_errors("read_file", path):
            return read_text(settings, path)

    def write_file(path: str, content: str, append: bool = False) -> str:
        with _os_errors_as_tool_errors("write_file", path):
            return write_text(settings, path, content, append)

    def list_files(path: str = ".") -> str:
        with _os_errors_as_tool_errors("list_files", path):
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
                "the workspace; absolute paths, '..' and symbolic links are refused; at most "
                f"{settings.write_max_bytes} bytes per file."
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
