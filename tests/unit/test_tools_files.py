from pathlib import Path

import pytest
from langchain_core.tools import ToolException

from tools.files import make_file_tools
from tools.settings import ToolSettings


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return tmp_path / "ws"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_text("top secret")
    return folder


@pytest.fixture
def tools(workspace: Path):
    read, write, listing = make_file_tools(ToolSettings(workspace=workspace, read_max_bytes=100))
    return {"read": read, "write": write, "list": listing}


def test_workspace_is_created(tools, workspace: Path) -> None:
    assert workspace.is_dir()


def test_write_then_read_round_trip(tools, workspace: Path) -> None:
    result = tools["write"].invoke({"path": "notes/report.md", "content": "héllo\n"})
    assert result == "wrote 7 bytes to notes/report.md"  # bytes, not characters
    assert (workspace / "notes" / "report.md").read_text(encoding="utf-8") == "héllo\n"
    assert tools["read"].invoke({"path": "notes/report.md"}) == "héllo\n"


def test_write_append(tools, workspace: Path) -> None:
    tools["write"].invoke({"path": "log.txt", "content": "a"})
    result = tools["write"].invoke({"path": "log.txt", "content": "bc", "append": True})
    assert result == "appended 2 bytes to log.txt"
    assert (workspace / "log.txt").read_text() == "abc"
    tools["write"].invoke({"path": "log.txt", "content": "z"})
    assert (workspace / "log.txt").read_text() == "z"  # default replaces


def test_list_files_sorted_with_folder_slash(tools, workspace: Path) -> None:
    (workspace / "b.txt").write_text("b")
    (workspace / "a.txt").write_text("a")
    (workspace / "sub").mkdir()
    (workspace / "sub" / "inner.txt").write_text("i")
    assert tools["list"].invoke({}) == "a.txt\nb.txt\nsub/"
    assert tools["list"].invoke({"path": "sub"}) == "inner.txt"


def test_list_missing_and_empty(tools) -> None:
    with pytest.raises(ToolException, match="there is no folder 'nope' in the workspace"):
        tools["list"].invoke({"path": "nope"})
    assert "is empty" in tools["list"].invoke({"path": "."})


def test_read_missing_file(tools) -> None:
    with pytest.raises(ToolException, match="there is no file 'missing.txt'.*list_files"):
        tools["read"].invoke({"path": "missing.txt"})


@pytest.mark.parametrize("name", ["read", "write", "list"])
@pytest.mark.parametrize("path", ["/etc/passwd", "/tmp"])
def test_refuses_absolute_paths(tools, name: str, path: str) -> None:
    args = {"path": path, "content": "x"} if name == "write" else {"path": path}
    with pytest.raises(ToolException, match="absolute paths are not allowed"):
        tools[name].invoke(args)


@pytest.mark.parametrize("name", ["read", "write", "list"])
@pytest.mark.parametrize("path", ["..", "../outside/secret.txt", "sub/../../x", "a/.."])
def test_refuses_dotdot(tools, name: str, path: str) -> None:
    args = {"path": path, "content": "x"} if name == "write" else {"path": path}
    with pytest.raises(ToolException, match=r"'\.\.' is not allowed"):
        tools[name].invoke(args)


def test_symlink_escape_refused_for_read(tools, workspace: Path, outside: Path) -> None:
    (workspace / "link.txt").symlink_to(outside / "secret.txt")
    with pytest.raises(ToolException, match="'link.txt' is a symbolic link"):
        tools["read"].invoke({"path": "link.txt"})


def test_symlink_escape_refused_for_write(tools, workspace: Path, outside: Path) -> None:
    (workspace / "linkdir").symlink_to(outside, target_is_directory=True)
    (workspace / "linkfile").symlink_to(outside / "secret.txt")
    (workspace / "dangling").symlink_to(outside / "new.txt")
    for path in ["linkdir/new.txt", "linkdir/secret.txt", "linkfile", "dangling"]:
        with pytest.raises(ToolException, match="is a symbolic link"):
            tools["write"].invoke({"path": path, "content": "pwned"})
    assert (outside / "secret.txt").read_text() == "top secret"
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]


