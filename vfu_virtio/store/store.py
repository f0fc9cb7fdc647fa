"""The state store: one SQLite file shared by every device, a guard file beside it.

File ``PATH`` (stdlib ``sqlite3``): created with mode 0600 (SQLite gives ``PATH-wal`` and ``PATH-shm`` the
same mode), ``journal_mode=WAL`` and ``synchronous=FULL`` (every commit is fsynced into the WAL before
``commit`` returns), ``PRAGMA application_id`` = :data:`APPLICATION_ID` and ``PRAGMA user_version`` =
:data:`SCHEMA_VERSION`. Schema version 1, the part every device kind needs:

* ``meta(name, value)``: ``store_id`` = 16 random bytes chosen when the file is created.
* ``namespace(id, kind, instance)``: one row per device instance (``("crypto", "0")``, ``("rpmb", "a")``);
  several devices of any kind share one file and never see each other's rows.
* ``config(ns, name, value)``: a device's configuration (key/value), so a restarted device presents the
  same configuration space ("identity").

A device kind's own tables are its ``store_tables`` (``vfu_virtio.devices.registry.DeviceKind``), given to
:meth:`Store.open` as ``tables``: ``CREATE TABLE IF NOT EXISTS`` / ``CREATE INDEX IF NOT EXISTS`` statements
run at every open (anything else is refused with ValueError), so a kind's tables appear the first time one of
its instances opens the file, and a file that already holds them -- every store made while the RPMB tables
were part of the fixed schema -- opens unchanged. This module knows no device kind.

Guard file ``PATH-guard`` (mode 0600): one :data:`GUARD_RECORD` of 64 bytes per namespace at offset
``64 * namespace id``. That byte range is the namespace's **exclusive lock** (an open-file-description
lock, ``F_OFD_SETLK``: held for as long as the :class:`Namespace` is open, dropped by the kernel when the
process dies, and not lost when SQLite closes its own descriptors), so a second process serving the same
device gets :class:`StoreLocked` instead of two writers. The record also holds a high-water mark the
namespace's kind may keep there: an anti-rollback witness (RPMB: its write counter, see
``vfu_virtio.devices.rpmb.persist``).

:class:`StoreReader` looks at a store without changing it (``vfu-virtio info``): read-only, no lock taken, no file
created, and it says which instances a running process serves (their guard lock is held).
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import secrets
import sqlite3
import struct
from dataclasses import dataclass
from typing import Iterable, Mapping

log = logging.getLogger("vfu_virtio.store")

#: ``PRAGMA application_id``: ASCII "vfuV"; a file with another id is not a vfu-virtio store.
APPLICATION_ID = 0x76667556
SCHEMA_VERSION = 1

#: Guard record, 64 bytes, big-endian: 4s magic b"VFUG" @0, 16s store_id @4 (meta.store_id of the store
#: it belongs to), Q high_water @20 (largest counter the namespace ever committed, e.g. RPMB's write
#: counter), 36 bytes zero @28.
GUARD_RECORD = struct.Struct(">4s16sQ36x")
GUARD_MAGIC = b"VFUG"

#: ``struct flock`` on Linux (x86_64, aarch64): short l_type, short l_whence, off_t l_start, off_t l_len,
#: pid_t l_pid, padded to 32 bytes.
_FLOCK = struct.Struct("@hhqqi4x")

_SCHEMA = """
CREATE TABLE meta(name TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE namespace(id INTEGER PRIMARY KEY, kind TEXT NOT NULL, instance TEXT NOT NULL,
                       UNIQUE(kind, instance));
CREATE TABLE config(ns INTEGER NOT NULL REFERENCES namespace(id), name TEXT NOT NULL, value NOT NULL,
                    PRIMARY KEY(ns, name)) WITHOUT ROWID;
"""

#: What a kind's table statement may be: creating, never replacing or dropping what is there.
_KIND_STATEMENT = re.compile(r"\s*CREATE\s+(UNIQUE\s+)?(TABLE|INDEX)\s+IF\s+NOT\s+EXISTS\s", re.IGNORECASE)


def _statements(sql: str) -> list[str]:
    """The ``;``-separated statements of ``sql`` (no statement of the schemas holds a ``;`` itself)."""
    return [st for st in sql.split(";") if st.strip()]


def kind_statements(tables: Iterable[str]) -> list[str]:
    """The statements of every SQL script in ``tables``; ValueError naming the first one that is not
    ``CREATE [UNIQUE] TABLE|INDEX IF NOT EXISTS``."""
    out = []
    for sql in tables:
        for st in _statements(sql):
            if not _KIND_STATEMENT.match(st):
                raise ValueError("a device kind's store tables must be created with CREATE TABLE IF NOT EXISTS "
                                 f"(or CREATE INDEX IF NOT EXISTS), not: {' '.join(st.split())[:80]}")
            out.append(st)
    return out


class StoreError(Exception):
    """The store cannot be used (not a store, newer schema, I/O error); the message names the path."""


class StoreLocked(StoreError):
    """Another open :class:`Namespace` (another process, or this one) serves the same device instance."""


class StoreRolledBack(StoreError):
    """The store holds an older counter than the namespace's guard record (e.g. RPMB's write counter): an
    old copy of the store was restored."""


class Store:
    """An open state store (see the module docstring); :meth:`open` creates it if needed."""

    def __init__(self, path: str, db: sqlite3.Connection, guard_fd: int, store_id: bytes):
        self.path = path
        self.db = db
        self.guard_fd = guard_fd
        self.store_id = store_id
        self._open: dict[int, Namespace] = {}

    @classmethod
    def open(cls, path: str, tables: Iterable[str] = ()) -> "Store":
        """Open (creating with mode 0600 if absent) the store at ``path`` and create the device kinds'
        ``tables`` (SQL scripts of ``CREATE ... IF NOT EXISTS`` statements) that it does not hold yet.

        Raises :class:`StoreError` if the file is not a vfu-virtio store or has a newer schema, ValueError
        (before touching the file) for a table statement of another form.
        """
        statements = kind_statements(tables)
        path = os.path.abspath(path)
        try:
            os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
        except OSError as e:
            raise StoreError(f"state store {path}: {e.strerror}") from e
        try:
            db = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
            try:
                store_id = cls._prepare(db, path, statements)
            except BaseException:
                db.close()
                raise
        except sqlite3.DatabaseError as e:
            raise StoreError(f"state store {path}: {e}") from e
        try:  # the guard file only once the file is known to be a store: a refused file gets nothing beside it
            guard_fd = os.open(path + "-guard", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            db.close()
            raise StoreError(f"state store {path}-guard: {e.strerror}") from e
        return cls(path, db, guard_fd, store_id)

    @staticmethod
    def _is_new(db: sqlite3.Connection, path: str) -> bool:
        """True for an empty file; raise :class:`StoreError` for one that is not a vfu-virtio store of this schema.
        Reads only: nothing, not even the journal mode, is changed in a file that is refused."""
        app_id = db.execute("PRAGMA application_id").fetchone()[0]
        version = db.execute("PRAGMA user_version").fetchone()[0]
        tables = db.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]
        if app_id == 0 and version == 0 and tables == 0:
            return True
        if app_id != APPLICATION_ID:
            raise StoreError(f"state store {path}: not a vfu-virtio store (application_id {app_id:#x})")
        if version != SCHEMA_VERSION:
            raise StoreError(f"state store {path}: schema version {version}, this program knows "
                             f"{SCHEMA_VERSION} only")
        return False

    @classmethod
    def _prepare(cls, db: sqlite3.Connection, path: str, statements: list[str]) -> bytes:
        cls._is_new(db, path)  # refuse a foreign file before the journal mode below changes it
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("BEGIN IMMEDIATE")
        try:
            if cls._is_new(db, path):  # again inside the write lock: another process may have created it
                for statement in _statements(_SCHEMA):  # executescript would COMMIT
                    db.execute(statement)
                db.execute("INSERT INTO meta VALUES ('store_id', ?)", (secrets.token_bytes(16),))
                db.execute(f"PRAGMA application_id={APPLICATION_ID}")
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                log.info("created state store %s (schema %d)", path, SCHEMA_VERSION)
            for statement in statements:
                db.execute(statement)
            store_id = db.execute("SELECT value FROM meta WHERE name='store_id'").fetchone()[0]
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return bytes(store_id)

    def namespace(self, kind: str, instance: str) -> "Namespace":
        """The namespace of device ``kind`` instance ``instance``, created if new and locked exclusively.

        Raises :class:`StoreLocked` (naming the path and the namespace) if it is open elsewhere.
        """
        with self.transaction():
            self.db.execute("INSERT OR IGNORE INTO namespace(kind, instance) VALUES (?, ?)", (kind, instance))
            ns_id = self.db.execute("SELECT id FROM namespace WHERE kind=? AND instance=?",
                                    (kind, instance)).fetchone()[0]
        lock = _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, ns_id * GUARD_RECORD.size, GUARD_RECORD.size, 0)
        try:
            fcntl.fcntl(self.guard_fd, fcntl.F_OFD_SETLK, lock)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise StoreError(f"state store {self.path}: cannot lock {kind} instance {instance!r}: "
                                 f"{e.strerror}") from e
            raise StoreLocked(f"state store {self.path}: {kind} instance {instance!r} is already served by "
                              "another process (one device process per instance; pick another --instance "
                              "or stop the other one)") from None
        ns = Namespace(self, ns_id, kind, instance)
        self._open[ns_id] = ns
        return ns

    def transaction(self) -> "_Transaction":
        """``with store.transaction():`` BEGIN IMMEDIATE ... COMMIT (ROLLBACK on an exception)."""
        return _Transaction(self.db)

    def read_guard(self, ns_id: int) -> int | None:
        """High-water mark of namespace ``ns_id``'s guard record, or None if it has none for this store."""
        raw = os.pread(self.guard_fd, GUARD_RECORD.size, ns_id * GUARD_RECORD.size)
        if len(raw) < GUARD_RECORD.size:
            return None
        magic, store_id, high = GUARD_RECORD.unpack(raw)
        return high if magic == GUARD_MAGIC and store_id == self.store_id else None

    def write_guard(self, ns_id: int, high_water: int) -> None:
        """Write namespace ``ns_id``'s guard record (page cache only; fsynced by :meth:`close`)."""
        os.pwrite(self.guard_fd, GUARD_RECORD.pack(GUARD_MAGIC, self.store_id, high_water),
                  ns_id * GUARD_RECORD.size)

    def release(self, ns: "Namespace") -> None:
        """Unlock ``ns`` (its byte range of the guard file)."""
        if self._open.pop(ns.id, None) is None:
            return
        unlock = _FLOCK.pack(fcntl.F_UNLCK, os.SEEK_SET, ns.id * GUARD_RECORD.size, GUARD_RECORD.size, 0)
        fcntl.fcntl(self.guard_fd, fcntl.F_OFD_SETLK, unlock)

    def close(self) -> None:
        """Release every namespace, fsync the guard file, close the database."""
        if self.guard_fd < 0:
            return
        for ns in list(self._open.values()):
            self.release(ns)
        self.db.close()
        try:
            os.fsync(self.guard_fd)
        finally:
            os.close(self.guard_fd)
            self.guard_fd = -1


