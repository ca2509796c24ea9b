"""Opening the store: its URL (default a SQLite file), the engine (SQLite: WAL, foreign keys on), migrations.

URL resolution: ``--db URL`` > ``$MB_DB_URL`` > the default SQLite file
``$XDG_DATA_HOME/meterbench/store.sqlite`` (``~/.local/share/meterbench/store.sqlite``). A
plain path (no ``://``) is taken as a SQLite file. PostgreSQL: ``postgresql+psycopg://user@host/db``.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

from meterbench.errors import ConfigError, MeterbenchError

DB_URL_ENV = "MB_DB_URL"
DEFAULT_TIMEOUT_S = 5.0
"""How long (s) to wait for a SQLite write lock or a PostgreSQL connection before the store counts as down."""

_MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_MIGRATE_LOCK = threading.Lock()


class StoreUnavailableError(MeterbenchError):
    """The store cannot be reached or written now (server down, file locked or read-only): queue and retry."""


def data_home() -> Path:
    """$XDG_DATA_HOME/meterbench, else ~/.local/share/meterbench."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "meterbench"


def default_db_url() -> str:
    """The store used without --db: $MB_DB_URL, else the SQLite file under data_home()."""
    return os.environ.get(DB_URL_ENV) or f"sqlite:///{data_home() / 'store.sqlite'}"


def resolve_db_url(url: str | None) -> str:
    """--db URL as given (a plain path = a SQLite file), or the default."""
    if not url:
        return default_db_url()
    if "://" not in url:
        return f"sqlite:///{Path(url).expanduser().resolve()}"
    if not (url.startswith("sqlite") or url.startswith("postgresql")):
        raise ConfigError(f"--db {url!r}: expected sqlite:///FILE or postgresql+psycopg://USER@HOST/DB")
    return url


def safe_url(url: str) -> str:
    """The URL with its password hidden (for messages and the spool)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as given, it has no parsed password
        return url


def create_store_engine(url: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S):
    """A SQLAlchemy engine for the store (nothing is connected yet)."""
    from sqlalchemy import create_engine, event
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError
    from sqlalchemy.pool import NullPool

    url = resolve_db_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"--db {url!r}: not a database URL ({exc})") from None
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:" and not parsed.database.startswith("file:"):
            folder = Path(parsed.database).parent
            if not folder.is_dir():
                try:
                    folder.mkdir(parents=True)
                except OSError as exc:
                    raise StoreUnavailableError(f"{folder}: cannot create the store's folder: {exc.strerror}") from None
        engine = create_engine(parsed, connect_args={"timeout": timeout_s})  # pooled: one open per store

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:
            dbapi_connection.isolation_level = None  # SQLAlchemy's BEGIN below, not pysqlite's implicit one
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
            with contextlib.suppress(Exception):  # a read-only file keeps its journal mode; writes then fail clearly
                cursor.execute("PRAGMA journal_mode = WAL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # take the write lock up front: no half-way lock upgrade

        return engine
    if parsed.get_backend_name() == "postgresql":
        return create_engine(
            parsed, connect_args={"connect_timeout": max(1, round(timeout_s))}, pool_pre_ping=True, poolclass=NullPool
        )
    raise ConfigError(f"--db {safe_url(url)}: unsupported database (expected sqlite or postgresql+psycopg)")


def alembic_config(connection):
    """The Alembic config of the store's migrations, running on ``connection`` (hold _MIGRATE_LOCK)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def migrate(engine) -> None:
    """Bring the store's schema to the newest Alembic revision (creates it in an empty database)."""
    from alembic import command

    with _MIGRATE_LOCK, engine.begin() as connection:  # Alembic's op/context proxies are process-global
        command.upgrade(alembic_config(connection), "head")


def schema_revision(engine) -> str | None:
    """The Alembic revision the store is at (None: not created yet)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def unavailable(url: str, exc: Exception) -> StoreUnavailableError:
    """One line for a store that could not be reached or written."""
    text = " ".join(str(getattr(exc, "orig", None) or exc).split())
    return StoreUnavailableError(f"store {safe_url(url)} unavailable: {text[:300]}")
