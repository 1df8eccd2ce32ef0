"""The ``Store``: one SQLAlchemy engine and the tables closeguard persists to.

SQLite (the default, a file in the user data dir, created on first use) or PostgreSQL
(``postgresql://…`` is run with psycopg 3). Tables are created on first use and migrated
to the newest schema version on every open (Alembic revisions in ``migrations/``); a
``schema`` puts them in a PostgreSQL schema of their own (used by tests and side-by-side installs).
``Store(url, create=False)`` opens only a store that already exists (commands that just
read must not leave an empty database behind), else raises ``StoreError``; either way, the
tables of a group added since the store was created are added to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import importlib
import queue
import sqlite3
import threading
import weakref
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import Connection, MetaData, Table, bindparam, create_engine, event, inspect
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import DBAPIError, MultipleResultsFound, NoResultFound, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from closeguard.store.migrations import upgrade as migrate
from closeguard.store.walcheck import WalCheckpoints
from closeguard.tools.errors import StoreError
from closeguard.tools.settings import store_url

__all__ = [
    "GROUPS",
    "Prepared",
    "Store",
    "TableGroup",
    "Tables",
    "default_store",
    "dialect_insert",
    "display_url",
    "normalize_url",
    "prepare",
    "store_problem",
    "table_group",
]


def normalize_url(url: str | URL, *, create_dir: bool = True) -> URL:
    """Pin the psycopg 3 driver for PostgreSQL and (if ``create_dir``) make a SQLite file's
    folder exist."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if create_dir and _sqlite_file(parsed) is not None:
        Path(str(parsed.database)).expanduser().parent.mkdir(parents=True, exist_ok=True)
    return parsed


def _sqlite_file(url: URL) -> Path | None:
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(str(url.database)).expanduser()


P = ParamSpec("P")
T = TypeVar("T")

TableGroup = Callable[[MetaData], object]
"""A table group's ``define(metadata)``: adds the group's tables to ``metadata``."""

_GROUPS: dict[str, TableGroup] = {}


def table_group(define: TableGroup) -> TableGroup:
    """Register a table group: decorate the group module's ``define(metadata)`` with it.

    ``Tables`` calls every registered ``define`` (in registration order) on its one shared
    ``MetaData``, so ``create_all``, ``create=False`` checks and ``drop_all`` cover the
    group; the module only has to be imported, which ``Tables`` does for every module named
    in ``GROUPS``.
    """
    _GROUPS[define.__module__] = define
    return define


GROUPS = (
    "approvals",
    "audit",
    "budget",
    "cursors",
    "effects",
    "fates",
    "inbox",
    "quotas",
    "reminders",
    "rotation",
    "runs",
    "sessions",
    "users",
)
"""The table group modules of ``closeguard.store``: ``Tables`` imports each first (which
registers its tables), so importing the package or one light module of it imports none."""


@functools.cache
def _load_groups() -> None:
    for name in GROUPS:
        importlib.import_module(f"closeguard.store.{name}")


class Tables:
    """Every registered group's tables on one ``MetaData`` (optionally in a schema).

    A table is an attribute by its name (``tables.audit``) or an item (``tables["audit"]``).
    """

    def __init__(self, schema: str | None = None) -> None:
        _load_groups()
        self.metadata = MetaData(schema=schema)
        for define in _GROUPS.values():
            define(self.metadata)
        self._by_name = {t.name: t for t in self.metadata.tables.values()}

    def __getitem__(self, name: str) -> Table:
        return self._by_name[name]

    def __getattr__(self, name: str) -> Table:
        try:
            return self.__dict__["_by_name"][name]  # type: ignore[no-any-return]
        except KeyError:
            raise AttributeError(f"no table {name!r} in the store") from None


_BUSY_TIMEOUT_MS = 10_000
"""How long a SQLite statement waits for another connection's write lock (the thread's)."""


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
    cursor.close()