class _Transaction:
    __slots__ = ("db",)

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.db.execute("COMMIT")
        elif self.db.in_transaction:
            self.db.execute("ROLLBACK")


class Namespace:
    """One device instance's part of the store, locked for this object's lifetime (until :meth:`close`).

    ``kind`` ("crypto", "rpmb", ...), ``instance`` (the CLI's ``--instance``), ``id`` (row id; guard offset
    ``64 * id``). ``owns_store``: :meth:`close` also closes the :class:`Store` (set by :func:`open_namespace`).
    """

    def __init__(self, store: Store, ns_id: int, kind: str, instance: str):
        self.store = store
        self.id = ns_id
        self.kind = kind
        self.instance = instance
        self.owns_store = False

    def __repr__(self) -> str:
        return f"Namespace({self.store.path}, {self.kind} instance {self.instance!r})"

    def config(self) -> dict[str, int | str]:
        """The stored configuration (empty for a new instance); :class:`StoreError` if it cannot be read."""
        try:
            return dict(self.store.db.execute("SELECT name, value FROM config WHERE ns=?", (self.id,)).fetchall())
        except sqlite3.Error as e:
            raise StoreError(f"state store {self.store.path}: {e}") from e

    def save_config(self, values: Mapping[str, int | str]) -> None:
        """Store ``values`` (one transaction); names not given keep their stored value. :class:`StoreError`
        (nothing written) if SQLite fails."""
        try:
            with self.store.transaction() as db:
                db.executemany("INSERT OR REPLACE INTO config(ns, name, value) VALUES (?, ?, ?)",
                               [(self.id, k, v) for k, v in values.items()])
        except sqlite3.Error as e:
            raise StoreError(f"state store {self.store.path}: {e}") from e

    def close(self) -> None:
        """Unlock the namespace (and close the store if this namespace owns it)."""
        self.store.release(self)
        if self.owns_store:
            self.store.close()


