"""One PCI function: its whole 256-byte type-0 configuration space, its BARs, INTx and MSI-X.

Served with plain calls, without libvfio-user, sockets or virtqueues: :meth:`PciFunction.config_access` for
every config space access, :meth:`PciFunction.bar_access` for the BARs (the MSI-X BAR is served here, the
others by their handlers); interrupts leave through an :class:`IrqSink`.

Config space (PCI Local Bus 3.0, 6.1 "Configuration Space Organization", header type 0), little-endian:

    0x00 Vendor ID le16       0x02 Device ID le16       0x04 Command le16          0x06 Status le16
    0x08 Revision ID u8       0x09 Class Code u8[3]: prog-if, sub-class, base class
    0x0C Cache Line Size u8   0x0D Latency Timer u8     0x0E Header Type u8 = 0    0x0F BIST u8 = 0
    0x10 Base Address Registers 0..5 le32[6]            0x28 CardBus CIS Pointer le32 = 0
    0x2C Subsystem Vendor ID le16   0x2E Subsystem ID le16   0x30 Expansion ROM Base Address le32 = 0
    0x34 Capabilities Pointer u8 = 0x40                 0x35..0x3B reserved = 0
    0x3C Interrupt Line u8    0x3D Interrupt Pin u8 = 1 (INTA#)   0x3E Min_Gnt u8 = 0   0x3F Max_Lat u8 = 0
    0x40 the capabilities in the order given, each at the next multiple of 4, then the MSI-X capability;
         each Next Pointer links to the following one, the last is 0. The rest of config space reads 0.

Writable bits ("6.2 Configuration Space Functions"); every other bit ignores writes, never an error:
- Command: 1 Memory Space, 2 Bus Master, 8 SERR# Enable, 10 Interrupt Disable; the other bits read 0.
- Cache Line Size, Latency Timer, Interrupt Line: all 8 bits.
- Base Address Registers ("6.2.5.1 Address Maps"): each BAR is a 32-bit, non-prefetchable memory BAR whose
  address bits 31..log2(size) are writable, so writing 0xFFFFFFFF reads back ~(size - 1) (type bits 3..0 = 0).
  BARs the function lacks and the Expansion ROM read 0.
- MSI-X Message Control ("6.8.2.3 Message Control for MSI-X"): bit 14 Function Mask, bit 15 MSI-X Enable.
- The PCI configuration access capability: ``bar``, ``offset``, ``length`` and ``pci_cfg_data``.
Status ("6.2.3 Device Status") reads bit 4 Capabilities List = 1 and bit 3 Interrupt Status = 1 exactly while
the INTx condition is set (whatever Interrupt Disable says); its RW1C error bits are never set.
Any access of any width at any offset inside the 256 bytes is served byte-wise (a config space is bytes
with side effects, not a list of registers).

INTx (PCI 2.3 INTx masking: Command bit 10, Status bit 3). The INTx line is asserted while the condition
(:meth:`PciFunction.set_intx`) is set AND Interrupt Disable is clear AND the client has not masked INTx
(:meth:`PciFunction.intx_client_mask`) AND MSI-X is disabled. Every transition to asserted triggers the client's
INTx eventfd once; a client UNMASK while the line is asserted triggers it again: a vfio client lowers its
virtual line at EOI and unmasks to resample a level-triggered interrupt (the automasked INTx of VFIO).
So a driver that claims an interrupt by reading Status bit 3 and setting Interrupt Disable (Linux
``uio_pci_generic``) gets one trigger per interrupt, and another only if the condition outlives the handling.

MSI-X (:mod:`vfu_virtio.pci.msix`): :meth:`PciFunction.signal_msix` sends vector n, holds it pending while
masked, or does nothing while MSI-X is disabled (then the caller signals INTx).

TD-MSIX-RESET (project decision): MSI-X table entries reset UNMASKED (Vector Control = 0), not masked as PCI
says, because vfio-user clients such as QEMU's vfio-user-pci emulate the MSI-X table themselves and never
forward table writes to the server (they forward Message Control writes and read the server's PBA): with
masked entries no vector would ever reach them. Entries a client does program through the BAR are honoured.

The PCI configuration access capability ("Virtio Over PCI Bus / PCI Device Layout / PCI configuration access
capability", ``struct virtio_pci_cfg_cap``, cfg_type 5, 20 bytes) is built and served here: reading
``pci_cfg_data`` first reads ``length`` bytes at ``offset`` of BAR ``bar`` into it, writing it then writes
its first ``length`` bytes there. Only lengths 1, 2 and 4, offsets aligned to the length and windows inside one
of the function's BARs are served; any other window reads as zero, ignores writes and logs one debug line.

Driver audit: ``note(check, detail)`` (the transport's) hears of a driver requirement broken in config space: a
write into a virtio structure capability other than the window fields (``capability-written``), a window access
with an offset that is not a multiple of its length (``cfg-window-unaligned``) or outside every structure another
virtio capability names (``cfg-window-outside``). The function answers as it would anyway.
"""
from __future__ import annotations

