"""Starting a server changes nothing it should not: a socket another process serves is never taken over, a start that
is refused writes nothing (store, settings, guard file), a file that is not a store is left as it was, and every
refusal is one line naming the path and the limit. Real `vfu-virtio` processes, real sockets."""
from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TOP
from vfu_virtio.client.rpmb import RpmbClient
from vfu_virtio.client.vfio_user import VfioUserClient

CFG = 7
#: sun_path is 108 bytes with the terminating NUL (unix(7)).
MAX_PATH_BYTES = 107


def probe(path: str) -> str:
    """"live" if ``path`` accepts a connection, "stale" if the connect is refused."""
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path)
        return "live"
    except ConnectionRefusedError:
        return "stale"
    finally:
        s.close()


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vfu_virtio", *args], capture_output=True, text=True, timeout=60,
                          cwd=TOP, env={**os.environ, **(env or {})})


def one_line(r: subprocess.CompletedProcess) -> str:
    """The refusal: exit status 1 and one ``Error:`` line, no traceback."""
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and r.stderr.startswith("Error: "), r.stderr
    return r.stderr


def path_of(tmp_path: Path, size: int, suffix: str = ".sock") -> str:
    """A path in ``tmp_path`` of exactly ``size`` bytes."""
    base = f"{tmp_path}/"
    return base + "s" * (size - len(base) - len(suffix)) + suffix


@pytest.mark.ring_neutral
def test_a_second_server_never_takes_over_a_live_socket(serve, tmp_path):
    first = serve("rpmb", "--instance", "a")
    other = tmp_path / "other.db"
    r = run_cli("rpmb", "--socket", first.socket, "--state", str(other), "--instance", "b")
    assert f"vfio-user socket {first.socket} is in use: another process is serving it" in one_line(r)
    assert not other.exists()  # refused before the store was touched
    assert os.path.exists(first.socket) and first.alive()
    with RpmbClient.connect(first.socket) as c:  # the first server still owns its path
        assert c.config() == (1, 1, 1)
    assert "client refused during attach" not in first.log()  # the probe is not a client error


@pytest.mark.ring_neutral
def test_a_live_status_socket_is_not_taken_over_either(serve, tmp_path):
    first = serve("crypto")
    r = run_cli("crypto", "--socket", first.socket + ".status", "--state", str(tmp_path / "x.db"))
    assert f"vfio-user socket {first.socket}.status is in use" in one_line(r)
    assert probe(first.socket + ".status") == "live"


@pytest.mark.ring_neutral
def test_a_stale_socket_is_replaced(serve):
    server = serve("crypto")
    server.kill()  # SIGKILL: both socket files stay behind and nobody listens on them
    assert probe(server.socket) == "stale" and probe(server.socket + ".status") == "stale"
    server.start()  # a new process on the same paths
    c = VfioUserClient(server.socket)
    assert c.region_read(CFG, 0, 2) == b"\xf4\x1a"
    c.close()


@pytest.mark.ring_neutral
def test_a_refused_start_writes_nothing(serve, tmp_path):
    """The issue's case: --socket in a missing directory with --capacity 2 used to store capacity 2, so --capacity 8
    was refused for ever after."""
    db = tmp_path / "vfu.db"
    r = run_cli("rpmb", "--socket", str(tmp_path / "missing" / "r.sock"), "--state", str(db), "--capacity", "2")
    assert f"directory {tmp_path / 'missing'} does not exist" in one_line(r)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    server = serve("rpmb", "--capacity", "8", state=db)
    with RpmbClient.connect(server.socket) as c:
        assert c.config() == (8, 1, 1)


def test_socket_paths_longer_than_the_limit_are_refused_before_anything(tmp_path):
    db = tmp_path / "vfu.db"
    too_long = path_of(tmp_path, MAX_PATH_BYTES + 1)
    r = run_cli("crypto", "--socket", too_long, "--state", str(db))
    assert (f"vfio-user socket {too_long}: {MAX_PATH_BYTES + 1} bytes; a UNIX socket path holds at most "
            f"{MAX_PATH_BYTES} bytes") in one_line(r)
    assert "vfu_create_ctx" not in r.stderr
    # a vfio-user path that fits, whose status socket (+ ".status") does not
    fits = path_of(tmp_path, MAX_PATH_BYTES - 3)
    r = run_cli("crypto", "--socket", fits, "--state", str(db))
    assert f"status socket {fits}.status: {MAX_PATH_BYTES + 4} bytes" in one_line(r)
    assert not db.exists()


@pytest.mark.ring_neutral
def test_a_regular_file_at_the_status_path_is_kept(serve, tmp_path):
    sock = tmp_path / "d.sock"
    keep = tmp_path / "d.sock.status"
    keep.write_text("precious")
    r = run_cli("crypto", "--socket", str(sock), "--state", str(tmp_path / "vfu.db"))
    assert f"status socket {keep} exists and is not a socket; refusing to remove it" in one_line(r)
    assert keep.read_text() == "precious" and not sock.exists() and not (tmp_path / "vfu.db").exists()


def test_a_file_that_is_not_a_store_is_left_as_it_was(tmp_path):
    """A garbage file and another program's SQLite database: refused in one line, no guard file beside them, not a
    byte changed (the journal mode of the foreign database stays as it was)."""
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database " * 100)
    foreign = tmp_path / "foreign.db"
    db = sqlite3.connect(foreign)
    db.execute("CREATE TABLE theirs(x)")
    db.execute("INSERT INTO theirs VALUES (1)")
    db.commit()
    db.close()
    before = {p: p.read_bytes() for p in (garbage, foreign)}
    for path, why in ((garbage, "file is not a database"), (foreign, "not a vfu-virtio store (application_id 0x0)")):
        r = run_cli("rpmb", "--socket", str(tmp_path / "r.sock"), "--state", str(path))
        assert f"state store {path}: {why}" in one_line(r)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign.db", "garbage.db"]
    assert {p: p.read_bytes() for p in before} == before
