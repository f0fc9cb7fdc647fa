"""PciFunction with plain calls (no socket): config space bytes, BAR sizing, INTx, MSI-X, the PCI configuration
access capability and reset.

Expected bytes are written here from the specifications' tables, not from the structs the code packs with:
PCI Local Bus 3.0 6.1 "Configuration Space Organization" (type-0 header), 6.2.2 "Device Control", 6.2.3
"Device Status", 6.2.5 "Base Addresses", 6.8.2 "MSI-X Capability and Table Structure"; virtio v1.4 "Virtio
Structure PCI Capabilities" and "PCI configuration access capability". The function is set up as the project's
crypto device with 4 queues (5 MSI-X vectors, 56 bytes of device configuration).
"""
from __future__ import annotations

import logging
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vfu_virtio.pci import capabilities as caps
from vfu_virtio.pci.function import Bar, PciCfgWindow, PciFunction, PciIdentity
from vfu_virtio.pci.msix import MsixLayout

VECTORS = 5
TABLE, PBA = 0x000, 0x800  # in BAR2
MSIX_CTRL = 0x9A  # Message Control of the MSI-X capability at 0x98
WINDOW = 0x84  # struct virtio_pci_cfg_cap

# The whole power-on config space, from the spec tables.
HEADER = bytes.fromhex(
    "f41a 5410"        # 0x00 Vendor ID 0x1AF4, Device ID 0x1054 (0x1040 + virtio-crypto 20)
    "0000 1000"        # 0x04 Command 0; Status: bit 4 Capabilities List
    "01 00 ff 00"      # 0x08 Revision ID 1; Class Code: prog-if 0x00, sub-class 0xFF, base class 0x00
    "00 00 00 00"      # 0x0C Cache Line Size, Latency Timer, Header Type 0, BIST
    "00000000 00000000 00000000 00000000 00000000 00000000"  # 0x10 BAR0..5: memory, 32-bit, address 0
    "00000000"         # 0x28 CardBus CIS Pointer
    "f41a 0011"        # 0x2C Subsystem Vendor ID 0x1AF4, Subsystem ID 0x1100
    "00000000"         # 0x30 Expansion ROM Base Address
    "40 000000 00000000"  # 0x34 Capabilities Pointer 0x40, reserved
    "00 01 00 00"      # 0x3C Interrupt Line 0, Interrupt Pin 1 (INTA#), Min_Gnt, Max_Lat
)
CAPS = bytes.fromhex(
    # 0x40 virtio_pci_cap: cap_vndr 0x09, cap_next 0x50, cap_len 16, cfg_type 1 (common), bar 0, id 0, padding,
    #      offset 0x0000, length 0x40
    "09 50 10 01 00 00 0000 00000000 40000000"
    # 0x50 virtio_pci_notify_cap: cfg_type 2, offset 0x3000, length 16, notify_off_multiplier 4
    "09 64 14 02 00 00 0000 00300000 10000000 04000000"
    # 0x64 ISR: cfg_type 3, offset 0x1000, length 1
    "09 74 10 03 00 00 0000 00100000 01000000"
    # 0x74 device configuration: cfg_type 4, offset 0x2000, length 56
    "09 84 10 04 00 00 0000 00200000 38000000"
    # 0x84 virtio_pci_cfg_cap: cfg_type 5, bar 0, offset 0, length 0, pci_cfg_data 0
    "09 98 14 05 00 00 0000 00000000 00000000 00000000"
    # 0x98 MSI-X: cap id 0x11, next 0, Message Control 0x0004 (Table Size N-1 = 4, disabled, unmasked),
    #      Table Offset/BIR 0x000|2, PBA Offset/BIR 0x800|2
    "11 00 0400 02000000 02080000"
)
POWER_ON = HEADER + CAPS + bytes(256 - 0x40 - len(CAPS))

