"""virtio-rpmb end to end: real ``vfu-virtio rpmb`` server processes, the project's vfio-user client and
virtio-pci driver, frames in shared guest memory, completions by MSI-X.

Configuration space and identity over PCI, the whole key/counter/write/read cycle with MAC and nonce
checks, multi-block and eMMC-style (``block_count`` = 0) chains, persistence across device reset, client
reconnect and process restart, one process per store namespace, a crypto and an RPMB device sharing one
store file (the crypto device's configuration kept there), and the ``rpmb-client`` command line.
"""
from __future__ import annotations

import os
import resource
import sqlite3
import subprocess
import sys

import pytest

from vfu_virtio.abi import rpmb as F
from vfu_virtio.abi.rpmb import Frame
from vfu_virtio.client.rpmb import RpmbClient

virtio_pci = pytest.importorskip("vfu_virtio.client.virtio_pci")
DeviceNeedsReset = virtio_pci.DeviceNeedsReset

KEY = bytes(range(32))


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vfu_virtio", *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def server(serve):
    return serve("rpmb", "--capacity", "2", "--max-wr-cnt", "4", "--max-rd-cnt", "0")


def test_identity_and_config(server):
    with RpmbClient.connect(server.socket) as c:
        assert c.driver.virtio_device_id == 28 and c.driver.num_queues == 1
        assert c.driver.device_features() & 0xFFFFFF == 0  # "Feature bits: None"
        assert c.config() == (2, 4, 0)


def test_cycle_over_the_transport(server):
    with RpmbClient.connect(server.socket) as c:
        assert c.read_counter() == (F.VIRTIO_RPMB_RES_NO_AUTH_KEY, 0)
        assert c.program_key(KEY) == F.VIRTIO_RPMB_RES_OK
        assert c.read_counter() == (0, 0)
        blocks = [bytes([i]) * 256 for i in range(4)]
        assert c.write(1020, blocks) == (0, 1)
        assert c.write(1021, blocks) == (F.VIRTIO_RPMB_RES_ADDR_FAILURE, 1)  # capacity 2 = 1024 blocks
        assert c.read(1020, 4) == (0, blocks)
        assert c.read(0, 8)[1] == [bytes(256)] * 8  # max_rd_cnt 0: no limit
        # a replay of a recorded write is refused and changes nothing
        recorded = F.seal([Frame(req_resp=3, block_count=1, address=5, write_counter=1, data=b"r" * 256)], KEY)
        rr = Frame(req_resp=F.VIRTIO_RPMB_REQ_RESULT_READ, block_count=1).pack()
        assert c.exchange([recorded, rr], 1)[0].result == 0
        (resp,) = c.exchange([recorded, rr], 1)
        assert (resp.result, resp.write_counter) == (F.VIRTIO_RPMB_RES_COUNT_FAILURE, 2)
        assert c.read(5) == (0, [b"r" * 256])


def test_emmc_style_chains(server):
    """OP-TEE / mmc-utils frames: block_count 0 in PROGRAM_KEY, RESULT_READ, GET_WRITE_COUNTER and
    DATA_READ; the read's count comes from the writable frames."""
    with RpmbClient.connect(server.socket) as c:
        pk = Frame(req_resp=F.VIRTIO_RPMB_REQ_PROGRAM_KEY, key_mac=KEY).pack()
        rr = Frame(req_resp=F.VIRTIO_RPMB_REQ_RESULT_READ).pack()
        c.key = KEY
        assert c.exchange([pk, rr], 1)[0].result == 0
        nonce = b"\x42" * 16
        (resp,) = c.exchange([Frame(req_resp=F.VIRTIO_RPMB_REQ_GET_WRITE_COUNTER, nonce=nonce).pack()], 1)
        assert (resp.result, resp.nonce, resp.write_counter) == (0, nonce, 0)
        assert c.write(8, [b"e" * 256, b"m" * 256]) == (0, 1)
        frames = c.exchange([Frame(req_resp=F.VIRTIO_RPMB_REQ_DATA_READ, address=8, nonce=nonce).pack()], 2)
        assert [(f.result, f.block_count, f.data[:1]) for f in frames] == [(0, 2, b"e"), (0, 2, b"m")]


