"""The fuzz targets (see :mod:`vfu_virtio.fuzz`): one small function each, registered with ``@target``.

* ``split-ring`` / ``packed-ring``: the device side of a virtqueue (:mod:`vfu_virtio.virtio.split`,
  :mod:`vfu_virtio.virtio.packed`, the descriptor chain walk and its streams in :mod:`vfu_virtio.virtio.chain`)
  over a guest memory whose every byte comes from the input: ring layout, descriptors, indirect tables, indexes.
  The device side pops, reads every readable byte, writes the writable part, pushes and flushes.
* ``rpmb-frames``: :func:`vfu_virtio.devices.rpmb.request.parse` of any readable bytes.
* ``rpmb-device``: requests handled by a real :class:`~vfu_virtio.devices.rpmb.RpmbDevice` on a real store, or
  answered with an error status as fault injection does; frames can be MACed with the target's key so
  authenticated paths are reached. Oracles: the used length is whole frames within the writable room, the write
  counter never goes back (and never moves for an error answer), the key never appears in a response.
* ``vfio-user``: a real :class:`~vfu_virtio.server.DeviceServer` (libvfio-user, our callbacks, the transport,
  guest memory) in this process; each input is one client connection over a real socket: a version message, then
  pieces of bytes, each sent with or without an fd (a sealed memfd whose first bytes the input also gives, an
  unsealed one, a short one, an eventfd), then the client shuts its end. Oracle: the process holds exactly the
  fds it held before the connection.
* ``crypto-<profile>``, one per crypto profile of the registry (``vfu_virtio.devices.crypto.profiles``; the
  published standard is ``crypto-standard``): controlq and dataq requests handled by a fresh
  :class:`~vfu_virtio.devices.crypto.CryptoDevice` of that profile -- the profile's codec, the session table, every
  service, the key reader. Oracle: a used length within the writable room.
* ``der-keys``: the AKCIPHER key reader (:mod:`vfu_virtio.devices.crypto.keys`, AMB-KEYS) on any bytes for each key
  kind and curve. Oracles: only KEY_REJECTED or NOTSUPP refuse; an accepted key obeys the RSA rules or lies on the
  requested curve, and is refused with one more byte after it.
* ``planted``: the negative control: a planted crash that every run must report as a finding.

Input layouts are documented on each target. Expected answers to hostile input (GuestError, a refused message,
an in-band status) are caught; anything else escapes and is a finding.
"""
from __future__ import annotations

import ctypes as C
import logging
import mmap
import os
import socket
import struct
import tempfile
import threading

from cryptography.hazmat.primitives import serialization as S
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from vfu_virtio.abi import crypto as A
from vfu_virtio.abi import rpmb as F
from vfu_virtio.abi.ring import (PVIRTQ_DESC, VIRTQ_DESC, VIRTQ_DESC_F_AVAIL, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT,
                                 VIRTQ_DESC_F_WRITE)
from vfu_virtio.abi.virtio import ACKNOWLEDGE, COMMON_CFG, DRIVER, DRIVER_OK, FEATURES_OK
from vfu_virtio.client import crypto as D
from vfu_virtio.client import vfio_user as vu
from vfu_virtio.client.memory import memfd
from vfu_virtio.devices.crypto import CryptoDevice, keys, profiles
from vfu_virtio.devices.crypto.device import KEYGEN_LIMITS
from vfu_virtio.devices.crypto.errors import CryptoStatus
from vfu_virtio.devices.crypto.values import Status
from vfu_virtio.devices.rpmb import RpmbDevice
from vfu_virtio.devices.rpmb.persist import TABLES, RpmbState
from vfu_virtio.devices.rpmb.request import Malformed, parse
from vfu_virtio.pci import layout
from vfu_virtio.server import DeviceServer
from vfu_virtio.store import open_namespace
from vfu_virtio.virtio.chain import DescriptorChain, GuestError
from vfu_virtio.virtio.device import VirtioDevice
from vfu_virtio.virtio.memory import GuestMemory
from vfu_virtio.virtio.packed import PackedRing
from vfu_virtio.virtio.split import SplitRing

from . import Finding, Reader, target

RING_IOVA = 0x10000          # guest address of the fuzzed memory
RING_MEMORY = 64 * 1024      # bytes of fuzzed guest memory
MAX_POPS = 64                # chains popped per input (a ring may legitimately hold more)

_RING_MODULES = ("vfu_virtio.virtio.ring", "vfu_virtio.virtio.chain", "vfu_virtio.virtio.memory")


def _ring_memory(image: bytes) -> tuple[GuestMemory, C.Array]:
    """A guest memory of one read-write region at :data:`RING_IOVA` holding ``image`` (zero-padded)."""
    buf = (C.c_char * RING_MEMORY).from_buffer_copy(image[:RING_MEMORY].ljust(RING_MEMORY, b"\0"))
    mem = GuestMemory()
    mem.add(RING_IOVA, RING_MEMORY, C.addressof(buf), mmap.PROT_READ | mmap.PROT_WRITE)
    return mem, buf


