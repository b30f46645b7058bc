"""Attacks on the workspace with real files: hard links, FIFOs, symlinks swapped mid-call, huge
writes, odd names; atomic writes and idempotent replays."""

import os
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from langchain_core.tools import ToolException

from tools.files import LEDGER_DIR, _Ledger, ledger_folder, make_file_tools, remove_run_ledgers
from tools.settings import ToolSettings
from tools.step_context import StepIdentity, ToolCallIdentity, calling_tool


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    return tmp_path / "ws"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_text("OUTSIDE")
    return folder


@pytest.fixture
def settings(ws: Path) -> ToolSettings:
    return ToolSettings(workspace=ws, read_max_bytes=1000, write_max_bytes=1000)


@pytest.fixture
def tools(settings: ToolSettings):
    return {t.name: t for t in make_file_tools(settings)}


def test_hard_link_to_an_outside_file_is_neither_read_nor_written(tools, ws, outside) -> None:
    os.link(outside / "secret.txt", ws / "h.txt")
    with pytest.raises(ToolException, match="2 hard links"):
        tools["read_file"].invoke({"path": "h.txt"})
    for append in (False, True):
        with pytest.raises(ToolException, match="2 hard links"):
            tools["write_file"].invoke({"path": "h.txt", "content": "pwned", "append": append})
    assert (outside / "secret.txt").read_text() == "OUTSIDE"


