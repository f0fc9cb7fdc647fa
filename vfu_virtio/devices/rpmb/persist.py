"""Persistent RPMB state of one device instance: its store tables and :class:`RpmbState` (authentication key,
write counter, data blocks).

Tables (:data:`TABLES`, registered with the store through the kind's ``store_tables``; the store creates
them with ``CREATE TABLE IF NOT EXISTS``, so a store made before they moved here opens unchanged):

* ``rpmb_state(ns, auth_key, write_counter)``: ``auth_key`` NULL until PROGRAM_KEY succeeds, then the
  32-byte key for good (RPMB-33: one-time programmable, never returned by this module's users);
  ``write_counter`` 0..0xFFFFFFFF (RPMB-35..37).
* ``rpmb_block(ns, address, data)``: one row per written 256-byte block, ``address`` in 256-byte units;
  a block without a row reads as 256 zero bytes (RAMB-26).

Durability ("State, persistence and lifecycle", RAMB-12, RAMB-13) with group commit:
:meth:`RpmbState.write` and :meth:`RpmbState.program_key` stage their change inside one open SQLite
transaction (each under its own savepoint, so a failing request leaves nothing behind), and
:meth:`RpmbState.commit` makes everything staged durable in **one** commit (WAL, ``synchronous=FULL``:
one fsync however many requests). The device stages during ``handle()``; the transport calls the
device's ``commit()`` after each run of requests and publishes their used elements and interrupts only
after it returned. So an acknowledged write is never lost, data and counter can never disagree (they
change in the same transaction), and a driver with several writes in flight pays one fsync per run
instead of one per write. A commit that fails rolls every staged change back (the mirrored key and
counter are reloaded from the database) and raises :class:`StoreError`: none of those requests was
acknowledged, and the device goes to DEVICE_NEEDS_RESET rather than guess what reached the disk.

Snapshots, restores and migration (RAMB-20 in ``docs/decisions.md``): the state lives in the host-side
store, outside any guest snapshot, so restoring a VM snapshot never rolls it back. Restoring an *old copy
of the store file itself* is caught: after every committed write the counter is also written to the
namespace's record in ``PATH-guard`` (page cache only, fsynced at close; it may lag by the write in flight
after a power cut, never lead), and :meth:`RpmbState.open` refuses a store whose counter is below that
high-water mark with :class:`StoreRolledBack` -- the device does not start, because serving the old copy
would let a recorded authenticated write be replayed. A namespace without a guard record for this store
(the guard file was lost, or the store was moved to another host) is accepted with a warning and recorded
from then on. What this cannot catch: the store and its guard file restored together (a snapshot of the
whole host filesystem); keep the store out of such snapshots. Migration moves the store (and guard)
exactly once; the namespace lock guarantees a single writer.
"""
from __future__ import annotations

import logging
import sqlite3
from typing import Sequence

from vfu_virtio.abi.rpmb import BLOCK_SIZE, COUNTER_MAX
from vfu_virtio.store import Namespace, StoreError, StoreRolledBack

log = logging.getLogger("vfu_virtio.devices.rpmb.persist")

#: The RPMB tables (schema of the store file since version 1; ``ns`` is ``namespace.id``).
TABLES = """
CREATE TABLE IF NOT EXISTS rpmb_state(ns INTEGER PRIMARY KEY REFERENCES namespace(id),
                                      auth_key BLOB CHECK(auth_key IS NULL OR length(auth_key) = 32),
                                      write_counter INTEGER NOT NULL DEFAULT 0
                                          CHECK(write_counter BETWEEN 0 AND 4294967295));
CREATE TABLE IF NOT EXISTS rpmb_block(ns INTEGER NOT NULL REFERENCES namespace(id),
                                      address INTEGER NOT NULL CHECK(address BETWEEN 0 AND 65535),
                                      data BLOB NOT NULL CHECK(length(data) = 256),
                                      PRIMARY KEY(ns, address)) WITHOUT ROWID;
"""

_ZERO_BLOCK = bytes(BLOCK_SIZE)


def _committed_row(db: sqlite3.Connection, ns_id: int) -> tuple[bytes | None, int]:
    """``(auth_key or None, write_counter)`` of namespace ``ns_id`` as the connection sees it."""
    key, counter = db.execute("SELECT auth_key, write_counter FROM rpmb_state WHERE ns=?", (ns_id,)).fetchone()
    return (bytes(key) if key is not None else None), counter


def inspect(db: sqlite3.Connection, ns_id: int) -> dict[str, object]:
    """Namespace ``ns_id``'s RPMB state in words for ``vfu-virtio info`` (``db`` may be read-only): ``write_counter``,
    ``key`` ("programmed" or "not programmed"; never the key itself), ``blocks_written`` (blocks with a row).
    Empty when the instance never opened its state."""
    try:
        row = db.execute("SELECT auth_key IS NOT NULL, write_counter FROM rpmb_state WHERE ns=?", (ns_id,)).fetchone()
        blocks = db.execute("SELECT count(*) FROM rpmb_block WHERE ns=?", (ns_id,)).fetchone()[0]
    except sqlite3.Error:
        return {}
    if row is None:
        return {}
    return {"write_counter": row[1], "key": "programmed" if row[0] else "not programmed", "blocks_written": blocks}