import errno
import logging
import struct
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

from . import capabilities as caps
from .msix import MsixLayout, MsixTable
from .registers import MaskedBytes, overlap

log = logging.getLogger("vfu_virtio.pci.function")

PCI_CONFIG_SPACE_SIZE = 256
PCI_NUM_BARS = 6

# type-0 header, 64 bytes: ids, Command, Status, Revision ID, Class Code (prog-if, sub, base), Cache Line Size,
# Latency Timer, Header Type, BIST, BAR0..5, CardBus CIS, Subsystem Vendor ID, Subsystem ID, Expansion ROM,
# Capabilities Pointer, 7 reserved, Interrupt Line, Interrupt Pin, Min_Gnt, Max_Lat
PCI_TYPE0_HEADER = struct.Struct("<HHHHB3sBBBB6IIHHIB7xBBBB")
PCI_COMMAND = 0x04
PCI_STATUS = 0x06
PCI_CACHE_LINE_SIZE = 0x0C
PCI_LATENCY_TIMER = 0x0D
PCI_BASE_ADDRESS_0 = 0x10
PCI_CAPABILITY_LIST = 0x34
PCI_INTERRUPT_LINE = 0x3C
PCI_CAPABILITIES_START = 0x40

PCI_COMMAND_MEMORY = 1 << 1
PCI_COMMAND_MASTER = 1 << 2
PCI_COMMAND_SERR = 1 << 8
PCI_COMMAND_INTX_DISABLE = 1 << 10
PCI_COMMAND_WRITABLE = PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE
PCI_STATUS_INTERRUPT = 1 << 3
PCI_STATUS_CAP_LIST = 1 << 4
PCI_INTERRUPT_PIN_INTA = 1

MSIX_MESSAGE_CONTROL = 2  # offset inside the MSI-X capability
MSIX_FUNCTION_MASK = 1 << 14
MSIX_ENABLE = 1 << 15

CFG_WINDOW_LENGTHS = (1, 2, 4)


class IrqSink(Protocol):
    """Where the function's interrupts go (the server: libvfio-user's ``vfu_irq_trigger``; tests: a recorder)."""

    def trigger_msix(self, vector: int) -> None:
        """Send MSI-X vector ``vector`` (0..vectors-1)."""

    def trigger_intx(self) -> None:
        """One edge on the client's INTx eventfd."""


