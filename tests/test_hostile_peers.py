"""Hostile vfio-user peers against a real ``vfu-virtio null`` server: the reproducers of issue 14, findings 1-4.

Each test builds the reproducer with the project's driver or a raw socket and checks what the server does instead
of dying or leaking (decision TD-DMA-FD, the project's patch ``native/libvfio-user-hostile-peers.patch``):

1. a DMA region larger than its file, or backed by an unsealed file (which could shrink later), is refused
   (EINVAL, one log line); a descriptor that points there is a guest error (DEVICE_NEEDS_RESET), not SIGBUS;
   a region without an fd, or without read permission, likewise, with a line that says how to start QEMU;
2. a DMA_MAP over a mapped range is refused with EEXIST and its fd is closed; at most 16 regions per client;
3. a partial header sent with an fd, then a close, leaves no fd behind;
4. a message whose header or payload arrives in two pieces 50 ms apart is served normally; a client that goes
   silent inside a message is dropped after the receive deadline, and the next client is served.

Wire bytes are written here from the vfio-user specification ("Header", ``VFIO_USER_VERSION``,
``VFIO_USER_DEVICE_GET_INFO``, ``VFIO_USER_REGION_READ``, ``VFIO_USER_DMA_MAP``), not with the client's structs.
Server fds are counted in ``/proc/<pid>/fd``.
"""
from __future__ import annotations

import errno
import fcntl
import mmap
import os
import socket
import struct
import time

import pytest

from vfu_virtio.abi.virtio import DEVICE_NEEDS_RESET
from vfu_virtio.client import DeviceNeedsReset, VfioUserError
from vfu_virtio.client.memory import memfd
from vfu_virtio.client.virtio_pci import VirtioPciDriver

HOSTILE_IOVA = 0x4000_0000   # far from the driver's own memory (1 MiB .. 1 MiB + mem_size)
MIB = 1 << 20
RSS_TOLERANCE_KIB = 2048     # allocator noise; a leak of one 4 KiB page per connection alone would be 4000 KiB
READ_WRITE = 0b11            # DMA_MAP flags: bit 0 readable, bit 1 writeable

# "Header": msg_id le16, cmd le16, msg_size le32 (header included), flags le32, error le32
VERSION_REQUEST = (b"\x01\x00" b"\x01\x00" + struct.pack("<I", 16 + 4 + 35) + b"\x00" * 8
                   + b"\x00\x00\x01\x00" + b'{"capabilities":{"max_msg_fds":8}}\x00')
# VFIO_USER_DEVICE_GET_INFO (cmd 4): argsz le32 = 16, flags, num_regions, num_irqs
GET_INFO = b"\x02\x00" b"\x04\x00" b"\x20\x00\x00\x00" + b"\x00" * 8 + b"\x10\x00\x00\x00" + b"\x00" * 12
# VFIO_USER_REGION_READ (cmd 9) of config space (region 7), offset 0, 4 bytes: offset le64, region le32, count le32
CONFIG_READ = (b"\x03\x00" b"\x09\x00" b"\x20\x00\x00\x00" + b"\x00" * 8
               + b"\x00" * 8 + b"\x07\x00\x00\x00" + b"\x04\x00\x00\x00")
NULL_PCI_IDS = b"\xf4\x1a\x7f\x10"  # vendor 0x1af4, device 0x107f (virtio id 63)


def dma_map_message(msg_id: int, iova: int, size: int, flags: int = READ_WRITE, offset: int = 0) -> bytes:
    """VFIO_USER_DMA_MAP (cmd 2): argsz le32 = 32, flags le32, offset le64, address le64, size le64."""
    return struct.pack("<HHIII", msg_id, 2, 48, 0, 0) + struct.pack("<IIQQQ", 32, flags, offset, iova, size)


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def settled(server) -> tuple[int, int]:
    """(fds, RSS KiB) of the server while a fresh client is attached: the server serves one client at a time,
    so by then it has finished with every earlier connection (its teardown included)."""
    peer = RawPeer(server.socket)
    try:
        return fd_count(server.pid), rss_kib(server.pid)
    finally:
        peer.close()