def _hand_over(checkpoints: WalCheckpoints, dbapi_conn: Any, _record: Any) -> None:
    """A new connection to a store's SQLite file leaves checkpoints to the store's thread
    for them, while it runs (a store used again after ``dispose`` checkpoints as SQLite
    does by default)."""
    if not checkpoints.closed:
        WalCheckpoints.hand_over(dbapi_conn)


_IMMEDIATE: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "closeguard_store_immediate", default=None
)
"""While an inline trip runs (``Store.trip``): ``"ready"`` until its transaction begins
(taking SQLite's write lock, or giving up at once), then ``"begun"``."""


class _Contended(BaseException):
    """An inline trip found SQLite's write lock taken as its transaction began (nothing of
    it has run in the database): the trip goes to the store's thread, which may wait.

    A ``BaseException``, so that no ``except Exception`` in the trip's function takes it
    for a failure of its own."""


def _begin_immediate(conn: Connection) -> None:
    """``ConnectionEvents.begin`` on a SQLite file store: in an inline trip, ``BEGIN
    IMMEDIATE`` without waiting, so the trip either holds the write lock from its first
    statement (none of them can then wait on another writer) or does not start at all."""
    state = _IMMEDIATE.get()
    if state is None:
        return
    if state == "begun":
        # Its first transaction may have committed: calling it again on the thread would
        # do that work twice.
        raise RuntimeError("a store trip opens one transaction; use Store.run for more")
    _IMMEDIATE.set("begun")
    dbapi_conn = conn.connection.dbapi_connection
    assert dbapi_conn is not None
    dbapi_conn.execute("PRAGMA busy_timeout=0")
    try:
        dbapi_conn.execute("BEGIN IMMEDIATE")
    except conn.dialect.loaded_dbapi.OperationalError as exc:
        raise _Contended from exc
    finally:
        dbapi_conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")


def _immediately(fn: Callable[..., T], args: Any, kwargs: Any) -> T:
    _IMMEDIATE.set("ready")
    return fn(*args, **kwargs)


def _search_path(schema: str, dbapi_conn: Any, _record: Any) -> None:
    """Unqualified names (procrastinate's functions, LangGraph's tables) resolve in
    ``schema`` first."""
    cursor = dbapi_conn.cursor()
    cursor.execute(f'SET search_path TO "{schema}", public')
    cursor.close()
    dbapi_conn.commit()


def display_url(url: str | URL) -> str:
    """The URL fit to print: password hidden, or nothing if it cannot even be parsed."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (SQLAlchemyError, ValueError):
        return "<an unparseable URL>"


def _reason(exc: Exception) -> str:
    return str(getattr(exc, "orig", None) or exc).splitlines()[0]


def _cannot_open(url: str | URL, exc: Exception) -> StoreError:
    return StoreError(
        f"cannot open the store at {display_url(url)} (CLOSEGUARD_STORE_URL): {_reason(exc)}"
    )


def _missing(engine: Engine, tables: Tables) -> str | None:
    """Why ``engine`` holds no closeguard store, or ``None`` if it holds one.

    A store that lacks only some tables (written before a table group was added) is a store:
    opening it adds the missing tables.
    """
    file = _sqlite_file(engine.url)
    if file is not None and not file.is_file():
        return "the file does not exist"
    if file is None and engine.dialect.name == "sqlite":
        return "an in-memory database starts empty"
    present = set(inspect(engine).get_table_names(schema=tables.metadata.schema))
    if not present & {t.name for t in tables.metadata.sorted_tables}:
        return "the database has no closeguard tables"
    return None


def store_problem(url: str | URL, *, schema: str | None = None) -> str | None:
    """Why there is no usable closeguard store at ``url``, in a few words, or ``None`` when
    there is one. Creates nothing; an unreachable database is a problem, not an error."""
    try:
        engine = create_engine(normalize_url(url, create_dir=False), future=True)
        try:
            return _missing(engine, Tables(schema))
        finally:
            engine.dispose()
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        return f"cannot be opened: {_reason(exc)}"


def dialect_insert(dialect: str, table: Table) -> Any:
    """The dialect's ``INSERT`` (it has ``ON CONFLICT``). PostgreSQL's is imported only
    when used: a SQLite store's commands do not pay its ~15 ms import."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert

        return insert(table)
    return sqlite_insert(table)


