"""A PostgreSQL schema whose tables of planexec's names are someone else's is refused, untouched."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.runs.persistence import ForeignDatabase, open_persistence
from tests.integration.pg import temporary_schema

pytestmark = pytest.mark.integration


def test_a_schema_with_a_foreign_store_table_is_refused_and_left_unchanged() -> None:
    with temporary_schema() as pg:
        with pg.connect() as conn:
            conn.execute(f'CREATE TABLE "{pg.name}".store (id serial PRIMARY KEY, item text)')
            conn.execute(f"INSERT INTO \"{pg.name}\".store (item) VALUES ('mine')")
            # Another application's tables beside planexec's are fine in PostgreSQL.
            conn.execute(f'CREATE TABLE "{pg.name}".orders (id int)')
        with pytest.raises(ForeignDatabase, match=r"tables planexec did not create \(store\)"):
            with open_persistence(pg.url):
                pass
        assert pg.tables(pg.name) == {"store", "orders"}  # no checkpoint tables were added

        with pg.connect() as conn:
            conn.execute(f'DROP TABLE "{pg.name}".store')
        with open_persistence(pg.url) as persistence:  # the other table is no reason to refuse
            persistence.store.put(("x",), "k", {"v": 1})
        assert {"store", "checkpoints", "orders"} <= pg.tables(pg.name)


def test_a_run_in_a_database_this_user_cannot_write_is_refused_before_it_goes_on() -> None:
    """resume read the checkpoint of a read-only SQLite file, started the run and failed at its
    first write (exit 1). Now it is refused first (exit 4), saying which file; `show` and
    `runs` still read it. Run as another user (root writes anything)."""
    import os
    import shutil
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from tests.helpers import clean_env

    as_user: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.fail("setpriv (util-linux) is needed to run this test as root")
        as_user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    folder = Path(tempfile.mkdtemp(prefix="planexec-ro-", dir="/tmp"))
    try:
        folder.chmod(0o755)
        db = folder / "runs.sqlite"
        script = (
            "import os, sys\n"
            "from app.context import Context\n"
            "from app.runs import runner\n"
            "from app.runs.persistence import open_persistence\n"
            "with open_persistence(sys.argv[1]) as p:\n"
            "    runner.submit_run(p, 'go', Context.every_role('scripted:demo',"
            " workspace=sys.argv[2]), 't')\n"
            "    os._exit(0)  # as a kill: the -wal and -shm files stay\n"
        )
        subprocess.run([sys.executable, "-c", script, str(db), str(folder / "ws")], check=True)
        assert Path(f"{db}-wal").exists()
        for file in folder.iterdir():
            file.chmod(0o444)
        if not as_user:
            folder.chmod(0o555)

        def planexec(*args: str) -> subprocess.CompletedProcess[str]:
            command = [*as_user, sys.executable, "-m", "app.cli.commands", *args]
            env = {**clean_env(), "HOME": str(folder)}
            return subprocess.run(
                command, cwd=folder, env=env, capture_output=True, text=True, timeout=120
            )

        resumed = planexec("resume", "t", "--db", str(db))
        assert resumed.returncode == 4, resumed.stderr
        assert f"'{db}' is read-only to this user; make it writable" in resumed.stderr
        shown = planexec("show", "t", "--db", str(db), "--json")
        assert shown.returncode == 0, shown.stderr
        assert '"status": "interrupted"' in shown.stdout
        assert planexec("runs", "--db", str(db)).returncode == 0
    finally:
        folder.chmod(0o755)
        shutil.rmtree(folder, ignore_errors=True)


def test_a_server_that_takes_the_connection_and_never_answers_is_given_up_on(
    tmp_path: Path,
) -> None:
    """Every wait has a timeout: `runs` and `run` waited for good on a PostgreSQL URL whose
    server accepted the connection and said nothing (a hung server, a wrong port behind a
    proxy). They now give up after the connect timeout, exit 4 and name the URL."""
    import socket
    import time

    from app.runs.persistence import CONNECT_TIMEOUT_S
    from tests.helpers import run_cli

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    url = f"postgresql://postgres@127.0.0.1:{listener.getsockname()[1]}/test"
    try:
        for args in (("runs",), ("run", "g", "--scenario", "demo")):
            started = time.monotonic()
            proc = run_cli(*args, "--db", url, cwd=tmp_path, timeout=CONNECT_TIMEOUT_S * 6)
            assert proc.returncode == 4, proc.stdout + proc.stderr
            assert "cannot connect to PostgreSQL at postgresql://" in " ".join(proc.stderr.split())
            assert time.monotonic() - started < CONNECT_TIMEOUT_S * 4
    finally:
        listener.close()