# Writable bits of each byte (the spec's RW fields); everything else must keep its power-on value.
WRITABLE = bytearray(256)
WRITABLE[0x04:0x06] = b"\x06\x05"          # Command: Memory Space, Bus Master | SERR#, Interrupt Disable
WRITABLE[0x0C] = WRITABLE[0x0D] = 0xFF     # Cache Line Size, Latency Timer
WRITABLE[0x10:0x14] = b"\x00\xc0\xff\xff"  # BAR0, 16 KiB: address bits 31..14
WRITABLE[0x18:0x1C] = b"\x00\xf0\xff\xff"  # BAR2, 4 KiB: address bits 31..12
WRITABLE[0x3C] = 0xFF                      # Interrupt Line
WRITABLE[WINDOW + 4] = 0xFF                # cap.bar
WRITABLE[WINDOW + 8:WINDOW + 20] = b"\xff" * 12  # cap.offset, cap.length, pci_cfg_data
WRITABLE[MSIX_CTRL + 1] = 0xC0             # Message Control: Function Mask, MSI-X Enable


class Recorder:
    """IrqSink: records every trigger in order."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def trigger_msix(self, vector: int) -> None:
        self.calls.append(("msix", vector))

    def trigger_intx(self) -> None:
        self.calls.append(("intx",))

    def take(self) -> list[tuple]:
        calls, self.calls = self.calls, []
        return calls


class Registers:
    """BAR0 handler: 16 KiB of plain registers; records every access."""

    def __init__(self) -> None:
        self.mem = bytearray(0x4000)
        self.accesses: list[tuple] = []

    def __call__(self, offset: int, size: int, data: bytes | None) -> bytes | None:
        self.accesses.append((offset, size, data))
        if data is None:
            return bytes(self.mem[offset:offset + size])
        self.mem[offset:offset + size] = data
        return None


def make(irq: Recorder | None = None, bar0: Registers | None = None) -> PciFunction:
    ident = PciIdentity(vendor_id=0x1AF4, device_id=0x1054, subsystem_vendor_id=0x1AF4, subsystem_id=0x1100,
                        class_code=(0x00, 0xFF, 0x00), revision=1)
    capabilities = [caps.virtio_cap(1, 0, 0x0000, 0x40), caps.notify_cap(0, 0x3000, 16, 4),
                    caps.virtio_cap(3, 0, 0x1000, 1), caps.virtio_cap(4, 0, 0x2000, 56), PciCfgWindow()]
    return PciFunction(ident, [Bar(0, 0x4000, bar0 or Registers()), Bar(2, 0x1000, None)], capabilities,
                       MsixLayout(vectors=VECTORS, bar=2, table_offset=TABLE, pba_offset=PBA), irq or Recorder())


@pytest.fixture
def irq() -> Recorder:
    return Recorder()


@pytest.fixture
def bar0() -> Registers:
    return Registers()


@pytest.fixture
def fn(irq, bar0) -> PciFunction:
    return make(irq, bar0)


def cfg(fn: PciFunction, offset: int, size: int) -> int:
    return int.from_bytes(fn.config_access(offset, size, None), "little")


def write(fn: PciFunction, offset: int, value: int, size: int) -> None:
    fn.config_access(offset, size, value.to_bytes(size, "little"))


def status(fn: PciFunction) -> int:
    return cfg(fn, 0x06, 2)


def pba(fn: PciFunction) -> bytes:
    return fn.bar_access(2, PBA, 8, None)


def enable_msix(fn: PciFunction, masked: bool = False) -> None:
    write(fn, MSIX_CTRL, 0x8000 | (0x4000 if masked else 0), 2)


def readonly_changes(before: bytes, after: bytes) -> list[int]:
    """Offsets where a bit outside WRITABLE differs (Status bit 3 excluded: it follows the INTx condition)."""
    changed = []
    for i, (a, b) in enumerate(zip(before, after)):
        diff = (a ^ b) & ~WRITABLE[i]
        if i == 0x06:
            diff &= ~0x08
        if diff:
            changed.append(i)
    return changed


# ---- config space image -------------------------------------------------------------------------------
def test_power_on_config_space_is_the_spec_image(fn):
    assert fn.config_access(0, 256, None) == POWER_ON
    assert fn.cap_offsets == [0x40, 0x50, 0x64, 0x74, 0x84, 0x98]
    assert not fn.msix_enabled


def test_capabilities_are_packed_4_byte_aligned_and_linked():
    odd = bytes([0x09, 0xEE, 5, 0xAA, 0xBB])  # 5 bytes, a bogus cap_next
    f = PciFunction(PciIdentity(1, 2, 3, 4, (5, 6, 7), 8), [Bar(4, 32, None)], [odd, odd],
                    MsixLayout(vectors=1, bar=4, table_offset=0, pba_offset=16), Recorder())
    image = f.config_access(0, 256, None)
    assert f.cap_offsets == [0x40, 0x48, 0x50]
    assert image[0x34] == 0x40
    assert image[0x40:0x45] == bytes([0x09, 0x48, 5, 0xAA, 0xBB])
    assert image[0x48:0x4D] == bytes([0x09, 0x50, 5, 0xAA, 0xBB])
    assert image[0x50:0x5C] == bytes.fromhex("11 00 0000 04000000 14000000")  # 1 vector, BIR 4
    assert image[0x00:0x0C] == bytes.fromhex("0100 0200 0000 1000 08 07 06 05")
    assert image[0x2C:0x30] == bytes.fromhex("0300 0400")


@pytest.mark.parametrize("kwargs,match", [
    (dict(bars=[Bar(0, 0x4000, None), Bar(2, 0x1000, None)]), "has no handler"),
    (dict(bars=[Bar(2, 0x1000, Registers())]), "MSI-X BAR 2"),
    (dict(bars=[Bar(2, 0x1000, None), Bar(2, 0x1000, None)]), "same index"),
    (dict(bars=[Bar(2, 0x40, None)]), "MSI-X table"),
    (dict(capabilities=[bytes(200)]), "does not fit"),
    (dict(capabilities=[PciCfgWindow(), PciCfgWindow()]), "more than one"),
])
def test_impossible_layouts_are_refused(kwargs, match):
    args = dict(identity=PciIdentity(1, 2, 3, 4, (5, 6, 7), 8), bars=[Bar(2, 0x1000, None)], capabilities=[],
                msix=MsixLayout(vectors=VECTORS, bar=2, table_offset=TABLE, pba_offset=PBA), irq=Recorder())
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        PciFunction(**args)


@pytest.mark.parametrize("fields", [dict(vendor_id=0x10000), dict(subsystem_id=-1), dict(revision=0x100),
                                    dict(class_code=(0, 0x100, 0)), dict(class_code=(0, 0))])
def test_identity_values_must_fit_their_registers(fields):
    args = dict(vendor_id=1, device_id=2, subsystem_vendor_id=3, subsystem_id=4, class_code=(5, 6, 7), revision=8)
    with pytest.raises(ValueError, match="16-bit"):
        PciIdentity(**(args | fields))


@pytest.mark.parametrize("size", [0, 8, 24, 1 << 32])
def test_bar_sizes_must_be_powers_of_two_of_a_32_bit_bar(size):
    with pytest.raises(ValueError, match="power of two"):
        Bar(0, size, None)


@pytest.mark.parametrize("layout", [dict(vectors=0), dict(vectors=2049), dict(bar=6), dict(table_offset=4),
                                    dict(pba_offset=0x10)])
def test_msix_layouts_are_checked(layout):
    args = dict(vectors=VECTORS, bar=2, table_offset=TABLE, pba_offset=PBA) | layout
    with pytest.raises(ValueError):
        MsixLayout(**args)


# ---- header registers ----------------------------------------------------------------------------------
@pytest.mark.parametrize("reg,expect", [(0x10, 0xFFFFC000), (0x18, 0xFFFFF000),
                                        (0x14, 0), (0x1C, 0), (0x20, 0), (0x24, 0), (0x30, 0)])
def test_bar_sizing(fn, reg, expect):
    write(fn, reg, 0xFFFFFFFF, 4)
    assert cfg(fn, reg, 4) == expect  # ~(size - 1), type bits 0 (memory, 32-bit, non-prefetchable)


def test_bar_address_keeps_only_address_bits(fn):
    write(fn, 0x10, 0xFEBF1234, 4)
    write(fn, 0x18, 0xFEBF5678, 4)
    assert fn.config_access(0x10, 12, None) == bytes.fromhex("0000bffe 00000000 0050bffe")


def test_one_byte_write_to_command_high_byte(fn):
    fn.config_access(0x05, 1, b"\x04")  # libvfio-user refuses this one: "bad write to PCI config space 0x5-0x5"
    assert cfg(fn, 0x04, 2) == 0x0400
    fn.config_access(0x05, 1, b"\xff")
    assert cfg(fn, 0x04, 2) == 0x0500  # SERR# Enable and Interrupt Disable only
    fn.config_access(0x04, 1, b"\xff")
    assert fn.config_access(0x04, 2, None) == b"\x06\x05"  # Memory Space, Bus Master | SERR#, Interrupt Disable


def test_command_and_status_as_one_dword(fn):
    write(fn, 0x04, 0xFFFFFFFF, 4)
    assert cfg(fn, 0x04, 4) == 0x0010_0506  # Status RW1C bits ignore the ones; Command keeps its writable bits
    write(fn, 0x04, 0, 4)
    assert cfg(fn, 0x04, 4) == 0x0010_0000


@pytest.mark.parametrize("offset,size", [(0x01, 3), (0x03, 2), (0x07, 1), (0x0B, 2), (0x33, 2), (0x3B, 4),
                                         (0x97, 5), (0xFF, 1), (0x00, 256)])
def test_reads_of_any_width_and_alignment(fn, offset, size):
    assert fn.config_access(offset, size, None) == POWER_ON[offset:offset + size]


def test_writable_bytes_at_odd_offsets(fn):
    fn.config_access(0x0B, 4, b"\x55\x20\x40\x80")  # base class (RO), Cache Line Size, Latency Timer, Header Type (RO)
    fn.config_access(0x3B, 3, b"\x77\x0b\x05")      # reserved (RO), Interrupt Line, Interrupt Pin (RO)
    assert fn.config_access(0x08, 8, None) == bytes.fromhex("01 00 ff 00 20 40 00 00")
    assert fn.config_access(0x3B, 3, None) == b"\x00\x0b\x01"


def test_read_only_fields_ignore_writes(fn):
    fn.config_access(0, 256, b"\xff" * 256)
    after = fn.config_access(0, 256, None)
    assert readonly_changes(POWER_ON, after) == []
    # every writable bit took the one: the mask written from the spec is exactly what the function allows
    expect = bytes(p | w for p, w in zip(POWER_ON, WRITABLE))
    window_data = slice(WINDOW + 16, WINDOW + 20)  # read back through the (refused, bar 0xff) window: zeros
    assert after[:WINDOW + 16] == expect[:WINDOW + 16] and after[WINDOW + 20:] == expect[WINDOW + 20:]
    assert after[window_data] == bytes(4)


def test_readonly_checker_negative_control():
    changed = bytearray(POWER_ON)
    changed[0x00] ^= 0x01   # Vendor ID
    changed[0x9A] ^= 0x01   # Table Size
    changed[0x04] ^= 0x02   # Memory Space: writable, not reported
    assert readonly_changes(POWER_ON, bytes(changed)) == [0x00, 0x9A]


def test_accesses_outside_config_space_are_errors(fn):
    for offset, size in ((0xFF, 2), (0x100, 1), (-1, 1)):
        with pytest.raises(OSError) as e:
            fn.config_access(offset, size, None)
        assert e.value.errno == 22  # EINVAL
    with pytest.raises(OSError):
        fn.config_access(0x04, 2, b"\x00")  # data shorter than the access
    assert fn.config_access(0, 256, None) == POWER_ON


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 255).flatmap(
    lambda off: st.tuples(st.just(off), st.binary(min_size=1, max_size=min(8, 256 - off)))), max_size=40))
def test_any_config_writes_keep_read_only_bits(writes):
    irq, regs = Recorder(), Registers()
    f = make(irq, regs)
    for offset, data in writes:
        f.config_access(offset, len(data), data)
    assert readonly_changes(POWER_ON, f.config_access(0, 256, None)) == []
    assert irq.calls == []  # no INTx condition, no MSI-X signal: nothing to deliver


# ---- INTx ----------------------------------------------------------------------------------------------
def test_intx_condition_sets_status_bit_3_and_triggers_once(fn, irq):
    fn.set_intx(True)
    assert status(fn) == 0x0018
    assert fn.config_access(0x06, 1, None) == b"\x18"
    assert irq.take() == [("intx",)]
    fn.set_intx(True)  # still the same level
    assert irq.take() == []
    fn.set_intx(False)
    assert status(fn) == 0x0010
    fn.set_intx(True)
    assert irq.take() == [("intx",)]


def test_interrupt_disable_blocks_delivery_but_not_status(fn, irq):
    write(fn, 0x04, 0x0400, 2)
    fn.set_intx(True)
    assert irq.take() == []
    assert status(fn) & 0x08
    write(fn, 0x04, 0x0006, 2)  # Interrupt Disable cleared while the condition holds: re-delivered
    assert irq.take() == [("intx",)]
    write(fn, 0x04, 0x0002, 2)  # a Command write that leaves Interrupt Disable clear: no new edge
    assert irq.take() == []


def test_client_mask_and_unmask(fn, irq):
    fn.intx_client_mask(True)
    fn.set_intx(True)
    assert irq.take() == [] and status(fn) & 0x08
    fn.intx_client_mask(False)
    assert irq.take() == [("intx",)]
    fn.intx_client_mask(False)  # UNMASK after EOI while the condition holds: the client resamples the line
    assert irq.take() == [("intx",)]
    fn.set_intx(False)
    fn.intx_client_mask(False)
    assert irq.take() == []


def test_uio_pci_generic_sequence(fn, irq):
    """Linux uio_pci_generic: claim the interrupt only when Status bit 3 is set, then set Interrupt Disable;
    user space handles the device and clears Interrupt Disable to wait for the next one."""
    write(fn, 0x04, 0x0006, 2)  # driver enabled memory and bus mastering
    assert not status(fn) & 0x08  # a shared-line interrupt that is not ours: not claimed
    fn.set_intx(True)
    assert irq.take() == [("intx",)]
    assert status(fn) & 0x08  # ours
    write(fn, 0x04, cfg(fn, 0x04, 2) | 0x0400, 2)
    assert irq.take() == []
    fn.set_intx(False)  # user space serviced the device
    write(fn, 0x04, cfg(fn, 0x04, 2) & ~0x0400, 2)
    assert irq.take() == [] and not status(fn) & 0x08
    fn.set_intx(True)  # the next interrupt
    assert irq.take() == [("intx",)]


def test_msix_enable_switches_intx_off(fn, irq):
    enable_msix(fn)
    fn.set_intx(True)
    assert irq.take() == [] and status(fn) & 0x08
    write(fn, MSIX_CTRL, 0x0000, 2)  # MSI-X disabled with the condition still set: INTx asserted
    assert irq.take() == [("intx",)]
    enable_msix(fn)
    fn.intx_client_mask(False)
    assert irq.take() == []


# ---- MSI-X ---------------------------------------------------------------------------------------------
def test_message_control_writable_bits(fn):
    write(fn, MSIX_CTRL, 0xFFFF, 2)
    assert cfg(fn, MSIX_CTRL, 2) == 0xC004  # Enable, Function Mask; Table Size stays N-1 = 4
    assert fn.msix_enabled
    write(fn, 0x9C, 0xFFFFFFFF, 4)
    write(fn, 0xA0, 0, 4)
    assert fn.config_access(0x98, 12, None) == bytes.fromhex("11 00 04c0 02000000 02080000")


def test_signal_msix_while_disabled_does_nothing(fn, irq):
    fn.signal_msix(1)
    assert irq.take() == [] and pba(fn) == bytes(8)


def test_signal_msix_delivers_and_drops_unknown_vectors(fn, irq):
    enable_msix(fn)
    for vector in (0, 4, 5, 0xFFFF, -1):
        fn.signal_msix(vector)
    assert irq.take() == [("msix", 0), ("msix", 4)]
    assert pba(fn) == bytes(8)


def test_function_mask_holds_vectors_pending(fn, irq):
    enable_msix(fn, masked=True)
    fn.signal_msix(1)
    fn.signal_msix(3)
    fn.signal_msix(3)
    assert irq.take() == []
    assert pba(fn) == bytes.fromhex("0a00000000000000")
    enable_msix(fn, masked=False)
    assert irq.take() == [("msix", 1), ("msix", 3)]
    assert pba(fn) == bytes(8)
    enable_msix(fn, masked=False)
    assert irq.take() == []


def test_vector_mask_holds_one_vector(fn, irq):
    enable_msix(fn)
    fn.bar_access(2, TABLE + 2 * 16 + 12, 4, b"\x01\x00\x00\x00")  # entry 2 Vector Control: Mask Bit
    fn.signal_msix(2)
    fn.signal_msix(1)
    assert irq.take() == [("msix", 1)]
    assert pba(fn) == bytes.fromhex("0400000000000000")
    fn.bar_access(2, TABLE + 2 * 16 + 12, 1, b"\x00")
    assert irq.take() == [("msix", 2)]
    assert pba(fn) == bytes(8)


def test_pending_survives_an_entry_unmask_under_function_mask(fn, irq):
    fn.bar_access(2, TABLE + 12, 4, b"\x01\x00\x00\x00")
    enable_msix(fn, masked=True)
    fn.signal_msix(0)
    fn.bar_access(2, TABLE + 12, 4, bytes(4))  # the Function Mask still holds it
    assert irq.take() == [] and pba(fn)[0] == 0x01
    fn.bar_access(2, PBA, 8, bytes(8))  # the PBA is read-only
    assert pba(fn)[0] == 0x01
    enable_msix(fn)
    assert irq.take() == [("msix", 0)]


def test_table_entries(fn):
    assert fn.bar_access(2, TABLE, VECTORS * 16, None) == bytes(VECTORS * 16)  # TD-MSIX-RESET: unmasked
    entry = bytes.fromhex("0000e0fe 00000000 21400000 ffffffff")  # address 0xFEE00000, data 0x4021
    fn.bar_access(2, TABLE + 16, 16, entry)
    assert fn.bar_access(2, TABLE + 16, 16, None) == bytes.fromhex("0000e0fe 00000000 21400000 01000000")
    fn.bar_access(2, TABLE + 16 + 9, 3, b"\xaa\xbb\xcc")  # unaligned, inside Message Data
    assert fn.bar_access(2, TABLE + 16 + 8, 4, None) == bytes.fromhex("21aabbcc")


def test_rest_of_the_msix_bar_reads_zero(fn):
    end = TABLE + VECTORS * 16
    fn.bar_access(2, end, 16, b"\xff" * 16)
    fn.bar_access(2, 0xFF0, 16, b"\xff" * 16)
    assert fn.bar_access(2, end - 4, 8, None) == bytes(8)
    assert fn.bar_access(2, 0x400, 4, None) == bytes(4)
    assert fn.bar_access(2, 0xFF0, 16, None) == bytes(16)


def test_bar_accesses_are_bounded(fn, bar0):
    with pytest.raises(OSError):
        fn.bar_access(2, 0xFFE, 4, None)
    with pytest.raises(OSError):
        fn.bar_access(1, 0, 4, None)
    with pytest.raises(OSError):
        fn.bar_access(0, 0x4000, 1, b"\x00")
    assert bar0.accesses == []
    bar0.mem[0x10:0x14] = b"\x01\x02\x03\x04"
    assert fn.bar_access(0, 0x10, 4, None) == b"\x01\x02\x03\x04"
    fn.bar_access(0, 0x20, 2, b"\x05\x06")
    assert bar0.accesses == [(0x10, 4, None), (0x20, 2, b"\x05\x06")]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 0xFFF), st.binary(min_size=1, max_size=16)), max_size=30))
def test_any_msix_bar_writes_keep_reserved_bits_and_pba(writes):
    f = make()
    for offset, data in writes:
        data = data[:0x1000 - offset]
        f.bar_access(2, offset, len(data), data)
    table = f.bar_access(2, TABLE, VECTORS * 16, None)
    for n in range(VECTORS):
        assert table[n * 16 + 12] & 0xFE == 0 and table[n * 16 + 13:n * 16 + 16] == bytes(3)
    assert f.bar_access(2, VECTORS * 16, 0x1000 - VECTORS * 16, None) == bytes(0x1000 - VECTORS * 16)


# ---- PCI configuration access capability ---------------------------------------------------------------
def set_window(fn: PciFunction, bar: int, offset: int, length: int) -> None:
    fn.config_access(WINDOW + 4, 1, bytes([bar]))
    fn.config_access(WINDOW + 8, 8, struct.pack("<II", offset, length))


def test_window_read_goes_through_the_bar_handler(fn, bar0):
    bar0.mem[16:24] = bytes.fromhex("1122 0400 3344 5566")
    set_window(fn, 0, 18, 2)
    assert fn.config_access(WINDOW + 16, 2, None) == bytes.fromhex("0400")
    assert bar0.accesses == [(18, 2, None)]
    assert fn.config_access(WINDOW + 4, 16, None) == bytes.fromhex("00 000000 12000000 02000000 0400 0000")
    set_window(fn, 0, 23, 1)
    assert fn.config_access(WINDOW + 16, 4, None) == bytes.fromhex("66 00 0000")


def test_window_write_goes_through_the_bar_handler(fn, bar0):
    set_window(fn, 0, 8, 4)
    fn.config_access(WINDOW + 16, 4, bytes.fromhex("deadbeef"))
    assert bar0.mem[8:12] == bytes.fromhex("deadbeef")
    set_window(fn, 0, 2, 2)
    fn.config_access(WINDOW + 16, 4, bytes.fromhex("aabbccdd"))  # the first cap.length bytes
    assert bar0.mem[0:4] == bytes.fromhex("0000aabb")
    assert [a for a in bar0.accesses if a[2] is not None] == [(8, 4, bytes.fromhex("deadbeef")),
                                                               (2, 2, bytes.fromhex("aabb"))]


def test_window_fields_and_data_in_one_write(fn, bar0):
    fn.config_access(WINDOW + 4, 16, bytes.fromhex("00 000000 30000000 04000000 01020304"))
    assert bar0.mem[0x30:0x34] == bytes.fromhex("01020304")


def test_window_reaches_the_msix_bar(fn):
    fn.bar_access(2, TABLE + 8, 4, bytes.fromhex("21400000"))
    set_window(fn, 2, TABLE + 8, 4)
    assert fn.config_access(WINDOW + 16, 4, None) == bytes.fromhex("21400000")


@pytest.mark.parametrize("bar,offset,length", [(0, 0, 3), (0, 0, 8), (0, 0, 0), (0, 2, 4), (0, 1, 2),
                                               (0, 0x4000, 4), (0, 0xFFFFFFFC, 4), (1, 0, 4), (6, 0, 4),
                                               (0xFF, 0, 4)])
def test_refused_windows_read_zero_and_ignore_writes(fn, bar0, bar, offset, length, caplog):
    bar0.mem[:] = b"\xa5" * len(bar0.mem)
    set_window(fn, bar, offset, length)
    with caplog.at_level(logging.DEBUG, logger="vfu_virtio.pci.function"):
        assert fn.config_access(WINDOW + 16, 4, None) == bytes(4)
        fn.config_access(WINDOW + 16, 4, b"\x01\x02\x03\x04")
    assert bar0.accesses == []
    assert bar0.mem == b"\xa5" * len(bar0.mem)
    assert len([r for r in caplog.records if "not served" in r.getMessage()]) == 2


def test_whole_config_space_read_reads_the_window_once(fn, bar0):
    bar0.mem[4:8] = b"\x01\x00\x00\x00"
    set_window(fn, 0, 4, 4)
    image = fn.config_access(0, 256, None)
    assert image[WINDOW + 16:WINDOW + 20] == b"\x01\x00\x00\x00"
    assert bar0.accesses == [(4, 4, None)]


# ---- reset ---------------------------------------------------------------------------------------------
def test_reset_returns_to_power_on(fn, irq, bar0):
    write(fn, 0x04, 0x0506, 2)
    write(fn, 0x10, 0xFEBF0000, 4)
    write(fn, 0x18, 0xFEBE0000, 4)
    fn.config_access(0x0C, 2, b"\x10\x20")
    fn.config_access(0x3C, 1, b"\x0b")
    set_window(fn, 0, 4, 4)
    fn.bar_access(2, TABLE + 16, 16, bytes.fromhex("0000e0fe 00000000 21400000 01000000"))
    enable_msix(fn, masked=True)
    fn.signal_msix(1)
    fn.intx_client_mask(True)
    fn.set_intx(True)
    irq.take()

    fn.reset()
    assert fn.config_access(0, 256, None) == POWER_ON
    assert fn.bar_access(2, 0, 0x1000, None) == bytes(0x1000)  # table cleared and unmasked, PBA clear
    assert not fn.msix_enabled
    assert irq.take() == []
    fn.signal_msix(1)  # MSI-X disabled again
    fn.set_intx(True)  # condition was cleared, client mask too: a new edge
    assert irq.take() == [("intx",)]