def test_persistence_across_reset_reconnect_restart(serve):
    s = serve("rpmb")
    with RpmbClient.connect(s.socket) as c:
        assert c.program_key(KEY) == 0
        assert c.write(3, [b"p" * 256]) == (0, 1)
        c.driver.reset()  # device reset: the driver starts over on the same connection
        c.driver.init()
        c.request = c.driver.queue(0).request
        assert c.read(3) == (0, [b"p" * 256]) and c.read_counter() == (0, 1)
    with RpmbClient.connect(s.socket, KEY) as c:  # a new client
        assert c.write(4, [b"q" * 256]) == (0, 2)
    assert s.stop() == 0
    s.start()  # the same store, a new process
    with RpmbClient.connect(s.socket, KEY) as c:
        assert c.read_counter() == (0, 2) and c.read(3) == (0, [b"p" * 256]) and c.read(4) == (0, [b"q" * 256])
        assert c.program_key(bytes(32)) == F.VIRTIO_RPMB_RES_WRITE_FAILURE
        assert c.config() == (1, 1, 1)


def wal_frames(state: str) -> int:
    """Frames in the store's WAL file (each a 24-byte header and one page; the file has a 32-byte header)."""
    page = sqlite3.connect(state).execute("PRAGMA page_size").fetchone()[0]
    return (os.path.getsize(state + "-wal") - 32) // (24 + page)


def test_writes_of_one_kick_share_one_commit(serve):
    """Group commit: 16 DATA_WRITE chains made available with one kick are all acknowledged in order,
    are all on disk, and cost one commit -- the WAL grows by one transaction's pages, where 16 commits
    would append at least two pages (block table and counter row) each."""
    s = serve("rpmb", "--capacity", "2")
    with RpmbClient.connect(s.socket, KEY) as c:
        assert c.program_key(KEY) == 0
        before = wal_frames(s.state)
        chains = [(c.write_request(i, [bytes([i]) * 256], i), [512]) for i in range(16)]
        results = c.driver.queue(0).run(chains, batch=16)
        frames = [Frame.unpack(data[0]) for _used, data in results]
        assert [(f.result, f.write_counter, f.address) for f in frames] == [(0, i + 1, i) for i in range(16)]
        grown = wal_frames(s.state) - before
        assert 0 < grown < 8, f"{grown} WAL frames for 16 writes: not one commit per kick"
    db = sqlite3.connect(s.state)
    assert db.execute("SELECT write_counter FROM rpmb_state").fetchone() == (16,)
    assert db.execute("SELECT count(*) FROM rpmb_block").fetchone() == (16,)
    db.close()


def test_failed_commit_completes_nothing_and_needs_reset(serve):
    """A store commit that fails for real (RLIMIT_FSIZE on the server: the WAL cannot grow, the write
    fails with EFBIG) completes none of the run's requests: no used element, DEVICE_NEEDS_RESET, one log
    line; after the reset the device serves the committed state, without the failed write."""
    s = serve("rpmb")
    with RpmbClient.connect(s.socket, KEY) as c:
        assert c.program_key(KEY) == 0 and c.write(0, [b"a" * 256]) == (0, 1)
        hard = resource.prlimit(s.proc.pid, resource.RLIMIT_FSIZE)[1]
        resource.prlimit(s.proc.pid, resource.RLIMIT_FSIZE, (os.path.getsize(s.state + "-wal"), hard))
        queue = c.driver.queue(0)
        with pytest.raises(DeviceNeedsReset):
            queue.request(c.write_request(0, [b"b" * 256], 1), [512], timeout=5)
        assert queue.vq.in_flight == 1  # the write was never completed
        resource.prlimit(s.proc.pid, resource.RLIMIT_FSIZE, (hard, hard))
        c.driver.reset()
        c.driver.init()
        c.request = c.driver.queue(0).request
        assert c.read_counter() == (0, 1) and c.read(0) == (0, [b"a" * 256])
        assert c.write(0, [b"c" * 256]) == (0, 2)
    assert s.alive()
    lines = [ln for ln in s.log().splitlines() if "DEVICE_NEEDS_RESET" in ln]
    assert len(lines) == 1 and "could not make 1 request(s) on queue 0 durable, none completed" in lines[0]
    assert "commit failed" in lines[0]


