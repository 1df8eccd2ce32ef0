"""``Prepared`` statements on SQLite run on the driver's cursor: the same answers, errors and
transactions as through SQLAlchemy's execution, which PostgreSQL keeps."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, insert, select
from sqlalchemy.exc import IntegrityError, MultipleResultsFound, NoResultFound

from closeguard.store import Store
from closeguard.store.core import DriverResult, prepare

META = MetaData()
ITEMS = Table(
    "items",
    META,
    Column("id", Integer, primary_key=True),
    Column("name", String(20), nullable=False, unique=True),
    Column("size", Integer),
)


@pytest.fixture
def items(store: Store) -> Store:
    META.create_all(store.engine)
    with store.engine.begin() as conn:
        conn.execute(insert(ITEMS), [{"id": i, "name": f"n{i}", "size": i % 3} for i in range(6)])
    return store


BY_SIZE = select(ITEMS.c.id, ITEMS.c.name).where(ITEMS.c.size == bindparam("size", 0))
BY_ID = select(ITEMS.c.name, ITEMS.c.size).where(ITEMS.c.id == bindparam("id", 0))


def _both(store: Store, statement: Any, values: dict[str, Any], how: str) -> tuple[Any, Any]:
    """``how`` applied to the prepared statement's result and to SQLAlchemy's own."""
    with store.engine.connect() as conn:
        sql = prepare(conn, statement)
        driver = sql.execute(conn, values)
        assert isinstance(driver, DriverResult)
        theirs = conn.execute(statement, values)
        return getattr(driver, how)(), getattr(theirs, how)()


@pytest.mark.parametrize("how", ["first", "all", "scalar"])
@pytest.mark.parametrize("size", [0, 2, 7])
def test_answers_match_sqlalchemys(items: Store, how: str, size: int) -> None:
    ours, theirs = _both(items, BY_SIZE, {"size": size}, how)
    if how == "all":
        assert [tuple(r) for r in ours] == [tuple(r) for r in theirs]
        assert [r._mapping for r in ours] == [dict(r._mapping) for r in theirs]
    elif how == "first" and theirs is not None:
        assert tuple(ours) == tuple(theirs) and (ours.id, ours.name) == (theirs.id, theirs.name)
    else:
        assert ours == theirs


def test_one_and_scalar_one(items: Store) -> None:
    ours, theirs = _both(items, BY_ID, {"id": 4}, "one")
    assert tuple(ours) == tuple(theirs) == ("n4", 1)
    assert ours.size == 1 and ours._mapping == {"name": "n4", "size": 1}
    with pytest.raises(AttributeError):
        _ = ours.nope
    assert _both(items, BY_ID, {"id": 4}, "scalar_one") == ("n4", "n4")
    with items.engine.connect() as conn:
        with pytest.raises(NoResultFound):
            prepare(conn, BY_ID).execute(conn, {"id": 99}).one()
        with pytest.raises(MultipleResultsFound):
            prepare(conn, BY_SIZE).execute(conn, {"size": 1}).scalar_one()
        assert [tuple(r) for r in prepare(conn, BY_SIZE).execute(conn, {"size": 1})] == [
            (1, "n1"),
            (4, "n4"),
        ]


def test_rowcount_transactions_and_errors(items: Store) -> None:
    rename = ITEMS.update().where(ITEMS.c.id == bindparam("i", 0)).values(name=bindparam("n", ""))
    add = insert(ITEMS).values(id=bindparam("id", 0), name=bindparam("name", ""))
    with items.engine.connect() as conn:
        sql = prepare(conn, add)
        assert not conn.in_transaction()
        sql.execute(conn, {"id": 10, "name": "ten"})
        assert conn.in_transaction()  # begun as SQLAlchemy's autobegin would
        conn.rollback()
    with items.engine.connect() as conn:
        assert conn.execute(select(ITEMS.c.id).where(ITEMS.c.id == 10)).first() is None
    with items.engine.begin() as conn:
        assert prepare(conn, add).execute(conn, {"id": 10, "name": "ten"}).rowcount == 1
        with pytest.raises(IntegrityError) as caught:
            prepare(conn, add).execute(conn, {"id": 11, "name": "ten"})
        assert "UNIQUE" in str(caught.value.orig)
        assert prepare(conn, rename).execute(conn, {"i": 2, "n": "x"}).rowcount == 1
        assert prepare(conn, rename).execute(conn, {"i": 99, "n": "y"}).rowcount == 0
    with items.engine.connect() as conn:
        names = {r.id: r.name for r in conn.execute(select(ITEMS.c.id, ITEMS.c.name))}
        assert names[10] == "ten" and names[2] == "x" and 11 not in names
