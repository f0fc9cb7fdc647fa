"""Bulk crypto requests on a data queue's worker thread (decision TD-ASYNC): same bytes, out-of-order completion,
and nothing written into memory the driver took back.

Real servers (``vfu-virtio crypto --bulk-threshold N``) driven by the project's
vfio-user driver: out-of-order completion seen in the used ring (and, as the negative control, in order without a
worker); a device reset, a client disconnect and a DMA unmap while bulk requests are in flight; a property that
``--bulk-threshold 1`` (every request with a source on the worker) writes the same bytes and status as ``0`` for any
size and writable layout (lone dst descriptor, slack, split, in place). In-process: the option's range, the worker
threads, completion in runs, an exception on a worker, ``close`` draining, and concurrent digests from one session.
"""
from __future__ import annotations

import logging
import threading

import pytest
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vfu_virtio.abi import crypto as C
from vfu_virtio.abi.ring import VIRTQ_DESC
from vfu_virtio.abi.virtio import DEVICE_NEEDS_RESET
from vfu_virtio.client import crypto as D
from vfu_virtio.client.virtio_pci import DEFAULT_DRIVER_FEATURES, VirtioPciDriver
from vfu_virtio.devices.crypto import CryptoDevice
from vfu_virtio.devices.crypto.services import DigestEngine
from vfu_virtio.devices.crypto.values import MacParams, Service
from vfu_virtio.virtio.chain import DescriptorChain

from conftest import published
from crypto_harness import InProcess, handle

KEY = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")  # NIST SP 800-38A F.2.1
IV = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
PLAIN = bytes.fromhex("6bc1bee22e409f96e93d7e117393172a")
CIPHER = bytes.fromhex("7649abac8119b246cee98e9b12e9197d")
BULK = 512 << 10  # bytes of one bulk request: about a millisecond of AES-CBC
IN_FLIGHT = 24  # bulk requests in one kick: tens of milliseconds of work behind the event-loop thread
OK = 0


def aes_cbc(data: bytes, key: bytes = KEY, iv: bytes = IV) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return enc.update(data) + enc.finalize()


def serve_bulk(serve, threshold: int, queues: int = 2, *extra: str, **kw):
    return serve("crypto", "--queues", str(queues), "--max-size", str(4 << 20), "--bulk-threshold", str(threshold),
                 *extra, **kw)


def attach(server, mem_size: int = 64 << 20) -> VirtioPciDriver:
    drv = VirtioPciDriver.connect(server.socket, mem_size=mem_size)
    drv.init(features_wanted=DEFAULT_DRIVER_FEATURES)
    return drv


def cbc_session(drv: VirtioPciDriver, key: bytes = KEY) -> int:
    req = D.cipher_create_session(C.VIRTIO_CRYPTO_CIPHER_AES_CBC, key, C.VIRTIO_CRYPTO_OP_ENCRYPT)
    _used, (outcome,) = drv.queue(drv.num_queues - 1).request([req.readable], [16])
    sid, status = D.session_input(outcome)
    assert status == OK
    return sid


def encrypt_once(drv: VirtioPciDriver) -> bytes:
    """NIST F.2.1's first block through a fresh session on data queue 0."""
    head = D.cipher_data(C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, cbc_session(drv), IV, PLAIN).readable[:72]
    used, (dst, status) = drv.queue(0).request([head, IV, PLAIN], [16, 1])
    assert (used, status) == (17, b"\x00")
    return dst