def test_symlink_escape_refused_for_list(tools, workspace: Path, outside: Path) -> None:
    (workspace / "linkdir").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ToolException, match="'linkdir' is a symbolic link"):
        tools["list"].invoke({"path": "linkdir"})


def test_symlinks_are_never_followed_even_inside(tools, workspace: Path) -> None:
    # Following a link safely would need a check and then a use: the gap a swap wins.
    (workspace / "real.txt").write_text("inside")
    (workspace / "alias.txt").symlink_to(workspace / "real.txt")
    with pytest.raises(ToolException, match="is a symbolic link"):
        tools["read"].invoke({"path": "alias.txt"})


def test_refuses_oversize_file(tools, workspace: Path) -> None:
    (workspace / "big.txt").write_text("x" * 101)
    (workspace / "ok.txt").write_text("x" * 100)
    with pytest.raises(ToolException) as info:
        tools["read"].invoke({"path": "big.txt"})
    assert "the file is 101 bytes, over the 100-byte limit" in str(info.value)
    assert tools["read"].invoke({"path": "ok.txt"}) == "x" * 100


@pytest.mark.parametrize("data", [b"\x89PNG\r\n\x1a\n\x00\x00", b"\xff\xfe\xfa", b"ab\x00cd"])
def test_refuses_binary_file(tools, workspace: Path, data: bytes) -> None:
    (workspace / "blob.bin").write_bytes(data)
    with pytest.raises(ToolException, match="binary file, not UTF-8 text"):
        tools["read"].invoke({"path": "blob.bin"})


def test_read_and_write_folder_refused(tools, workspace: Path) -> None:
    (workspace / "sub").mkdir()
    with pytest.raises(ToolException, match="is a folder"):
        tools["read"].invoke({"path": "sub"})
    with pytest.raises(ToolException, match="is a folder"):
        tools["write"].invoke({"path": "sub", "content": "x"})


def test_empty_path_refused(tools) -> None:
    with pytest.raises(ToolException, match="empty path"):
        tools["read"].invoke({"path": ""})


def test_args_schemas(tools) -> None:
    assert list(tools["read"].args) == ["path"]
    assert list(tools["write"].args) == ["path", "content", "append"]
    assert list(tools["list"].args) == ["path"]


def test_one_entry_past_the_listing_cap_is_said_too(tools, workspace: Path) -> None:
    from tools.files import MAX_LIST_ENTRIES

    workspace.mkdir(exist_ok=True)
    for i in range(MAX_LIST_ENTRIES + 1):
        (workspace / f"f{i:04d}.txt").write_text("x")
    lines = tools["list"].invoke({}).splitlines()
    assert len(lines) == MAX_LIST_ENTRIES + 1
    assert lines[-1] == "... 1 more entries not shown"


def test_a_lone_surrogate_is_refused_as_a_tool_error(tools) -> None:
    """A model's JSON can hold \\ud800, which no file name or content can be written as: a
    refusal the replanner reads, not a UnicodeEncodeError."""
    for tool, args in (
        ("write", {"path": "a\ud800", "content": "x"}),
        ("write", {"path": "a.txt", "content": "x\ud800"}),
        ("read", {"path": "b\ud800"}),
        ("list", {"path": "c\ud800"}),
    ):
        with pytest.raises(ToolException, match="not valid text"):
            tools[tool].invoke(args)


def test_a_path_with_control_characters_is_shown_escaped_in_the_error(tools) -> None:
    """The error goes to the model, the journal and `planexec show`: a path a model wrote with
    an escape sequence or a newline is written with visible escapes."""
    for path, shown in (("a\x1b[31mb", "a\\x1b[31mb"), ("x\ny", "x\\ny")):
        with pytest.raises(ToolException) as info:
            tools["read"].invoke({"path": path})
        message = str(info.value)
        assert shown in message and path not in message, message
