"""The state store: file mode 0600, WAL + synchronous=FULL, schema version, namespaces, exclusive locks
(in this process and from another one), configuration, the device kinds' tables (created when a kind needs
them; a store made while the RPMB tables were part of the fixed schema opens unchanged), single-transaction
RPMB writes and the anti-rollback check against an old copy of the store."""
from __future__ import annotations

import logging
import os
import resource
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys

import pytest

from vfu_virtio.devices import registry
from vfu_virtio.devices.rpmb import KIND as RPMB
from vfu_virtio.devices.rpmb.persist import TABLES, RpmbState
from vfu_virtio.store import Store, StoreError, StoreLocked, StoreRolledBack, open_namespace
from vfu_virtio.store.store import APPLICATION_ID, SCHEMA_VERSION

KEY = bytes(range(32))


def test_created_0600_wal_full(tmp_path):
    path = str(tmp_path / "s.db")
    old = os.umask(0)
    try:
        ns = open_namespace(path, "rpmb", "0", [TABLES])
        st = RpmbState.open(ns)
        st.program_key(KEY)
        st.commit()
    finally:
        os.umask(old)
    for suffix in ("", "-wal", "-shm", "-guard"):
        assert stat.S_IMODE(os.stat(path + suffix).st_mode) == 0o600, suffix
    db = ns.store.db
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    ns.close()


def test_refuses_foreign_and_newer_files(tmp_path):
    other = tmp_path / "other.db"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE t(x)")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="not a vfu-virtio store"):
        Store.open(str(other))
    (tmp_path / "junk.db").write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(StoreError, match="junk.db"):
        Store.open(str(tmp_path / "junk.db"))
    newer = str(tmp_path / "newer.db")
    Store.open(newer).close()
    db = sqlite3.connect(newer)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="schema version"):
        Store.open(newer)


def test_namespaces_are_separate(tmp_path):
    store = Store.open(str(tmp_path / "s.db"), [TABLES])
    a, b = RpmbState.open(store.namespace("rpmb", "a")), RpmbState.open(store.namespace("rpmb", "b"))
    crypto = store.namespace("crypto", "a")
    a.program_key(KEY)
    a.write(0, [b"A" * 256], 0)
    a.commit()
    assert (b.key, b.counter, b.read(0, 1)) == (None, 0, [bytes(256)])
    crypto.save_config({"max_size": 4096})
    assert crypto.config() == {"max_size": 4096}
    assert store.namespace("crypto", "b").config() == {}
    store.close()


def test_lock_in_this_process_and_another(tmp_path):
    path = str(tmp_path / "s.db")
    ns = open_namespace(path, "rpmb", "0", [TABLES])
    with pytest.raises(StoreLocked, match=r"s\.db: rpmb instance '0' is already served"):
        open_namespace(path, "rpmb", "0", [TABLES])
    open_namespace(path, "rpmb", "1").close()  # another instance of the same file is free
    open_namespace(path, "crypto", "0").close()
    code = ("import sys; from vfu_virtio.store import open_namespace, StoreLocked\n"
            "try:\n    open_namespace(sys.argv[1], 'rpmb', '0')\n"
            "except StoreLocked as e:\n    print(e); sys.exit(3)\n")
    r = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True)
    assert r.returncode == 3 and "already served by another process" in r.stdout
    ns.close()
    r = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_save_config(tmp_path):
    path = str(tmp_path / "s.db")
    ns = open_namespace(path, "crypto", "0")
    assert ns.config() == {}
    ns.save_config({"max_dataqueues": 2, "max_size": 4096})
    ns.save_config({"max_dataqueues": 3})  # names not given keep their stored value
    ns.close()
    ns = open_namespace(path, "crypto", "0")
    assert ns.config() == {"max_dataqueues": 3, "max_size": 4096}
    ns.close()


def test_write_is_one_transaction(tmp_path):
    ns = open_namespace(str(tmp_path / "s.db"), "rpmb", "0", [TABLES])
    st = RpmbState.open(ns)
    st.program_key(KEY)
    assert st.write(4, [b"a" * 256, b"b" * 256], 0) == 1
    with pytest.raises(StoreError, match="not 0"):  # stale counter: the blocks are rolled back too
        st.write(4, [b"x" * 256], 0)
    with pytest.raises(StoreError, match="already programmed"):
        st.program_key(bytes(32))
    assert (st.counter, st.read(4, 3)) == (1, [b"a" * 256, b"b" * 256, bytes(256)])
    assert committed(ns.store.path) == (None, 0, [])  # staged only: nothing on disk before commit()
    st.commit()
    assert committed(ns.store.path) == (KEY, 1, [(4, b"a" * 256), (5, b"b" * 256)])
    ns.close()


