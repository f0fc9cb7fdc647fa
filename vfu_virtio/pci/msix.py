"""The MSI-X table and Pending Bit Array of one PCI function, and when a vector is delivered or held pending.

Source: PCI Local Bus 3.0, 6.8.2 "MSI-X Capability and Table Structure". The capability itself (Message
Control) lives in config space, owned by :mod:`vfu_virtio.pci.function`, which hands its Enable and Function
Mask bits to :meth:`MsixTable.set_control`.

Table (at ``table_offset`` in the MSI-X BAR): ``vectors`` entries of 16 bytes, each

    0 Message Address le32   4 Message Upper Address le32   8 Message Data le32   12 Vector Control le32

all read/write except Vector Control, where only bit 0 (Mask Bit) is writable and the rest reads 0.
PBA (at ``pba_offset``): one Pending Bit per vector (vector n is bit n % 64 of le64 QWORD n // 64),
``ceil(vectors / 64) * 8`` bytes, read-only. Other offsets of the MSI-X BAR read 0 and ignore writes.

Entries reset with the Mask Bit clear, not set as PCI says: decision TD-MSIX-RESET in
:mod:`vfu_virtio.pci.function`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .registers import MaskedBytes, overlap

MSIX_TABLE_ENTRY_SIZE = 16
MSIX_TABLE_SIZE_MAX = 2048  # Table Size is 11 bits: N - 1 <= 0x7FF
MSIX_VECTOR_CONTROL = 12  # offset inside a table entry
MSIX_VECTOR_MASKED = 0x1  # Vector Control bit 0: Mask Bit
# writable bits of one table entry: address, upper address and data whole; Vector Control bit 0 only
MSIX_ENTRY_WMASK = b"\xff" * 12 + bytes([MSIX_VECTOR_MASKED, 0, 0, 0])


@dataclass(frozen=True)
class MsixLayout:
    """Where the MSI-X structures live: ``vectors`` entries (1..2048), all in BAR ``bar`` (0..5), the table at
    byte offset ``table_offset`` and the PBA at ``pba_offset`` (both multiples of 8: the low 3 bits of the
    capability's Table/PBA Offset registers hold the BIR). Raises ValueError otherwise."""

    vectors: int
    bar: int
    table_offset: int
    pba_offset: int

    def __post_init__(self) -> None:
        if not 1 <= self.vectors <= MSIX_TABLE_SIZE_MAX:
            raise ValueError(f"MSI-X with {self.vectors} vectors: a table holds 1 to {MSIX_TABLE_SIZE_MAX}")
        if not 0 <= self.bar <= 5:
            raise ValueError(f"MSI-X in BAR {self.bar}: a type-0 function has BARs 0 to 5")
        for name, offset in (("table", self.table_offset), ("PBA", self.pba_offset)):
            if offset < 0 or offset % 8 or offset > 0xFFFFFFF8:
                raise ValueError(f"MSI-X {name} offset {offset:#x} is not a 32-bit multiple of 8")
        if overlap(self.table_offset, self.table_size, self.pba_offset, self.pba_size):
            raise ValueError("MSI-X table and PBA overlap")

    @property
    def table_size(self) -> int:
        """Bytes of the table: 16 per vector."""
        return self.vectors * MSIX_TABLE_ENTRY_SIZE

    @property
    def pba_size(self) -> int:
        """Bytes of the PBA: one le64 QWORD per 64 vectors."""
        return (self.vectors + 63) // 64 * 8


class MsixTable:
    """Table, PBA and delivery of one function's MSI-X vectors; ``trigger(vector)`` sends a message.

    Delivery rule ("MSI-X Capability and Table Structure"): a vector signalled while MSI-X is enabled is sent at
    once unless the Function Mask or its entry's Mask Bit is set; then its Pending Bit is set instead, and it is
    sent (and the bit cleared) as soon as neither mask holds it any more.
    """

    def __init__(self, layout: MsixLayout, trigger: Callable[[int], None]):
        self.layout = layout
        self._trigger = trigger
        self._table = MaskedBytes(bytes(layout.table_size), MSIX_ENTRY_WMASK * layout.vectors)
        self._pending = 0  # bit n: vector n pending
        self.enabled = False
        self.function_masked = False

    def reset(self) -> None:
        """Table entries zero (Mask Bit clear, TD-MSIX-RESET), PBA clear, MSI-X disabled and unmasked."""
        self._table.reset()
        self._pending = 0
        self.enabled = False
        self.function_masked = False

    def set_control(self, enabled: bool, function_masked: bool) -> None:
        """Message Control's MSI-X Enable and Function Mask bits as the driver left them."""
        self.enabled, self.function_masked = enabled, function_masked
        self._deliver_pending()

    def signal(self, vector: int) -> None:
        """The function wants ``vector``: sent, held pending, or (MSI-X disabled, or no such vector) dropped."""
        if not self.enabled or not 0 <= vector < self.layout.vectors:
            return
        if self.function_masked or self._entry_masked(vector):
            self._pending |= 1 << vector
        else:
            self._trigger(vector)

    def access(self, offset: int, size: int, data: bytes | None) -> bytes | None:
        """A read (``data`` None: returns ``size`` bytes) or write at ``offset`` of the MSI-X BAR.

        Accesses of any width and alignment are served byte-wise; the caller checks the BAR bounds.
        """
        lay = self.layout
        table = overlap(offset, size, lay.table_offset, lay.table_size)
        if data is not None:
            if table:
                start, end = table
                self._table.write(start - lay.table_offset, data[start - offset:end - offset])
                self._deliver_pending()
            return None
        out = bytearray(size)
        if table:
            start, end = table
            out[start - offset:end - offset] = self._table.read(start - lay.table_offset, end - start)
        pba = overlap(offset, size, lay.pba_offset, lay.pba_size)
        if pba:
            start, end = pba
            bits = self._pending.to_bytes(lay.pba_size, "little")
            out[start - offset:end - offset] = bits[start - lay.pba_offset:end - lay.pba_offset]
        return bytes(out)

    def _entry_masked(self, vector: int) -> bool:
        control = self._table.read(vector * MSIX_TABLE_ENTRY_SIZE + MSIX_VECTOR_CONTROL, 1)[0]
        return bool(control & MSIX_VECTOR_MASKED)

    def _deliver_pending(self) -> None:
        if not self.enabled or self.function_masked or not self._pending:
            return
        for vector in range(self.layout.vectors):
            if self._pending >> vector & 1 and not self._entry_masked(vector):
                self._pending &= ~(1 << vector)
                self._trigger(vector)
