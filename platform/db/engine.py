"""Engine and sessions: SQLite (WAL, foreign keys, busy timeout) by default, PostgreSQL by URL.

SQLite transactions are real: the Python driver's own transaction handling (which emits no BEGIN
before a SELECT or a SAVEPOINT, so every RELEASE SAVEPOINT committed on its own) is switched off and
segloop emits BEGIN itself, as SQLAlchemy's pysqlite documentation describes. Writable databases begin
with BEGIN IMMEDIATE: a transaction takes the write lock up front (waiting up to the busy timeout), so
a read-then-write never fails on a snapshot another process changed meanwhile. A database file this
user cannot write is opened read-only, so read commands still work on it.

A new database file starts in rollback-journal mode; the first connections switch it to WAL (a mode the
file keeps). When two processes switch the same new file at once, SQLite fails one at once with "database
is locked" instead of waiting (neither may wait for the other's read lock), so that switch is retried until
the busy timeout runs out.
"""
from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.orm import Session, sessionmaker

from segloop.platform.core.settings import Settings, load_settings

SQLITE_BUSY_TIMEOUT_MS = 30_000
SQLITE_HEADER = b"SQLite format 3\x00"
WAL_RETRY_SECONDS = 0.02


class DatabaseFileError(ValueError):
    """The SQLite database file is damaged, or missing while the data dir holds stored videos."""


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    """Turn on WAL, foreign keys and a busy timeout for every new SQLite connection."""
    cursor = dbapi_connection.cursor()
    _switch_to_wal(cursor)
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    """Whether SQLite refused a statement because another connection holds a lock (SQLITE_BUSY)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF == sqlite3.SQLITE_BUSY


def _switch_to_wal(cursor: sqlite3.Cursor) -> None:
    """PRAGMA journal_mode=WAL, retried while another process switches the same new file (up to the busy timeout)."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(WAL_RETRY_SECONDS)


def _sqlite_read_only_pragmas(dbapi_connection, _record) -> None:
    """Foreign keys and busy timeout for a read-only SQLite connection (its journal mode is left as it is)."""
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def _sqlite_connect(dbapi_connection, record) -> None:
    """Take transaction control away from the driver, then set the pragmas."""
    dbapi_connection.isolation_level = None
    _sqlite_pragmas(dbapi_connection, record)


def sqlite_file(url: str) -> str | None:
    """The database file of a SQLite URL (None for in-memory or non-SQLite URLs)."""
    if not url.startswith("sqlite"):
        return None
    database = make_url(url).database
    return None if not database or database == ":memory:" else database


def is_read_only_file(path: str | None) -> bool:
    """Whether the SQLite file exists and this user may read but not write it (or its folder)."""
    if path is None or not os.path.exists(path):
        return False
    return not os.access(path, os.W_OK) or not os.access(os.path.dirname(os.path.abspath(path)) or ".", os.W_OK)


def _begin_statement(begin: str):
    """A `begin` event listener that emits `begin` (the driver no longer does)."""

    def on_begin(connection) -> None:
        connection.exec_driver_sql(begin)

    return on_begin


SUPPORTED_BACKENDS = ("postgresql", "sqlite")


class DatabaseURLError(ValueError):
    """SEGLOOP_DATABASE_URL cannot be used; the message says why without repeating the URL (it may hold a password)."""


def server_engine(url: str) -> Engine:
    """An engine for a database server URL: PostgreSQL with an installed driver (DatabaseURLError otherwise)."""
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError:
        raise DatabaseURLError("SEGLOOP_DATABASE_URL: not a database URL (expected "
                               "postgresql://USER:PASSWORD@HOST:PORT/DATABASE)") from None
    if backend not in SUPPORTED_BACKENDS:
        raise DatabaseURLError(f"SEGLOOP_DATABASE_URL: {backend!r} databases are not supported "
                               f"(one of {', '.join(SUPPORTED_BACKENDS)})")
    try:
        return create_engine(url, pool_pre_ping=True)
    except (NoSuchModuleError, ImportError):
        raise DatabaseURLError(f"SEGLOOP_DATABASE_URL: the database driver {make_url(url).drivername!r} is not "
                               "installed (segloop ships psycopg: postgresql+psycopg://...)") from None