class RpmbState:
    """The RPMB state of namespace ``ns``: ``counter`` and :attr:`key` mirror the committed row
    (the namespace lock makes this object the only writer); the key is kept for MACs only."""

    def __init__(self, ns: Namespace, key: bytes | None, counter: int):
        self.ns = ns
        self._key = key
        self.counter = counter

    @classmethod
    def open(cls, ns: Namespace) -> "RpmbState":
        """Load (creating if new) the state of ``ns``; raises :class:`StoreRolledBack` when the store's
        counter is below the guard's high-water mark (see the module docstring)."""
        store = ns.store
        try:
            with store.transaction() as db:
                db.execute("INSERT OR IGNORE INTO rpmb_state(ns) VALUES (?)", (ns.id,))
                key, counter = _committed_row(db, ns.id)
        except sqlite3.Error as e:
            raise StoreError(f"state store {store.path}: {e}") from e
        high = store.read_guard(ns.id)
        if high is not None and counter < high:
            raise StoreRolledBack(
                f"state store {store.path}: rpmb instance {ns.instance!r} has write counter {counter} but "
                f"counter {high} was committed before: this is an old copy of the store. Refusing to serve "
                "it (an old copy would let recorded authenticated writes be replayed); put the newer store "
                "back or provision a new instance")
        if high is None and (key is not None or counter):
            log.warning("state store %s: rpmb instance %r has no guard record (guard file lost or store "
                        "moved): a rollback before now cannot be detected; recording counter %d",
                        store.path, ns.instance, counter)
        store.write_guard(ns.id, counter)
        return cls(ns, key, counter)

    @property
    def key(self) -> bytes | None:
        """The 32-byte authentication key, or None before PROGRAM_KEY (for computing MACs only)."""
        return self._key

    def program_key(self, key: bytes) -> None:
        """Stage the 32-byte key (durable at the next :meth:`commit`); raises :class:`StoreError`, with
        nothing staged, if it cannot or if a key is already programmed (RPMB-33: one-time programmable)."""
        if len(key) != 32:
            raise ValueError(f"an RPMB key is 32 bytes, not {len(key)}")

        def stage(db: sqlite3.Connection) -> None:
            cur = db.execute("UPDATE rpmb_state SET auth_key=? WHERE ns=? AND auth_key IS NULL",
                             (key, self.ns.id))
            if cur.rowcount != 1:
                raise StoreError("the authentication key is already programmed")
        self._stage(stage)
        self._key = bytes(key)

    def write(self, address: int, blocks: Sequence[bytes], counter: int) -> int:
        """Stage ``blocks`` (256 bytes each) at ``address``, ``address + 1``, ... and the write counter's
        increment from ``counter``, together; returns the new counter (durable at the next :meth:`commit`).

        Raises :class:`StoreError`, with nothing staged, if SQLite fails or ``counter`` is stale.
        """
        ns = self.ns

        def stage(db: sqlite3.Connection) -> None:
            db.executemany("INSERT OR REPLACE INTO rpmb_block(ns, address, data) VALUES (?, ?, ?)",
                           [(ns.id, address + i, bytes(b)) for i, b in enumerate(blocks)])
            cur = db.execute("UPDATE rpmb_state SET write_counter=write_counter+1 "
                             "WHERE ns=? AND write_counter=? AND write_counter < ?",
                             (ns.id, counter, COUNTER_MAX))
            if cur.rowcount != 1:
                raise StoreError(f"write counter is not {counter} (or expired)")
        self._stage(stage)
        self.counter = counter + 1
        return self.counter

    def _stage(self, change) -> None:
        """Run ``change(db)`` inside the open batch transaction (begun here if none is), under a
        savepoint: on any error the change is undone alone and :class:`StoreError` is raised."""
        db = self.ns.store.db
        try:
            if not db.in_transaction:
                db.execute("BEGIN IMMEDIATE")
            db.execute("SAVEPOINT rpmb_request")
            try:
                change(db)
            except BaseException:
                db.execute("ROLLBACK TO rpmb_request")
                raise
            finally:
                db.execute("RELEASE rpmb_request")
        except sqlite3.Error as e:
            raise StoreError(f"state store {self.ns.store.path}: {e}") from e

    def commit(self) -> None:
        """Make every staged change durable in one commit (fsynced before returning), then move the
        guard's high-water mark. Nothing staged: no-op. On failure everything staged is rolled back,
        ``counter`` and :attr:`key` are reloaded, and :class:`StoreError` is raised."""
        store = self.ns.store
        db = store.db
        if not db.in_transaction:
            return
        try:
            db.execute("COMMIT")
        except sqlite3.Error as e:
            self._abandon()
            raise StoreError(f"state store {store.path}: commit failed, staged requests rolled back: {e}") from e
        store.write_guard(self.ns.id, self.counter)

    def _abandon(self) -> None:
        """Roll back what is staged and mirror the committed row again."""
        db = self.ns.store.db
        try:
            if db.in_transaction:
                db.execute("ROLLBACK")
            self._key, self.counter = _committed_row(db, self.ns.id)
        except sqlite3.Error as e:
            log.error("state store %s: rollback after a failed commit: %s", self.ns.store.path, e)

    def read(self, address: int, count: int) -> list[bytes]:
        """Blocks ``address .. address + count - 1`` (256 bytes each; never-written blocks are zero)."""
        try:
            rows = dict(self.ns.store.db.execute(
                "SELECT address, data FROM rpmb_block WHERE ns=? AND address BETWEEN ? AND ?",
                (self.ns.id, address, address + count - 1)).fetchall())
        except sqlite3.Error as e:
            raise StoreError(f"state store {self.ns.store.path}: {e}") from e
        return [bytes(rows.get(address + i, _ZERO_BLOCK)) for i in range(count)]

    def close(self) -> None:
        """Drop anything staged but not committed (it was never acknowledged), then close the namespace
        (its lock; the store too if the namespace owns it)."""
        if self.ns.store.db.in_transaction:
            self._abandon()
        self.ns.close()