def open_namespace(path: str, kind: str, instance: str, tables: Iterable[str] = ()) -> Namespace:
    """Open the store at ``path`` (creating ``tables`` as :meth:`Store.open` does) and lock one namespace;
    closing the namespace closes the store."""
    store = Store.open(path, tables)
    try:
        ns = store.namespace(kind, instance)
    except BaseException:
        store.close()
        raise
    ns.owns_store = True
    return ns


@dataclass(frozen=True)
class InstanceRecord:
    """One device instance as a store holds it: namespace ``id``, ``kind``, ``instance``, stored ``settings``,
    ``served`` (True while a process holds its lock, False when none does, None without a guard file)."""

    id: int
    kind: str
    instance: str
    settings: dict
    served: bool | None


class StoreReader:
    """A read-only look at the store ``path`` (``with StoreReader(path) as r: r.instances()``).

    Opens the file read-only (``immutable`` when no ``-wal`` file exists, so SQLite creates none), writes nothing,
    takes no lock; ``db`` is the read-only connection (for the kinds' own tables). Raises :class:`StoreError` (one
    line naming the path) for a missing file or one that is not a vfu-virtio store of this schema.
    """

    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        if not os.path.isfile(self.path):
            raise StoreError(f"state store {self.path}: no such file")
        immutable = "&immutable=1" if not os.path.exists(self.path + "-wal") else ""
        try:
            self.db = sqlite3.connect(f"file:{self.path}?mode=ro{immutable}", uri=True, check_same_thread=False)
        except sqlite3.Error as e:
            raise StoreError(f"state store {self.path}: {e}") from e
        try:
            if Store._is_new(self.db, self.path):
                raise StoreError(f"state store {self.path}: empty (no instance was ever served from it)")
        except sqlite3.Error as e:
            self.db.close()
            raise StoreError(f"state store {self.path}: {e}") from e
        except BaseException:
            self.db.close()
            raise

    def instances(self) -> list[InstanceRecord]:
        """Every instance, by kind then instance name."""
        try:
            rows = self.db.execute("SELECT id, kind, instance FROM namespace ORDER BY kind, instance").fetchall()
            config = self.db.execute("SELECT ns, name, value FROM config ORDER BY ns, name").fetchall()
        except sqlite3.Error as e:
            raise StoreError(f"state store {self.path}: {e}") from e
        settings: dict[int, dict] = {}
        for ns, name, value in config:
            settings.setdefault(ns, {})[name] = value
        return [InstanceRecord(ns, kind, instance, settings.get(ns, {}), self._served(ns))
                for ns, kind, instance in rows]

    def _served(self, ns_id: int) -> bool | None:
        try:
            fd = os.open(self.path + "-guard", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            probe = _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, ns_id * GUARD_RECORD.size, GUARD_RECORD.size, 0)
            return _FLOCK.unpack(fcntl.fcntl(fd, fcntl.F_OFD_GETLK, probe))[0] != fcntl.F_UNLCK
        except OSError:
            return None
        finally:
            os.close(fd)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "StoreReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
