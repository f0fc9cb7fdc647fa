"""Test-only defective devices: vfu-virtio with one deliberate non-conformity, the negative controls of the
conformance checks.

``python -m devices.defective DEFECT [vfu-virtio arguments]`` (with ``tests/`` on ``PYTHONPATH``) applies defect
``DEFECT`` of :data:`DEFECTS` to this process, then runs the ``vfu-virtio`` command with the arguments: a real server
of any kind on a real vfio-user socket whose transport, PCI function, rings or device break exactly one
device-normative statement of the standard. A defect replaces one method of a class of the device side with a
wrapper (the server process serves one device, so nothing else is touched); the conformance tests start such
servers through ``vfu_virtio.client.spawn.Server``'s ``program``.

Each defect names the requirement it breaks in its docstring; ``tests/test_conform.py`` pairs every check of the
catalogue with the defect (or ``--inject`` fault) on which that check must report FAIL.
"""
from __future__ import annotations

import dataclasses
import hmac
import struct
import types
from typing import Callable

from vfu_virtio.abi.ring import (VIRTQ_DESC, VIRTQ_DESC_F_AVAIL, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT,
                                 VIRTQ_DESC_F_USED, VIRTQ_DESC_F_WRITE, vring_need_event)
from vfu_virtio.abi.virtio import DRIVER_OK, FEATURES_OK, VIRTIO_F_VERSION_1, VIRTIO_MSI_NO_VECTOR, bit
from vfu_virtio.devices.crypto.device import CryptoDevice
from vfu_virtio.devices.crypto.profiles.standard import StandardCodec
from vfu_virtio.devices.crypto.sessions import SessionTable
from vfu_virtio.devices.crypto.values import Status
from vfu_virtio.devices.rpmb import device as rpmb_device
from vfu_virtio.devices.rpmb.device import RpmbDevice
from vfu_virtio.pci.function import PciCfgWindow, PciFunction
from vfu_virtio.virtio import transport
from vfu_virtio.virtio.chain import GuestError
from vfu_virtio.virtio.device import VirtioDevice
from vfu_virtio.virtio.packed import PackedRing
from vfu_virtio.virtio.split import SplitRing
from vfu_virtio.virtio.transport import QueueState, VirtioPciTransport

#: name -> the function that applies the defect (its docstring says which requirement it breaks)
DEFECTS: dict[str, Callable[[], None]] = {}


def defect(fn: Callable[[], None]) -> Callable[[], None]:
    DEFECTS[fn.__name__.replace("_", "-")] = fn
    return fn


def wrap(cls, name: str, make: Callable) -> None:
    """Replace ``cls.name`` by ``make(original)``."""
    setattr(cls, name, make(getattr(cls, name)))


def apply(name: str) -> None:
    """Apply defect ``name``; KeyError naming the defects if there is none."""
    try:
        fn = DEFECTS[name]
    except KeyError:
        raise KeyError(f"no defect {name!r} (defects: {', '.join(sorted(DEFECTS))})") from None
    fn()


# ---- config space: identity and capabilities ---------------------------------------------------------------------
def _header(edit: Callable[[bytearray], None]) -> None:
    def make(orig):
        def _header(self):
            image, wmask = orig(self)
            edit(image)
            return image, wmask
        return _header
    wrap(PciFunction, "_header", make)


def _placed(edit: Callable[[bytearray, list[int]], None], keep: Callable[[object], bool] = lambda cap: True) -> None:
    """Edit the config space image once the capabilities are placed (``keep`` filters them first)."""
    def make(orig):
        def _place_capabilities(self, image, wmask, capabilities, msix):
            offsets = orig(self, image, wmask, [c for c in capabilities if keep(c)], msix)
            edit(image, offsets)
            return offsets
        return _place_capabilities
    wrap(PciFunction, "_place_capabilities", make)


def _virtio_cap_at(image: bytearray, offsets: list[int], cfg_type: int) -> int:
    return next(o for o in offsets if image[o] == 0x09 and image[o + 3] == cfg_type)


def _not_cfg_type(cfg_type: int) -> Callable[[object], bool]:
    return lambda cap: isinstance(cap, PciCfgWindow) or cap[3] != cfg_type


