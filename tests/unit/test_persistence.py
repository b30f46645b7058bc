"""Database URLs: what is opened, and what is shown."""

from __future__ import annotations

import pytest

from app.runs.persistence import DatabaseURLError, open_persistence, parse_url, redact


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


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        ("memory://", ("memory", "memory://")),
        ("runs.sqlite", ("sqlite", "runs.sqlite")),
        ("sqlite:///runs.sqlite", ("sqlite", "runs.sqlite")),  # three slashes: relative
        ("sqlite:////srv/runs.sqlite", ("sqlite", "/srv/runs.sqlite")),  # four: absolute
        ("postgresql://u@h/db", ("postgres", "postgresql://u@h/db")),
        ("postgres://u@h/db", ("postgres", "postgres://u@h/db")),
    ],
)
def test_accepted_database_forms(url: str, parsed: tuple[str, str]) -> None:
    assert parse_url(url) == parsed


@pytest.mark.parametrize(
    "url", ["mysql://u@h/db", "mysql:", "sqlite://runs.sqlite", "sqlite:///", "http://x", " "]
)
def test_other_database_forms_are_refused_with_the_accepted_ones(url: str) -> None:
    with pytest.raises(DatabaseURLError) as refused:
        parse_url(url)
    assert "sqlite:///" in str(refused.value)


def test_a_file_that_is_not_sqlite_is_refused_unchanged(tmp_path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("my notes " * 100)
    with pytest.raises(DatabaseURLError, match="cannot read"):
        with open_persistence(str(path)):
            pass
    assert path.read_text() == "my notes " * 100
