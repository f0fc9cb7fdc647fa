"""virtio-rpmb device, in-process: chains over bytearrays handed to ``RpmbDevice.handle`` on a real store.

Every result code and the check order of ``docs/decisions.md`` RAMB-21 (first failing check wins,
failures leave key, counter and data untouched), HMAC-SHA256 vectors (RAMB-3), multi-block MACs, nonce
echo, eMMC-style ``block_count`` = 0 requests, replayed and forged writes, counter saturation, malformed
chains (RAMB-15), RESULT_READ in the same chain and later, and that the key never appears in a response.
"""
from __future__ import annotations

import hashlib
import hmac
import sqlite3

import pytest

from vfu_virtio.abi import rpmb as F
from vfu_virtio.abi.rpmb import Frame
from vfu_virtio.client.rpmb import RpmbClient
from vfu_virtio.devices.rpmb import RpmbDevice
from vfu_virtio.devices.rpmb.persist import TABLES, RpmbState
from vfu_virtio.store import StoreError, open_namespace
from vfu_virtio.virtio.chain import DescriptorChain

KEY = bytes(range(32))  # the HMAC vectors' key 00..1f
OTHER_KEY = bytes(range(32, 64))


class Bench:
    """A device on a store in ``tmp_path``; records every response byte to check the key never leaks."""

    def __init__(self, path, **config):
        self.path = str(path)
        self.config = config
        self.responses: list[bytes] = []
        self.open()

    def open(self):
        self.dev = RpmbDevice(RpmbState.open(open_namespace(self.path, "rpmb", "0", [TABLES])), **self.config)
        self.client = RpmbClient(self.request)

    def reopen(self):
        self.dev.close()
        self.open()

    def request(self, outs, in_sizes):
        """The RpmbClient transport: one descriptor per buffer, writable ones pre-filled with 0xEE."""
        ins = [bytearray(b"\xee" * n) for n in in_sizes]
        chain = DescriptorChain(0, [memoryview(bytearray(o)) for o in outs], [memoryview(b) for b in ins])
        used = self.dev.handle(0, chain)
        self.dev.commit()  # as the transport does after each run, before publishing the used element
        self.responses.append(b"".join(ins))
        return used, [bytes(b) for b in ins]

    def raw(self, frames: list[bytes], room: int) -> tuple[int, list[Frame], bytes]:
        """Send raw frames with ``room`` writable frames: (used, response frames, response bytes)."""
        used, ins = self.request(frames, [F.FRAME_SIZE] * room)
        data = b"".join(ins)[:used]
        return used, [Frame.unpack(data, o) for o in range(0, used, F.FRAME_SIZE)], data

    def state(self) -> tuple[int, list[bytes]]:
        """(counter, all blocks) straight from the store file."""
        db = sqlite3.connect(self.path)
        try:
            counter = db.execute("SELECT write_counter FROM rpmb_state").fetchone()[0]
            blocks = db.execute("SELECT address, data FROM rpmb_block ORDER BY address").fetchall()
        finally:
            db.close()
        return counter, blocks


@pytest.fixture
def bench(tmp_path):
    b = Bench(tmp_path / "state.db", capacity=1, max_wr_cnt=4, max_rd_cnt=4)
    yield b
    b.dev.close()
    for r in b.responses:
        assert KEY not in r and OTHER_KEY not in r, "a response carried the authentication key"


@pytest.fixture
def keyed(bench):
    assert bench.client.program_key(KEY) == F.VIRTIO_RPMB_RES_OK
    return bench


def pk(key=KEY, block_count=1) -> bytes:
    return Frame(req_resp=F.VIRTIO_RPMB_REQ_PROGRAM_KEY, block_count=block_count, key_mac=key).pack()


def rr(block_count=1) -> bytes:
    return Frame(req_resp=F.VIRTIO_RPMB_REQ_RESULT_READ, block_count=block_count).pack()