@defect
def device_id_unlisted():
    """PCI Device ID 0x100a: below 0x1040 and not a Transitional Device ID ("PCI Device Discovery")."""
    _header(lambda image: struct.pack_into("<H", image, 2, 0x100A))


@defect
def revision_0():
    """Revision ID 0 on a non-transitional Device ID ("PCI Device Discovery": 1 or higher)."""
    _header(lambda image: image.__setitem__(8, 0))


@defect
def subsystem_id_low():
    """Subsystem Device ID 0x0014 on a non-transitional device ("PCI Device Discovery": 0x40 or higher)."""
    _header(lambda image: struct.pack_into("<H", image, 0x2E, 0x14))


@defect
def capability_loop():
    """The last capability's next pointer points back to the first (the PCI capability list rules)."""
    _placed(lambda image, offsets: image.__setitem__(offsets[-1] + 1, offsets[0]))


@defect
def cap_len_short():
    """The notification capability's cap_len is 16, leaving out notify_off_multiplier ("Virtio Structure PCI
    Capabilities")."""
    _placed(lambda image, offsets: image.__setitem__(_virtio_cap_at(image, offsets, 2) + 2, 16))


@defect
def no_common_cap():
    """No common configuration capability ("Common configuration structure layout")."""
    _placed(lambda image, offsets: None, _not_cfg_type(1))


@defect
def common_cap_unaligned():
    """The common configuration capability says offset 2 ("Common configuration structure layout": 4-aligned)."""
    _placed(lambda image, offsets: struct.pack_into("<I", image, _virtio_cap_at(image, offsets, 1) + 8, 2))


@defect
def no_notify_cap():
    """No notification capability ("Notification capability")."""
    _placed(lambda image, offsets: None, _not_cfg_type(2))


@defect
def notify_multiplier_odd():
    """notify_off_multiplier 3 ("Notification capability": 0 or an even power of 2)."""
    _placed(lambda image, offsets: struct.pack_into("<I", image, _virtio_cap_at(image, offsets, 2) + 16, 3))


@defect
def notify_length_short():
    """The notification capability's length is 2: only queue 0's notify address fits ("Notification capability")."""
    _placed(lambda image, offsets: struct.pack_into("<I", image, _virtio_cap_at(image, offsets, 2) + 12, 2))


@defect
def no_isr_cap():
    """No ISR status capability ("ISR status capability")."""
    _placed(lambda image, offsets: None, _not_cfg_type(3))


@defect
def device_cfg_unaligned():
    """The device-specific configuration capability says offset 0x2002 ("Device-specific configuration":
    4-aligned)."""
    _placed(lambda image, offsets: struct.pack_into("<I", image, _virtio_cap_at(image, offsets, 4) + 8, 0x2002))


@defect
def no_pci_cfg_cap():
    """No PCI configuration access capability ("PCI configuration access capability")."""
    _placed(lambda image, offsets: None, lambda cap: not isinstance(cap, PciCfgWindow))


@defect
def pci_cfg_window_dead():
    """pci_cfg_data reads 0 and writes go nowhere ("PCI configuration access capability")."""
    PciFunction._window_read = lambda self: self._cfg.store(self._window_at + 16, bytes(4))
    PciFunction._window_write = lambda self: None


@defect
def msix_table_size_1():
    """The MSI-X capability's Table Size says 1 vector ("MSI-X Vector Configuration": at least 2)."""
    _placed(lambda image, offsets: struct.pack_into("<H", image, offsets[-1] + 2, 0))


# ---- common configuration -----------------------------------------------------------------------------------------
def _read_field(change: Callable[[VirtioPciTransport, str, int], int]) -> None:
    wrap(VirtioPciTransport, "_read_field", lambda orig: lambda self, name: change(self, name, orig(self, name)))


@defect
def feature_word_2_echo():
    """device_feature with device_feature_select 2 reads word 0 again ("Common configuration structure layout")."""
    def change(self, name, value):
        if name == "device_feature" and self.device_feature_select >= 2:
            return self.device_features & 0xFFFFFFFF
        return value
    _read_field(change)