def _drive_ring(ring_class, data: bytes) -> None:
    """Input: u8 log2(queue size) (mod 16), u8 flags (bit 0 EVENT_IDX, bit 1 INDIRECT_DESC), u16 x3 offsets of
    the three ring parts in the memory, then the memory image. Pops up to :data:`MAX_POPS` chains, reads and
    writes each whole, completes and flushes each, toggles notifications."""
    r = Reader(data)
    size = 1 << (r.uint(1) % 16)
    flags = r.uint(1)
    addresses = tuple(RING_IOVA + r.uint(2) for _ in range(3))
    mem, _buf = _ring_memory(r.rest())
    try:
        ring = ring_class(mem, 0, size, addresses, bool(flags & 1), bool(flags & 2))
        for _ in range(MAX_POPS):
            chain = ring.pop()
            if chain is None:
                break
            data_in = chain.reader.read_all()
            chain.writer.write(data_in[:chain.writer.capacity])
            ring.push(chain, chain.writer.written)
            if ring.flush():
                ring.disable_notifications()
        ring.enable_notifications()
        ring.pending()
    except GuestError:
        pass  # the transport answers this with DEVICE_NEEDS_RESET
    finally:
        mem.clear()


def _image(parts: dict[int, bytes]) -> bytes:
    """A guest memory image with ``parts`` (offset -> bytes) in place, zeros elsewhere, cut after the last."""
    out = bytearray(max(off + len(b) for off, b in parts.items()))
    for off, b in parts.items():
        out[off:off + len(b)] = b
    return bytes(out)


def _split_image(avail_flags: int = 0, used_flags: int = 0) -> bytes:
    """A split ring of 8 at 0x0 / 0x100 / 0x200: chain 0 (readable 16 bytes at 0x300, writable 16 at 0x340), chain 2
    (an indirect table at 0x380 of the same two buffers); avail.idx 2; avail.flags and used.flags as given."""
    a = RING_IOVA
    table = VIRTQ_DESC.pack(a + 0x300, 16, VIRTQ_DESC_F_NEXT, 1) + VIRTQ_DESC.pack(a + 0x340, 16,
                                                                                    VIRTQ_DESC_F_WRITE, 0)
    descs = table + VIRTQ_DESC.pack(a + 0x380, 32, VIRTQ_DESC_F_INDIRECT, 0)
    return _image({0: descs, 0x100: struct.pack("<HHHH", avail_flags, 2, 0, 2), 0x200: struct.pack("<H", used_flags),
                   0x300: b"fuzz-seed-bytes!", 0x380: table})


def _split_seeds() -> list[bytes]:
    """The image with each feature combination, and once with flags a driver must not leave (avail.flags 3, used.flags
    1: driver audit notes)."""
    head = struct.pack("<HHH", 0, 0x100, 0x200)
    return [bytes([3, flags]) + head + _split_image() for flags in (0, 1, 2, 3)] + \
        [bytes([3, 3]) + head + _split_image(avail_flags=3, used_flags=1)]


def _packed_seeds() -> list[bytes]:
    """A packed ring of 8: a two-descriptor chain (Buffer ID 5), then an indirect descriptor (Buffer ID 6) to a
    table of the same two buffers; event suppression structures at 0x100 and 0x104; the table's first entry comes
    plain (the fast walk of an indirect table) and with a reserved NEXT flag (the entry-by-entry walk, which notes
    it). Then two broken lists."""
    a, avail = RING_IOVA, VIRTQ_DESC_F_AVAIL
    ring = (PVIRTQ_DESC.pack(a + 0x300, 16, 5, avail | VIRTQ_DESC_F_NEXT)
            + PVIRTQ_DESC.pack(a + 0x340, 16, 5, avail | VIRTQ_DESC_F_WRITE)
            + PVIRTQ_DESC.pack(a + 0x380, 32, 6, avail | VIRTQ_DESC_F_INDIRECT))
    head = struct.pack("<HHH", 0, 0x100, 0x104)
    seeds = []
    for first in (0, VIRTQ_DESC_F_NEXT):
        table = PVIRTQ_DESC.pack(a + 0x300, 16, 0, first) + PVIRTQ_DESC.pack(a + 0x340, 16, 0, VIRTQ_DESC_F_WRITE)
        image = _image({0: ring, 0x300: b"fuzz-seed-bytes!", 0x380: table})
        seeds += [bytes([3, flags]) + head + image for flags in (0, 1, 2, 3)]
    # lists a driver must not make (driver audit notes): a readable descriptor after a writable one; a list whose
    # second descriptor is not available yet
    late_read = (PVIRTQ_DESC.pack(a + 0x340, 16, 5, avail | VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT)
                 + PVIRTQ_DESC.pack(a + 0x300, 16, 5, avail))
    partial = PVIRTQ_DESC.pack(a + 0x300, 16, 5, avail | VIRTQ_DESC_F_NEXT) + PVIRTQ_DESC.pack(a + 0x340, 16, 5, 0)
    return seeds + [bytes([3, 0]) + head + _image({0: bad, 0x300: b"fuzz-seed-bytes!"}) for bad in (late_read, partial)]