class RawPeer:
    """A vfio-user client made of a bare socket: the version negotiation, then whatever the test sends."""

    def __init__(self, path: str, negotiate: bool = True, timeout: float = 15.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        while True:  # the server's listen backlog is full while it is busy with an earlier client
            try:
                self.sock.connect(path)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.001)
        if negotiate:
            self.sock.sendall(VERSION_REQUEST)
            hdr, _ = self.reply()
            assert hdr[1] == 1 and not hdr[3] & 0x20, hdr

    def send(self, data: bytes, fds: tuple[int, ...] = ()) -> None:
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))] if fds else []
        assert self.sock.sendmsg([data], anc) == len(data)

    def recv_exact(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise ConnectionResetError("server closed the connection")
            out += chunk
        return out

    def reply(self) -> tuple[tuple, bytes]:
        """(msg_id, cmd, msg_size, flags, error), payload."""
        hdr = struct.unpack("<HHIII", self.recv_exact(16))
        return hdr, self.recv_exact(hdr[2] - 16)

    def closed_by_server(self) -> bool:
        """True once the server closed its end (waits up to the socket timeout)."""
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def server(serve):
    return serve("null")


@pytest.fixture
def drv(server):
    d = VirtioPciDriver.connect(server.socket, mem_size=4 * MIB)
    d.init()
    yield d
    d.close()


def loopback_ok(drv) -> bool:
    used, (out,) = drv.queue(0).request([b"ping"], [4])
    return used == 4 and out == b"ping"


def needs_reset_at(drv, addr: int) -> None:
    """Submit a loopback request whose readable descriptor points at ``addr``, kick, expect DEVICE_NEEDS_RESET."""
    q = drv.queue(0)
    head = q.submit([b"ping"], [4])
    drv.memory.write(q.vq.desc_iova + 16 * head, struct.pack("<Q", addr))
    q.kick(force=True)
    with pytest.raises(DeviceNeedsReset):
        q.wait(timeout=5)
    assert drv.status & DEVICE_NEEDS_RESET


def survives(server, drv) -> None:
    """The process is alive and serves again after the driver resets the device."""
    assert server.alive(), server.log()
    drv.init()
    assert loopback_ok(drv)


# ---- finding 1: guest memory that cannot kill the process ------------------------------------------------
def test_region_larger_than_its_file_is_refused(server, drv):
    fd = memfd(4096)
    try:
        with pytest.raises(VfioUserError) as e:
            drv.client.dma_map(fd, 0, HOSTILE_IOVA, MIB)  # a 4 KiB file as 1 MiB of guest memory
        assert e.value.errno == errno.EINVAL
    finally:
        os.close(fd)
    needs_reset_at(drv, HOSTILE_IOVA + 0x10000)  # past the end of the file: SIGBUS had it been mapped
    survives(server, drv)
    assert "refused: its file holds only 0x1000 bytes" in server.log()


def test_unsealed_file_is_refused_so_it_cannot_shrink_under_the_device(server, drv):
    fd = memfd(MIB, seal=False)
    try:
        with pytest.raises(VfioUserError) as e:
            drv.client.dma_map(fd, 0, HOSTILE_IOVA, MIB)
        assert e.value.errno == errno.EINVAL
        os.ftruncate(fd, 4096)  # what a hostile client does next
    finally:
        os.close(fd)
    needs_reset_at(drv, HOSTILE_IOVA + 0x10000)
    survives(server, drv)
    assert "not sealed against shrinking (F_SEAL_SHRINK)" in server.log()


def test_sealed_file_cannot_shrink():
    """The premise of TD-DMA-FD: once F_SEAL_SHRINK is set, the client itself cannot truncate the file."""
    fd = memfd(MIB)
    try:
        with pytest.raises(PermissionError):
            os.ftruncate(fd, 4096)
        with pytest.raises(PermissionError):
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, 0)  # F_SEAL_SEAL: no seal can be changed either
    finally:
        os.close(fd)