def gc(nonce=bytes(16), block_count=1) -> bytes:
    return Frame(req_resp=F.VIRTIO_RPMB_REQ_GET_WRITE_COUNTER, block_count=block_count, nonce=nonce).pack()


def dr(address=0, block_count=1, nonce=bytes(range(16, 32))) -> bytes:
    return Frame(req_resp=F.VIRTIO_RPMB_REQ_DATA_READ, block_count=block_count, address=address, nonce=nonce).pack()


def dw(blocks, address=0, counter=0, block_count=None, key=KEY) -> list[bytes]:
    """DATA_WRITE frames, sealed with ``key`` (None: no MAC)."""
    n = len(blocks) if block_count is None else block_count
    raw = F.seal([Frame(req_resp=F.VIRTIO_RPMB_REQ_DATA_WRITE, block_count=n, address=address,
                        write_counter=counter, data=b) for b in blocks], key)
    return [raw[i:i + F.FRAME_SIZE] for i in range(0, len(raw), F.FRAME_SIZE)]


def write_result(bench, frames, key=KEY) -> Frame:
    used, (resp,), data = bench.raw([*frames, rr()], 1)
    assert used == 512 and resp.req_resp == F.VIRTIO_RPMB_RESP_DATA_WRITE
    assert F.verify(key, data) if key else data[196:228] == bytes(32)
    return resp


# ---- wire format ----------------------------------------------------------------------------------------
def test_frame_layout_and_config():
    assert F.VIRTIO_RPMB_FRAME.size == 512 and F.VIRTIO_RPMB_CONFIG.size == 3
    raw = Frame(req_resp=0x0102, result=0x0304, block_count=0x0506, address=0x0708, write_counter=0x090A0B0C,
                nonce=b"N" * 16, data=b"D" * 256, key_mac=b"K" * 32).pack()
    assert raw[:196] == bytes(196) and raw[196:228] == b"K" * 32 and raw[228:484] == b"D" * 256
    assert raw[484:500] == b"N" * 16 and raw[500:512] == bytes.fromhex("090a0b0c0708050603040102")


@pytest.mark.parametrize("frames,expected", [
    ([Frame(req_resp=0x0200, nonce=bytes(range(16)))],
     "ca2f2e1099810c58ab862024577cfc3c0960fa69908e0f185d2e951413e9ca78"),
    ([Frame(req_resp=0x0003, block_count=1, data=b"\xaa" * 256)],
     "5f6510fce8016ab99d534420e523623f2143a3e88410966e487d2f212bc114a7"),
    ([Frame(req_resp=0x0300, write_counter=1)],
     "3436db134df3c3548aa7f81a117685e78210aa6a5871ca998cc786d52dfa464f"),
    ([Frame(req_resp=0x0400, block_count=1, data=b"\xaa" * 256, nonce=bytes(range(16, 32)))],
     "de8dea5df34388d36e8cc3c456b25b154b23a9d1d952c1b2cf2f4c0b86f03f66"),
    ([Frame(req_resp=0x0003, block_count=2, address=2, write_counter=1, data=b"\x11" * 256),
      Frame(req_resp=0x0003, block_count=2, address=2, write_counter=1, data=b"\x22" * 256)],
     "c7477214fc496f4dc96f05360c9f7bb1eca7c33c4e01a4b95c5fd926dd8de76b"),
], ids=["V1", "V2", "V3", "V4", "V5"])
def test_hmac_vectors(frames, expected):
    raw = F.seal(frames, KEY)
    assert raw[-512 + 196:-512 + 228].hex() == expected
    assert all(raw[o + 196:o + 228] == bytes(32) for o in range(0, len(raw) - 512, 512))  # MAC in the last only
    assert F.verify(KEY, raw) and not F.verify(OTHER_KEY, raw)