@target("split-ring", modules=("vfu_virtio.virtio.split", *_RING_MODULES), seeds=_split_seeds)
def split_ring(data: bytes) -> None:
    """Split virtqueue, device side: descriptor chain walk, indirect tables, used ring, event suppression."""
    _drive_ring(SplitRing, data)


@target("packed-ring", modules=("vfu_virtio.virtio.packed", *_RING_MODULES), seeds=_packed_seeds)
def packed_ring(data: bytes) -> None:
    """Packed virtqueue, device side: descriptor chains, indirect tables, used elements, event suppression."""
    _drive_ring(PackedRing, data)


def _rpmb_requests() -> list[list[F.Frame]]:
    """One frame list per request type (program key + result read, counter, write + result read, read, result)."""
    result_read = F.Frame(req_resp=F.VIRTIO_RPMB_REQ_RESULT_READ)
    return [[F.Frame(req_resp=F.VIRTIO_RPMB_REQ_PROGRAM_KEY, block_count=1, key_mac=_RpmbBench.KEY), result_read],
            [F.Frame(req_resp=F.VIRTIO_RPMB_REQ_GET_WRITE_COUNTER, nonce=bytes(range(16)))],
            [F.Frame(req_resp=F.VIRTIO_RPMB_REQ_DATA_WRITE, block_count=1, address=3, data=b"\x5a" * 256),
             result_read],
            [F.Frame(req_resp=F.VIRTIO_RPMB_REQ_DATA_READ, block_count=1, address=3)],
            [result_read]]


def _rpmb_frames_seeds() -> list[bytes]:
    return [b"".join(f.pack() for f in frames) for frames in _rpmb_requests()]


@target("rpmb-frames", modules=("vfu_virtio.devices.rpmb.request", "vfu_virtio.abi.rpmb"), seeds=_rpmb_frames_seeds)
def rpmb_frames(data: bytes) -> None:
    """RPMB request parsing: any readable bytes of a chain to one request value."""
    request = parse(data)
    if not isinstance(request, Malformed) and len(data) % F.FRAME_SIZE:
        raise Finding(f"{len(data)} bytes, not whole frames, parsed as {type(request).__name__}")


class _RpmbBench:
    """One RPMB device (capacity 1: 512 blocks, max_wr_cnt/max_rd_cnt 4) on a store in a temporary directory."""

    KEY = bytes(range(32))

    def __init__(self) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="vfu-fuzz-rpmb-")
        ns = open_namespace(os.path.join(self.dir.name, "state.db"), "rpmb", "0", [TABLES])
        self.device = RpmbDevice(RpmbState.open(ns), capacity=1, max_wr_cnt=4, max_rd_cnt=4)


_rpmb: _RpmbBench | None = None


def _rpmb_device_seeds() -> list[bytes]:
    """Every request of :func:`_rpmb_requests` in one input, the authenticated ones MACed (flag 8), one response
    frame of room each; then the write again, answered with an injected error (flag 16)."""
    out = b""
    for frames in _rpmb_requests():
        out += bytes([1 | (8 if frames[0].req_resp == F.VIRTIO_RPMB_REQ_DATA_WRITE else 0), len(frames)])
        out += b"".join(f.pack() for f in frames)
    write = _rpmb_requests()[2]
    return [out + bytes([1 | 8 | 16, len(write)]) + b"".join(f.pack() for f in write)]


@target("rpmb-device", modules=("vfu_virtio.devices.rpmb.device", "vfu_virtio.devices.rpmb.request",
                                "vfu_virtio.devices.rpmb.persist", "vfu_virtio.abi.rpmb"), seeds=_rpmb_device_seeds)
