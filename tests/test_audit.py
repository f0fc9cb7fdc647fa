"""The driver audit (``--audit FILE``): each driver requirement the device checks is tripped once by the project's own
driver told to misbehave, a well-behaved driver trips none, ``--strict`` refuses, ``vfu-virtio audit`` summarises.

:data:`MISBEHAVIOURS` pairs every check of :data:`vfu_virtio.virtio.audit.DRIVER_CHECKS` with what the driver does
wrong on purpose: a low-level step out of order, a register written that must not be, a descriptor chain laid out by
hand into a ring the driver set up (:class:`RawRing`). The server runs with ``--audit``; once it stopped, the file
must count that check exactly once (and nothing else, unless the entry names the side effects the misbehaviour
cannot avoid).
"""
from __future__ import annotations

import json
import re
import struct
import subprocess
import sys

import pytest

from conftest import TOP
from vfu_virtio.abi import crypto as C
from vfu_virtio.abi import rpmb as R
from vfu_virtio.abi.ring import (PVIRTQ_DESC, VIRTQ_DESC, VIRTQ_DESC_F_AVAIL, VIRTQ_DESC_F_INDIRECT,
                                 VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE)
from vfu_virtio.abi.virtio import (ACKNOWLEDGE, DEVICE_NEEDS_RESET, DRIVER, DRIVER_OK, FAILED, FEATURES_OK,
                                   VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_RING_PACKED, VIRTIO_F_VERSION_1,
                                   bit)
from vfu_virtio.client import crypto as requests
from vfu_virtio.client.virtio_pci import DEFAULT_DRIVER_FEATURES, VirtioPciDriver
from vfu_virtio.virtio import audit

pytestmark = pytest.mark.ring_neutral
SPLIT = DEFAULT_DRIVER_FEATURES & ~bit(VIRTIO_F_RING_PACKED)
PACKED = DEFAULT_DRIVER_FEATURES
NO_INDIRECT = SPLIT & ~bit(VIRTIO_F_INDIRECT_DESC)
CFG_CAP = 0x84  # the PCI configuration access capability (vfu_virtio.pci.layout.CAP_PCI_CFG)


class RawRing:
    """Descriptors written by hand into queue ``index`` of ``drv`` (set up, never used by the driver itself): one
    request, buffers allocated in the driver's guest memory."""

    def __init__(self, drv: VirtioPciDriver, index: int = 0):
        self.drv, self.q, self.mem = drv, drv.queue(index), drv.memory

    def buf(self, data: bytes | int) -> tuple[int, int]:
        """``data`` (or that many zero bytes) in guest memory: (address, length)."""
        data = bytes(data) if isinstance(data, int) else data
        iova = self.mem.alloc(len(data), 16)
        self.mem.write(iova, data)
        return iova, len(data)

    def table(self, entries: list[tuple[int, int, int]], packed: bool = False) -> tuple[int, int]:
        """An indirect table: ``entries`` (addr, len, flags); split entries are chained by ``next``."""
        if packed:
            return self.buf(b"".join(PVIRTQ_DESC.pack(a, n, 0, f) for a, n, f in entries))
        last = len(entries) - 1
        return self.buf(b"".join(VIRTQ_DESC.pack(a, n, f | (VIRTQ_DESC_F_NEXT if i < last else 0), i + 1)
                                 for i, (a, n, f) in enumerate(entries)))

    def split(self, descs: list[tuple[int, int, int, int]], avail_idx: int = 1) -> None:
        """(addr, len, flags, next) at descriptor indices 0..; head 0 made available; notify."""
        vq = self.q.vq
        for i, d in enumerate(descs):
            self.mem.write(vq.desc_iova + 16 * i, VIRTQ_DESC.pack(*d))
        self.mem.write(vq.driver_iova + 4, struct.pack("<H", 0))
        self.mem.write(vq.driver_iova + 2, struct.pack("<H", avail_idx))
        self._kick()

    def packed(self, descs: list[tuple[int, int, int]], available: int | None = None) -> None:
        """(addr, len, flags) at ring positions 0.., Buffer ID 0; the first ``available`` (default all) get
        VIRTQ_DESC_F_AVAIL (first lap), the first one last; notify."""
        vq = self.q.vq
        n = len(descs) if available is None else available
        for i, (a, ln, f) in reversed(list(enumerate(descs))):
            self.mem.write(vq.desc_iova + 16 * i, PVIRTQ_DESC.pack(a, ln, 0, f | (VIRTQ_DESC_F_AVAIL if i < n else 0)))
        self._kick()

    def _kick(self) -> None:
        self.q.notify()
        self.drv.status  # a round trip: the notification was handled