def test_group_commit_is_all_or_nothing(tmp_path):
    """Several requests staged, one commit: all of them reach the disk together, or none do."""
    ns = open_namespace(str(tmp_path / "s.db"), "rpmb", "0", [TABLES])
    st = RpmbState.open(ns)
    st.program_key(KEY)
    for counter in range(3):
        st.write(counter, [bytes([counter]) * 256], counter)
    st.commit()
    assert committed(ns.store.path)[1] == 3
    st.write(7, [b"y" * 256], 3)
    st.close()  # closed with a staged write: it was never acknowledged, so it is dropped
    assert committed(ns.store.path)[1:] == (3, [(i, bytes([i]) * 256) for i in range(3)])


def test_failed_commit_rolls_the_run_back(tmp_path):
    """A commit that cannot reach the disk (a real write error: RLIMIT_FSIZE stops the WAL from growing,
    so the commit's write fails with EFBIG) leaves key, counter and data as committed before, mirrored
    in memory too, and the store keeps working once the disk takes writes again."""
    ns = open_namespace(str(tmp_path / "s.db"), "rpmb", "0", [TABLES])
    st = RpmbState.open(ns)
    st.program_key(KEY)
    st.commit()
    st.write(0, [b"z" * 256], 0)
    wal = os.path.getsize(ns.store.path + "-wal")
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    xfsz = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of the signal's default kill
    resource.setrlimit(resource.RLIMIT_FSIZE, (wal, limits[1]))
    try:
        with pytest.raises(StoreError, match="commit failed"):
            st.commit()
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, xfsz)
    assert (st.key, st.counter) == (KEY, 0)
    assert committed(ns.store.path) == (KEY, 0, [])
    assert st.read(0, 1) == [bytes(256)]
    assert st.write(0, [b"k" * 256], 0) == 1
    st.commit()
    assert committed(ns.store.path) == (KEY, 1, [(0, b"k" * 256)])
    ns.close()


def committed(path: str) -> tuple[bytes | None, int, list[tuple[int, bytes]]]:
    """(key, counter, blocks) as another connection sees the file: only what was committed."""
    db = sqlite3.connect(path)
    try:
        key, counter = db.execute("SELECT auth_key, write_counter FROM rpmb_state").fetchone()
        blocks = db.execute("SELECT address, data FROM rpmb_block ORDER BY address").fetchall()
    finally:
        db.close()
    return (bytes(key) if key is not None else None), counter, blocks