def rpmb_device(data: bytes) -> None:
    """RPMB device: request chains handled and committed on a real store (key, counter, blocks)."""
    global _rpmb
    if _rpmb is None:
        _rpmb = _RpmbBench()
    dev = _rpmb.device
    dev.reset()
    r = Reader(data)
    while r.left:
        # per request: u8 flags (bits 0-2 writable frames, bit 3 MAC the frames with the bench key, bit 4 answer
        # with an injected error, bits 5-7 which), u8 readable frames (mod 6), then that many 512-byte frames (short
        # at the end of the input)
        flags, nframes = r.uint(1), r.uint(1) % 6
        raw = r.take(nframes * F.FRAME_SIZE)
        if flags & 8 and raw and len(raw) % F.FRAME_SIZE == 0:
            raw = F.seal([F.Frame.unpack(raw, off) for off in range(0, len(raw), F.FRAME_SIZE)], _RpmbBench.KEY)
        room = bytearray((flags & 7) * F.FRAME_SIZE)
        before = dev.state.counter
        chain = DescriptorChain(0, [memoryview(raw)], [memoryview(room)])
        dev.request_type(0, chain)
        if flags & 16:
            used = dev.answer_error(0, chain, dev.error_statuses[(flags >> 5) % len(dev.error_statuses)])
            if dev.state.counter != before:
                raise Finding("an injected error answer moved the write counter")
        else:
            used = dev.handle(0, chain)
        dev.commit()
        if used % F.FRAME_SIZE or not 0 <= used <= len(room):
            raise Finding(f"used length {used} with {len(room)} writable bytes")
        if dev.state.counter < before:
            raise Finding(f"write counter went back from {before} to {dev.state.counter}")
        if dev.state.key is not None and dev.state.key in bytes(room):
            raise Finding("the authentication key appeared in a response (RPMB-33)")


class _Echo(VirtioDevice):
    """Loopback device (virtio id 63, two queues): readable bytes copied into the writable part."""

    device_id = 63
    name = "fuzz-echo"
    num_queues = 2

    def handle(self, queue_index: int, chain: DescriptorChain) -> int:
        data = chain.reader.read_all()
        chain.writer.write(data[:chain.writer.capacity])
        return chain.writer.written


class _ServerBench:
    """A DeviceServer serving an echo device on a socket in a temporary directory, driven from this thread."""

    def __init__(self) -> None:
        logging.getLogger("vfu_virtio").setLevel(logging.CRITICAL + 1)
        self.dir = tempfile.TemporaryDirectory(prefix="vfu-fuzz-server-")
        self.path = os.path.join(self.dir.name, "fuzz.sock")
        self.server = DeviceServer(_Echo(), self.path, log_level=logging.CRITICAL, status_endpoint=False)
        self.fds = self._fd_kinds()

    @staticmethod
    def _fd_kinds() -> list[int]:
        """The fds a piece of input may carry: sealed memfd (64 KiB), unsealed memfd, sealed 4 KiB, eventfd."""
        return [memfd(RING_MEMORY, "vfu-fuzz"), memfd(RING_MEMORY, "vfu-fuzz", seal=False), memfd(4096, "vfu-fuzz"),
                os.eventfd(0, os.EFD_CLOEXEC)]


_server: _ServerBench | None = None
# "Header" + VFIO_USER_VERSION 0.1 with max_msg_fds 8 (what QEMU's client sends, shortened)
_VERSION = (struct.pack("<HHIII", 0, 1, 16 + 4 + 35, 0, 0) + struct.pack("<HH", 0, 1)
            + b'{"capabilities":{"max_msg_fds":8}}\0')


def _drain(sock: socket.socket) -> None:
    try:
        while sock.recv(1 << 16):
            pass
    except OSError:
        pass