@defect
def driver_feature_reads_0():
    """driver_feature always reads 0 ("Common configuration structure layout": present the valid bits written)."""
    _read_field(lambda self, name, value: 0 if name == "driver_feature" else value)


@defect
def absent_queue_size():
    """queue_size reads 256 for a queue the device does not have ("Common configuration structure layout")."""
    _read_field(lambda self, name, value: 256 if name == "queue_size" and self.queue_select >= self.num_queues
                else value)


@defect
def queue_size_100():
    """Queues of 100 entries, presented as queue_size without VIRTIO_F_RING_PACKED (a power of 2 is required)."""
    VirtioDevice.queue_size_max = 100


@defect
def queue_desc_high_half_ignored():
    """A 4-byte write to the high half of a 64-bit queue address is ignored ("PCI Device Layout")."""
    def make(orig):
        def common_write(self, offset, data):
            if offset in (0x24, 0x2C, 0x34) and len(data) == 4:
                return
            orig(self, offset, data)
        return common_write
    wrap(VirtioPciTransport, "common_write", make)


@defect
def reset_keeps_status():
    """Writing 0 to device_status changes nothing ("Device Reset": device_status reads 0 after a reset)."""
    wrap(VirtioPciTransport, "_write_status",
         lambda orig: lambda self, value: None if value == 0 else orig(self, value))


@defect
def queue_enable_sticky():
    """queue_enable keeps reading 1 after a device reset ("Common configuration structure layout")."""
    def make(orig):
        def reset(self):
            enable = getattr(self, "enable", 0)
            orig(self)
            self.enable = enable
        return reset
    wrap(QueueState, "reset", make)


@defect
def msix_vector_reads_0():
    """msix_config and queue_msix_vector read 0 whatever was mapped ("MSI-X Vector Configuration")."""
    _read_field(lambda self, name, value: 0 if name in ("msix_config", "queue_msix_vector") else value)


@defect
def msix_vector_any():
    """A vector outside the MSI-X Table reads back as written, not NO_VECTOR ("MSI-X Vector Configuration")."""
    def make(orig):
        def _write_field(self, name, value):
            orig(self, name, value)
            if name == "msix_config":
                self.msix_config = value
            elif name == "queue_msix_vector" and self.queue_select < self.num_queues:
                self.queues[self.queue_select].msix_vector = value
        return _write_field
    wrap(VirtioPciTransport, "_write_field", make)


@defect
def msix_vectors_survive_reset():
    """msix_config and the queue vectors keep their mapping across a reset ("MSI-X Vector Configuration")."""
    def make(orig):
        def reset(self):
            kept = (getattr(self, "msix_config", VIRTIO_MSI_NO_VECTOR),
                    [getattr(q, "msix_vector", VIRTIO_MSI_NO_VECTOR) for q in self.queues])
            orig(self)
            self.msix_config = kept[0]
            for q, vector in zip(self.queues, kept[1]):
                q.msix_vector = vector
        return reset
    wrap(VirtioPciTransport, "reset", make)


# ---- features ----------------------------------------------------------------------------------------------------
@defect
def no_version_1():
    """VIRTIO_F_VERSION_1 is not offered ("Reserved Feature Bits": a device MUST offer it)."""
    transport.TRANSPORT_FEATURES &= ~bit(VIRTIO_F_VERSION_1)


@defect
def offers_bit_44():
    """Feature bit 44, reserved for future extensions, is offered ("Feature Bits")."""
    transport.TRANSPORT_FEATURES |= bit(44)


@defect
def crypto_stateless_without_revision_1():
    """The crypto device offers *_STATELESS_MODE bits without VIRTIO_CRYPTO_F_REVISION_1 ("Feature Bits")."""
    wrap(CryptoDevice, "device_features", lambda orig: lambda self: orig(self) & ~1)


@defect
def accepts_unoffered():
    """FEATURES_OK is kept although the driver accepted a bit the device did not offer ("Feature Bits")."""
    def make(orig):
        def _write_status(self, value):
            accepted = self.driver_features
            if value & FEATURES_OK:
                self.driver_features &= self.device_features
            orig(self, value)
            self.driver_features = accepted
        return _write_status
    wrap(VirtioPciTransport, "_write_status", make)