def test_unaligned_offset_maps_the_whole_range(server, drv):
    """A region at a file offset that is not page aligned: the device reaches its last byte (the unpatched
    library mapped one page too few, so that byte lay outside the mapping)."""
    fd = memfd(3 * 4096)
    try:
        mm = mmap.mmap(fd, 3 * 4096)
        mm[0x800 + 4096 - 4:0x800 + 4096] = b"tail"
        drv.client.dma_map(fd, 0x800, HOSTILE_IOVA, 4096)
        q = drv.queue(0)
        head = q.submit([b"xxxx"], [4])
        drv.memory.write(q.vq.desc_iova + 16 * head, struct.pack("<Q", HOSTILE_IOVA + 4096 - 4))
        q.kick(force=True)
        (completion,) = q.wait(timeout=5)
        assert completion.used_len == 4 and completion.data == [b"tail"]
        drv.client.dma_unmap(HOSTILE_IOVA, 4096)
        mm.close()
    finally:
        os.close(fd)


def test_region_without_fd_needs_reset_and_says_how_to_start_qemu(server, drv):
    drv.client.dma_map(None, 0, HOSTILE_IOVA, MIB)  # accepted: QEMU maps its ROMs this way
    needs_reset_at(drv, HOSTILE_IOVA + 0x10000)
    survives(server, drv)
    lines = [ln for ln in server.log().splitlines() if "DEVICE_NEEDS_RESET" in ln and "share=on" in ln]
    assert len(lines) == 1 and "memory-backend-memfd" in lines[0], server.log()


def test_region_without_read_permission_is_never_touched(server, drv):
    fd = memfd(MIB)
    try:
        drv.client.dma_map(fd, 0, HOSTILE_IOVA, MIB, prot=0)  # mapped PROT_NONE: a read would be SIGSEGV
    finally:
        os.close(fd)
    needs_reset_at(drv, HOSTILE_IOVA + 0x10000)
    survives(server, drv)
    assert "without read permission" in server.log()


# ---- finding 2: duplicate and overlapping DMA_MAPs, the region cap ----------------------------------------
def test_map_over_a_mapped_range_is_eexist_and_closes_its_fd(server, drv):
    fd = memfd(MIB)
    try:
        drv.client.dma_map(fd, 0, HOSTILE_IOVA, MIB)
        before = fd_count(server.pid)
        for iova, size in [(HOSTILE_IOVA, MIB)] * 50 + [(HOSTILE_IOVA + 4096, 4096), (HOSTILE_IOVA - 4096, 8192)]:
            with pytest.raises(VfioUserError) as e:
                drv.client.dma_map(fd, 0, iova, size)
            assert e.value.errno == errno.EEXIST
        assert fd_count(server.pid) == before
    finally:
        os.close(fd)
    drv.client.dma_unmap(HOSTILE_IOVA, MIB)
    assert fd_count(server.pid) == before - 1
    assert loopback_ok(drv)


def test_at_most_16_regions_per_client(server):
    fd = memfd(4096)
    try:
        with VirtioPciDriver.connect(server.socket, mem_size=MIB) as d:  # its own memory is region 1
            baseline = fd_count(server.pid)
            for i in range(15):
                d.client.dma_map(fd, 0, HOSTILE_IOVA + i * 4096, 4096)
            with pytest.raises(VfioUserError) as e:
                d.client.dma_map(fd, 0, HOSTILE_IOVA + 15 * 4096, 4096)
            assert e.value.errno == errno.EINVAL
            assert fd_count(server.pid) == baseline + 15
            d.client.dma_unmap(HOSTILE_IOVA, 4096)
            d.client.dma_map(fd, 0, HOSTILE_IOVA + 15 * 4096, 4096)  # room again
    finally:
        os.close(fd)
    with VirtioPciDriver.connect(server.socket, mem_size=MIB):  # the server took the disconnect into account
        assert fd_count(server.pid) == baseline


# ---- finding 3: partial headers with fds --------------------------------------------------------------------
def test_partial_header_with_an_fd_leaks_nothing(server):
    with VirtioPciDriver.connect(server.socket, mem_size=MIB):
        pass
    baseline, _ = settled(server)
    fd = memfd(4096)
    try:
        for n in range(1, 16):
            peer = RawPeer(server.socket)
            peer.send(dma_map_message(2, HOSTILE_IOVA, 4096)[:n], (fd,))
            peer.close()
    finally:
        os.close(fd)
    assert settled(server)[0] == baseline