def _insert_new(
    dialect: str, table: Table, columns: Sequence[str], conflict: Sequence[str], returning: str
) -> Any:
    """One row's ``INSERT ... ON CONFLICT (conflict) DO NOTHING RETURNING returning``, its
    ``columns`` bound by name (``Store.insert_new``)."""
    values = {c: bindparam(c, None, type_=table.c[c].type) for c in columns}
    return (
        dialect_insert(dialect, table)
        .values(values)
        .on_conflict_do_nothing(index_elements=list(conflict))
        .returning(table.c[returning])
    )


_worker_lock = threading.Lock()

_Call = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[[], Any]]


def _settle(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():
        future.set_result(result)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


class _Traffic:
    """What the store's thread has been given and has done, and the lock it holds while it
    runs a call: an inline trip (``Store.trip``) runs only when the thread is idle with
    nothing queued, so trips run in the order they were made, one at a time."""

    def __init__(self) -> None:
        self.busy = threading.Lock()
        self.sent = 0
        """Calls handed to the thread (counted in the callers' threads)."""
        self.done = 0
        """Calls the thread is finished with, skipped ones included (its own count)."""


def _serve(calls: queue.SimpleQueue[_Call | None], traffic: _Traffic) -> None:
    """The store thread's loop: each call in turn, its outcome handed to its caller's loop.

    A call whose caller stopped waiting before it started is skipped; one whose loop has
    closed since is run all the same (its writes may matter), its outcome dropped.
    """
    while (item := calls.get()) is not None:
        loop, future, call = item
        del item
        settle: Callable[[asyncio.Future[Any], Any], None] | None = None
        outcome: Any = None
        with traffic.busy:
            if not future.cancelled():
                settle = _settle
                try:
                    outcome = call()
                except BaseException as exc:
                    outcome, settle = exc, _fail
            traffic.done += 1
        # Settled once the thread is idle again: a trip its caller makes next finds it so.
        if settle is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, future, outcome)
        del future, call, outcome


_live: weakref.WeakKeyDictionary[threading.Thread, queue.SimpleQueue[_Call | None]] = (
    weakref.WeakKeyDictionary()
)
_exiting = False


def _stop_all() -> None:
    """At interpreter exit: let every store thread finish its queued calls, then end."""
    global _exiting
    with _worker_lock:
        _exiting = True
        items = list(_live.items())
    for _, calls in items:
        calls.put(None)
    for thread, _ in items:
        thread.join()


threading._register_atexit(_stop_all)  # type: ignore[attr-defined]


class _Worker:
    """The store's one thread and its queue of calls.

    Cheaper per call than ``run_in_executor`` on a one-thread pool (no concurrent future,
    no chaining, no pool bookkeeping): the caller's loop gets a plain future, settled by one
    ``call_soon_threadsafe``. The thread ends when the store is disposed or collected, and
    at interpreter exit after its queued calls (as a pool's thread would).
    """

    def __init__(self, traffic: _Traffic) -> None:
        self.calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self.thread = threading.Thread(
            target=_serve, args=(self.calls, traffic), name="closeguard-store", daemon=True
        )
        if _exiting:
            raise RuntimeError("cannot start a store thread after interpreter shutdown")
        _live[self.thread] = self.calls
        self.thread.start()
        weakref.finalize(self, self.calls.put, None)

    def shutdown(self) -> None:
        """Finish the queued calls and end the thread."""
        self.calls.put(None)
        if self.thread is not threading.current_thread():
            self.thread.join()


