"""The state store: file mode 0600, WAL + synchronous=FULL, schema version, namespaces, exclusive locks
(in this process and from another one), configuration, single-transaction RPMB writes and the
anti-rollback check against an old copy of the store."""
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

from vfu_virtio.store import RpmbState, Store, StoreError, StoreLocked, StoreRolledBack, open_namespace
from vfu_virtio.store.store import APPLICATION_ID, SCHEMA_VERSION

KEY = bytes(range(32))


def test_created_0600_wal_full(tmp_path):
    path = str(tmp_path / "s.db")
    old = os.umask(0)
    try:
        ns = open_namespace(path, "rpmb", "0")
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
    store = Store.open(str(tmp_path / "s.db"))
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
    ns = open_namespace(path, "rpmb", "0")
    with pytest.raises(StoreLocked, match=r"s\.db: rpmb instance '0' is already served"):
        open_namespace(path, "rpmb", "0")
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


def test_merge_and_save_config(tmp_path, caplog):
    path = str(tmp_path / "s.db")
    ns = open_namespace(path, "crypto", "0")
    merged = ns.merge_config({"max_dataqueues": 2, "max_size": None})
    assert merged == {"max_dataqueues": 2} and ns.config() == {}
    ns.save_config(merged)
    ns.close()
    ns = open_namespace(path, "crypto", "0")
    assert ns.merge_config({"max_dataqueues": None}) == {"max_dataqueues": 2}
    with caplog.at_level(logging.INFO, "vfu_virtio.store"):
        assert ns.merge_config({"max_dataqueues": 3}) == {"max_dataqueues": 3}
    assert "max_dataqueues changes from the stored 2 to 3" in caplog.text
    ns.close()


def test_write_is_one_transaction(tmp_path):
    ns = open_namespace(str(tmp_path / "s.db"), "rpmb", "0")
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
    ns = open_namespace(str(tmp_path / "s.db"), "rpmb", "0")
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
    ns = open_namespace(str(tmp_path / "s.db"), "rpmb", "0")
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
    st = RpmbState.open(open_namespace(path, "rpmb", "0"))
    st.program_key(KEY)
    st.write(0, [b"1" * 256], 0)
    st.commit()
    st.close()
    shutil.copy(path, tmp_path / "backup.db")  # a copy taken at counter 1 (the WAL was checkpointed)
    st = RpmbState.open(open_namespace(path, "rpmb", "0"))
    st.write(0, [b"2" * 256], 1)
    st.commit()
    st.close()
    for suffix in ("-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.unlink(path + suffix)
    shutil.copy(tmp_path / "backup.db", path)
    with pytest.raises(StoreRolledBack, match="write counter 1 but counter 2 was committed before"):
        RpmbState.open(open_namespace(path, "rpmb", "0"))
    # the guard file lost too: accepted, with a warning, and guarded from then on
    os.unlink(path + "-guard")
    with caplog.at_level(logging.WARNING, "vfu_virtio.store"):
        st = RpmbState.open(open_namespace(path, "rpmb", "0"))
    assert "has no guard record" in caplog.text and st.counter == 1
    st.close()