def test_config_space(tmp_path):
    b = Bench(tmp_path / "s.db", capacity=0x80, max_wr_cnt=0, max_rd_cnt=7)
    assert b.dev.config_space() == bytes([0x80, 0, 7]) and b.dev.device_id == 28 and b.dev.num_queues == 1
    b.dev.close()
    for bad in ({"capacity": 0}, {"capacity": 0x81}, {"max_wr_cnt": 256}, {"max_rd_cnt": -1}):
        ns = open_namespace(str(tmp_path / "s.db"), "rpmb", "0", [TABLES])
        with pytest.raises(ValueError):
            RpmbDevice(RpmbState.open(ns), **bad)
        ns.close()


# ---- before a key: NO_AUTH_KEY, no MAC ---------------------------------------------------------------
def test_no_key(bench):
    used, (resp,), data = bench.raw([gc(b"n" * 16)], 1)
    assert (resp.req_resp, resp.result, resp.write_counter, resp.nonce) == (0x0200, 7, 0, b"n" * 16)
    assert data[196:228] == bytes(32)  # RAMB-8: no key, no MAC
    assert write_result(bench, dw([b"x" * 256]), key=None).result == F.VIRTIO_RPMB_RES_NO_AUTH_KEY
    assert bench.raw(dw([b"x" * 256], block_count=0) + [rr()], 1)[1][0].result == F.VIRTIO_RPMB_RES_NO_AUTH_KEY
    used, frames, _ = bench.raw([dr(0, 2)], 2)
    assert used == 1024 and [f.result for f in frames] == [7, 7] and all(f.data == bytes(256) for f in frames)
    assert bench.state() == (0, [])


def test_result_read_with_nothing_to_report(bench):
    used, (resp,), _ = bench.raw([rr()], 1)
    assert (used, resp.req_resp, resp.result) == (512, 0, F.VIRTIO_RPMB_RES_GENERAL_FAILURE)


# ---- PROGRAM_KEY --------------------------------------------------------------------------------------
def test_program_key_once(bench):
    used, (resp,), data = bench.raw([pk(), rr()], 1)
    assert (resp.req_resp, resp.result) == (F.VIRTIO_RPMB_RESP_PROGRAM_KEY, F.VIRTIO_RPMB_RES_OK)
    assert F.verify(KEY, data)  # the MAC is computed with the key now in force
    used, (resp,), data = bench.raw([pk(OTHER_KEY), rr()], 1)
    assert resp.result == F.VIRTIO_RPMB_RES_WRITE_FAILURE and F.verify(KEY, data)  # RAMB-9: key unchanged
    bench.reopen()
    assert bench.dev.state.key == KEY


def test_program_key_block_count(bench):
    used, (resp,), data = bench.raw([pk(block_count=2), rr()], 1)
    assert resp.result == F.VIRTIO_RPMB_RES_GENERAL_FAILURE and data[196:228] == bytes(32)
    assert bench.dev.state.key is None
    used, (resp,), _ = bench.raw([pk(block_count=0), rr(block_count=0)], 1)  # eMMC clients (mmc-utils, OP-TEE)
    assert resp.result == F.VIRTIO_RPMB_RES_OK and bench.dev.state.key == KEY


def test_program_key_result_read_later_and_reset(bench):
    assert bench.raw([pk()], 0)[0] == 0  # no RESULT_READ: no result frame (RPMB-29)
    assert bench.raw([pk()], 1)[0] == 0  # room but no RESULT_READ requested
    used, (resp,), data = bench.raw([rr()], 1)
    assert (resp.req_resp, resp.result) == (F.VIRTIO_RPMB_RESP_PROGRAM_KEY, F.VIRTIO_RPMB_RES_WRITE_FAILURE)
    assert F.verify(KEY, data)
    used, (resp,), _ = bench.raw([rr(block_count=2)], 1)
    assert resp.result == F.VIRTIO_RPMB_RES_GENERAL_FAILURE  # RPMB-30
    bench.dev.reset()
    used, (resp,), data = bench.raw([rr()], 1)
    assert (resp.req_resp, resp.result) == (0, F.VIRTIO_RPMB_RES_GENERAL_FAILURE) and F.verify(KEY, data)


