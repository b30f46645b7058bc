"""Database URLs: what is opened, and what is shown."""

from __future__ import annotations

import pytest

from app.runs.persistence import open_persistence, redact


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:secret@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql://u:pa/ss@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql://u:p@ss@h/db", "postgresql://u:***@h/db"),
        (
            "postgresql://u@h/db?password=x&sslmode=off",
            "postgresql://u@h/db?password=***&sslmode=off",
        ),
        ("postgresql://h/db", "postgresql://h/db"),
        ("runs.sqlite", "runs.sqlite"),
    ],
)
def test_passwords_are_never_shown(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_sqlite_file_is_created_with_checkpointer_and_store(tmp_path) -> None:
    path = tmp_path / "sub" / "runs.sqlite"
    with open_persistence(str(path)) as p:
        p.store.put(("x",), "k", {"v": 1})
    assert path.exists()
    with open_persistence(f"sqlite:///{path}") as p:
        assert p.store.get(("x",), "k").value == {"v": 1}
