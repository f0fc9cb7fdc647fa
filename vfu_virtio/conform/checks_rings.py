"""Checks of the virtqueues: what the device writes into the rings, and when it notifies ("Split Virtqueues",
"Packed Virtqueues", "Message Framing", "Used Buffer Notification Suppression", "Indirect Descriptors").

Every check sends the device type's probe request (:mod:`.devtypes`) and reads the ring as the device left it, raw,
before the project's driver collects the element (:func:`exchange`): a device that breaks the ring protocol is
reported with the bytes it wrote, not with the driver's own error. Checks named ``split.*`` and ``packed.*`` drive
that format (packed ones are skipped when the device does not offer VIRTIO_F_RING_PACKED); ``ring.*`` checks drive
the format the run chose (``--ring``). Layouts: :mod:`vfu_virtio.abi.ring`.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from ..abi.ring import (PVIRTQ_DESC, VIRTQ_AVAIL_F_NO_INTERRUPT, VIRTQ_DESC, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT,
                        VIRTQ_DESC_F_USED, VIRTQ_DESC_F_WRITE, VIRTQ_USED_ELEM)
from ..abi.virtio import DEVICE_NEEDS_RESET, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, bit
from ..client.ring import VirtqueueError
from ..client.virtio_pci import DriverQueue, VirtioPciDriver
from . import devtypes
from .catalogue import Skipped, check, expect
from .devtypes import Probe
from .target import Target, fired, settle, wait_fd, wait_until

_BASIC = "Basic Facilities of a Virtio Device"
_SPLIT = f"{_BASIC} / Virtqueues"
_PACKED = f"{_BASIC} / Packed Virtqueues"
_AVAIL_USED = 0x80 | VIRTQ_DESC_F_USED  # VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED


@dataclass(frozen=True)
class Exchange:
    """One request through a ring: the driver's ``chain_id``; the used element as the device wrote it (``raw``:
    split, the 8-byte ``virtq_used_elem``; packed, the 16-byte ``pvirtq_desc`` at the used position) and its
    ``used_id``, ``used_len`` and ``flags`` (packed: the descriptor's; split: ``used.flags``); ``data``, the
    device-writable bytes; ``error``, what the driver refused in it (None when nothing)."""

    chain_id: int
    raw: bytes
    used_id: int
    used_len: int
    flags: int
    data: bytes
    error: str | None


def _used_position(drv: VirtioPciDriver, q: DriverQueue) -> tuple[int, int]:
    """(guest address, size) of the used element the device writes next."""
    vq = q.vq
    if vq.format == "split":
        return vq.device_iova + 4 + VIRTQ_USED_ELEM.size * (vq.last_used % vq.size), VIRTQ_USED_ELEM.size
    return vq.desc_iova + PVIRTQ_DESC.size * vq.next_used, PVIRTQ_DESC.size


def exchange(t: Target, drv: VirtioPciDriver, q: DriverQueue, readable: list[bytes], writable: list[int],
             indirect: bool | None = False) -> Exchange:
    """Send one chain (``readable`` buffers, then ``writable`` sizes), notify, wait for its used element and read it
    raw; Failed when none comes within the timeout (with the bytes at the used position)."""
    vq = q.vq
    at, size = _used_position(drv, q)
    chain_id = vq.add(readable, writable, indirect=indirect)
    q.kick(force=True)
    if not wait_until(vq.has_used, t.timeout):
        expect(False, f"no used element within {t.timeout:g} s ({vq.describe()})", drv.memory.read(at, size))
    raw = drv.memory.read(at, size)
    if vq.format == "split":
        used_id, used_len = VIRTQ_USED_ELEM.unpack(raw)
        flags = struct.unpack("<H", drv.memory.read(vq.device_iova, 2))[0]
    else:
        _addr, used_len, used_id, flags = PVIRTQ_DESC.unpack(raw)
    try:
        done = vq.get_used()
        data, error = b"".join(done[0].data) if done else b"", None
    except VirtqueueError as e:
        data, error = b"", str(e)
    return Exchange(chain_id, raw, used_id, used_len, flags, data, error)


def _probe_queue(t: Target, fmt: str | None = None, **kw) -> tuple[Probe, VirtioPciDriver, DriverQueue]:
    probe = devtypes.probe(t.facts)
    drv = t.ready(fmt, **kw)
    return probe, drv, drv.queue(probe.queue)


def _answered(probe: Probe, x: Exchange) -> None:
    expect(x.error is None, f"the driver refused the used element: {x.error}", x.raw)
    problem = probe.problem(x.used_len, x.data)
    expect(problem is None, f"the probe was answered wrongly: {problem}", x.data[:64])


# ---- either format ----------------------------------------------------------------------------------------------
@check("ring.used-len", f"{_SPLIT} / The Virtqueue Used Ring", "The used length is at most the chain's "
       "device-writable bytes (the device wrote at least len bytes from the first writable buffer).")
def _used_len(t: Target) -> str:
    probe, drv, q = _probe_queue(t)
    x = exchange(t, drv, q, [probe.readable], [probe.writable])
    expect(x.used_len <= probe.writable, f"used length {x.used_len} for {probe.writable} device-writable bytes",
           x.raw)
    return f"used length {x.used_len} of {probe.writable} ({q.vq.format})"


@check("ring.used-id", f"{_SPLIT} / The Virtqueue Used Ring; {_PACKED} / Receiving Used Buffers From The Device",
       "The used element names the chain it returns: the head descriptor's index (split), the Buffer ID (packed).")
def _used_id(t: Target) -> str:
    probe, drv, q = _probe_queue(t)
    x = exchange(t, drv, q, [probe.readable], [probe.writable])
    expect(x.used_id == x.chain_id, f"used element id {x.used_id} for chain {x.chain_id}", x.raw)
    return f"id {x.used_id} ({q.vq.format})"


@check("ring.readable-untouched", f"{_SPLIT} / The Virtqueue Descriptor Table", "The device does not write into "
       "device-readable buffers.")
def _readable_untouched(t: Target) -> str:
    probe, drv, q = _probe_queue(t)
    vq = q.vq
    chain_id = vq.add([probe.readable], [probe.writable], indirect=False)
    start = vq.block(chain_id)
    q.kick(force=True)
    expect(wait_until(vq.has_used, t.timeout), f"no used element within {t.timeout:g} s")
    after = drv.memory.read(start, len(probe.readable))
    vq.get_used()
    expect(after == probe.readable, f"{sum(a != b for a, b in zip(after, probe.readable))} byte(s) of the "
           f"{len(after)}-byte device-readable buffer changed", after)
    return f"{len(after)} bytes unchanged ({vq.format})"


def _pieces(data: bytes, cuts: tuple[int, ...]) -> list[bytes]:
    out, pos = [], 0
    for cut in cuts:
        if pos + cut < len(data):
            out.append(data[pos:pos + cut])
            pos += cut
    return [*out, data[pos:]]


@check("ring.message-framing", f"{_BASIC} / Message Framing", "The device makes no assumption about how a request is "
       "split into descriptors: the same request in other pieces gets the same answer.")
def _message_framing(t: Target) -> str:
    probe, drv, q = _probe_queue(t)
    whole = exchange(t, drv, q, [probe.readable], [probe.writable])
    _answered(probe, whole)
    readable = _pieces(probe.readable, (1, 7, 16, 40))
    writable = [1, probe.writable - 1] if probe.writable > 1 else [probe.writable]
    parts = exchange(t, drv, q, readable, writable)
    _answered(probe, parts)
    expect(probe.answer(parts.used_len, parts.data) == probe.answer(whole.used_len, whole.data),
           f"{len(readable)} + {len(writable)} descriptors answered {probe.answer(parts.used_len, parts.data)}, "
           f"one + one answered {probe.answer(whole.used_len, whole.data)}", parts.data[:64])
    return f"{len(readable)} readable and {len(writable)} writable pieces answered alike ({q.vq.format})"


@check("ring.spurious-notify", f"{_SPLIT} / Available Buffer Notification Suppression", "The device handles "
       "spurious notifications: notifications without new buffers change nothing.")
def _spurious_notify(t: Target) -> str:
    probe, drv, q = _probe_queue(t)
    for _ in range(5):
        q.notify()
    settle(drv)
    status = drv.status
    expect(not status & DEVICE_NEEDS_RESET, f"device_status {status:#x} after 5 notifications without buffers",
           bytes([status]))
    _answered(probe, exchange(t, drv, q, [probe.readable], [probe.writable]))
    return f"5 spurious notifications, then the probe answered ({q.vq.format})"


# ---- split ------------------------------------------------------------------------------------------------------
@check("split.descriptors-untouched", f"{_SPLIT} / The Virtqueue Descriptor Table", "The device does not write to "
       "any descriptor table entry.")
def _descriptors_untouched(t: Target) -> str:
    probe, drv, q = _probe_queue(t, "split")
    table = 16 * q.vq.size
    before = drv.memory.read(q.vq.desc_iova, table)
    chain_id = q.vq.add([probe.readable], [probe.writable], indirect=False)
    laid = drv.memory.read(q.vq.desc_iova, table)
    q.kick(force=True)
    expect(wait_until(q.vq.has_used, t.timeout), f"no used element within {t.timeout:g} s")
    after = drv.memory.read(q.vq.desc_iova, table)
    q.vq.get_used()
    changed = [i for i in range(q.vq.size) if after[16 * i:16 * i + 16] != laid[16 * i:16 * i + 16]]
    expect(not changed, f"descriptor(s) {changed} changed while chain {chain_id} was used",
           after[16 * changed[0]:16 * changed[0] + 16] if changed else b"")
    return f"{q.vq.size} descriptors unchanged ({'same as before' if before == laid else 'as the driver laid them'})"


@check("split.used-flags", f"{_SPLIT} / Available Buffer Notification Suppression", "used.flags is 0 or 1 without "
       "VIRTIO_F_EVENT_IDX, and 0 with it.")
def _used_flags(t: Target) -> str:
    probe, drv, q = _probe_queue(t, "split")
    x = exchange(t, drv, q, [probe.readable], [probe.writable])
    event_idx = q.vq.event_idx
    expect(x.flags <= (0 if event_idx else 1), f"used.flags {x.flags:#x} {'with' if event_idx else 'without'} "
           "VIRTIO_F_EVENT_IDX", struct.pack("<H", x.flags))
    return f"used.flags {x.flags} ({'with' if event_idx else 'without'} VIRTIO_F_EVENT_IDX)"


def _interrupted(t: Target, drv: VirtioPciDriver, q: DriverQueue, probe: Probe) -> tuple[Exchange, int]:
    if q.eventfd is None:
        raise Skipped("no MSI-X vector could be mapped to the queue")
    fired(q.eventfd)
    x = exchange(t, drv, q, [probe.readable], [probe.writable])
    return x, wait_fd(q.eventfd, 1.0)


@check("split.notify-when-asked", f"{_SPLIT} / Used Buffer Notification Suppression", "Without VIRTIO_F_EVENT_IDX "
       "and with avail.flags 0, the device sends a used buffer notification after writing a used element.")
def _notify_when_asked(t: Target) -> str:
    probe, drv, q = _probe_queue(t, "split", without=bit(VIRTIO_F_EVENT_IDX))
    _x, n = _interrupted(t, drv, q, probe)
    expect(n >= 1, f"no interrupt on the queue's vector {q.vector} (avail.flags 0, no VIRTIO_F_EVENT_IDX)")
    return f"vector {q.vector} signalled"


@check("split.used-event-ignored", f"{_SPLIT} / Used Buffer Notification Suppression", "Without "
       "VIRTIO_F_EVENT_IDX the device ignores used_event: avail.flags 0 still asks for a notification.")
def _used_event_ignored(t: Target) -> str:
    probe, drv, q = _probe_queue(t, "split", without=bit(VIRTIO_F_EVENT_IDX))
    vq = q.vq
    drv.memory.write(vq.driver_iova + 4 + 2 * vq.size, struct.pack("<H", 0x7FFF))  # used_event far ahead
    _x, n = _interrupted(t, drv, q, probe)
    expect(n >= 1, "no interrupt: the device applied used_event 0x7fff although VIRTIO_F_EVENT_IDX is not "
           "negotiated")
    return f"vector {q.vector} signalled"


def _event_idx_queue(t: Target) -> tuple[Probe, VirtioPciDriver, DriverQueue]:
    if not t.facts.features & bit(VIRTIO_F_EVENT_IDX):
        raise Skipped("the device does not offer VIRTIO_F_EVENT_IDX")
    return _probe_queue(t, "split", extra=bit(VIRTIO_F_EVENT_IDX))


@check("split.event-idx", f"{_SPLIT} / Used Buffer Notification Suppression", "With VIRTIO_F_EVENT_IDX the device "
       "sends a notification when the used element it writes is the one used_event names.")
def _event_idx(t: Target) -> str:
    probe, drv, q = _event_idx_queue(t)
    used_event = q.vq.last_used
    drv.memory.write(q.vq.driver_iova + 4 + 2 * q.vq.size, struct.pack("<H", used_event))
    _x, n = _interrupted(t, drv, q, probe)
    expect(n >= 1, f"no interrupt for used element {used_event} with used_event {used_event}")
    return f"used_event {used_event}: vector {q.vector} signalled"


@check("split.event-idx-flags-ignored", f"{_SPLIT} / Used Buffer Notification Suppression", "With "
       "VIRTIO_F_EVENT_IDX the device ignores the lower bit of avail.flags.")
def _event_idx_flags_ignored(t: Target) -> str:
    probe, drv, q = _event_idx_queue(t)
    vq = q.vq
    drv.memory.write(vq.driver_iova, struct.pack("<H", VIRTQ_AVAIL_F_NO_INTERRUPT))
    drv.memory.write(vq.driver_iova + 4 + 2 * vq.size, struct.pack("<H", vq.last_used))
    _x, n = _interrupted(t, drv, q, probe)
    expect(n >= 1, "no interrupt: the device honoured VIRTQ_AVAIL_F_NO_INTERRUPT with VIRTIO_F_EVENT_IDX "
           "negotiated (used_event named the element)")
    return f"vector {q.vector} signalled"


class RawSplit:
    """Descriptor chains written by hand into a split virtqueue the driver set up and never used itself (its own
    bookkeeping stays as it was): the layouts the driver's API does not build. One chain, head descriptor 0."""

    def __init__(self, t: Target, drv: VirtioPciDriver, q: DriverQueue):
        self.t, self.drv, self.q, self.mem = t, drv, q, drv.memory

    def buffer(self, data: bytes) -> int:
        iova = self.mem.alloc(max(len(data), 1), 16)
        self.mem.write(iova, data)
        return iova

    def send(self, descriptors: list[tuple[int, int, int, int]]) -> tuple[int, int, bytes]:
        """Write ``descriptors`` ((addr, len, flags, next) at table indices 0, 1, ...), make descriptor 0 available,
        notify; the used element's (id, len) and raw bytes. Failed when none comes within the timeout."""
        vq = self.q.vq
        for i, desc in enumerate(descriptors):
            self.mem.write(vq.desc_iova + 16 * i, VIRTQ_DESC.pack(*desc))
        self.mem.write(vq.driver_iova + 4, struct.pack("<H", 0))
        self.mem.write(vq.driver_iova + 2, struct.pack("<H", 1))
        self.q.notify()
        used_idx = lambda: struct.unpack("<H", self.mem.read(vq.device_iova + 2, 2))[0]  # noqa: E731
        raw = lambda: self.mem.read(vq.device_iova + 4, 8)  # noqa: E731
        expect(wait_until(lambda: used_idx() == 1, self.t.timeout), f"no used element within {self.t.timeout:g} s "
               f"(used.idx {used_idx()}); device_status {self.drv.status:#x}", raw())
        used_id, used_len = VIRTQ_USED_ELEM.unpack(raw())
        return used_id, used_len, raw()


def _indirect_queue(t: Target) -> tuple[Probe, RawSplit]:
    if not t.facts.features & bit(VIRTIO_F_INDIRECT_DESC):
        raise Skipped("the device does not offer VIRTIO_F_INDIRECT_DESC")
    probe, drv, q = _probe_queue(t, "split", extra=bit(VIRTIO_F_INDIRECT_DESC))
    return probe, RawSplit(t, drv, q)


def _table(raw: RawSplit, entries: list[tuple[int, int, int]]) -> tuple[int, int]:
    """An indirect table of ``entries`` ((addr, len, flags), chained by next) in guest memory: (address, length)."""
    table = b"".join(VIRTQ_DESC.pack(a, n, f | (VIRTQ_DESC_F_NEXT if i < len(entries) - 1 else 0), i + 1)
                     for i, (a, n, f) in enumerate(entries))
    return raw.buffer(table), len(table)


@check("split.indirect-after-direct", f"{_SPLIT} / The Virtqueue Descriptor Table / Indirect Descriptors", "The "
       "device handles a chain of normal descriptors followed by one indirect descriptor.")
def _indirect_after_direct(t: Target) -> str:
    _send_indirect(t, direct=8, flags=VIRTQ_DESC_F_INDIRECT, what="a direct descriptor then an indirect one")
    return "1 direct + 1 indirect descriptor answered"


@check("split.indirect-write-flag", f"{_SPLIT} / The Virtqueue Descriptor Table / Indirect Descriptors", "The "
       "device ignores VIRTQ_DESC_F_WRITE in a descriptor that refers to an indirect table.")
def _indirect_write_flag(t: Target) -> str:
    _send_indirect(t, direct=0, flags=VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_WRITE,
                   what="an indirect descriptor with VIRTQ_DESC_F_WRITE")
    return "answered"


def _send_indirect(t: Target, direct: int, flags: int, what: str) -> None:
    """The probe as the first ``direct`` readable bytes in a normal descriptor (none when 0), then one descriptor of
    ``flags`` to an indirect table of the rest and the writable buffer; Failed unless it is answered as the probe
    always is."""
    probe, raw = _indirect_queue(t)
    out = raw.mem.alloc(probe.writable, 16)
    raw.mem.zero(out, probe.writable)
    rest = probe.readable[direct:]
    table, length = _table(raw, [(raw.buffer(rest), len(rest), 0), (out, probe.writable, VIRTQ_DESC_F_WRITE)])
    lead = [(raw.buffer(probe.readable[:direct]), direct, VIRTQ_DESC_F_NEXT, 1)] if direct else []
    used_id, used_len, elem = raw.send([*lead, (table, length, flags, 0)])
    data = raw.mem.read(out, probe.writable)
    problem = probe.problem(used_len, data) if used_id == 0 else f"used element id {used_id} for head 0"
    expect(problem is None, f"{what}: {problem}", elem)


# ---- packed -----------------------------------------------------------------------------------------------------
@check("packed.used-flags", f"{_PACKED} / Receiving Used Buffers From The Device", "A used descriptor has "
       "VIRTQ_DESC_F_AVAIL and VIRTQ_DESC_F_USED both equal to the Device Ring Wrap Counter.")
def _packed_used_flags(t: Target) -> str:
    probe, drv, q = _probe_queue(t, "packed")
    wrap = q.vq.used_wrap
    x = exchange(t, drv, q, [probe.readable], [probe.writable])
    want = _AVAIL_USED if wrap else 0
    expect(x.flags & _AVAIL_USED == want, f"used descriptor flags {x.flags:#06x} with the device wrap counter "
           f"{wrap}", x.raw)
    return f"flags {x.flags:#06x}"


@check("packed.wrap", f"{_PACKED} / Driver and Device Ring Wrap Counters", "The device toggles its wrap counter at "
       "the end of the ring: requests keep completing over several laps of a small ring.")
def _packed_wrap(t: Target) -> str:
    probe, drv, q = _probe_queue(t, "packed", queue_size=4)
    laps = 3 * q.vq.size
    for n in range(laps):
        _answered(probe, exchange(t, drv, q, [probe.readable], [probe.writable], indirect=False))
    return f"{laps} requests on a {q.vq.size}-entry ring"