def _finishes(fn, seconds: float = 5.0) -> BaseException | None:
    """Run fn in a thread; fail the test if it blocks. Returns what it raised."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            fn()
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, "the tool blocked"
    return outcome[0]


def test_a_fifo_is_refused_without_blocking(tools, ws) -> None:
    os.mkfifo(ws / "pipe")
    read = _finishes(lambda: tools["read_file"].invoke({"path": "pipe"}))
    write = _finishes(lambda: tools["write_file"].invoke({"path": "pipe", "content": "x"}))
    for exc in (read, write):
        assert isinstance(exc, ToolException) and "not a regular file" in str(exc)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("a\x00b.txt", "contains a NUL byte"),
        ("x" * 300 + ".txt", "longer than 255 bytes"),
        ("d/" * 600 + "f", "the limit is 1024"),
        ("file.txt/inner.txt", "'file.txt' is a file, not a folder"),
        (f"{LEDGER_DIR}/k", "reserved for planexec"),
    ],
)
def test_bad_names_are_clear_refusals(tools, ws, path: str, message: str) -> None:
    (ws / "file.txt").write_text("x")
    for name, args in (
        ("read_file", {"path": path}),
        ("write_file", {"path": path, "content": "x"}),
        ("list_files", {"path": path}),
    ):
        with pytest.raises(ToolException, match=message):
            tools[name].invoke(args)


def test_write_and_read_are_capped(tools, ws) -> None:
    with pytest.raises(ToolException, match="1001 bytes, over the 1000-byte limit"):
        tools["write_file"].invoke({"path": "big.txt", "content": "x" * 1001})
    tools["write_file"].invoke({"path": "big.txt", "content": "x" * 600})
    with pytest.raises(ToolException, match="appending would make it 1200 bytes"):
        tools["write_file"].invoke({"path": "big.txt", "content": "y" * 600, "append": True})
    assert (ws / "big.txt").read_text() == "x" * 600
    (ws / "huge.txt").write_text("z" * 5000)
    with pytest.raises(ToolException, match="5000 bytes, over the 1000-byte limit"):
        tools["read_file"].invoke({"path": "huge.txt"})


def test_writes_are_atomic_renames_that_leave_no_temp_files(tools, ws) -> None:
    tools["write_file"].invoke({"path": "r.txt", "content": "one"})
    inode = (ws / "r.txt").stat().st_ino
    tools["write_file"].invoke({"path": "r.txt", "content": "two"})
    assert (ws / "r.txt").read_text() == "two"
    assert (ws / "r.txt").stat().st_ino != inode  # a new file renamed into place
    assert sorted(os.listdir(ws)) == ["r.txt"]


def _call(index: int) -> ToolCallIdentity:
    return ToolCallIdentity(StepIdentity("run-1", "s1", 1), index)


def test_a_replayed_append_with_the_same_key_is_applied_once(tools, ws) -> None:
    with calling_tool(_call(0)):
        tools["write_file"].invoke({"path": "log.txt", "content": "a\n", "append": True})
    with calling_tool(_call(1)):
        first = tools["write_file"].invoke({"path": "log.txt", "content": "b\n", "append": True})
        replay = tools["write_file"].invoke({"path": "log.txt", "content": "b\n", "append": True})
    assert first == replay == "appended 2 bytes to log.txt"
    assert (ws / "log.txt").read_text() == "a\nb\n"
    # Another key is another write, and a write outside any step is never deduplicated.
    with calling_tool(_call(2)):
        tools["write_file"].invoke({"path": "log.txt", "content": "b\n", "append": True})
    tools["write_file"].invoke({"path": "log.txt", "content": "c\n", "append": True})
    tools["write_file"].invoke({"path": "log.txt", "content": "c\n", "append": True})
    assert (ws / "log.txt").read_text() == "a\nb\nb\nc\nc\n"
    assert tools["list_files"].invoke({}) == "log.txt"  # the ledger stays out of sight


def test_a_write_recorded_but_not_renamed_before_a_crash_is_made_on_replay(
    tools, settings, ws
) -> None:
    (ws / "log.txt").write_text("a\n")
    # The crash window: the ledger holds the key, the rename never happened.
    _Ledger(settings, "run-1").record(_call(5).idempotency_key, "log.txt", b"a\nb\n")
    with calling_tool(_call(5)):
        tools["write_file"].invoke({"path": "log.txt", "content": "b\n", "append": True})
        tools["write_file"].invoke({"path": "log.txt", "content": "b\n", "append": True})
    assert (ws / "log.txt").read_text() == "a\nb\n"


def test_each_run_keeps_its_write_records_in_its_own_folder(tools, ws) -> None:
    """prune removes a run's records by its folder: a record must land in its run's folder, and
    the same step and call index in another run is another write."""
    other = ToolCallIdentity(StepIdentity("run-2", "s1", 1), 0)
    for call in (_call(0), other):
        with calling_tool(call):
            tools["write_file"].invoke({"path": "log.txt", "content": "x\n", "append": True})
    assert (ws / "log.txt").read_text() == "x\nx\n"
    for run_id, call in (("run-1", _call(0)), ("run-2", other)):
        assert [p.name for p in (ws / LEDGER_DIR / ledger_folder(run_id)).iterdir()] == [
            call.idempotency_key
        ]


def test_a_record_written_before_run_folders_is_still_honoured(tools, settings, ws) -> None:
    """A run started by a version that kept records in LEDGER_DIR itself and resumed after an
    upgrade must not append twice."""
    with calling_tool(_call(0)):
        tools["write_file"].invoke({"path": "log.txt", "content": "a\n", "append": True})
    folder = ws / LEDGER_DIR / ledger_folder("run-1")
    (folder / _call(0).idempotency_key).rename(ws / LEDGER_DIR / _call(0).idempotency_key)
    folder.rmdir()
    with calling_tool(_call(0)):
        tools["write_file"].invoke({"path": "log.txt", "content": "a\n", "append": True})
    assert (ws / "log.txt").read_text() == "a\n"


def test_removing_a_runs_records_touches_nothing_else(tools, ws, outside) -> None:
    """Only the named runs' records go; a link planted in the ledger is not walked, and a
    missing workspace is not created."""
    for call in (_call(0), _call(1), ToolCallIdentity(StepIdentity("run-2", "s1", 1), 0)):
        with calling_tool(call):
            tools["write_file"].invoke({"path": "log.txt", "content": "x", "append": True})
    (ws / LEDGER_DIR / ledger_folder("run-3")).symlink_to(outside, target_is_directory=True)
    assert remove_run_ledgers(ws, ["run-1", "run-3"], dry_run=True) == 2
    assert (ws / LEDGER_DIR / ledger_folder("run-1")).is_dir()
    assert remove_run_ledgers(ws, ["run-1", "run-3", "never-ran"]) == 2
    assert sorted(p.name for p in (ws / LEDGER_DIR).iterdir()) == sorted(
        [ledger_folder("run-2"), ledger_folder("run-3")]
    )
    assert (outside / "secret.txt").read_text() == "OUTSIDE"
    assert remove_run_ledgers(ws / "gone", ["run-2"]) == 0 and not (ws / "gone").exists()


def test_swapping_a_symlink_during_calls_never_reaches_outside(tools, ws, outside) -> None:
    """A thread flips 'd' between a real folder and a link to the outside folder while the tools
    read and write 'd/secret.txt'; not one call may read or change the outside file."""
    ws.mkdir(exist_ok=True)
    real = ws / "real"
    real.mkdir()
    (real / "secret.txt").write_text("INSIDE")
    stop = threading.Event()

    def swap() -> None:
        link, tmp = ws / "d", ws / "d.tmp"
        while not stop.is_set():
            for target in (outside, real):
                try:
                    tmp.unlink(missing_ok=True)
                    tmp.symlink_to(target, target_is_directory=True)
                    os.replace(tmp, link)
                except OSError:
                    pass
            # Also put a real folder there now and then, so some calls get through.
            try:
                link.unlink()
                link.mkdir()
                (link / "secret.txt").write_text("INSIDE")
            except OSError:
                pass
            try:
                (link / "secret.txt").unlink()
                link.rmdir()
            except OSError:
                pass

    thread = threading.Thread(target=swap, daemon=True)
    thread.start()
    reads = writes = 0
    try:
        for _ in range(1500):
            try:
                text = tools["read_file"].invoke({"path": "d/secret.txt"})
                assert "OUTSIDE" not in text
                reads += 1
            except ToolException:
                pass
            try:
                tools["write_file"].invoke({"path": "d/secret.txt", "content": "pwned"})
                writes += 1
            except ToolException:
                pass
    finally:
        stop.set()
        thread.join(5)
    assert (outside / "secret.txt").read_text() == "OUTSIDE"
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    print("race", reads, writes)
    assert reads + writes > 0  # the race was really run, not refused wholesale


def test_parallel_appends_to_one_file_are_all_kept(ws) -> None:
    """Steps run in parallel threads (and workers in processes): a write is a read-modify-rename,
    so without the folder lock concurrent appends would overwrite each other."""
    settings = ToolSettings(workspace=ws)
    tools = [{t.name: t for t in make_file_tools(settings)} for _ in range(8)]
    lines = [f"line-{i}-" + "x" * 40 + "\n" for i in range(8)]
    errors: list[BaseException] = []

    def append(i: int) -> None:
        try:
            for _ in range(10):
                args = {"path": "log.txt", "content": lines[i], "append": True}
                tools[i]["write_file"].invoke(args)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=append, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    written = (ws / "log.txt").read_text().splitlines(keepends=True)
    assert sorted(written) == sorted(lines * 10)


def test_planexec_temp_names_are_reserved_anywhere_in_the_workspace(tools, ws) -> None:
    """A write's temporary file ('.planexec-tmp-…', renamed into place) is planexec's own: a
    half-written one is never read, replaced or listed, at the top or in a folder."""
    (ws / "sub").mkdir(parents=True)
    for temp in (ws / ".planexec-tmp-0123abcd", ws / "sub" / ".planexec-tmp-4567"):
        temp.write_text("half-written")
    for path in (".planexec-tmp-0123abcd", "sub/.planexec-tmp-4567", ".planexec-tmp-new"):
        with pytest.raises(ToolException, match="reserved for planexec"):
            tools["read_file"].invoke({"path": path})
        with pytest.raises(ToolException, match="reserved for planexec"):
            tools["write_file"].invoke({"path": path, "content": "x"})
    assert tools["list_files"].invoke({}) == "sub/"
    assert tools["list_files"].invoke({"path": "sub"}).startswith("(list_files: folder")
    assert (ws / ".planexec-tmp-0123abcd").read_text() == "half-written"
    assert not (ws / ".planexec-tmp-new").exists()


def test_a_socket_or_device_in_the_workspace_is_refused_by_name(tools, ws) -> None:
    """Only regular files: a Unix socket (and, where the test may make one, a character device
    like /dev/null) is refused as 'not a regular file', not opened and read."""
    ws.mkdir(exist_ok=True)
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(ws / "sock"))
        with pytest.raises(ToolException, match="not a regular file"):
            tools["write_file"].invoke({"path": "sock", "content": "x", "append": True})
        with pytest.raises(ToolException, match="not a regular file"):
            tools["write_file"].invoke({"path": "sock", "content": "x"})
        with pytest.raises(ToolException):  # opening a socket fails before any read
            tools["read_file"].invoke({"path": "sock"})
        assert stat.S_ISSOCK(os.lstat(ws / "sock").st_mode)
    try:
        os.mknod(ws / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("making a device node needs CAP_MKNOD; the socket part ran")
    for name, args in (
        ("read_file", {"path": "null"}),
        ("write_file", {"path": "null", "content": "x", "append": True}),
    ):
        with pytest.raises(ToolException, match="not a regular file"):
            tools[name].invoke(args)
    assert stat.S_ISCHR(os.lstat(ws / "null").st_mode)


def test_an_append_may_reach_the_cap_exactly_but_not_pass_it(tools, ws) -> None:
    tools["write_file"].invoke({"path": "a.txt", "content": "x" * 600})
    tools["write_file"].invoke({"path": "a.txt", "content": "y" * 400, "append": True})
    assert (ws / "a.txt").stat().st_size == 1000  # exactly the 1000-byte cap
    with pytest.raises(ToolException, match="appending would make it 1001 bytes"):
        tools["write_file"].invoke({"path": "a.txt", "content": "z", "append": True})
    assert (ws / "a.txt").read_text() == "x" * 600 + "y" * 400
    assert tools["read_file"].invoke({"path": "a.txt"}) == "x" * 600 + "y" * 400


def test_a_file_growing_during_reads_never_yields_more_than_the_cap(tools, ws) -> None:
    """Another process flips a file between 10 and 1001 bytes as fast as it can. The size seen
    before reading may be under the 1000-byte cap and the bytes read over it: every read must
    be whole text within the cap, or a refusal."""
    ws.mkdir(exist_ok=True)
    grow = ws / "grow.txt"
    grow.write_text("x")
    flipper = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, sys\n"
            "fd = os.open(sys.argv[1], os.O_WRONLY)\n"
            "while True:\n"
            "    os.ftruncate(fd, 10)\n"
            "    os.pwrite(fd, b'y' * 1001, 0)\n",
            str(grow),
        ]
    )
    sizes, over = set(), 0
    try:
        while grow.stat().st_size == 1 and flipper.poll() is None:  # until it has started
            time.sleep(0.01)
        for _ in range(2000):
            try:
                sizes.add(len(tools["read_file"].invoke({"path": "grow.txt"})))
            except ToolException as exc:
                assert "1000-byte limit" in str(exc) or "binary" in str(exc), exc
                over += 1
    finally:
        flipper.kill()
        flipper.wait(timeout=10)
    assert max(sizes, default=0) <= 1000, sizes
    assert over > 0  # the file was seen over the cap: the race really ran