@defect
def refuses_second_negotiation():
    """After one successful negotiation, FEATURES_OK is refused for good ("Feature Bits": a feature set accepted once
    should be accepted again after a reset)."""
    def make(orig):
        def _write_status(self, value):
            if value & FEATURES_OK and not self.status & FEATURES_OK and getattr(self, "negotiated_once", False):
                value &= ~FEATURES_OK
            orig(self, value)
            if self.status & FEATURES_OK:
                self.negotiated_once = True
        return _write_status
    wrap(VirtioPciTransport, "_write_status", make)


@defect
def config_hidden_before_features_ok():
    """The device-specific configuration reads zeros until FEATURES_OK ("Device Configuration Space")."""
    def make(orig):
        def bar0_access(self, offset, size, data):
            out = orig(self, offset, size, data)
            if data is None and 0x2000 <= offset < 0x3000 and not self.status & FEATURES_OK:
                return bytes(size)
            return out
        return bar0_access
    wrap(VirtioPciTransport, "bar0_access", make)


# ---- device status ------------------------------------------------------------------------------------------------
@defect
def uses_before_driver_ok():
    """An enabled queue is served as soon as it is enabled, before DRIVER_OK ("Device Status Field")."""
    def make(orig):
        def _write_field(self, name, value):
            orig(self, name, value)
            q = self.queues[self.queue_select] if self.queue_select < self.num_queues else None
            if name == "queue_enable" and q and q.enable and q.ring is None and not self.status & DRIVER_OK:
                self._start_queue(q)
        return _write_field
    wrap(VirtioPciTransport, "_write_field", make)


@defect
def needs_reset_silent():
    """DEVICE_NEEDS_RESET is set without a configuration change notification ("Device Status Field")."""
    def make(orig):
        def needs_reset(self, why):
            self._config_interrupt = lambda: None
            try:
                orig(self, why)
            finally:
                del self._config_interrupt
        return needs_reset
    wrap(VirtioPciTransport, "needs_reset", make)


@defect
def reset_keeps_queues():
    """A device reset leaves the live rings in place: the device keeps using them ("Device Reset")."""
    def make(orig):
        def reset(self):
            rings = [getattr(q, "ring", None) for q in self.queues]
            orig(self)
            for q, ring in zip(self.queues, rings):
                q.ring = ring
        return reset
    wrap(VirtioPciTransport, "reset", make)


@defect
def queue_reset_ignored():
    """Writing 1 to queue_reset does nothing ("Virtqueue Reset")."""
    VirtioPciTransport._reset_queue = lambda self, q: None


# ---- rings --------------------------------------------------------------------------------------------------------
def _push(change: Callable) -> None:
    for cls in (SplitRing, PackedRing):
        wrap(cls, "push", lambda orig: lambda self, chain, written: orig(self, *change(self, chain, written)))


@defect
def used_len_overflow():
    """The used length is 4096 more than the bytes written ("The Virtqueue Used Ring")."""
    _push(lambda ring, chain, written: (chain, written + 4096))


@defect
def used_id_off_by_one():
    """The used element names the next chain id, not the chain's ("The Virtqueue Used Ring")."""
    _push(lambda ring, chain, written: (types.SimpleNamespace(id=(chain.id + 1) % ring.size, ndescs=chain.ndescs),
                                        written))


@defect
def writes_readable():
    """The device flips the first byte of the first device-readable buffer ("The Virtqueue Descriptor Table")."""
    def change(ring, chain, written):
        if chain.readable and len(chain.readable[0]):
            chain.readable[0][0] ^= 0xFF
        return chain, written
    _push(change)


@defect
def refuses_split_buffers():
    """A chain of more than two device-readable buffers is a guest error ("Message Framing": no assumption about the
    arrangement of descriptors)."""
    for cls in (SplitRing, PackedRing):
        def make(orig):
            def pop(self):
                chain = orig(self)
                if chain is not None and len(chain.readable) > 2:
                    raise GuestError(f"queue {self.index}: {len(chain.readable)} readable buffers (deliberate defect)")
                return chain
            return pop
        wrap(cls, "pop", make)