def _vfio_user_seeds() -> list[bytes]:
    """A driver's session as pieces: device info, config space, DMA_MAP of the sealed memfd (holding the split ring
    of :func:`_split_image`), an MSI-X eventfd, the virtio initialisation through BAR0 (queue 0 on that ring),
    a kick, the ISR, DMA_UNMAP; then the same with the header of every message cut in two pieces."""
    msg_id = iter(range(1, 1 << 16))

    def msg(cmd: int, payload: bytes) -> bytes:
        return vu.VFIO_USER_HEADER.pack(next(msg_id), cmd, 16 + len(payload), 0, 0) + payload

    def bar0_write(offset: int, value: int, width: int) -> bytes:
        return msg(vu.VFIO_USER_REGION_WRITE, vu.VFIO_USER_REGION_ACCESS.pack(offset, layout.VIRTIO_BAR, width)
                   + value.to_bytes(width, "little"))

    def common(field: str, value: int) -> bytes:
        offset, width = COMMON_CFG[field]
        return bar0_write(layout.COMMON_CFG_OFFSET + offset, value, width)

    a = RING_IOVA
    session = [
        (0, msg(vu.VFIO_USER_DEVICE_GET_INFO, vu.VFIO_DEVICE_INFO.pack(16, 0, 0, 0))),
        (0, msg(vu.VFIO_USER_REGION_READ, vu.VFIO_USER_REGION_ACCESS.pack(0, vu.VFIO_PCI_CONFIG_REGION_INDEX, 256))),
        (1, msg(vu.VFIO_USER_DMA_MAP, vu.VFIO_USER_DMA_MAP_S.pack(32, 3, 0, a, RING_MEMORY))),
        (1 | 3 << 1, msg(vu.VFIO_USER_DEVICE_SET_IRQS, vu.VFIO_IRQ_SET.pack(
            24, vu.VFIO_IRQ_SET_DATA_EVENTFD | vu.VFIO_IRQ_SET_ACTION_TRIGGER, vu.VFIO_PCI_MSIX_IRQ_INDEX, 0, 1))),
        (0, common("device_status", 0)), (0, common("device_status", ACKNOWLEDGE)),
        (0, common("device_status", ACKNOWLEDGE | DRIVER)), (0, common("driver_feature_select", 1)),
        (0, common("driver_feature", 1)),  # VIRTIO_F_VERSION_1 (bit 32)
        (0, common("device_status", ACKNOWLEDGE | DRIVER | FEATURES_OK)), (0, common("queue_select", 0)),
        (0, common("queue_size", 8)), (0, common("queue_msix_vector", 0)), (0, common("queue_desc", a)),
        (0, common("queue_driver", a + 0x100)), (0, common("queue_device", a + 0x200)),
        (0, common("queue_enable", 1)), (0, common("device_status", ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK)),
        (0, bar0_write(layout.NOTIFY_OFFSET, 0, 2)),
        (0, msg(vu.VFIO_USER_REGION_READ, vu.VFIO_USER_REGION_ACCESS.pack(layout.ISR_OFFSET, layout.VIRTIO_BAR, 1))),
        (0, msg(vu.VFIO_USER_DMA_UNMAP, vu.VFIO_USER_DMA_UNMAP_S.pack(24, 0, a, RING_MEMORY))),
    ]
    image = _split_image()
    whole = b"".join(bytes([c]) + struct.pack("<H", len(m)) + m for c, m in session)
    cut = b"".join(bytes([c]) + struct.pack("<H", 7) + m[:7] + bytes([0]) + struct.pack("<H", len(m) - 7) + m[7:]
                   for c, m in session)
    return [struct.pack("<H", len(image)) + image + pieces for pieces in (whole, cut)]


@target("vfio-user", seeds=_vfio_user_seeds, modules=(
    "vfu_virtio.server", "vfu_virtio.libvfio_user.context", "vfu_virtio.virtio.transport", "vfu_virtio.virtio.memory",
    "vfu_virtio.pci.function", "vfu_virtio.pci.msix"))
def vfio_user(data: bytes) -> None:
    """vfio-user messages through libvfio-user and the project's callbacks (DMA, regions, IRQs, reset)."""
    global _server
    if _server is None:
        _server = _ServerBench()
    bench = _server
    fds_before = len(os.listdir("/proc/self/fd"))
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(bench.path)
    client.sendall(_VERSION)
    reader = threading.Thread(target=_drain, args=(client,))
    reader.start()
    try:
        if not bench.server.ctx.attach():
            raise Finding("the server did not attach a connected client")
        r = Reader(data)
        os.pwrite(bench.fds[0], r.take(r.uint(2)).ljust(RING_MEMORY, b"\0"), 0)  # the guest memory behind fd 0
        while r.left:
            # per piece: u8 control (bit 0: send an fd with it, bits 1-2: which of the four), u16 length, bytes
            control, length = r.uint(1), r.uint(2)
            piece = r.take(length)
            if not piece:
                break
            anc = []
            if control & 1:
                anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", bench.fds[(control >> 1) & 3]))]
            try:
                client.sendmsg([piece], anc)
            except OSError:
                break  # the server dropped the connection already
        client.shutdown(socket.SHUT_WR)
        bench.server.serve_client()
    finally:
        client.close()
        reader.join()
    leaked = len(os.listdir("/proc/self/fd")) - fds_before
    if leaked:
        raise Finding(f"{leaked} fd(s) left open after the client went away")


class PlantedCrash(Exception):
    """The negative control's planted bug."""


@target("planted", modules=("vfu_virtio.fuzz.targets",), control=True)
def planted(data: bytes) -> None:
    """Negative control: a parser with a planted crash on inputs that start with b"!"; must be reported."""
    if data[:1] == b"!":
        raise PlantedCrash("planted crash reached")


# ---- crypto: every profile's request codec on a real CryptoDevice, and the key reader ---------------------------
_CRYPTO_MODULES = ("vfu_virtio.devices.crypto.device", "vfu_virtio.devices.crypto.services",
                   "vfu_virtio.devices.crypto.keys", "vfu_virtio.devices.crypto.sessions")
CRYPTO_WRITABLE_MAX = 8192   # bytes of writable room a fuzzed request may have
#: How long the crypto targets wait for a request a worker completes (key generation at the smallest limits).
CRYPTO_WORKER_WAIT_S = 8.0


