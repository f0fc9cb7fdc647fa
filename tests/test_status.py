"""Live status and metrics: a running device's status endpoint (``vfu-virtio status``) and a store's contents
(``vfu-virtio info``).

The counters are read before and after a known number of requests made with the project's driver, and must move by
exactly what was sent: requests, errors, bytes read and written, kicks (the driver counts its own notifications),
sessions; interrupts by at least one and at most one per request. A guest error shows up with its reason, clients
with their attach and detach times. ``info`` is tried on a store holding both kinds, never printing the key, and
changes no file. The endpoint survives garbage. Real servers, the real commands.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from conftest import TOP
from vfu_virtio.abi import crypto as C
from vfu_virtio.abi.virtio import ACKNOWLEDGE, DRIVER, DRIVER_OK
from vfu_virtio.client import crypto as D
from vfu_virtio.client.rpmb import RpmbClient
from vfu_virtio.client.virtio_pci import VirtioPciDriver
from vfu_virtio.control import query

KEY = bytes(range(32))


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vfu_virtio", *args], capture_output=True, text=True, timeout=60,
                          cwd=TOP, env=dict(os.environ))


def detached(sock: str, patience: float = 10.0) -> dict:
    """The status once the server has seen its client go (the disconnect reaches it a moment after the close)."""
    deadline = time.monotonic() + patience
    while True:
        snap = query(sock)
        if not snap["clients"]["attached"] or time.monotonic() > deadline:
            return snap
        time.sleep(0.05)


def queue(snap: dict, index: int) -> dict:
    return snap["transport"]["queues"][index]


def test_counters_move_by_the_requests_made(serve, ring):
    s = serve("crypto", "--queues", "2")
    before = query(s.socket)
    assert before["device"] == "crypto" and before["labels"]["kind"] == "crypto" and before["pid"] == s.pid
    with VirtioPciDriver.connect(s.socket) as drv:
        drv.init()
        ctrl, data = drv.queue(2), drv.queue(0)
        create = D.hash_create_session(C.VIRTIO_CRYPTO_HASH_SHA_256, 32)
        _u, (outcome,) = ctrl.request([create.readable], [create.writable])
        sid, status = D.session_input(outcome)
        assert status == C.VIRTIO_CRYPTO_OK
        reqs = [D.digest_data(C.VIRTIO_CRYPTO_HASH, sid, bytes(n), 32) for n in (1, 100, 1000, 4096, 10)]
        reqs.append(D.digest_data(C.VIRTIO_CRYPTO_HASH, sid + 1000, b"abc", 32))  # no such session: INVSESS
        kicks0 = data.kicks
        for r in reqs:
            data.request([r.readable], [r.writable])
        mid = query(s.socket)
        kicks = data.kicks - kicks0
    after = detached(s.socket)

    q0, q0b = queue(mid, 0), queue(before, 0)
    assert q0["requests"] - q0b["requests"] == 6 and q0["completed"] - q0b["completed"] == 6
    assert q0["errors"] - q0b["errors"] == 1 and q0["in_flight"] == 0
    assert q0["bytes_read"] - q0b["bytes_read"] == sum(len(r.readable) for r in reqs)
    assert q0["bytes_written"] - q0b["bytes_written"] == sum(r.writable for r in reqs)  # used = the writable part
    assert q0["kicks"] - q0b["kicks"] == kicks >= 1
    assert 1 <= q0["interrupts"] - q0b["interrupts"] <= 6
    assert q0["enabled"] and q0["format"] == ring and q0["msix_vector"] == 1
    q2 = queue(mid, 2)
    assert (q2["requests"], q2["errors"]) == (1, 0)
    t = mid["transport"]
    assert t["device_status_names"] == ["ACKNOWLEDGE", "DRIVER", "DRIVER_OK", "FEATURES_OK"]
    assert "VERSION_1" in t["features_names"] and ("RING_PACKED" in t["features_names"]) == (ring == "packed")
    assert mid["device_stats"]["sessions_live"] == 1 and mid["device_stats"]["sessions_created"] == 1
    assert mid["clients"]["attached"] and mid["clients"]["served"] == 1
    # the driver reset the device on the way out: sessions gone, counters kept, the client's times recorded
    assert after["device_stats"]["sessions_live"] == 0 and queue(after, 0)["requests"] == q0["requests"]
    client = after["clients"]["recent"][-1]
    assert not after["clients"]["attached"] and client["client"] == 1
    assert before["started"] <= client["attached"] <= client["detached"] <= time.time()


@pytest.mark.ring_neutral
def test_rpmb_counter_writes_and_a_guest_error_with_its_reason(serve):
    s = serve("rpmb")
    with RpmbClient.connect(s.socket) as c:
        assert c.program_key(KEY) == 0
        c.key = KEY
        for i in range(3):
            assert c.write(i, [bytes([i]) * 256])[0] == 0
    stats = query(s.socket)["device_stats"]
    assert stats["write_counter"] == 3 and stats["DATA_WRITE_ok"] == 3 and stats["key_programmed"] == 1
    assert KEY.hex() not in json.dumps(query(s.socket))
    with VirtioPciDriver.connect(s.socket) as drv:  # DRIVER_OK without FEATURES_OK: a guest error
        drv.begin_init()
        drv.set_status(ACKNOWLEDGE | DRIVER | DRIVER_OK)
        snap = query(s.socket)
    t = snap["transport"]
    assert t["needs_reset"] == 1 and "DEVICE_NEEDS_RESET" in t["device_status_names"]
    assert t["needs_reset_events"][0]["reason"] == "DRIVER_OK set without FEATURES_OK"
    assert snap["clients"]["served"] == 2


@pytest.mark.ring_neutral
def test_the_status_command_prints_what_the_endpoint_holds(serve):
    s = serve("rpmb", "--instance", "left")
    with RpmbClient.connect(s.socket) as c:
        c.read_counter()
    detached(s.socket)
    r = cli("status", s.socket)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f"rpmb instance 'left' (state {s.state}) on {s.socket}: pid {s.pid}, vfu-virtio ")
    assert lines[1].startswith("no client attached (last gone ") and lines[1].endswith("; 1 served")
    assert "device_status: 0x00 (reset)" in lines
    assert "DEVICE_NEEDS_RESET: 0; configuration interrupts: 0" in lines
    header = lines.index("queue  format  size  requests  completed  in flight  errors  bytes read  bytes written  "
                         "kicks  interrupts")
    assert lines[header + 1].split() == ["0", "-", "256", "1", "1", "0", "1", "512", "512", "1", "1"]
    assert lines[-1].startswith("rpmb: write_counter 0, key_programmed 0, capacity 1, GET_WRITE_COUNTER_ok 0, "
                                "GET_WRITE_COUNTER_refused 1")
    r = cli("status", s.socket, "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["transport"]["queues"][0]["errors"] == 1
    r = cli("status", s.socket, "--watch", "--interval", "0.1", "--count", "2")
    assert r.returncode == 0 and r.stdout.count("queue  format  size") == 2


def test_status_of_a_socket_nobody_serves_is_one_line(tmp_path):
    r = cli("status", str(tmp_path / "none.sock"), "--wait", "0")
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert f"{tmp_path / 'none.sock'} (status socket {tmp_path / 'none.sock'}.status): no such socket" in r.stderr


@pytest.mark.ring_neutral
def test_the_endpoint_survives_garbage(serve):
    s = serve("crypto")
    path = s.socket + ".status"

    def exchange(data: bytes) -> bytes:
        c = socket.socket(socket.AF_UNIX)
        c.settimeout(10)
        c.connect(path)
        c.sendall(data)
        out = b""
        while not out.endswith(b"\n"):
            chunk = c.recv(65536)
            if not chunk:
                break
            out += chunk
        c.close()
        return out

    assert json.loads(exchange(b"\xff\xfe nonsense\n")) == {
        "error": 'a request is one JSON object per line, e.g. {"get": "status"}'}
    assert "unknown request" in json.loads(exchange(b'{"get": "secrets"}\n'))["error"]
    assert "longer than 4096 bytes" in json.loads(exchange(b"x" * 10000))["error"]
    idle = [socket.socket(socket.AF_UNIX) for _ in range(20)]  # more than it serves at once
    for c in idle:
        c.connect(path)
    for c in idle:
        c.close()
    assert query(s.socket)["device"] == "crypto" and s.alive()


def test_info_reads_a_store_of_both_kinds_without_changing_it(serve, tmp_path, ring):
    crypto = serve("crypto", "--instance", "c", "--queues", "2")
    rpmb = serve("rpmb", "--instance", "r", "--capacity", "2", name="rpmb")
    with RpmbClient.connect(rpmb.socket) as c:
        assert c.program_key(KEY) == 0
        c.key = KEY
        assert c.write(5, [b"a" * 256]) == (0, 1)
    r = cli("info", "--state", crypto.state, "--json")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["store"] == crypto.state
    assert [(i["kind"], i["instance"], i["served"]) for i in got["instances"]] == [("crypto", "c", True),
                                                                                  ("rpmb", "r", True)]
    assert got["instances"][0]["settings"]["max_dataqueues"] == 2 and got["instances"][0]["state"] == {}
    assert got["instances"][1]["settings"] == {"capacity": 2, "max_rd_cnt": 1, "max_wr_cnt": 1}
    assert got["instances"][1]["state"] == {"write_counter": 1, "key": "programmed", "blocks_written": 1}
    assert KEY.hex() not in r.stdout
    crypto.stop()
    rpmb.stop()
    files = sorted(os.listdir(tmp_path))
    r = cli("info", "--state", crypto.state)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"state store {crypto.state}: 2 instance(s)"
    assert lines[1].split() == ["kind", "instance", "served", "now", "settings", "kept", "state"]
    assert lines[2].split()[:3] == ["crypto", "c", "no"]
    assert lines[3].split() == ["rpmb", "r", "no", "capacity=2", "max_rd_cnt=1", "max_wr_cnt=1", "write_counter=1",
                                "key=programmed", "blocks_written=1"]
    assert sorted(os.listdir(tmp_path)) == files  # nothing created, nothing removed


def test_info_refuses_what_is_not_a_store_in_one_line(tmp_path):
    r = cli("info", "--state", str(tmp_path / "none.db"))
    assert r.returncode == 1 and r.stderr == f"Error: state store {tmp_path / 'none.db'}: no such file\n"
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"junk" * 300)
    r = cli("info", "--state", str(junk))
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "file is not a database" in r.stderr
    assert sorted(os.listdir(tmp_path)) == ["junk.db"]