@defect
def spurious_notify_needs_reset():
    """A notification without new buffers sets DEVICE_NEEDS_RESET ("Available Buffer Notification Suppression":
    the device handles spurious notifications)."""
    def make(orig):
        def notify(self, queue):
            ring = self.queues[queue].ring if queue < self.num_queues else None
            if ring is not None and not ring.pending():
                self.needs_reset(f"queue {queue}: notified with nothing new (deliberate defect)")
                return
            orig(self, queue)
        return notify
    wrap(VirtioPciTransport, "notify", make)


@defect
def writes_descriptor_table():
    """The device zeroes the len of the chain's head descriptor when it uses it ("The Virtqueue Descriptor Table")."""
    def make(orig):
        def push(self, chain, written):
            struct.pack_into("<I", self.desc, 16 * chain.id + 8, 0)
            orig(self, chain, written)
        return push
    wrap(SplitRing, "push", make)


def _split_flush(notify: Callable[[SplitRing, int, int], bool]) -> None:
    """SplitRing.flush publishing as usual but deciding the notification with ``notify(ring, old, new)``."""
    def flush(self):
        self.used16[1] = self.used_idx
        old, new = self._signalled_used, self.used_idx
        if old == new:
            return False
        self._signalled_used = new
        return notify(self, old, new)
    SplitRing.flush = flush


@defect
def used_flags_2():
    """used.flags is written 2 ("Available Buffer Notification Suppression": 0 or 1)."""
    def make(orig):
        def flush(self):
            notify = orig(self)
            self.used16[0] = 2
            return notify
        return flush
    wrap(SplitRing, "flush", make)


@defect
def used_event_always():
    """used_event is honoured without VIRTIO_F_EVENT_IDX ("Used Buffer Notification Suppression")."""
    _split_flush(lambda ring, old, new: vring_need_event(ring.avail16[2 + ring.size], new, old))


@defect
def event_idx_off_by_one():
    """With VIRTIO_F_EVENT_IDX the device notifies one element late ("Used Buffer Notification Suppression")."""
    _split_flush(lambda ring, old, new: vring_need_event((ring.avail16[2 + ring.size] + 1) & 0xFFFF, new, old)
                 if ring.event_idx else not ring.avail16[0] & 1)


@defect
def no_interrupt_flag_with_event_idx():
    """VIRTQ_AVAIL_F_NO_INTERRUPT is honoured with VIRTIO_F_EVENT_IDX ("Used Buffer Notification Suppression")."""
    _split_flush(lambda ring, old, new: not ring.avail16[0] & 1 and (
        vring_need_event(ring.avail16[2 + ring.size], new, old) if ring.event_idx else True))


def _split_walk_refuses(bad: Callable[[int], bool], what: str) -> None:
    """SplitRing refuses a chain any of whose ring descriptors has flags for which ``bad(flags, position)``."""
    def make(orig):
        def _walk(self, head):
            idx, position = head, 0
            for _ in range(self.size):
                _addr, _len, flags, nxt = VIRTQ_DESC.unpack_from(self.desc, 16 * idx)
                if bad(flags, position):
                    raise GuestError(f"queue {self.index}: {what} (deliberate defect)")
                if not flags & VIRTQ_DESC_F_NEXT or flags & VIRTQ_DESC_F_INDIRECT:
                    break
                idx, position = nxt % self.size, position + 1
            return orig(self, head)
        return _walk
    wrap(SplitRing, "_walk", make)


@defect
def indirect_after_direct_refused():
    """A chain of a direct descriptor then an indirect one is refused ("Indirect Descriptors": the device MUST handle
    it)."""
    _split_walk_refuses(lambda flags, position: position > 0 and flags & VIRTQ_DESC_F_INDIRECT,
                        "indirect descriptor after a direct one")


@defect
def indirect_write_flag_refused():
    """An indirect descriptor with VIRTQ_DESC_F_WRITE is refused ("Indirect Descriptors": the device MUST ignore the
    flag)."""
    _split_walk_refuses(lambda flags, position: flags & VIRTQ_DESC_F_INDIRECT and flags & VIRTQ_DESC_F_WRITE,
                        "indirect descriptor with WRITE")