def test_program_key_store_failure(bench, monkeypatch):
    def broken(key):
        raise StoreError("disk full")
    monkeypatch.setattr(bench.dev.state, "program_key", broken)
    assert bench.raw([pk(), rr()], 1)[1][0].result == F.VIRTIO_RPMB_RES_WRITE_FAILURE
    assert bench.dev.state.key is None


# ---- GET_WRITE_COUNTER --------------------------------------------------------------------------------
def test_get_counter(keyed):
    nonce = bytes(range(16))
    used, (resp,), data = keyed.raw([gc(nonce)], 1)
    assert (used, resp.req_resp, resp.result, resp.write_counter, resp.nonce) == (512, 0x0200, 0, 0, nonce)
    assert data[196:228].hex() == "ca2f2e1099810c58ab862024577cfc3c0960fa69908e0f185d2e951413e9ca78"  # V1
    assert keyed.raw([gc(nonce, block_count=0)], 1)[1][0].result == F.VIRTIO_RPMB_RES_OK  # eMMC style
    used, (resp,), data = keyed.raw([gc(nonce, block_count=2)], 1)
    assert resp.result == F.VIRTIO_RPMB_RES_GENERAL_FAILURE and F.verify(KEY, data)
    assert keyed.raw([gc()], 0)[0] == 0  # nowhere to answer


# ---- DATA_WRITE ---------------------------------------------------------------------------------------
def test_write_then_read(keyed):
    resp = write_result(keyed, dw([b"\xaa" * 256]))
    assert (resp.result, resp.write_counter, resp.address) == (0, 1, 0)
    used, (r,), data = keyed.raw([dr(0)], 1)
    assert data[196:228].hex() == "de8dea5df34388d36e8cc3c456b25b154b23a9d1d952c1b2cf2f4c0b86f03f66"  # V4
    assert r.data == b"\xaa" * 256 and keyed.state() == (1, [(0, b"\xaa" * 256)])


def test_multi_block_write_and_read(keyed):
    blocks = [bytes([i]) * 256 for i in range(1, 5)]
    resp = write_result(keyed, dw(blocks, address=10))
    assert (resp.result, resp.write_counter, resp.address) == (0, 1, 10)  # +1 per request, not per block
    nonce = b"\x5a" * 16
    used, frames, data = keyed.raw([dr(9, 4, nonce)], 4)
    assert used == 2048 and F.verify(KEY, data)
    assert all(data[o + 196:o + 228] == bytes(32) for o in (0, 512, 1024))
    assert [f.data for f in frames] == [bytes(256)] + blocks[:3]
    assert all((f.req_resp, f.block_count, f.address, f.nonce, f.result, f.write_counter) ==
               (0x0400, 4, 9, nonce, 0, 0) for f in frames)
    # a forged multi-block MAC: the data of the first frame changed after signing
    frames_out = dw([b"\x01" * 256, b"\x02" * 256], address=20, counter=1)
    forged = bytearray(frames_out[0])
    forged[300] ^= 1
    assert write_result(keyed, [bytes(forged), frames_out[1]]).result == F.VIRTIO_RPMB_RES_AUTH_FAILURE
    assert keyed.state()[0] == 1


def test_emmc_read_with_block_count_zero(keyed):
    write_result(keyed, dw([b"a" * 256, b"b" * 256, b"c" * 256], address=5))
    used, frames, data = keyed.raw([dr(5, 0)], 3)  # the count is the chain's writable frames
    assert used == 1536 and [f.data[:1] for f in frames] == [b"a", b"b", b"c"] and F.verify(KEY, data)
    assert all(f.block_count == 3 and f.result == 0 for f in frames)