class _KeyBench:
    """Fixed keys for the seeds, made once per process: RSA-1024 (the Linux kernel's form of its public key too)
    and an ECDSA key on each curve the standard names."""

    def __init__(self) -> None:
        self.rsa = rsa.generate_private_key(65537, 1024)
        self.rsa_private = self.rsa.private_bytes(S.Encoding.DER, S.PrivateFormat.TraditionalOpenSSL,
                                                  S.NoEncryption())
        self.rsa_public = self.rsa.public_key().public_bytes(S.Encoding.DER, S.PublicFormat.PKCS1)
        # the same public key with its modulus INTEGER unsigned (no 0x00 octet), as Linux's self-test key is
        n = self.rsa.public_key().public_numbers().n.to_bytes(128, "big")
        body = b"\x02\x81\x80" + n + b"\x02\x03\x01\x00\x01"
        self.rsa_public_linux = b"\x30\x81" + bytes([len(body)]) + body
        self.ec = [ec.generate_private_key(curve()) for curve in (ec.SECP192R1, ec.SECP224R1, ec.SECP256R1,
                                                                  ec.SECP384R1, ec.SECP521R1)]
        self.ec_private = [k.private_bytes(S.Encoding.DER, S.PrivateFormat.TraditionalOpenSSL, S.NoEncryption())
                           for k in self.ec]
        self.ec_points = [k.public_key().public_bytes(S.Encoding.X962, form) for k in self.ec
                          for form in (S.PublicFormat.UncompressedPoint, S.PublicFormat.CompressedPoint)]


_keys: _KeyBench | None = None


def _key_bench() -> _KeyBench:
    global _keys
    if _keys is None:
        _keys = _KeyBench()
    return _keys


def _crypto_request(ctrl: bool, readable: bytes, writable: int) -> bytes:
    """One request of a ``crypto-*`` input: u8 flags (bit 0 controlq), u16 readable length, u16 writable room, u8
    descriptor cut (0: one readable and one writable descriptor), then the readable bytes."""
    return bytes([1 if ctrl else 0]) + struct.pack("<HHB", len(readable), writable, 0) + readable