_AVAIL_USED = VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED


@defect
def packed_used_wrap_wrong():
    """Used descriptors carry the other wrap counter in AVAIL and USED ("Packed Virtqueues")."""
    def make(orig):
        def push(self, chain, written):
            orig(self, chain, written)
            pos, buf_id, length, flags = self._batch[-1]
            self._batch[-1] = (pos, buf_id, length, flags ^ _AVAIL_USED)
        return push
    wrap(PackedRing, "push", make)


@defect
def packed_wrap_not_toggled():
    """The device never toggles its wrap counter at the end of the ring ("Packed Virtqueues")."""
    def make(orig):
        def push(self, chain, written):
            wrap_before = self.used_wrap
            orig(self, chain, written)
            self.used_wrap = wrap_before
        return push
    wrap(PackedRing, "push", make)


# ---- interrupts ---------------------------------------------------------------------------------------------------
def _signal(change: Callable[[VirtioPciTransport, int], int | None]) -> None:
    def make(orig):
        def _signal(self, vector):
            vector = change(self, vector)
            if vector is not None:
                orig(self, vector)
        return _signal
    wrap(VirtioPciTransport, "_signal", make)


@defect
def msix_wrong_vector():
    """Used buffer notifications go to the configuration vector, not the queue's ("Used Buffer Notifications")."""
    _signal(lambda self, vector: self.msix_config if vector != self.msix_config else vector)


@defect
def no_vector_uses_config():
    """A queue mapped to NO_VECTOR is notified on vector 0 ("Used Buffer Notifications": no interrupt)."""
    _signal(lambda self, vector: 0 if vector == VIRTIO_MSI_NO_VECTOR else vector)


@defect
def config_no_vector_uses_0():
    """With msix_config NO_VECTOR a configuration change is signalled on vector 0 ("Notification of Device
    Configuration Changes")."""
    def make(orig):
        def _config_interrupt(self):
            self.isr |= 2
            self._signal(0 if self.msix_config == VIRTIO_MSI_NO_VECTOR else self.msix_config)
        return _config_interrupt
    wrap(VirtioPciTransport, "_config_interrupt", make)


@defect
def isr_no_queue_bit():
    """The ISR's Queue Interrupt bit is never set ("ISR status capability")."""
    def make(orig):
        def _publish(self, q):
            isr = self.isr
            orig(self, q)
            if self.isr & 1 and not isr & 1:
                self.isr &= ~1
                self.function.set_intx(self.isr != 0)
        return _publish
    wrap(VirtioPciTransport, "_publish", make)


@defect
def isr_sticky():
    """Reading the ISR does not clear it ("ISR status capability")."""
    def make(orig):
        def bar0_access(self, offset, size, data):
            if data is None and offset == 0x1000:
                return bytes([self.isr]).ljust(size, b"\0")
            return orig(self, offset, size, data)
        return bar0_access
    wrap(VirtioPciTransport, "bar0_access", make)


@defect
def status_interrupt_bit_never():
    """PCI Status bit 3 never reads 1 ("ISR status capability": the OR of the ISR bits)."""
    def make(orig):
        def config_access(self, offset, size, data):
            out = orig(self, offset, size, data)
            if data is None and offset <= 6 < offset + size:
                out = bytearray(out)
                out[6 - offset] &= ~0x08
                out = bytes(out)
            return out
        return config_access
    wrap(PciFunction, "config_access", make)


@defect
def isr_no_config_bit():
    """A configuration change sets no ISR bit ("ISR status capability")."""
    def make(orig):
        def _config_interrupt(self):
            self._signal(self.msix_config)
        return _config_interrupt
    wrap(VirtioPciTransport, "_config_interrupt", make)


# ---- a device that stops answering ----------------------------------------------------------------------------------
@defect
def hangs_from_client_3():
    """From its third client on, the server accepts the connection and never answers again (until it is stopped): a
    device that hangs in the middle of a conformance run."""
    from vfu_virtio.server import DeviceServer

    def make(orig):
        def serve_client(self):
            if self.clients >= 3:
                while not self._stop.wait(0.1):
                    pass
                return
            orig(self)
        return serve_client
    wrap(DeviceServer, "serve_client", make)


