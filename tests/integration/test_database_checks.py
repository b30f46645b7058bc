"""A PostgreSQL schema whose tables of planexec's names are someone else's is refused, untouched."""

from __future__ import annotations

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