def test_write_check_order(keyed):
    """Every failure leaves the state as it was; each case also fails every later check."""
    write_result(keyed, dw([b"\x01" * 256], address=3))  # counter 1
    before = keyed.state()
    blocks = keyed.dev.blocks  # 512
    cases = [
        # N == 0, out of range, bad MAC, stale counter: GENERAL_FAILURE first
        (dw([b"z" * 256], address=blocks, counter=0, block_count=0, key=OTHER_KEY), F.VIRTIO_RPMB_RES_GENERAL_FAILURE),
        (dw([b"z" * 256] * 5, address=blocks, counter=0, key=OTHER_KEY), F.VIRTIO_RPMB_RES_GENERAL_FAILURE),  # > max_wr_cnt
        (dw([b"z" * 256], address=0, counter=1, block_count=2), F.VIRTIO_RPMB_RES_GENERAL_FAILURE),  # frames < N
        # out of range with a bad MAC and a stale counter: ADDR_FAILURE
        (dw([b"z" * 256], address=blocks, counter=0, key=OTHER_KEY), F.VIRTIO_RPMB_RES_ADDR_FAILURE),
        (dw([b"z" * 256] * 2, address=blocks - 1, counter=1), F.VIRTIO_RPMB_RES_ADDR_FAILURE),
        (dw([b"z" * 256], address=0xFFFF, counter=1), F.VIRTIO_RPMB_RES_ADDR_FAILURE),
        # forged MAC with a stale counter: AUTH_FAILURE
        (dw([b"z" * 256], address=0, counter=0, key=OTHER_KEY), F.VIRTIO_RPMB_RES_AUTH_FAILURE),
        (dw([b"z" * 256], address=0, counter=1, key=None), F.VIRTIO_RPMB_RES_AUTH_FAILURE),
        # the replay of the first write (valid MAC, old counter): COUNT_FAILURE
        (dw([b"\x01" * 256], address=3, counter=0), F.VIRTIO_RPMB_RES_COUNT_FAILURE),
        (dw([b"z" * 256], address=0, counter=2), F.VIRTIO_RPMB_RES_COUNT_FAILURE),
    ]
    for frames, expected in cases:
        resp = write_result(keyed, frames)
        assert (resp.result, resp.write_counter) == (expected, 1), F.RESULT_NAMES[expected]
        assert keyed.state() == before
    assert write_result(keyed, dw([b"\x02" * 256], address=blocks - 1, counter=1)).result == 0  # last block


def test_write_store_failure(keyed, monkeypatch):
    def broken(address, blocks, counter):
        raise StoreError("I/O error")
    monkeypatch.setattr(keyed.dev.state, "write", broken)
    resp = write_result(keyed, dw([b"q" * 256]))
    assert (resp.result, resp.write_counter) == (F.VIRTIO_RPMB_RES_WRITE_FAILURE, 0)


def test_write_result_read_in_a_later_chain(keyed):
    assert keyed.raw(dw([b"w" * 256]), 1)[0] == 0
    used, (resp,), data = keyed.raw([rr()], 1)
    assert (resp.req_resp, resp.result, resp.write_counter) == (0x0300, 0, 1) and F.verify(KEY, data)
    assert keyed.raw(dw([b"w" * 256], counter=1) + [rr()], 0)[0] == 0  # RESULT_READ without room: still done
    assert keyed.client.read_counter() == (0, 2)


# ---- DATA_READ ----------------------------------------------------------------------------------------
def test_read_failures(keyed, monkeypatch):
    used, frames, data = keyed.raw([dr(0, 5)], 5)  # > max_rd_cnt (4)
    assert used == 2560 and {f.result for f in frames} == {1} and F.verify(KEY, data)
    used, frames, _ = keyed.raw([dr(0, 3)], 2)  # fewer writable frames than block_count
    assert used == 1024 and {f.result for f in frames} == {1}
    used, frames, data = keyed.raw([dr(510, 3)], 3)
    assert {f.result for f in frames} == {F.VIRTIO_RPMB_RES_ADDR_FAILURE} and F.verify(KEY, data)
    assert keyed.raw([dr(0)], 0)[0] == 0

    def broken(address, count):
        raise StoreError("I/O error")
    monkeypatch.setattr(keyed.dev.state, "read", broken)
    used, (f,), data = keyed.raw([dr(0)], 1)
    assert (f.result, f.data) == (F.VIRTIO_RPMB_RES_READ_FAILURE, bytes(256)) and F.verify(KEY, data)