def _notify_at(drv: VirtioPciDriver, queue: int) -> tuple[int, int]:
    n = drv.virtio_caps[2]
    drv.write_common("queue_select", queue)
    return n.bar, n.offset + drv.read_common("queue_notify_off") * n.notify_off_multiplier


def _window(drv: VirtioPciDriver, bar: int, offset: int, length: int) -> None:
    drv.config_write(CFG_CAP + 4, bytes([bar]))
    drv.config_write(CFG_CAP + 8, struct.pack("<II", offset, length))
    drv.config_read(CFG_CAP + 16, 4)


def _queue_by_hand(drv: VirtioPciDriver, desc: int, driver: int, device: int) -> None:
    drv.write_common("queue_select", 0)
    for name, value in (("queue_desc", desc), ("queue_driver", driver), ("queue_device", device)):
        drv.write_common(name, value)
    drv.write_common("queue_enable", 1)
    drv.set_status(drv.status | DRIVER_OK)
    drv.status


def _counter(drv: VirtioPciDriver) -> None:
    drv.queue(0).request([R.Frame(req_resp=R.VIRTIO_RPMB_REQ_GET_WRITE_COUNTER).pack()], [R.FRAME_SIZE])


def _crypto_request(drv: VirtioPciDriver, req: requests.Request, queue: int | None = None) -> bytes:
    q = drv.queue(4 if queue is None else queue)
    _used, data = q.request([req.readable], [req.writable])
    return b"".join(data)