# ---- device types -------------------------------------------------------------------------------------------------
def _crypto_config(edit: Callable[[bytearray], None]) -> None:
    def make(orig):
        def config_space(self):
            raw = bytearray(orig(self))
            edit(raw)
            return bytes(raw)
        return config_space
    wrap(CryptoDevice, "config_space", make)


@defect
def crypto_zero_dataqueues():
    """max_dataqueues reads 0 ("Crypto Device / Device configuration layout": 1..65535)."""
    _crypto_config(lambda raw: struct.pack_into("<I", raw, 4, 0))


@defect
def crypto_status_bit_1():
    """status has the undefined bit 1 set ("Crypto Device / Device configuration layout")."""
    _crypto_config(lambda raw: struct.pack_into("<I", raw, 0, struct.unpack_from("<I", raw, 0)[0] | 2))


@defect
def crypto_undefined_algo_bits():
    """hash_algo has bit 31 set, no algorithm's number ("Crypto Device / Device configuration layout")."""
    _crypto_config(lambda raw: struct.pack_into("<I", raw, 20, struct.unpack_from("<I", raw, 20)[0] | 1 << 31))


def _ctrl_outcome(change: Callable[[Status, int], int]) -> None:
    def make(orig):
        def ctrl_outcome(self, writer, opcode, status, session_id):
            return orig(self, writer, opcode, status, change(status, session_id))
        return ctrl_outcome
    wrap(StandardCodec, "ctrl_outcome", make)


@defect
def crypto_session_ids_repeat():
    """Every session created is reported with session_id 1 ("Session operation: create session": unique ids)."""
    _ctrl_outcome(lambda status, session_id: 1 if status is Status.OK else session_id)


@defect
def crypto_session_id_on_error():
    """A failed create-session reports session_id 0x1234 ("Session operation: create session": only with OK)."""
    def make(orig):
        def ctrl_outcome(self, writer, opcode, status, session_id):
            used = orig(self, writer, opcode, status, session_id)
            if status is not Status.OK and used >= 8:
                writer.write_at(0, struct.pack("<Q", 0x1234))
            return used
        return ctrl_outcome
    wrap(StandardCodec, "ctrl_outcome", make)


@defect
def crypto_destroy_always_ok():
    """Destroying a session that does not exist is answered OK ("Session operation: destroy session")."""
    wrap(SessionTable, "remove", lambda orig: lambda self, session_id, service: self._sessions.pop(session_id, None)
         and None)


@defect
def rpmb_capacity_0x81():
    """capacity reads 0x81 ("RPMB Device / Device configuration layout": 0x00..0x80)."""
    wrap(RpmbDevice, "config_space", lambda orig: lambda self: bytes([0x81]) + orig(self)[1:])


@defect
def rpmb_wrong_response_type():
    """GET_WRITE_COUNTER is answered with req_resp RESP_DATA_READ ("Device Operation: Get Write Counter")."""
    def make(orig):
        def _get_counter(self, frame):
            return [dataclasses.replace(f, req_resp=0x0400) for f in orig(self, frame)]
        return _get_counter
    wrap(RpmbDevice, "_get_counter", make)


@defect
def rpmb_accepts_any_mac():
    """A DATA_WRITE is accepted whatever its MAC ("Device Operation: Data Write": AUTH_FAILURE)."""
    rpmb_device.hmac = types.SimpleNamespace(compare_digest=lambda a, b: True, new=hmac.new)


@defect
def rpmb_mac_wrong_key():
    """Responses are sealed with an all-zero key, not the programmed one ("RPMB Device / Device Operation": the MAC
    is computed with the authentication key)."""
    seal = rpmb_device.F.seal
    rpmb_device.F = types.SimpleNamespace(**{**vars(rpmb_device.F),
                                            "seal": lambda frames, key: seal(frames, bytes(32) if key else None)})


@defect
def rpmb_forgets_key_on_reset():
    """A device reset forgets the authentication key ("RPMB Device / Device Operation": kept regardless of reset)."""
    def make(orig):
        def reset(self):
            orig(self)
            self.state._key = None
        return reset
    wrap(RpmbDevice, "reset", make)