def test_old_copy_of_the_store_is_refused(tmp_path, caplog):
    path = str(tmp_path / "s.db")
    st = RpmbState.open(open_namespace(path, "rpmb", "0", [TABLES]))
    st.program_key(KEY)
    st.write(0, [b"1" * 256], 0)
    st.commit()
    st.close()
    shutil.copy(path, tmp_path / "backup.db")  # a copy taken at counter 1 (the WAL was checkpointed)
    st = RpmbState.open(open_namespace(path, "rpmb", "0", [TABLES]))
    st.write(0, [b"2" * 256], 1)
    st.commit()
    st.close()
    for suffix in ("-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.unlink(path + suffix)
    shutil.copy(tmp_path / "backup.db", path)
    with pytest.raises(StoreRolledBack, match="write counter 1 but counter 2 was committed before"):
        RpmbState.open(open_namespace(path, "rpmb", "0", [TABLES]))
    # the guard file lost too: accepted, with a warning, and guarded from then on
    os.unlink(path + "-guard")
    with caplog.at_level(logging.WARNING, "vfu_virtio.devices.rpmb.persist"):
        st = RpmbState.open(open_namespace(path, "rpmb", "0", [TABLES]))
    assert "has no guard record" in caplog.text and st.counter == 1
    st.close()


#: The whole schema of a store file as the code wrote it while the RPMB tables were part of the fixed
#: schema (schema version 1), written out here as that code had it.
FIXED_SCHEMA_V1 = f"""
CREATE TABLE meta(name TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE namespace(id INTEGER PRIMARY KEY, kind TEXT NOT NULL, instance TEXT NOT NULL,
                       UNIQUE(kind, instance));
CREATE TABLE config(ns INTEGER NOT NULL REFERENCES namespace(id), name TEXT NOT NULL, value NOT NULL,
                    PRIMARY KEY(ns, name)) WITHOUT ROWID;
CREATE TABLE rpmb_state(ns INTEGER PRIMARY KEY REFERENCES namespace(id),
                        auth_key BLOB CHECK(auth_key IS NULL OR length(auth_key) = 32),
                        write_counter INTEGER NOT NULL DEFAULT 0
                            CHECK(write_counter BETWEEN 0 AND 4294967295));
CREATE TABLE rpmb_block(ns INTEGER NOT NULL REFERENCES namespace(id),
                        address INTEGER NOT NULL CHECK(address BETWEEN 0 AND 65535),
                        data BLOB NOT NULL CHECK(length(data) = 256),
                        PRIMARY KEY(ns, address)) WITHOUT ROWID;
PRAGMA application_id=1986426198;
PRAGMA user_version=1;
INSERT INTO meta VALUES ('store_id', x'000102030405060708090a0b0c0d0e0f');
INSERT INTO namespace VALUES (1, 'rpmb', '0'), (2, 'crypto', 'c');
INSERT INTO config VALUES (1, 'capacity', 4), (1, 'max_wr_cnt', 2), (1, 'max_rd_cnt', 3),
                          (2, 'max_dataqueues', 2), (2, 'max_sessions', 16), (2, 'max_size', 4096);
INSERT INTO rpmb_state VALUES (1, x'000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f', 5);
INSERT INTO rpmb_block VALUES (1, 7, x'{"77" * 256}');
"""


def schema(path: str) -> list[tuple]:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY name").fetchall()
    finally:
        db.close()


def test_store_made_with_the_fixed_rpmb_schema_opens_unchanged(tmp_path, caplog):
    """A store file of the code that had the RPMB tables in the fixed schema: both devices open on it through
    the registry with their stored settings and state, and the schema stays exactly as it was."""
    path = str(tmp_path / "old.db")
    db = sqlite3.connect(path)
    db.executescript(FIXED_SCHEMA_V1)
    db.close()
    before = schema(path)
    assert [row[1] for row in before if row[0] == "table"] == ["config", "meta", "namespace", "rpmb_block",
                                                               "rpmb_state"]
    with caplog.at_level(logging.WARNING, "vfu_virtio.devices.rpmb.persist"):
        rpmb = registry.open_device(RPMB, path, "0")
    assert "has no guard record" in caplog.text  # this old file never had a guard file beside it
    assert rpmb.config_space() == bytes([4, 2, 3])
    assert (rpmb.state.key, rpmb.state.counter) == (KEY, 5)
    assert rpmb.state.read(6, 2) == [bytes(256), b"\x77" * 256]
    rpmb.close()
    from vfu_virtio.devices.crypto import KIND as CRYPTO
    crypto = registry.open_device(CRYPTO, path, "c")
    assert (crypto.max_dataqueues, crypto.sessions.max_sessions, crypto.limits.max_size) == (2, 16, 4096)
    crypto.close()
    assert schema(path) == before


def test_kind_tables_are_created_when_the_kind_opens(tmp_path):
    path = str(tmp_path / "s.db")
    Store.open(path).close()
    assert {row[1] for row in schema(path) if row[0] == "table"} == {"meta", "namespace", "config"}
    open_namespace(path, "rpmb", "0", [TABLES]).close()
    tables = {row[1] for row in schema(path) if row[0] == "table"}
    assert tables == {"meta", "namespace", "config", "rpmb_state", "rpmb_block"}
    open_namespace(path, "rpmb", "0", [TABLES]).close()  # a second time changes nothing
    assert {row[1] for row in schema(path) if row[0] == "table"} == tables


@pytest.mark.parametrize("sql", ["CREATE TABLE rpmb_state(x)", "DROP TABLE config",
                                 "CREATE TABLE IF NOT EXISTS t(x); DELETE FROM meta"])
def test_kind_tables_only_create(tmp_path, sql):
    """A kind's statements create what is missing and nothing else; another form is refused before the file
    is touched."""
    path = tmp_path / "s.db"
    with pytest.raises(ValueError, match="CREATE TABLE IF NOT EXISTS"):
        Store.open(str(path), [sql])
    assert not path.exists()