def test_one_process_per_namespace(serve, tmp_path):
    s = serve("rpmb", "--capacity", "4")
    r = cli("rpmb", "--socket", str(tmp_path / "second.sock"), "--state", s.state)
    assert r.returncode == 1 and "rpmb instance '0' is already served by another process" in r.stderr
    assert "Traceback" not in r.stderr
    other = serve("rpmb", "--instance", "b", name="b")  # another instance in the same file is fine
    with RpmbClient.connect(other.socket) as c:
        assert c.config() == (1, 1, 1)
    s.stop()
    r = cli("rpmb", "--socket", str(tmp_path / "third.sock"), "--state", s.state, "--capacity", "2")
    assert r.returncode == 1 and "has capacity 4 (x 128 KiB); it cannot become 2" in r.stderr


def test_crypto_and_rpmb_share_one_store(serve):
    crypto = serve("crypto", "--queues", "2", "--instance", "c")
    rpmb = serve("rpmb", "--instance", "r", name="rpmb")
    assert crypto.state == rpmb.state
    with RpmbClient.connect(rpmb.socket) as c:
        assert c.program_key(KEY) == 0 and c.write(0, [b"s" * 256]) == (0, 1)
    drv = virtio_pci.VirtioPciDriver.connect(crypto.socket)
    drv.init()
    assert drv.num_queues == 3
    drv.close()
    import sqlite3
    db = sqlite3.connect(crypto.state)
    rows = dict(db.execute("SELECT c.name, c.value FROM config c JOIN namespace n ON n.id = c.ns "
                           "WHERE n.kind = 'crypto' AND n.instance = 'c'").fetchall())
    db.close()
    assert rows == {"max_dataqueues": 2, "max_sessions": 1024, "max_size": 1 << 20, "profile": "standard",
                    "bulk_threshold": 256 << 10, "max_rsa_keygen_bits": 4096, "max_dsa_keygen_bits": 2048,
                    "max_dh_param_bits": 1024}


def test_rpmb_client_command(serve, tmp_path):
    s = serve("rpmb", "--max-wr-cnt", "2", "--max-rd-cnt", "2")
    key_file = tmp_path / "key"
    key_file.write_text(KEY.hex() + "\n")
    base = ["rpmb-client", "--socket", s.socket]
    keyed = [*base, "--key-file", str(key_file)]
    r = cli(*base, "read-counter")
    assert r.returncode == 1 and "result NO_AUTH_KEY" in r.stderr
    r = cli(*keyed, "program-key")
    assert r.returncode == 0 and "result OK" in r.stdout, r.stderr
    r = cli(*keyed, "program-key")
    assert r.returncode == 1 and "WRITE_FAILURE" in r.stderr
    r = cli(*keyed, "write", "--address", "7", "--data-hex", "ab" * 300)
    assert r.returncode == 0 and "2 block(s) at 7, write counter 1" in r.stdout, r.stderr
    r = cli(*keyed, "read", "--address", "7", "--count", "2")
    assert r.returncode == 0 and f"    7: {'ab' * 256}" in r.stdout and f"    8: {'ab' * 44}{'00' * 212}" in r.stdout
    r = cli(*keyed, "read-counter")
    assert r.returncode == 0 and "write counter 1" in r.stdout
    wrong = tmp_path / "wrong"
    wrong.write_bytes(bytes(32))
    r = cli(*base, "--key-file", str(wrong), "read-counter")
    assert r.returncode == 1 and "MAC does not verify" in r.stderr