@dataclass(frozen=True)
class PciIdentity:
    """The header's identification registers ("6.2.1 Device Identification"); 16-bit ids, 8-bit revision.

    ``class_code`` is (base class, sub-class, prog-if), e.g. (0x00, 0xFF, 0x00). Raises ValueError for a value
    that does not fit its register.
    """

    vendor_id: int
    device_id: int
    subsystem_vendor_id: int
    subsystem_id: int
    class_code: tuple[int, int, int]
    revision: int

    def __post_init__(self) -> None:
        ids = (self.vendor_id, self.device_id, self.subsystem_vendor_id, self.subsystem_id)
        if not all(0 <= v <= 0xFFFF for v in ids) or len(self.class_code) != 3 \
                or not all(0 <= v <= 0xFF for v in (*self.class_code, self.revision)):
            raise ValueError(f"{self}: ids are 16-bit, class code bytes and revision 8-bit")


BarHandler = Callable[[int, int, bytes | None], bytes | None]
"""``handler(offset, size, data)``: a read (``data`` None) returns ``size`` bytes; a write returns None."""


@dataclass(frozen=True)
class Bar:
    """A 32-bit non-prefetchable memory BAR ``index`` (0..5) of ``size`` bytes (a power of two, 16 B..2 GiB).

    ``handler`` serves its accesses; None for the BAR that holds only the MSI-X table and PBA, which the
    function serves itself.
    """

    index: int
    size: int
    handler: BarHandler | None

    def __post_init__(self) -> None:
        if not 0 <= self.index < PCI_NUM_BARS:
            raise ValueError(f"BAR {self.index}: a type-0 function has BARs 0 to 5")
        if self.size < 16 or self.size > 1 << 31 or self.size & (self.size - 1):
            raise ValueError(f"BAR {self.index} of {self.size:#x} bytes: a 32-bit memory BAR is a power of two "
                             "from 16 bytes to 2 GiB")


@dataclass(frozen=True)
class PciCfgWindow:
    """Stands in the capability list for the virtio PCI configuration access capability, which the function
    builds (``struct virtio_pci_cfg_cap``, 20 bytes, window fields 0) and serves itself."""