def _crypto_seeds() -> list[bytes]:
    """The published standard's requests as the project's driver builds them (a start for any profile): without
    feature bits, sessions of every service (cipher, chain, hash, MAC, AEAD, RSA private/public, ECDSA) then a data
    request on each (session ids 1..9 of a fresh device) and a destroy; with REVISION_1 and every stateless bit,
    a stateless request of each service."""
    k = _key_bench()
    key16, iv16, data = bytes(range(16)), bytes(range(16, 32)), bytes(range(64))
    rsa_pkcs1 = (A.VIRTIO_CRYPTO_RSA_PKCS1_PADDING, A.VIRTIO_CRYPTO_RSA_SHA256)
    sessions = [
        D.cipher_create_session(A.VIRTIO_CRYPTO_CIPHER_AES_CBC, key16, A.VIRTIO_CRYPTO_OP_ENCRYPT),
        D.chain_create_session(A.VIRTIO_CRYPTO_SYM_ALG_CHAIN_ORDER_CIPHER_THEN_HASH,
                               A.VIRTIO_CRYPTO_SYM_HASH_MODE_AUTH, A.VIRTIO_CRYPTO_CIPHER_AES_CTR, key16,
                               A.VIRTIO_CRYPTO_OP_ENCRYPT, A.VIRTIO_CRYPTO_MAC_HMAC_SHA_256, 32, b"auth", 4),
        D.hash_create_session(A.VIRTIO_CRYPTO_HASH_SHA_256, 32),
        D.mac_create_session(A.VIRTIO_CRYPTO_MAC_CMAC_AES, 16, key16),
        D.aead_create_session(A.VIRTIO_CRYPTO_AEAD_GCM, key16, 16, 4, A.VIRTIO_CRYPTO_OP_ENCRYPT),
        D.akcipher_create_session(A.VIRTIO_CRYPTO_AKCIPHER_RSA, A.VIRTIO_CRYPTO_AKCIPHER_KEY_TYPE_PRIVATE,
                                  k.rsa_private, *rsa_pkcs1),
        D.akcipher_create_session(A.VIRTIO_CRYPTO_AKCIPHER_RSA, A.VIRTIO_CRYPTO_AKCIPHER_KEY_TYPE_PUBLIC,
                                  k.rsa_public_linux, A.VIRTIO_CRYPTO_RSA_RAW_PADDING),
        D.akcipher_create_session(A.VIRTIO_CRYPTO_AKCIPHER_ECDSA, A.VIRTIO_CRYPTO_AKCIPHER_KEY_TYPE_PRIVATE,
                                  k.ec_private[2], curve=A.VIRTIO_CRYPTO_CURVE_NIST_P256),
        D.akcipher_create_session(A.VIRTIO_CRYPTO_AKCIPHER_ECDSA, A.VIRTIO_CRYPTO_AKCIPHER_KEY_TYPE_PUBLIC,
                                  k.ec_points[4], curve=A.VIRTIO_CRYPTO_CURVE_NIST_P256),
    ]
    digest = bytes(range(32))
    requests = [
        D.cipher_data(A.VIRTIO_CRYPTO_CIPHER_ENCRYPT, 1, iv16, data),
        D.chain_data(A.VIRTIO_CRYPTO_CIPHER_ENCRYPT, 2, iv16, data, b"aad!", 16, 32, 0, 64, 32),
        D.digest_data(A.VIRTIO_CRYPTO_HASH, 3, data, 32),
        D.digest_data(A.VIRTIO_CRYPTO_MAC, 4, data, 16),
        D.aead_data(A.VIRTIO_CRYPTO_AEAD_ENCRYPT, 5, iv16, data, b"aad!", 16, 80),  # a 16-byte iv: J0
        D.akcipher_data(A.VIRTIO_CRYPTO_AKCIPHER_SIGN, 6, digest, 128),
        D.akcipher_data(A.VIRTIO_CRYPTO_AKCIPHER_DECRYPT, 6, bytes(127) + b"\x07", 128),  # bad padding: BADMSG
        D.akcipher_data(A.VIRTIO_CRYPTO_AKCIPHER_ENCRYPT, 7, digest, 128),
        D.akcipher_data(A.VIRTIO_CRYPTO_AKCIPHER_SIGN, 8, digest, 72),
        D.akcipher_data(A.VIRTIO_CRYPTO_AKCIPHER_VERIFY, 9, bytes(70), 0, digest),
    ]
    legacy = bytes(4) + b"".join(_crypto_request(True, r.readable, r.writable) for r in sessions)
    legacy += b"".join(_crypto_request(False, r.readable, r.writable) for r in requests)
    destroy = D.destroy_session(A.VIRTIO_CRYPTO_CIPHER_DESTROY_SESSION, 1)
    legacy += _crypto_request(True, destroy.readable, destroy.writable)
    stateless = [
        D.cipher_data_stateless(A.VIRTIO_CRYPTO_CIPHER_ENCRYPT, A.VIRTIO_CRYPTO_CIPHER_AES_CTR, key16,
                                A.VIRTIO_CRYPTO_OP_ENCRYPT, iv16, data),
        D.hash_data_stateless(A.VIRTIO_CRYPTO_HASH_SHA3_256, data, 32),
        D.mac_data_stateless(A.VIRTIO_CRYPTO_MAC_HMAC_SHA1, key16, data, 20),
        D.aead_data_stateless(A.VIRTIO_CRYPTO_AEAD_ENCRYPT, A.VIRTIO_CRYPTO_AEAD_CHACHA20_POLY1305, key16 * 2,
                              A.VIRTIO_CRYPTO_OP_ENCRYPT, iv16[:12], data, b"", 16, 80),
        D.akcipher_data_stateless(A.VIRTIO_CRYPTO_AKCIPHER_VERIFY, A.VIRTIO_CRYPTO_AKCIPHER_ECDSA,
                                  A.VIRTIO_CRYPTO_AKCIPHER_KEY_TYPE_PUBLIC, k.ec_points[5], bytes(70), 0, digest,
                                  curve=A.VIRTIO_CRYPTO_CURVE_NIST_P256),
    ]
    revision_1 = struct.pack("<I", 0x3F) + b"".join(_crypto_request(False, r.readable, r.writable)
                                                     for r in stateless)
    return [legacy, revision_1]