def test_unwritten_blocks_read_zero(keyed):
    assert keyed.client.read(511, 1) == (0, [bytes(256)])


# ---- saturation ---------------------------------------------------------------------------------------
def test_counter_saturation(keyed):
    keyed.dev.close()
    db = sqlite3.connect(keyed.path)
    db.execute("UPDATE rpmb_state SET write_counter=?", (0xFFFFFFFE,))
    db.commit()
    db.close()
    keyed.open()
    keyed.client.key = KEY
    assert keyed.client.read_counter() == (0, 0xFFFFFFFE)
    assert keyed.client.write(7, [b"L" * 256]) == (0, 0xFFFFFFFF)  # the last write succeeds (RAMB-10)
    before = keyed.state()
    for frames in (dw([b"M" * 256], address=7, counter=0xFFFFFFFF),
                   dw([b"M" * 256], address=9999, counter=3, key=OTHER_KEY)):  # expiry before ADDR/AUTH/COUNT
        resp = write_result(keyed, frames)
        assert (resp.result, resp.write_counter) == (F.VIRTIO_RPMB_RES_WRITE_COUNTER_EXPIRED, 0xFFFFFFFF)
    assert write_result(keyed, dw([b"M" * 256], block_count=0)).result == F.VIRTIO_RPMB_RES_GENERAL_FAILURE
    assert keyed.state() == before
    assert keyed.client.read(7) == (0, [b"L" * 256])  # other requests keep working
    assert keyed.client.read_counter() == (0, 0xFFFFFFFF)


# ---- malformed chains (RAMB-15) ---------------------------------------------------------------------------
@pytest.mark.parametrize("frames,resp_type", [
    ([b"\x00" * 511], 0),
    ([gc() + b"\x00" * 100], 0),
    ([Frame(req_resp=0x0009, block_count=1).pack()], 0),
    ([Frame(req_resp=F.VIRTIO_RPMB_RESP_GET_COUNTER).pack()], 0),
    ([gc(), rr()], F.VIRTIO_RPMB_RESP_GET_COUNTER),
    ([dr(), rr()], F.VIRTIO_RPMB_RESP_DATA_READ),
    ([rr(), rr()], 0),
    ([pk(), gc()], F.VIRTIO_RPMB_RESP_PROGRAM_KEY),
    ([*dw([b"a" * 256, b"b" * 256])[:1], gc(), rr()], F.VIRTIO_RPMB_RESP_DATA_WRITE),
    ([*dw([b"a" * 256]), rr(), rr()], F.VIRTIO_RPMB_RESP_DATA_WRITE),
])
def test_malformed(keyed, frames, resp_type):
    before = keyed.state()
    used, (resp,), data = keyed.raw(frames, 1)
    assert (used, resp.req_resp, resp.result) == (512, resp_type, F.VIRTIO_RPMB_RES_GENERAL_FAILURE)
    assert F.verify(KEY, data)
    assert keyed.raw(frames, 0)[0] == 0
    assert keyed.state() == before and keyed.dev.state.key == KEY


def test_mac_is_hmac_sha256_over_bytes_228_to_511(keyed):
    nonce = b"\x11" * 16
    _, (resp,), data = keyed.raw([gc(nonce)], 1)
    assert data[196:228] == hmac.new(KEY, data[228:512], hashlib.sha256).digest()


# ---- persistence --------------------------------------------------------------------------------------
def test_persistence_across_reset_and_restart(keyed):
    keyed.client.write(1, [b"p" * 256])
    keyed.dev.reset()
    assert keyed.client.read(1) == (0, [b"p" * 256]) and keyed.client.read_counter() == (0, 1)
    keyed.reopen()
    keyed.client.key = KEY
    assert keyed.client.read(1) == (0, [b"p" * 256]) and keyed.client.read_counter() == (0, 1)
    assert keyed.client.program_key(OTHER_KEY) == F.VIRTIO_RPMB_RES_WRITE_FAILURE