class PciFunction:
    """The config space, BARs and interrupts of one PCI function (layout and rules: the module docstring).

    ``capabilities`` are capability images (their Next Pointer byte is overwritten) or one
    :class:`PciCfgWindow`; ``msix`` places the MSI-X table and PBA in a :class:`Bar` of ``bars`` whose handler
    is None. Raises ValueError for a layout that cannot be built (duplicate or missing BARs, capabilities that
    do not fit, a handler-less BAR that is not the MSI-X BAR, MSI-X structures outside their BAR).

    :attr:`cap_offsets` is where each capability landed, in the order given, then the MSI-X capability.
    ``note(check, detail)`` hears of the driver requirements broken in config space (see the module docstring).
    """

    def __init__(self, identity: PciIdentity, bars: Sequence[Bar], capabilities: Sequence[bytes | PciCfgWindow],
                 msix: MsixLayout, irq: IrqSink, note: Callable[[str, str], None] | None = None):
        self.identity = identity
        self._irq = irq
        self._note = note or (lambda _check, _detail: None)
        self._bars = {bar.index: bar for bar in bars}
        if len(self._bars) != len(bars):
            raise ValueError("two BARs with the same index")
        self._check_msix_bar(msix)
        self._msix = MsixTable(msix, irq.trigger_msix)
        self._window_at: int | None = None
        image, wmask = self._header()
        self.cap_offsets = self._place_capabilities(image, wmask, capabilities, msix)
        self._msix_at = self.cap_offsets[-1]
        wmask[self._msix_at + MSIX_MESSAGE_CONTROL + 1] = (MSIX_ENABLE | MSIX_FUNCTION_MASK) >> 8
        self._cfg = MaskedBytes(bytes(image), bytes(wmask))
        self._protected, self._structures = self._virtio_structures(image, wmask)
        self._intx_condition = False
        self._intx_client_masked = False
        self._intx_asserted = False

    # ---- construction ------------------------------------------------------------------------------
    def _check_msix_bar(self, msix: MsixLayout) -> None:
        for bar in self._bars.values():
            if bar.handler is None and bar.index != msix.bar:
                raise ValueError(f"BAR {bar.index} has no handler and does not hold the MSI-X table")
        bar = self._bars.get(msix.bar)
        if bar is None or bar.handler is not None:
            raise ValueError(f"the MSI-X BAR {msix.bar} must be one of the BARs, without a handler")
        for name, offset, size in (("table", msix.table_offset, msix.table_size),
                                   ("PBA", msix.pba_offset, msix.pba_size)):
            if offset + size > bar.size:
                raise ValueError(f"MSI-X {name} at {offset:#x}+{size:#x} outside BAR {bar.index} of {bar.size:#x}")

    def _header(self) -> tuple[bytearray, bytearray]:
        """The power-on image and write mask of config space with the type-0 header filled in."""
        ident = self.identity
        base, sub, prog_if = ident.class_code
        image = bytearray(PCI_CONFIG_SPACE_SIZE)
        PCI_TYPE0_HEADER.pack_into(image, 0, ident.vendor_id, ident.device_id, 0, PCI_STATUS_CAP_LIST,
                                   ident.revision, bytes([prog_if, sub, base]), 0, 0, 0, 0, *[0] * PCI_NUM_BARS,
                                   0, ident.subsystem_vendor_id, ident.subsystem_id, 0, PCI_CAPABILITIES_START,
                                   0, PCI_INTERRUPT_PIN_INTA, 0, 0)
        wmask = bytearray(PCI_CONFIG_SPACE_SIZE)
        struct.pack_into("<H", wmask, PCI_COMMAND, PCI_COMMAND_WRITABLE)
        for reg in (PCI_CACHE_LINE_SIZE, PCI_LATENCY_TIMER, PCI_INTERRUPT_LINE):
            wmask[reg] = 0xFF
        for bar in self._bars.values():
            struct.pack_into("<I", wmask, PCI_BASE_ADDRESS_0 + 4 * bar.index, ~(bar.size - 1) & 0xFFFFFFFF)
        return image, wmask

    def _place_capabilities(self, image: bytearray, wmask: bytearray, capabilities: Sequence[bytes | PciCfgWindow],
                            msix: MsixLayout) -> list[int]:
        msix_cap = caps.msix_cap(msix.vectors, msix.bar, msix.table_offset, msix.bar, msix.pba_offset)
        offsets, pos = [], PCI_CAPABILITIES_START
        for cap in [*capabilities, msix_cap]:
            if isinstance(cap, PciCfgWindow):
                if self._window_at is not None:
                    raise ValueError("more than one PCI configuration access capability")
                self._window_at = pos
                cap = caps.pci_cfg_cap()
                for field, width in ((caps.CFG_CAP_BAR, 1), (caps.CFG_CAP_OFFSET, 4), (caps.CFG_CAP_LENGTH, 4),
                                     (caps.CFG_CAP_DATA, 4)):
                    wmask[pos + field:pos + field + width] = b"\xff" * width
            if len(cap) < 2 or pos + len(cap) > PCI_CONFIG_SPACE_SIZE:
                raise ValueError(f"a capability of {len(cap)} bytes does not fit at {pos:#x} of config space")
            image[pos:pos + len(cap)] = cap
            offsets.append(pos)
            pos = (pos + len(cap) + 3) & ~3
        for here, following in zip(offsets, offsets[1:] + [0]):
            image[here + 1] = following
        return offsets

    @staticmethod
    def _virtio_structures(image: bytearray, wmask: bytearray) -> tuple[bytes, list[tuple[int, int, int]]]:
        """From the placed capabilities: which config space bytes belong to a virtio structure capability and are
        read-only (1 per byte), and the (bar, offset, length) of every structure of cfg_type 1..4."""
        protected = bytearray(PCI_CONFIG_SPACE_SIZE)
        structures = []
        pos = image[PCI_CAPABILITY_LIST]
        seen = set()
        while pos and pos not in seen and pos + 2 <= PCI_CONFIG_SPACE_SIZE:
            seen.add(pos)
            if image[pos] == caps.PCI_CAP_ID_VNDR:
                length = image[pos + 2]
                for i in range(pos, min(pos + length, PCI_CONFIG_SPACE_SIZE)):
                    protected[i] = 0 if wmask[i] else 1
                if length >= caps.VIRTIO_PCI_CAP.size and 1 <= image[pos + 3] <= 4:
                    _v, _n, _l, _t, bar, _id, offset, size = caps.VIRTIO_PCI_CAP.unpack_from(image, pos)
                    structures.append((bar, offset, size))
            pos = image[pos + 1]
        return bytes(protected), structures

    # ---- config space ------------------------------------------------------------------------------
    def config_access(self, offset: int, size: int, data: bytes | None) -> bytes | None:
        """A config space read (``data`` None: returns ``size`` bytes) or write of ``data`` at ``offset``.

        Any width and alignment inside the 256 bytes. A read that covers ``pci_cfg_data`` reads the BAR
        window first; a write that covers it writes the window after the other written bytes took effect.
        Raises OSError(EINVAL) for an access outside config space (or ``data`` not ``size`` bytes); errors of
        a BAR handler behind the configuration access window propagate.
        """
        _check_access("config space", offset, size, data, PCI_CONFIG_SPACE_SIZE)
        window = self._window_data_overlap(offset, size)
        if data is None:
            if window:
                self._window_read()
            out = bytearray(self._cfg.read(offset, size))
            if self._intx_condition and offset <= PCI_STATUS < offset + size:
                out[PCI_STATUS - offset] |= PCI_STATUS_INTERRUPT
            return bytes(out)
        if any(self._protected[offset:offset + size]):
            self._note("capability-written", f"{size}-byte config space write at {offset:#x} into a virtio "
                       "structure capability")
        self._cfg.write(offset, data)
        if overlap(offset, size, PCI_COMMAND, 2):
            self._update_intx()
        if overlap(offset, size, self._msix_at + MSIX_MESSAGE_CONTROL, 2):
            self._msix.set_control(self.msix_enabled, bool(self._message_control() & MSIX_FUNCTION_MASK))
            self._update_intx()
        if window:
            self._window_write()
        return None

    @property
    def msix_enabled(self) -> bool:
        """MSI-X Enable (Message Control bit 15) as the driver left it."""
        return bool(self._message_control() & MSIX_ENABLE)

    def _message_control(self) -> int:
        return struct.unpack("<H", self._cfg.read(self._msix_at + MSIX_MESSAGE_CONTROL, 2))[0]

    def _command(self) -> int:
        return struct.unpack("<H", self._cfg.read(PCI_COMMAND, 2))[0]

    # ---- BARs ----------------------------------------------------------------------------------------
    def bar_access(self, index: int, offset: int, size: int, data: bytes | None) -> bytes | None:
        """A read (``data`` None: returns ``size`` bytes) or write at ``offset`` of BAR ``index``.

        The MSI-X BAR is served here (table, PBA, zeros elsewhere); other BARs go to their handler.
        Raises OSError(EINVAL) for a BAR the function lacks or an access outside the BAR.
        """
        bar = self._bars.get(index)
        if bar is None:
            raise OSError(errno.EINVAL, f"no BAR {index}")
        _check_access(f"BAR {index}", offset, size, data, bar.size)
        if bar.handler is None:
            return self._msix.access(offset, size, data)
        return bar.handler(offset, size, data)

    # ---- the PCI configuration access capability ------------------------------------------------------
    def _window_data_overlap(self, offset: int, size: int) -> bool:
        return self._window_at is not None and bool(overlap(offset, size, self._window_at + caps.CFG_CAP_DATA, 4))

    def _window_target(self) -> tuple[int, int, int] | None:
        """(bar, offset, length) of the window if it is served, else None (and one debug line)."""
        at = self._window_at
        bar = self._cfg.read(at + caps.CFG_CAP_BAR, 1)[0]
        offset, length = struct.unpack("<II", self._cfg.read(at + caps.CFG_CAP_OFFSET, 8))
        window = f"bar={bar} offset={offset:#x} length={length}"
        if length and offset % length:
            self._note("cfg-window-unaligned", f"pci_cfg_data accessed through the window {window}")
        elif not any(b == bar and o <= offset and offset + length <= o + n for b, o, n in self._structures):
            self._note("cfg-window-outside", f"pci_cfg_data accessed through the window {window}, outside every "
                       "virtio structure")
        target = self._bars.get(bar)
        if target and length in CFG_WINDOW_LENGTHS and offset % length == 0 and offset + length <= target.size:
            return bar, offset, length
        log.debug("PCI configuration access window bar=%d offset=%#x length=%d not served (a BAR of the "
                  "function, length 1/2/4, offset aligned to it, inside the BAR)", bar, offset, length)
        return None

    def _window_read(self) -> None:
        data_at = self._window_at + caps.CFG_CAP_DATA
        target = self._window_target()
        if target is None:
            self._cfg.store(data_at, bytes(4))
            return
        bar, offset, length = target
        self._cfg.store(data_at, self.bar_access(bar, offset, length, None))

    def _window_write(self) -> None:
        target = self._window_target()
        if target is not None:
            bar, offset, length = target
            self.bar_access(bar, offset, length, self._cfg.read(self._window_at + caps.CFG_CAP_DATA, length))

    # ---- interrupts ----------------------------------------------------------------------------------
    def signal_msix(self, vector: int) -> None:
        """The function wants MSI-X vector ``vector``: sent through the IrqSink, or its Pending Bit set while the
        Function Mask or the entry's Mask Bit holds it; nothing while MSI-X is disabled (use :meth:`set_intx`)
        or for a vector outside the table (VIRTIO_MSI_NO_VECTOR 0xFFFF included)."""
        self._msix.signal(vector)

    def set_intx(self, level: bool) -> None:
        """The function's INTx interrupt condition (level-triggered): Status bit 3, and the line if enabled."""
        self._intx_condition = bool(level)
        self._update_intx()

    def intx_client_mask(self, masked: bool) -> None:
        """The client's SET_IRQS MASK (True) or UNMASK (False) on the INTx index; UNMASK resamples the line."""
        self._intx_client_masked = bool(masked)
        self._update_intx(resample=not masked)

    def _update_intx(self, resample: bool = False) -> None:
        asserted = (self._intx_condition and not self._command() & PCI_COMMAND_INTX_DISABLE
                    and not self._intx_client_masked and not self.msix_enabled)
        if asserted and (resample or not self._intx_asserted):
            self._irq.trigger_intx()
        self._intx_asserted = asserted

    # ---- reset ---------------------------------------------------------------------------------------
    def reset(self) -> None:
        """PCI function reset (VFIO_USER_DEVICE_RESET): the power-on state. Command 0, BAR addresses 0, Cache
        Line Size, Latency Timer and Interrupt Line 0, configuration access window fields 0, MSI-X disabled and
        unmasked with its table cleared (TD-MSIX-RESET) and PBA clear, INTx condition and client mask clear."""
        self._cfg.reset()
        self._msix.reset()
        self._intx_condition = self._intx_client_masked = self._intx_asserted = False


def _check_access(what: str, offset: int, size: int, data: bytes | None, limit: int) -> None:
    if offset < 0 or size < 0 or offset + size > limit:
        raise OSError(errno.EINVAL, f"{size} bytes at {offset:#x} outside {what} ({limit:#x} bytes)")
    if data is not None and len(data) != size:
        raise OSError(errno.EINVAL, f"{what} write of {len(data)} bytes announced as {size}")