def _crypto_target(profile_name: str):
    """The ``crypto-<profile>`` target: a fresh CryptoDevice of that profile per input (2 data queues, 16 sessions,
    max_size 64 KiB, the smallest key-generation limits; every request on this thread but those a session sends to
    its data queue's worker -- the asymmetric service's, AMB-32 -- whose completion is awaited).

    Input: le32 device feature bits (masked with the profile's; a set its dependency rule refuses becomes 0), then
    requests (:func:`_crypto_request`: u8 flags, bit 0 controlq else data queue 0; le16 readable length; le16
    writable room, mod :data:`CRYPTO_WRITABLE_MAX` + 1; u8 cut: 0 one descriptor each, else the readable and the
    writable part are split after ``cut`` bytes; the readable bytes). Oracle: ``handle`` returns a used length
    within the writable room (a worker's within :data:`CRYPTO_WORKER_WAIT_S`), and nothing but the device's in-band
    answer comes out."""
    def run(data: bytes) -> None:
        logging.getLogger("vfu_virtio").setLevel(logging.CRITICAL + 1)  # malformed requests log; they are the input
        r = Reader(data)
        dev = CryptoDevice(max_dataqueues=2, max_sessions=16, max_size=1 << 16, profile=profile_name,
                           bulk_threshold=0, **{name: low for name, (low, _high) in KEYGEN_LIMITS.items()})
        try:
            features = r.uint(4) & dev.profile.features
            dev.activate(0 if dev.profile.refuse_features(features) else features)
            while r.left:
                flags = r.uint(1)
                n, room, cut = r.uint(2), r.uint(2) % (CRYPTO_WRITABLE_MAX + 1), r.uint(1)
                readable, out = r.take(n), bytearray(room)
                rd = [memoryview(readable)] if not cut else [memoryview(readable[:cut]), memoryview(readable[cut:])]
                wr = [memoryview(out)] if not cut else [memoryview(out)[:cut], memoryview(out)[cut:]]
                chain = DescriptorChain(0, rd, wr)
                done: list[int] = []
                finished = threading.Event()
                chain.completer = lambda _chain, written: (done.append(written), finished.set())
                used = dev.handle(dev.controlq if flags & 1 else 0, chain)
                if used is None:
                    if not finished.wait(CRYPTO_WORKER_WAIT_S):
                        raise Finding(f"a request on a worker did not complete within {CRYPTO_WORKER_WAIT_S} s")
                    used = done[0]
                if not 0 <= used <= room:
                    raise Finding(f"used length {used!r} with {room} writable bytes")
        finally:
            dev.close()
    run.__doc__ = f"The {profile_name} crypto profile: request codec, sessions, services and keys on a CryptoDevice."
    return run


def _register_crypto_targets() -> None:
    for name, profile in profiles.available().items():
        codec_module = profile.codec.__module__
        target(f"crypto-{name}", modules=(codec_module, *_CRYPTO_MODULES), seeds=_crypto_seeds)(_crypto_target(name))


_register_crypto_targets()

#: der-keys selector (first byte, mod 12): which reader, and for ECDSA which curve (P-192 .. P-521).
_KEY_KINDS = ("rsa-private", "rsa-public", *(f"ec-{kind}-{i}" for kind in ("private", "public") for i in range(5)))


def _der_keys_seeds() -> list[bytes]:
    k = _key_bench()
    out = [bytes([0]) + k.rsa_private, bytes([1]) + k.rsa_public, bytes([1]) + k.rsa_public_linux]
    out += [bytes([2 + i]) + der for i, der in enumerate(k.ec_private)]
    out += [bytes([7 + i // 2]) + point for i, point in enumerate(k.ec_points)]
    return out


@target("der-keys", modules=("vfu_virtio.devices.crypto.keys",), seeds=_der_keys_seeds)
def der_keys(data: bytes) -> None:
    """AKCIPHER key reader: DER RSAPrivateKey/RSAPublicKey/ECPrivateKey and ECPoint octets (AMB-KEYS).

    Input: u8 selector (:data:`_KEY_KINDS`, mod 12), then the key bytes. Answers other than a key or CryptoStatus
    KEY_REJECTED/NOTSUPP are findings; so is an accepted RSA key outside the rules, an ECDSA key on another curve,
    and an accepted key that is still accepted with one more byte after it."""
    kind = _KEY_KINDS[data[0] % len(_KEY_KINDS)] if data else _KEY_KINDS[0]
    blob = data[1:]
    curve = None
    if kind.startswith("ec-"):
        curve = (ec.SECP192R1, ec.SECP224R1, ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)[int(kind[-1])]()
    read = {"rsa-private": keys.rsa_private_key, "rsa-public": keys.rsa_public_key}.get(kind) or (
        (lambda b: keys.ec_private_key(b, curve)) if "private" in kind else (lambda b: keys.ec_public_key(b, curve)))
    try:
        key = read(blob)
    except CryptoStatus as e:
        if e.status not in (Status.KEY_REJECTED, Status.NOTSUPP):
            raise Finding(f"{kind}: answered {e.status.name}") from None
        return
    if curve is None:
        numbers = (key.public_key() if kind == "rsa-private" else key).public_numbers()
        if not (numbers.n & 1 and numbers.e & 1 and 3 <= numbers.e < 1 << keys.RSA_MAX_EXPONENT_BITS
                and keys.RSA_MIN_BITS <= numbers.n.bit_length() <= keys.RSA_MAX_BITS):
            raise Finding(f"{kind}: accepted n of {numbers.n.bit_length()} bits, e = {numbers.e:#x}")
    elif key.curve.name != curve.name:
        raise Finding(f"{kind}: a {key.curve.name} key accepted for {curve.name}")
    try:
        read(blob + b"\0")
    except CryptoStatus:
        return
    raise Finding(f"{kind}: accepted with a byte after the key")
