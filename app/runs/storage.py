"""What a run keeps on disk, and pruning finished runs.

A run leaves: its checkpoints (LangGraph checkpointer: one per node, with channel blobs and
pending writes), its journal (store items under ("planexec", "steps", thread_id, ...) and its
steps' model turns under ("planexec", "turns", thread_id, ...), see graphs/journal.py), its
record (store item ("planexec", "runs"), thread_id), the records of the files its steps wrote
(a folder per run in the workspace's `.planexec-writes/`, see tools/files.py) and, while it is
held, a lock (a file beside a SQLite database, released and removed when the run is let go).

`prune` removes all of it for finished runs older than a cut-off. It takes each run's lock first
(skipping runs held right now), so it is safe while workers run; a run in progress, interrupted or
paused has no `final_status` in its record and is never pruned. The workspace is the one in the
run's record, a relative one taken from where `prune` runs (as the database path is).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Collection
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from app.context import Context
from app.runs import runner
from app.runs.persistence import Persistence
from app.runs.worker import is_postgres, run_locks
from tools.files import remove_run_ledgers

JOURNAL_PREFIXES = (("planexec", "steps"), ("planexec", "turns"))  # graphs/journal.py


def checkpoint_bytes(persistence: Persistence, thread_id: str) -> int:
    """Bytes of the run's checkpoints, blobs and pending writes (payload, not page overhead)."""
    if is_postgres(persistence.url):
        queries = [
            "SELECT coalesce(sum(pg_column_size(checkpoint) + pg_column_size(metadata)), 0) "
            "FROM checkpoints WHERE thread_id = %s",
            "SELECT coalesce(sum(length(blob)), 0) FROM checkpoint_blobs WHERE thread_id = %s",
            "SELECT coalesce(sum(length(blob)), 0) FROM checkpoint_writes WHERE thread_id = %s",
        ]
        with psycopg.connect(persistence.url, autocommit=True, connect_timeout=10) as conn:
            return sum(int(conn.execute(q, (thread_id,)).fetchone()[0]) for q in queries)
    if persistence.url.startswith("memory://"):
        return 0
    queries = [
        "SELECT coalesce(sum(length(checkpoint) + length(metadata)), 0) FROM checkpoints "
        "WHERE thread_id = ?",
        "SELECT coalesce(sum(length(value)), 0) FROM writes WHERE thread_id = ?",
    ]
    with closing(sqlite3.connect(persistence.url, timeout=30)) as conn:
        return sum(int(conn.execute(q, (thread_id,)).fetchone()[0]) for q in queries)


@dataclass
class PruneReport:
    runs: list[str] = field(default_factory=list)
    checkpoint_bytes: int = 0
    journal_entries: int = 0
    write_records: int = 0
    skipped_busy: list[str] = field(default_factory=list)


def prunable(
    persistence: Persistence, older_than: float, statuses: Collection[str] | None = None
) -> list[str]:
    """Finished runs that finished more than `older_than` seconds ago (with one of `statuses`)."""
    cutoff = time.time() - older_than
    return [
        thread_id
        for thread_id, record in runner.run_records(persistence)
        if _prunable(record, cutoff, statuses)
    ]


def _prunable(record: dict, cutoff: float, statuses: Collection[str] | None) -> bool:
    return (
        "final_status" in record
        and record.get("finished_at", 0) <= cutoff
        and (not statuses or record["final_status"] in statuses)
    )


def prune(
    persistence: Persistence,
    older_than: float,
    statuses: Collection[str] | None = None,
    dry_run: bool = False,
) -> PruneReport:
    """Remove finished runs older than `older_than` seconds: checkpoints, journal, record."""
    report = PruneReport()
    cutoff = time.time() - older_than
    with run_locks(persistence) as locks:
        for thread_id in prunable(persistence, older_than, statuses):
            if not locks.try_acquire(thread_id):
                report.skipped_busy.append(thread_id)
                continue
            try:
                # Read again under the lock: listed as finished, the run may have been resumed
                # since (and be interrupted now, or finished later than the cut-off).
                record = persistence.store.get(runner.RUNS_NAMESPACE, thread_id)
                if record is None or not _prunable(dict(record.value), cutoff, statuses):
                    continue
                report.checkpoint_bytes += checkpoint_bytes(persistence, thread_id)
                journal = _journal_items(persistence, thread_id)
                report.journal_entries += len(journal)
                report.runs.append(thread_id)
                workspace, run_ids = _write_records_of(persistence, thread_id, journal)
                if dry_run:
                    report.write_records += remove_run_ledgers(workspace, run_ids, dry_run=True)
                    continue
                # The write records first: they are found again from the checkpoints and the
                # journal, so a prune stopped half-way still finds them next time.
                report.write_records += remove_run_ledgers(workspace, run_ids)
                for namespace, key in journal:
                    persistence.store.delete(namespace, key)
                persistence.checkpointer.delete_thread(thread_id)
                # The record last: a prune stopped half-way is found and finished next time.
                persistence.store.delete(runner.RUNS_NAMESPACE, thread_id)
            finally:
                locks.release(thread_id)
    return report


def _journal_items(persistence: Persistence, thread_id: str) -> list[tuple[tuple[str, ...], str]]:
    """The thread's step journal and model turns, as (namespace, key)."""
    items: list[tuple[tuple[str, ...], str]] = []
    page = 1000
    for prefix in JOURNAL_PREFIXES:
        seen = 0
        while True:
            found = persistence.store.search((*prefix, thread_id), limit=page, offset=seen)
            seen += len(found)
            # The SQLite store joins a namespace with dots: ("a.b",) reads as ("a", "b") there.
            ours = [i for i in found if i.namespace[2:3] == (thread_id,)]
            items += [(tuple(i.namespace), i.key) for i in ours]
            if len(found) < page:
                break
    return items


def _write_records_of(
    persistence: Persistence, thread_id: str, journal: list[tuple[tuple[str, ...], str]]
) -> tuple[Path, set[str]]:
    """The run's workspace (from its record) and the ids of the runs its thread held (from
    every checkpoint and the journal): what names its write records."""
    record = persistence.store.get(runner.RUNS_NAMESPACE, thread_id)
    context = (record.value if record else {}).get("context") or {}
    workspace = Path(context.get("workspace") or Context().workspace)
    run_ids = {namespace[3] for namespace, _ in journal if len(namespace) > 3}
    config = {"configurable": {"thread_id": thread_id}}
    for saved in persistence.checkpointer.list(config):
        run_id = saved.checkpoint.get("channel_values", {}).get("run_id")
        if isinstance(run_id, str):
            run_ids.add(run_id)
    run_ids.discard("-")  # the journal's name for "no run id"
    return workspace, run_ids