def _engine_options(url: URL) -> dict[str, Any]:
    """An in-memory SQLite database is one connection: share it with the worker thread
    (SQLAlchemy's default gives each thread a database of its own)."""
    if url.get_backend_name() == "sqlite" and _sqlite_file(url) is None:
        return {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
    return {}


class _Row(tuple[Any, ...]):
    """A row of a ``Prepared`` statement run on the driver: a tuple with what callers use
    of SQLAlchemy's ``Row`` (columns as attributes, ``_mapping``). One subclass per
    statement holds its column names."""

    __slots__ = ()
    _fields: tuple[str, ...] = ()
    _index: Mapping[str, int] = {}

    @property
    def _mapping(self) -> dict[str, Any]:
        return dict(zip(self._fields, self, strict=True))

    def __getattr__(self, name: str) -> Any:
        try:
            return self[self._index[name]]
        except KeyError:
            raise AttributeError(name) from None


def _row_type(description: Sequence[Sequence[Any]]) -> type[_Row]:
    names = tuple(str(d[0]) for d in description)
    index = {n: i for i, n in reversed(list(enumerate(names)))}
    return type("Row", (_Row,), {"__slots__": (), "_fields": names, "_index": index})


class DriverResult:
    """What SQLAlchemy's ``CursorResult`` offers the hot path (``first``, ``one``,
    ``scalar``, ``scalar_one``, ``all``, iteration, ``rowcount``), over a DBAPI cursor."""

    __slots__ = ("_cursor", "_prepared", "rowcount")

    def __init__(self, cursor: Any, prepared: Prepared) -> None:
        self._cursor = cursor
        self._prepared = prepared
        self.rowcount: int = cursor.rowcount

    def _type(self) -> type[_Row]:
        kind = self._prepared.row_type
        if kind is None:
            kind = _row_type(self._cursor.description)
            object.__setattr__(self._prepared, "row_type", kind)
        return kind

    def all(self) -> list[_Row]:
        cursor = self._cursor
        if cursor.description is None:
            cursor.close()
            return []
        kind = self._type()
        rows = [kind(r) for r in cursor.fetchall()]
        cursor.close()
        return rows

    def __iter__(self) -> Iterator[_Row]:
        return iter(self.all())

    def first(self) -> _Row | None:
        cursor = self._cursor
        if cursor.description is None:
            cursor.close()
            return None
        row = cursor.fetchone()
        cursor.close()
        return None if row is None else self._type()(row)

    def scalar(self) -> Any:
        row = self.first()
        return None if row is None else row[0]

    def one(self) -> _Row:
        rows = self.all()
        if len(rows) != 1:
            if rows:
                raise MultipleResultsFound("Multiple rows were found when exactly one was required")
            raise NoResultFound("No row was found when one was required")
        return rows[0]

    def scalar_one(self) -> Any:
        return self.one()[0]


@dataclass(frozen=True)
class Prepared:
    """A statement compiled once for a store's dialect: its SQL string for the driver.

    The hot path's statements are built and compiled on first use only; each later
    execution hands the driver the string and the values, without building a SQLAlchemy
    construct or its cache key (most of a small query's CPU otherwise). On SQLite the
    statement goes to the DBAPI cursor itself, inside the connection's transaction: what
    SQLAlchemy's execution adds around a cursor (events, result metadata, ``Row`` objects)
    cost 12-30 us a statement, over 3-5 for the statement, and a workflow run makes 18.
    """

    sql: str
    defaults: Mapping[str, Any]
    """The values bound in the statement itself (its literals)."""
    names: tuple[str, ...] | None
    """The bound parameters' names in the order a positional driver (SQLite) takes them;
    None for a driver taking a mapping (psycopg)."""
    row_type: type[_Row] | None = field(default=None, compare=False)
    """The rows' class, made from the first result's columns."""

    def execute(self, conn: Connection, values: Mapping[str, Any] | None = None) -> Any:
        """Execute in ``conn``'s transaction (begun here if none is: SQLAlchemy's autobegin);
        a ``DriverResult`` on SQLite, SQLAlchemy's ``CursorResult`` on PostgreSQL (whose
        errors SQLAlchemy must see, to retire a connection the server dropped). A driver
        error is raised as SQLAlchemy raises it (``IntegrityError``, ``OperationalError``)."""
        given = {**self.defaults, **values} if values else self.defaults
        if self.names is None:
            return conn.exec_driver_sql(self.sql, dict(given))
        params = tuple(given[n] for n in self.names)
        if not conn.in_transaction():
            conn.begin()
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(self.sql, params)
        except sqlite3.Error as exc:
            cursor.close()
            raise DBAPIError.instance(
                self.sql, params, exc, sqlite3.Error, dialect=conn.dialect
            ) from exc
        return DriverResult(cursor, self)


def prepare(conn: Connection, statement: Any) -> Prepared:
    """Compile ``statement`` for ``conn``'s dialect. Its ``bindparam``s need a value of the
    right type (any) so that ``IN`` lists can be rendered; ``execute`` replaces them."""
    compiled = statement.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    names = tuple(compiled.positiontup or ()) if compiled.positional else None
    return Prepared(str(compiled), dict(compiled.params), names)


class Store:
    """An engine plus closeguard's tables, created on first use unless ``create=False``.

    The sync methods of the table groups block; async code runs them with ``await
    store.run(fn, *args)`` on the store's own worker thread, never on the event loop, except
    a run's short hot-path writes (``store.trip``), which on SQLite run in the loop's thread
    whenever that cannot wait on a lock.
    """

    _worker: _Worker | None = None
    trips = 0
    """Store trips made so far (``run`` and ``trip``), numbered in the order they were made,
    which is the order they run in: a trip numbered after another sees what it committed."""
    handoffs = 0
    """Calls handed to the store's thread so far (``run``, and ``trip`` when it could not
    run inline): the benches count them per run."""
    contended = 0
    """Inline trips that found SQLite's write lock taken, and went to the thread instead."""
    revision_before: str | None = None
    """The schema version the store was at when opened (None: new, or made before versions)."""
    checkpoints: WalCheckpoints | None = None
    """A SQLite file's WAL checkpoints, run on their own thread (``store.walcheck``): a
    commit of the store (an audit flush, an inline trip on the loop) never copies the log
    back nor waits for its fsync."""

    def __init__(
        self, url: str | URL | None = None, *, schema: str | None = None, create: bool = True
    ) -> None:
        if url is None:
            url = store_url()
        self._prepared: dict[Hashable, Prepared] = {}
        try:
            self.url = normalize_url(url, create_dir=create)
            self.schema = schema
            self.engine: Engine = create_engine(self.url, future=True, **_engine_options(self.url))
            self.tables = Tables(schema)
            self._traffic = _Traffic()
            path = _sqlite_file(self.url)
            self.inline = path is not None
            """Whether ``trip`` may run its call in the caller's thread (a SQLite file)."""
            if self.dialect == "sqlite":
                event.listen(self.engine, "connect", _sqlite_pragmas)
                if path is not None:
                    event.listen(self.engine, "begin", _begin_immediate)
                    self._watch(path)
            elif schema is not None:
                event.listen(self.engine, "connect", partial(_search_path, schema))
            missing = None if create else _missing(self.engine, self.tables)
            if missing is None:
                self.revision_before = migrate(self.engine, self.tables.metadata)
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            self._unwatch()
            raise _cannot_open(url, exc) from exc
        if missing is not None:
            self._unwatch()
            self.engine.dispose()
            raise StoreError(
                f"no closeguard store at {display_url(url)} (CLOSEGUARD_STORE_URL): {missing}; "
                "guarded calls create it"
            )

    def _watch(self, path: Path) -> None:
        """Checkpoint the file on the checkpoint thread, every connection handing over from
        its first (so before the schema is read or migrated); until ``dispose``, or until
        the store is collected (a constructor that failed included)."""
        self.checkpoints = checkpoints = WalCheckpoints(path)
        event.listen(self.engine, "connect", partial(_hand_over, checkpoints))
        weakref.finalize(self, checkpoints.close)

    def _unwatch(self) -> None:
        if self.checkpoints is not None:
            self.checkpoints.close()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def prepared(self, conn: Connection, key: Hashable, build: Callable[[], Any]) -> Prepared:
        """The statement ``build()`` makes, compiled once per store under ``key``."""
        found = self._prepared.get(key)
        if found is None:
            found = self._prepared[key] = prepare(conn, build())
        return found

    def insert_new(
        self,
        conn: Connection,
        table: Table,
        row: Mapping[str, Any],
        conflict: Sequence[str],
        returning: str,
    ) -> list[str]:
        """Insert ``row`` into ``table`` unless a row with the same ``conflict`` columns is
        there, in ``conn``'s transaction: the new row's ``returning`` column (none if it was
        there). Compiled once per store, table and set of columns: the hot path's
        single-row inserts."""
        sql = self.prepared(
            conn,
            ("insert_new", table.name, tuple(row)),
            lambda: _insert_new(self.dialect, table, tuple(row), conflict, returning),
        )
        return [str(r[0]) for r in sql.execute(conn, row)]

    def drop_all(self) -> None:
        """Drop closeguard's tables (tests, ``reset``)."""
        self.tables.metadata.drop_all(self.engine)

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` on this store's worker thread, awaited: store access
        from async code that leaves the event loop free.

        One thread per store, so calls run one at a time in the order they were made (what
        SQLite's single writer wants anyway) and a connection never changes thread. A
        cancelled caller stops waiting; a call already started still runs to its end. As
        with ``asyncio.to_thread``, ``fn`` sees the caller's context variables.
        """
        self.trips += 1
        return await self._hand_off(fn, *args, **kwargs)

    async def trip(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """``run`` for a short write in one transaction (a run's hot path): on a SQLite
        file, ``fn`` runs right here in the event loop's thread, when the store's thread is
        idle with nothing queued and SQLite's write lock is free; otherwise on the thread.

        Why: each hand-off to the thread costs the loop's thread a wake-up and both threads
        a tug of war over the GIL while SQLite works (pysqlite lets it go on every
        statement): about a quarter of a workflow run's CPU (``bench/webhooks.py``). A
        trip's transaction begins with ``BEGIN IMMEDIATE`` and gives up at once if another
        connection (another process, or this store's thread) holds the write lock, so the
        loop never waits on a lock: ``fn`` then runs on the thread instead, which waits as
        ``run`` does. ``fn`` must open its transaction before it changes anything else, and
        open only one (the usual ``with store.engine.begin() as conn:`` first): it is
        called again on the thread when its first try could not begin, and a second
        transaction in an inline trip is refused (``RuntimeError``). The loop's
        thread does block for the trip's own statements and commit, as for
        ``LoopSqliteSaver``'s checkpoints: well under a millisecond.
        """
        traffic = self._traffic
        if self.inline and traffic.done >= traffic.sent and traffic.busy.acquire(blocking=False):
            self.trips += 1
            try:
                return contextvars.copy_context().run(_immediately, fn, args, kwargs)
            except _Contended:
                self.contended += 1
            finally:
                traffic.busy.release()
            return await self._hand_off(fn, *args, **kwargs)
        return await self.run(fn, *args, **kwargs)

    async def _hand_off(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        worker = self._worker or self._start()
        self.handoffs += 1
        self._traffic.sent += 1
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        call = partial(contextvars.copy_context().run, fn, *args, **kwargs)
        worker.calls.put((loop, future, call))
        return await future  # type: ignore[no-any-return]

    def _start(self) -> _Worker:
        with _worker_lock:
            if self._worker is None:
                self._worker = _Worker(self._traffic)
            return self._worker

    def dispose(self) -> None:
        """Finish queued ``run`` calls, stop the worker thread, close the connections."""
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.shutdown()
        self._unwatch()
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Store({self.url.render_as_string(hide_password=True)!r})"


_default: dict[str, Store] = {}
_default_lock = threading.Lock()


def default_store(*, create: bool = True) -> Store:
    """The process-wide store for ``CLOSEGUARD_STORE_URL`` (one per URL); with
    ``create=False``, only one that already exists (else ``StoreError``)."""
    url = store_url()
    with _default_lock:
        if url not in _default:
            _default[url] = Store(url, create=create)
        return _default[url]