def submit_bulk(drv: VirtioPciDriver, sid: int, count: int, size: int = BULK, queue: int = 0) -> None:
    q = drv.queue(queue)
    data = bytes(range(256)) * (size // 256)
    req = D.cipher_data(C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, sid, IV, data)
    for _ in range(count):
        q.submit([req.readable], [size, 1], token="bulk")
    q.kick(force=True)


def waited(server, why: str = "") -> int:
    """How many times the server logged that ``why`` (a device reset, a DMA unmap; any if "") waited for requests in
    flight (the transport's quiesce line)."""
    return sum(f"{why}: in-flight requests finished after" in ln for ln in server.log().splitlines())


def until_in_flight(server, why: str, attempt, tries: int = 5) -> None:
    """Run ``attempt()`` -- bulk requests in flight, then ``why`` -- until the server logs that ``why`` found some
    still in flight (the worker may finish them all first on a busy host); each attempt checks its own outcome."""
    for _ in range(tries):
        before = waited(server, why)
        attempt()
        if waited(server, why) > before:
            return
    raise AssertionError(f"{why or 'nothing'} found a request in flight in {tries} tries")


def _bulk_then_small(q, sid: int) -> list[str]:
    """One kick: a bulk request, then 8 small ones on the same queue; the tokens in used-ring order (every result
    checked)."""
    big = bytes(range(256)) * (BULK // 256)
    q.submit([D.cipher_data(C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, sid, IV, big).readable], [BULK, 1], token="big")
    small = D.cipher_data(C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, sid, IV, PLAIN).readable
    for i in range(8):
        q.submit([small], [16, 1], token=f"small{i}")
    q.kick(force=True)
    done = q.wait(timeout=30, min_completions=9)
    for c in done:
        if c.token == "big":
            assert (c.used_len, c.data) == (BULK + 1, [aes_cbc(big), b"\x00"])
        else:
            assert (c.used_len, c.data) == (17, [CIPHER, b"\x00"])
    assert sorted(c.token for c in done) == sorted(["big", *(f"small{i}" for i in range(8))])
    return [c.token for c in done]


def test_small_requests_overtake_a_bulk_one(serve):
    """The small requests run on the event-loop thread while the bulk one is on the worker: their used elements
    come first. (The order depends on two threads, so a round in order is retried; five in a row would mean the
    bulk request did not leave the loop.)"""
    server = serve_bulk(serve, threshold=16 << 10)
    drv = attach(server)
    sid = cbc_session(drv)
    orders = []
    for _ in range(5):
        orders.append(_bulk_then_small(drv.queue(1), sid))
        if orders[-1][0] != "big":
            break
    assert orders[-1][0] != "big", orders
    drv.close()


def test_without_a_worker_requests_complete_in_order(serve):
    """Negative control of the test above: with bulk_threshold 0 the same kick completes in submission order."""
    server = serve_bulk(serve, threshold=0)
    drv = attach(server)
    sid = cbc_session(drv)
    for _ in range(3):
        assert _bulk_then_small(drv.queue(1), sid) == ["big", *(f"small{i}" for i in range(8))]
    drv.close()


def test_device_reset_with_bulk_requests_in_flight(serve):
    """The reset waits for the worker; none of the old requests' used elements is published afterwards: the new
    rings see only this driver's own completions."""
    server = serve_bulk(serve, threshold=1 << 10)
    drv = attach(server)

    def attempt():
        submit_bulk(drv, cbc_session(drv), IN_FLIGHT)
        drv.write_common("device_status", 0)  # reset while the worker holds the requests
        assert drv.read_common("device_status") == 0
        drv.init(features_wanted=DEFAULT_DRIVER_FEATURES)  # new rings; the old requests are gone
        q = drv.queue(0)
        assert published(drv, q.vq) == 0
        assert encrypt_once(drv) == CIPHER
        data = D.cipher_data(C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, cbc_session(drv), IV, PLAIN * 256).readable
        assert q.run([([data], [4096, 1])] * 3) == [(4097, [aes_cbc(PLAIN * 256), b"\x00"])] * 3
        assert published(drv, q.vq) == 4  # only this driver's own completions were published
        assert not drv.status & DEVICE_NEEDS_RESET
    until_in_flight(server, "device reset", attempt)
    drv.close()
    assert server.alive()
    drv = attach(server)
    assert encrypt_once(drv) == CIPHER
    drv.close()


def test_client_vanishing_with_bulk_requests_in_flight(serve):
    server = serve_bulk(serve, threshold=1 << 10)

    def attempt():
        drv = attach(server)
        submit_bulk(drv, cbc_session(drv), IN_FLIGHT)
        drv.client.close()  # no reset, no DMA unmap: the socket just goes away
        drv.memory.close()
        drv = attach(server)  # the next client is served
        assert encrypt_once(drv) == CIPHER
        drv.close()
    until_in_flight(server, "", attempt)
    assert server.alive()


def test_dma_unmap_waits_for_bulk_requests(serve):
    """The server answers the DMA unmap only after the worker finished, so no byte of the region changes after
    it (a write into the unmapped region would have killed the server with SIGSEGV). The completions cannot be
    published into the unmapped rings: DEVICE_NEEDS_RESET, with one log line."""
    server = serve_bulk(serve, threshold=1 << 10)

    def attempt():
        drv = attach(server)
        submit_bulk(drv, cbc_session(drv), IN_FLIGHT)
        mem = drv.memory
        before = waited(server, "DMA unmap"), server.log().count("DEVICE_NEEDS_RESET")
        drv.client.dma_unmap(mem.iova_base, mem.size)
        marks = b"\xa5" * mem.size
        mem.buf[:] = marks  # the driver takes its memory back
        needs_reset = bool(drv.read_common("device_status") & DEVICE_NEEDS_RESET)  # the server came round its loop
        assert mem.buf == marks
        if waited(server, "DMA unmap") > before[0]:
            assert needs_reset  # the completions it waited for meet unmapped rings
        assert server.log().count("DEVICE_NEEDS_RESET") == before[1] + needs_reset  # one line
        drv.close()
    until_in_flight(server, "DMA unmap", attempt)
    assert server.alive()
    drv = attach(server)
    assert encrypt_once(drv) == CIPHER
    drv.close()


# ---- the same bytes whatever the thread: property over sizes and writable layouts -----------------------------
_ALGOS = {C.VIRTIO_CRYPTO_CIPHER_AES_CBC: (16, 16), C.VIRTIO_CRYPTO_CIPHER_AES_CTR: (16, 16),
          C.VIRTIO_CRYPTO_CIPHER_AES_XTS: (64, 16)}  # key bytes, iv bytes
_LAYOUTS = ("lone", "slack", "split", "in place")


def _submit_in_place(q, readable: list[bytes], status: int) -> int:
    """A chain whose dst descriptor points at its own src buffer (what Linux does for in-place requests): submit
    ``readable`` (src last) and [len(src), status] without an indirect table, then aim the dst descriptor at src.
    Returns src's guest address (the result is read there)."""
    vq = q.vq
    idx = q.submit(readable, [len(readable[-1]), status], token="in place", indirect=False)
    descs = []
    for _ in range(len(readable) + 1):  # head .. src, then dst
        addr, length, flags, nxt = VIRTQ_DESC.unpack(vq.mem.read(vq.desc_iova + 16 * idx, 16))
        descs.append((idx, addr, length, flags, nxt))
        idx = nxt
    src_addr = descs[-2][1]
    dst_idx, _addr, length, flags, nxt = descs[-1]
    vq.mem.write(vq.desc_iova + 16 * dst_idx, VIRTQ_DESC.pack(src_addr, length, flags, nxt))
    return src_addr


def _run_layout(drv: VirtioPciDriver, sid: int, iv: bytes, data: bytes, layout: str, slack: int, cut: int):
    """(used length, bytes written: dst then the status) of one encryption laid out as ``layout``."""
    q = drv.queue(0)
    n = len(data)
    readable = D.cipher_data(C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, sid, iv, data).readable
    head = readable[:72]
    if layout == "in place" and n:
        src_addr = _submit_in_place(q, [head, iv, data], 1)
        q.kick(force=True)
        (c,) = q.wait(timeout=30)
        return c.used_len, q.vq.mem.read(src_addr, n) + c.data[1]
    if layout in ("lone", "in place"):
        sizes = [n, 1] if n else [1]
    elif layout == "slack":
        sizes = [n + slack + 1]
    else:
        k = cut % (n + 1)
        sizes = [s for s in (k, n - k) if s] + [1]
    used, bufs = q.request([head, iv, data], sizes, timeout=30)
    out = b"".join(bufs)
    return used, out[:n] + out[-1:]


@pytest.fixture
def two_servers(serve, tmp_path):
    """A device answering everything on the event-loop thread and one sending every request with a source to the
    worker, each with a driver and an AES session per algorithm (same keys). Split rings: the "in place" layout
    rewrites a split descriptor table entry."""
    pairs = []
    for name, threshold in (("loop", 0), ("worker", 1)):
        server = serve_bulk(serve, threshold, 1, "--ring", "split", name=name, state=tmp_path / f"{name}.db")
        drv = attach(server)
        sids = {}
        for algo, (key_len, _iv) in _ALGOS.items():
            key = bytes(range(1, key_len + 1))
            req = D.cipher_create_session(algo, key, C.VIRTIO_CRYPTO_OP_ENCRYPT)
            _used, (outcome,) = drv.queue(1).request([req.readable], [16])
            sids[algo], status = D.session_input(outcome)
            assert status == OK
        pairs.append((drv, sids))
    yield pairs
    for drv, _sids in pairs:
        drv.close()


@pytest.mark.ring_neutral
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(algo=st.sampled_from(sorted(_ALGOS)), blocks=st.integers(0, 2048), tail=st.integers(0, 15),
       layout=st.sampled_from(_LAYOUTS), slack=st.integers(0, 40), cut=st.integers(0, 1 << 16),
       seed=st.integers(0, 255))
def test_worker_writes_the_same_bytes_as_the_loop(two_servers, algo, blocks, tail, layout, slack, cut, seed):
    data = bytes((seed + i) & 0xFF for i in range(blocks * 16 + tail))
    iv = bytes(range(seed % 200, seed % 200 + _ALGOS[algo][1]))
    (loop_drv, loop_sids), (worker_drv, worker_sids) = two_servers
    on_loop = _run_layout(loop_drv, loop_sids[algo], iv, data, layout, slack, cut)
    on_worker = _run_layout(worker_drv, worker_sids[algo], iv, data, layout, slack, cut)
    assert on_worker == on_loop
    if tail == 0 and blocks and algo == C.VIRTIO_CRYPTO_CIPHER_AES_CBC:  # negative control against the library
        assert on_loop[1][:-1] == aes_cbc(data, bytes(range(1, 17)), iv) and on_loop[1][-1] == OK


# ---- in-process --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("threshold", [-1, 1 << 32])
def test_bulk_threshold_range(threshold):
    with pytest.raises(ValueError, match="bulk_threshold must be 0..4294967295 bytes"):
        CryptoDevice(bulk_threshold=threshold)


def test_worker_per_data_queue_made_on_first_bulk_request():
    dev = CryptoDevice(max_dataqueues=3, bulk_threshold=64)
    drv = InProcess(dev)
    sid, _ = drv.create(D.hash_create_session(C.VIRTIO_CRYPTO_HASH_SHA_256, 32))
    before = set(threading.enumerate())
    assert drv.data(D.digest_data(C.VIRTIO_CRYPTO_HASH, sid, bytes(63), 32), queue_index=2).status == OK
    assert set(threading.enumerate()) == before  # below the threshold: the loop thread answered
    for queue_index in (2, 0, 2):
        done = drv.data(D.digest_data(C.VIRTIO_CRYPTO_HASH, sid, bytes(64), 32), queue_index=queue_index)
        digest = hashes.Hash(hashes.SHA256())
        digest.update(bytes(64))
        assert (done.status, done.out, done.used) == (OK, digest.finalize(), 33)
    made = set(threading.enumerate()) - before
    assert sorted(t.name for t in made) == ["crypto-dataq0", "crypto-dataq2"] and all(t.daemon for t in made)
    dev.close()
    assert not any(t.is_alive() for t in made)


def test_exception_on_a_worker_is_answered_err(caplog):
    dev = CryptoDevice(max_dataqueues=1, bulk_threshold=1)
    drv = InProcess(dev)
    sid, _ = drv.create(D.cipher_create_session(C.VIRTIO_CRYPTO_CIPHER_AES_CBC, KEY, C.VIRTIO_CRYPTO_OP_ENCRYPT))
    session = dev.sessions.get(sid, Service.CIPHER)

    def broken(op, out):
        out.write_at(0, b"partial")
        raise RuntimeError("session bug")
    session.run = broken
    with caplog.at_level(logging.ERROR, logger="vfu_virtio.devices.crypto"):
        done = drv.data(D.cipher_data(C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, sid, IV, PLAIN))
    assert (done.status, done.out, done.used) == (1, bytes(16), 17)  # ERR, no partial output
    assert [r.getMessage() for r in caplog.records] == [
        "dataq 0: CipherSession failed on its worker thread (RuntimeError('session bug')); the request is answered ERR"]
    del session.run  # the worker lives on
    assert drv.data(D.cipher_data(C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, sid, IV, PLAIN)).out == CIPHER
    dev.close()


def test_close_drains_the_workers():
    dev = CryptoDevice(max_dataqueues=2, bulk_threshold=1)
    drv = InProcess(dev)
    sid, _ = drv.create(D.cipher_create_session(C.VIRTIO_CRYPTO_CIPHER_AES_CBC, KEY, C.VIRTIO_CRYPTO_OP_ENCRYPT))
    req = D.cipher_data(C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, sid, IV, PLAIN * 4096)
    completed: list[tuple[int, int]] = []
    outs = []
    for i in range(8):
        out = bytearray(len(PLAIN) * 4096 + 1)
        chain = DescriptorChain(i, [memoryview(bytearray(req.readable))], [memoryview(out)])
        chain.completer = lambda c, written: completed.append((c.id, written))
        assert dev.handle(i % 2, chain) is None
        outs.append(out)
    dev.close()  # returns once both workers finished what they held
    assert sorted(completed) == [(i, len(PLAIN) * 4096 + 1) for i in range(8)]
    assert all(bytes(out) == aes_cbc(PLAIN * 4096) + b"\x00" for out in outs)


def test_worker_completes_in_runs():
    """A worker holds finished chains while more work is queued to it, at most COMPLETION_RUN of them, so the event
    loop publishes them together: with 40 requests queued behind a held one, the first completion comes once 32
    requests ran, before the 33rd."""
    from vfu_virtio.devices.crypto.device import COMPLETION_RUN
    dev = CryptoDevice(max_dataqueues=1, bulk_threshold=1)
    drv = InProcess(dev)
    sid, _ = drv.create(D.cipher_create_session(C.VIRTIO_CRYPTO_CIPHER_AES_CBC, KEY, C.VIRTIO_CRYPTO_OP_ENCRYPT))
    session = dev.sessions.get(sid, Service.CIPHER)
    release = threading.Event()
    run = session.run

    def first_waits(op, out):
        release.wait(30)
        del session.run
        return run(op, out)
    session.run = first_waits
    req = D.cipher_data(C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, sid, IV, PLAIN).readable
    outs = [bytearray(b"\xee" * 17) for _ in range(40)]
    seen: dict[int, list[int]] = {}

    def completer(chain, written):  # which requests had run (status written) when this one completed
        seen[chain.id] = [i for i, out in enumerate(outs) if out[16] == OK]
    for i, out in enumerate(outs):
        chain = DescriptorChain(i, [memoryview(bytearray(req))], [memoryview(out)])
        chain.completer = completer
        assert dev.handle(0, chain) is None
    release.set()
    dev.close()
    assert COMPLETION_RUN == 32
    assert seen[0] == seen[31] == list(range(32))  # the first run: 32 requests, completed together
    assert seen[32] == seen[39] == list(range(40))  # the rest, once nothing more was queued
    assert all(bytes(out) == CIPHER + b"\x00" for out in outs)


def test_one_mac_session_digests_on_many_threads_at_once():
    """A session's fresh keyed context is copied by every digest: the loop thread and workers may do that at once."""
    engine = DigestEngine(MacParams("HMAC-SHA-256", 32, b"key"))
    messages = [bytes([i]) * (i * 997 % 5000) for i in range(64)]

    def expected(m: bytes) -> bytes:
        h = hmac.HMAC(b"key", hashes.SHA256())
        h.update(m)
        return h.finalize()
    want = [expected(m) for m in messages]
    wrong: list[int] = []
    start = threading.Barrier(8)

    def digest_all() -> None:
        start.wait()
        for _ in range(20):
            wrong.extend(i for i, m in enumerate(messages) if engine.digest(m) != want[i])
    threads = [threading.Thread(target=digest_all) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []


def test_handle_waits_for_a_kept_chain():
    """The harness' ``handle`` (used by every in-process test) returns a worker's used length."""
    dev = CryptoDevice(max_dataqueues=1, bulk_threshold=1)
    out = bytearray(33)
    req = D.hash_data_stateless(C.VIRTIO_CRYPTO_HASH_SHA_256, b"abc", 32)
    dev.activate(0b000101)  # REVISION_1 + HASH_STATELESS_MODE
    assert handle(dev, 0, DescriptorChain(0, [memoryview(bytearray(req.readable))], [memoryview(out)])) == 33
    assert out[:4] == bytes.fromhex("ba7816bf") and out[32] == OK
    dev.close()