# ---- finding 4: messages in pieces ----------------------------------------------------------------------------
@pytest.mark.parametrize("cut", [7, 16, 20], ids=["header", "header-payload", "payload"])
def test_message_in_two_pieces_50ms_apart_is_served(server, cut):
    peer = RawPeer(server.socket)
    try:
        for message in (GET_INFO, CONFIG_READ):
            peer.send(message[:cut])
            time.sleep(0.05)
            peer.send(message[cut:])
            (msg_id, cmd, size, flags, err), payload = peer.reply()
            assert (msg_id, cmd, flags & 0x2F, err) == (message[0], message[2], 1, 0)  # a reply, no error
            if cmd == 4:
                assert payload[:4] == b"\x10\x00\x00\x00" and struct.unpack_from("<I", payload, 8)[0] >= 8
            else:
                assert payload[16:] == NULL_PCI_IDS
    finally:
        peer.close()


def test_dma_map_in_pieces_with_its_fd_on_the_first(server):
    fd = memfd(MIB)
    peer = RawPeer(server.socket)
    try:
        message = dma_map_message(2, HOSTILE_IOVA, MIB)
        peer.send(message[:5], (fd,))
        time.sleep(0.05)
        peer.send(message[5:30])
        time.sleep(0.05)
        peer.send(message[30:])
        (_id, cmd, _size, flags, err), _ = peer.reply()
        assert (cmd, flags & 0x20, err) == (2, 0, 0)
        peer.send(dma_map_message(3, HOSTILE_IOVA, MIB), (fd,))
        assert peer.reply()[0][4] == errno.EEXIST  # the first one was mapped
    finally:
        peer.close()
        os.close(fd)


def test_client_silent_inside_a_message_is_dropped(server):
    peer = RawPeer(server.socket, timeout=30)
    try:
        peer.send(CONFIG_READ[:20])  # a header and part of its payload, then nothing
        assert peer.closed_by_server()
    finally:
        peer.close()
    assert "client silent" in server.log()
    with VirtioPciDriver.connect(server.socket, mem_size=MIB) as d:
        d.init()
        assert loopback_ok(d)


# ---- 1 000 hostile connections --------------------------------------------------------------------------------
def hostile_connection(path: str, i: int, fd: int) -> None:
    """One of five hostile sessions, by ``i``: a partial header with an fd; duplicate DMA_MAPs, left mapped;
    a close before the version; fds sent with the version; a message cut off by the close."""
    kind = i % 5
    peer = RawPeer(path, negotiate=kind not in (2, 3))
    try:
        if kind == 0:
            peer.send(dma_map_message(2, HOSTILE_IOVA, 4096)[:1 + i % 15], (fd,))
        elif kind == 1:
            for msg_id in (2, 3, 4):
                peer.send(dma_map_message(msg_id, HOSTILE_IOVA, 4096), (fd,))
            errors = [peer.reply()[0][4] for _ in range(3)]
            assert errors == [0, errno.EEXIST, errno.EEXIST], errors
        elif kind == 3:
            peer.send(VERSION_REQUEST[:20], (fd, fd))
        elif kind == 4:
            peer.send(GET_INFO[:24], (fd,))
    finally:
        peer.close()


def test_1000_hostile_connections_leave_fd_count_and_rss_flat(server):
    fd = memfd(4096)
    try:
        with VirtioPciDriver.connect(server.socket, mem_size=MIB) as d:
            d.init()
            assert loopback_ok(d)
        fds, rss = settled(server)
        for i in range(1000):
            hostile_connection(server.socket, i, fd)
        with VirtioPciDriver.connect(server.socket, mem_size=MIB) as d:
            d.init()
            assert loopback_ok(d)
        fds_after, rss_after = settled(server)
    finally:
        os.close(fd)
    print(f"after 1000 hostile connections: {fds_after} fds (was {fds}), RSS {rss_after} KiB (was {rss} KiB)")
    assert fds_after == fds
    assert rss_after - rss < RSS_TOLERANCE_KIB