def _pieces(data: bytes, n: int) -> list[bytes]:
    step = -(-len(data) // n)
    return [data[i:i + step] for i in range(0, len(data), step)]

# ---- chains laid out by hand (GET_WRITE_COUNTER: one readable frame, one writable frame) --------------------------
def _counter_frame(r: RawRing) -> tuple[int, int]:
    return r.buf(R.Frame(req_resp=R.VIRTIO_RPMB_REQ_GET_WRITE_COUNTER).pack())


def _writable_first(r: RawRing) -> None:
    """The writable frame first, then the readable one."""
    r.split([(*r.buf(R.FRAME_SIZE), VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1), (*_counter_frame(r), 0, 0)])


def _long_table(r: RawRing) -> None:
    """An indirect table of 6 descriptors (the frame in 5 pieces, the answer) on a queue of 4."""
    pieces = _pieces(R.Frame(req_resp=R.VIRTIO_RPMB_REQ_GET_WRITE_COUNTER).pack(), 5)
    table = r.table([(*r.buf(p), 0) for p in pieces] + [(*r.buf(R.FRAME_SIZE), VIRTQ_DESC_F_WRITE)])
    r.split([(*table, VIRTQ_DESC_F_INDIRECT, 0)])


def _indirect(r: RawRing, extra: int = 0) -> None:
    """One indirect descriptor (flags INDIRECT | ``extra``) to a table of the frame and the answer."""
    table = r.table([(*_counter_frame(r), 0), (*r.buf(R.FRAME_SIZE), VIRTQ_DESC_F_WRITE)])
    r.split([(*table, VIRTQ_DESC_F_INDIRECT | extra, 1 if extra & VIRTQ_DESC_F_NEXT else 0)])


def _nested(r: RawRing) -> None:
    """An indirect table whose one entry is itself an indirect descriptor."""
    inner = r.table([(*_counter_frame(r), 0)])
    r.split([(*r.table([(*inner, VIRTQ_DESC_F_INDIRECT)]), VIRTQ_DESC_F_INDIRECT, 0)])


def _packed_table_flags(r: RawRing) -> None:
    """A packed indirect table with NEXT set in an entry (only WRITE may be)."""
    table = r.table([(*_counter_frame(r), VIRTQ_DESC_F_NEXT), (*r.buf(R.FRAME_SIZE), VIRTQ_DESC_F_WRITE)], packed=True)
    r.packed([(*table, VIRTQ_DESC_F_INDIRECT)])


def _packed_indirect_in_list(r: RawRing) -> None:
    """A list of the frame, then an indirect descriptor (to the answer)."""
    table = r.table([(*r.buf(R.FRAME_SIZE), VIRTQ_DESC_F_WRITE)], packed=True)
    r.packed([(*_counter_frame(r), VIRTQ_DESC_F_NEXT), (*table, VIRTQ_DESC_F_INDIRECT)])


def _packed_partial(r: RawRing) -> None:
    """A list of two descriptors whose second is not made available."""
    r.packed([(*_counter_frame(r), VIRTQ_DESC_F_NEXT), (*r.buf(R.FRAME_SIZE), VIRTQ_DESC_F_WRITE)], available=1)


# ---- one misbehaviour per check: (device kind, extra server options, what the driver does, side effects) ----------
def _m(kind: str, act, *options: str):
    return kind, options, act


def _with_ring(features: int, act, queue_size: int | None = None):
    def run(drv: VirtioPciDriver) -> None:
        drv.init(features, queue_size=queue_size)
        act(drv)
    return run


MISBEHAVIOURS = {
    "feature-not-offered": _m("rpmb", lambda d: (d.begin_init(), d.set_features_raw(SPLIT | bit(49)), d.features_ok())),
    "feature-dependency": _m("crypto", lambda d: (d.begin_init(), d.set_features_raw(bit(VIRTIO_F_VERSION_1) | 1 << 1),
                                                  d.features_ok())),
    "version-1-not-accepted": _m("rpmb", lambda d: (d.begin_init(), d.set_features_raw(0), d.features_ok())),
    "features-after-features-ok": _m("rpmb", lambda d: (d.negotiate(SPLIT & ~bit(VIRTIO_F_EVENT_IDX)),
                                                        d.set_features_raw(d.negotiated | bit(VIRTIO_F_EVENT_IDX)))),
    "init-order": _m("rpmb", lambda d: (d.reset(), d.set_status(DRIVER))),
    "driver-ok-without-features-ok": _m("rpmb", lambda d: (d.begin_init(), d.set_status(ACKNOWLEDGE | DRIVER |
                                                                                        DRIVER_OK))),
    "status-bit-cleared": _m("rpmb", lambda d: (d.begin_init(), d.set_status(ACKNOWLEDGE))),
    "reinit-after-failed": _m("rpmb", lambda d: (d.begin_init(), d.set_features_raw(SPLIT),
                                                 d.set_status(ACKNOWLEDGE | DRIVER | FAILED),
                                                 d.set_status(ACKNOWLEDGE | DRIVER | FAILED | FEATURES_OK))),
    "reset-not-awaited": _m("rpmb", lambda d: (d.set_status(0), d.set_status(ACKNOWLEDGE))),
    "read-only-field-written": _m("rpmb", lambda d: d.write_common("num_queues", 5)),
    "device-config-written-early": _m("crypto", lambda d: (d.begin_init(), d.write_device_config(0, b"\0"))),
    "queue-size-invalid": _m("rpmb", lambda d: (d.negotiate(SPLIT), d.write_common("queue_select", 0),
                                                d.write_common("queue_size", 100))),
    "queue-enable-before-addresses": _m("rpmb", lambda d: (d.negotiate(SPLIT), d.write_common("queue_select", 0),
                                                           d.write_common("queue_enable", 1))),
    "queue-field-while-enabled": _m("rpmb", _with_ring(SPLIT, lambda d: (d.write_common("queue_select", 0),
                                                                         d.write_common("queue_desc", 0x10000)))),
    "queue-enable-0": _m("rpmb", _with_ring(SPLIT, lambda d: (d.write_common("queue_select", 0),
                                                              d.write_common("queue_enable", 0)))),
    "msix-vector-outside-table": _m("rpmb", lambda d: d.write_common("msix_config", 0x700)),
    "notify-before-driver-ok": _m("rpmb", lambda d: (d.negotiate(SPLIT), d.setup_queue(0).notify(), d.status)),
    "notify-queue-not-enabled": _m("crypto", lambda d: (d.init(SPLIT, queues=[0]),
                                                        d.region_write(*_notify_at(d, 1), struct.pack("<H", 1)))),
    "notify-value": _m("rpmb", _with_ring(SPLIT, lambda d: d.region_write(*_notify_at(d, 0), struct.pack("<H", 7)))),
    "notify-width": _m("rpmb", _with_ring(SPLIT, lambda d: d.region_write(*_notify_at(d, 0), struct.pack("<I", 0)))),
    "capability-written": _m("rpmb", lambda d: d.config_write(0x48, b"\0")),
    "cfg-window-unaligned": _m("rpmb", lambda d: _window(d, 0, 2, 4)),
    "cfg-window-outside": _m("rpmb", lambda d: _window(d, 0, 0x3100, 4)),
    "ring-misaligned": _m("rpmb", lambda d: (d.negotiate(SPLIT), _queue_by_hand(d, 0x100008, 0x101000, 0x102000))),
    "used-flags-not-zero": _m("rpmb", lambda d: (d.negotiate(SPLIT), d.memory.write(d.setup_queue(0).vq.device_iova,
                                                                                    b"\1\0"), d.driver_ok())),
    "avail-flags-invalid": _m("rpmb", _with_ring(SPLIT, lambda d: (d.memory.write(d.queue(0).vq.driver_iova, b"\1\0"),
                                                                   _counter(d)))),
    "avail-idx-invalid": _m("rpmb", _with_ring(SPLIT, lambda d: RawRing(d).split([], avail_idx=300))),
    "writable-before-readable": _m("rpmb", _with_ring(SPLIT, lambda d: _writable_first(RawRing(d)))),
    "chain-longer-than-queue-size": _m("rpmb", _with_ring(SPLIT, lambda d: _long_table(RawRing(d)), queue_size=4)),
    "indirect-without-feature": _m("rpmb", _with_ring(NO_INDIRECT, lambda d: _indirect(RawRing(d)))),
    "indirect-with-next": _m("rpmb", _with_ring(SPLIT, lambda d: _indirect(RawRing(d), VIRTQ_DESC_F_NEXT))),
    "indirect-nested": _m("rpmb", _with_ring(SPLIT, lambda d: _nested(RawRing(d)))),
    "indirect-table-flags": _m("rpmb", _with_ring(PACKED, lambda d: _packed_table_flags(RawRing(d))), "--ring", "any"),
    "indirect-in-list": _m("rpmb", _with_ring(PACKED, lambda d: _packed_indirect_in_list(RawRing(d))),
                           "--ring", "any"),
    "partial-list": _m("rpmb", _with_ring(PACKED, lambda d: _packed_partial(RawRing(d))), "--ring", "any"),
    "crypto-not-ready": _m("crypto", _with_ring(SPLIT, lambda d: [_crypto_request(
        d, requests.hash_create_session(C.VIRTIO_CRYPTO_HASH_SHA_256, 32)) for _ in range(2)]),  # clears, then not
        "--inject", "clear-hw-ready"),
    "crypto-over-max-size": _m("crypto", _with_ring(SPLIT, lambda d: _crypto_request(
        d, requests.digest_data(C.VIRTIO_CRYPTO_HASH, 1, bytes(100), 32), 0)), "--max-size", "64"),
    "crypto-key-too-long": _m("crypto", _with_ring(SPLIT, lambda d: _crypto_request(d, requests.cipher_create_session(
        C.VIRTIO_CRYPTO_CIPHER_AES_CBC, bytes(65), C.VIRTIO_CRYPTO_OP_ENCRYPT)))),
    "crypto-invalid-session": _m("crypto", _with_ring(SPLIT, lambda d: _crypto_request(
        d, requests.destroy_session(C.VIRTIO_CRYPTO_HASH_DESTROY_SESSION, 999)))),
    "rpmb-config-written": _m("rpmb", _with_ring(SPLIT, lambda d: d.write_device_config(0, b"\1"))),
    "rpmb-frame-partial": _m("rpmb", _with_ring(SPLIT, lambda d: d.queue(0).request([bytes(100)], [R.FRAME_SIZE]))),
}


def audited(serve, tmp_path, kind: str, *options: str, act) -> dict[str, int]:
    """Serve ``kind`` with ``--audit``, let ``act(driver)`` run on a fresh connection, stop the server: the file's
    counts."""
    path = tmp_path / "audit.json"
    server = serve(kind, "--audit", str(path), *options)
    drv = VirtioPciDriver.connect(server.socket)
    try:
        act(drv)
    finally:
        drv.close()
    assert server.stop() == 0, server.log()
    return {v["check"]: v["count"] for v in audit.load(str(path))["violations"]}


def test_every_driver_check_has_a_misbehaviour():
    assert sorted(MISBEHAVIOURS) == sorted(audit.DRIVER_CHECKS) and len(MISBEHAVIOURS) >= 20


@pytest.mark.parametrize("check_id", sorted(MISBEHAVIOURS))
def test_the_misbehaving_driver_trips_the_check_once(serve, tmp_path, check_id):
    kind, options, act = MISBEHAVIOURS[check_id]
    assert audited(serve, tmp_path, kind, *options, act=act) == {check_id: 1}


@pytest.mark.parametrize("kind", ["crypto", "rpmb"])
@pytest.mark.parametrize("features", [SPLIT, PACKED], ids=["split", "packed"])
def test_a_well_behaved_driver_breaks_nothing(serve, tmp_path, kind, features):
    def act(drv: VirtioPciDriver) -> None:
        drv.init(features)
        if kind == "crypto":
            _crypto_request(drv, requests.hash_create_session(C.VIRTIO_CRYPTO_HASH_SHA_256, 32))
        else:
            drv.queue(0).request([R.Frame(req_resp=R.VIRTIO_RPMB_REQ_GET_WRITE_COUNTER).pack()], [R.FRAME_SIZE])
        drv.reset()
        drv.init(features)
    assert audited(serve, tmp_path, kind, "--ring", "any", act=act) == {}


def test_strict_refuses_with_device_needs_reset(serve, tmp_path):
    """``--strict``: a register-level violation (queue_enable 0) and a ring-level one (avail.flags) each end in
    DEVICE_NEEDS_RESET, and are still counted."""
    path = tmp_path / "audit.json"
    server = serve("rpmb", "--audit", str(path), "--strict", "--ring", "split")
    with VirtioPciDriver.connect(server.socket) as drv:
        drv.init(SPLIT)
        drv.write_common("queue_select", 0)
        drv.write_common("queue_enable", 0)
        assert drv.status & DEVICE_NEEDS_RESET
        drv.init(SPLIT)
        drv.memory.write(drv.queue(0).vq.driver_iova, b"\1\0")
        q = drv.queue(0)
        q.submit([R.Frame(req_resp=R.VIRTIO_RPMB_REQ_GET_WRITE_COUNTER).pack()], [R.FRAME_SIZE])
        q.kick(force=True)
        assert drv.status & DEVICE_NEEDS_RESET
    server.stop()
    log = server.log()
    assert "DEVICE_NEEDS_RESET: strict driver audit: queue-enable-0" in log
    assert "DEVICE_NEEDS_RESET: strict driver audit: avail-flags-invalid" in log
    counts = {v["check"]: v["count"] for v in audit.load(str(path))["violations"]}
    assert counts == {"queue-enable-0": 1, "avail-flags-invalid": 1}


def test_audit_command_summarises_the_file(serve, tmp_path):
    path = tmp_path / "audit.json"
    server = serve("rpmb", "--audit", str(path))
    with VirtioPciDriver.connect(server.socket) as drv:
        drv.write_common("num_queues", 1)
        drv.write_common("num_queues", 2)
    server.stop()
    cmd = [sys.executable, "-m", "vfu_virtio", "audit"]
    proc = subprocess.run([*cmd, str(path)], capture_output=True, text=True, cwd=TOP)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("driver audit of the rpmb device, ") and lines[0].endswith(
        f"1 client(s): 1 of {len(audit.DRIVER_CHECKS)} driver requirements broken, 2 time(s)")
    assert lines[1].startswith("  read-only-field-written: 2 time(s), first ")
    assert lines[2:] == ["      section:     Virtio Transport Options / Virtio Over PCI Bus / PCI Device Layout / "
                         "Common configuration structure layout",
                         "      requirement: The driver does not write device_feature, num_queues, "
                         "config_generation, queue_notify_off or queue_notif_config_data.",
                         "      first seen:  2-byte write at common configuration offset 0x12 covers num_queues"]
    data = json.loads(subprocess.run([*cmd, "--json", str(path)], capture_output=True, text=True, cwd=TOP).stdout)
    assert data["format"] == audit.FORMAT and data["violations"][0]["count"] == 2
    (tmp_path / "other.json").write_text('{"format": "something else"}')
    bad = subprocess.run([*cmd, str(tmp_path / "other.json")], capture_output=True, text=True, cwd=TOP)
    assert bad.returncode == 1 and "not a vfu-virtio driver audit" in bad.stderr


def test_the_readme_shows_the_driver_checks():
    table = re.findall(r"<!-- driver checks: vfu-virtio audit --list --markdown -->\n(.*?)\n<!-- end -->",
                       (TOP / "README.md").read_text(), re.S)
    assert table == [audit.catalogue(markdown=True)]
    listed = subprocess.run([sys.executable, "-m", "vfu_virtio", "audit", "--list"], capture_output=True, text=True,
                            cwd=TOP).stdout.split("\n")
    assert [ln for ln in listed if ln and not ln.startswith(" ")] == list(audit.DRIVER_CHECKS)


def test_an_audit_file_that_cannot_be_written_stops_the_server_at_start(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "vfu_virtio", "rpmb", "--socket", str(tmp_path / "r.sock"),
                           "--state", str(tmp_path / "s.db"), "--audit", str(tmp_path / "no" / "such" / "a.json")],
                          capture_output=True, text=True, cwd=TOP, timeout=60)
    assert proc.returncode == 1 and "No such file or directory" in proc.stderr and "Traceback" not in proc.stderr