def make_engine(url: str) -> Engine:
    """A SQLAlchemy engine for `url` with the dialect-specific settings segloop relies on."""
    if not url.startswith("sqlite"):
        return server_engine(url)
    connect_args = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    path = sqlite_file(url)
    if is_read_only_file(path):
        engine = create_engine(f"sqlite:///file:{path}?mode=ro&uri=true", connect_args=connect_args)
        event.listen(engine, "connect", _sqlite_read_only_pragmas)
        event.listen(engine, "begin", _begin_statement("BEGIN"))
        return engine
    engine = create_engine(url, connect_args=connect_args)
    event.listen(engine, "connect", _sqlite_connect)
    event.listen(engine, "begin", _begin_statement("BEGIN IMMEDIATE"))
    return engine


@lru_cache(maxsize=8)
def _cached_engine(url: str) -> Engine:
    """One engine per URL per process."""
    return make_engine(url)


def get_engine(settings: Settings | None = None) -> Engine:
    """The process-wide engine for the configured database (data dir created and database file checked for SQLite)."""
    settings = settings or load_settings()
    url = settings.db_url
    if settings.database_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    if url.startswith("sqlite") and sqlite_file(url) is None:
        raise DatabaseURLError("SEGLOOP_DATABASE_URL: an in-memory SQLite database is lost when each command exits; "
                               "give a file (sqlite:////path/to/segloop.db) or unset it to use the data dir's")
    if url.startswith("sqlite") and url not in _checked_files:
        # Once per process, before any connection: closing a file descriptor of the database drops every POSIX
        # lock this process holds on it, which would let another process delete the WAL under our connections.
        check_database_file(Path(sqlite_file(url) or ""), settings.frames_dir)
        _checked_files.add(url)
    return _cached_engine(url)


_checked_files: set[str] = set()


def check_database_file(path: Path, frames_dir: Path) -> None:
    """DatabaseFileError naming the file and what to do when it is not a usable SQLite database: garbage,
    shorter than its header says (truncated), or empty/missing while frame folders exist (they would be orphaned)."""
    aside = f"restore {path.name} from a backup, or move {path.parent} aside to start an empty data dir"
    if path.exists() and not path.is_file():
        raise DatabaseFileError(f"{path}: is a folder (or another non-file), not the database file; move it aside")
    size = path.stat().st_size if path.is_file() else 0
    if size == 0:
        stored = _video_folders(frames_dir)
        if stored:
            state = "is empty (0 bytes)" if path.exists() else "is missing"
            raise DatabaseFileError(f"{path}: the database {state}, but {frames_dir} holds {stored} stored video "
                                    f"folders it would orphan; {aside}")
        return
    with open(path, "rb") as handle:
        header = handle.read(100)
    if not header.startswith(SQLITE_HEADER) or len(header) < 100:
        raise DatabaseFileError(f"{path}: not a SQLite database (damaged or overwritten); {aside}")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    header_valid = header[24:28] == header[92:96]
    if header_valid and pages and size < pages * page_size:
        raise DatabaseFileError(f"{path}: the database is truncated ({size} bytes of {pages * page_size}); {aside}")


def _video_folders(frames_dir: Path) -> int:
    """How many stored video folders (not staging) the frames folder holds."""
    if not frames_dir.is_dir():
        return 0
    return sum(1 for p in frames_dir.iterdir() if p.is_dir() and not p.name.startswith(".tmp-"))


@contextmanager
def session_scope(engine: Engine | None = None, *, snapshot: bool = False) -> Iterator[Session]:
    """A transaction: commit on success, roll back on any exception. With `snapshot` every read sees the database as
    it was at the first one (PostgreSQL REPEATABLE READ; a SQLite transaction is a snapshot already), so a reader of
    many rows (an export) never mixes data from before and after another process's commit."""
    engine = engine or get_engine()
    factory = sessionmaker(bind=engine, expire_on_commit=False)
    session = factory()
    if snapshot and engine.dialect.name == "postgresql":
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
