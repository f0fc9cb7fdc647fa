"""A vfio-user client: the messages a VMM sends to a vfio-user server, over its UNIX socket.

Owns the socket, message ids, request/reply matching, file descriptor passing (SCM_RIGHTS) and the
byte layouts of the client-to-server commands of the vfio-user protocol ("vfio-user Protocol
Specification"). It knows nothing of PCI or virtio.

Every message starts with the 16-byte header (:data:`VFIO_USER_HEADER`)::

    0 msg_id le16   2 cmd le16   4 msg_size le32 (header included)   8 flags le32   12 error le32
    flags: bits 0-3 type (0 command, 1 reply), bit 4 no_reply, bit 5 error

A reply with the error bit raises :class:`VfioUserError` carrying the errno and the command's name.
One lock serialises request/reply pairs, so a client may be shared between threads. A reply that does
not arrive within ``timeout`` seconds raises :class:`VfioUserTimeout` and closes the connection (the
byte stream can no longer be trusted). Posted writes (``no_reply``) are used for doorbells, as PCI
memory writes are posted; a failure of one shows only in the server's log.
"""
from __future__ import annotations

import array
import errno as _errno
import json
import os
import socket
import struct
import threading
from typing import NamedTuple, Sequence

# ---- protocol constants ("Commands", "Header") ----------------------------------------------------
VFIO_USER_VERSION = 1
VFIO_USER_DMA_MAP = 2
VFIO_USER_DMA_UNMAP = 3
VFIO_USER_DEVICE_GET_INFO = 4
VFIO_USER_DEVICE_GET_REGION_INFO = 5
VFIO_USER_DEVICE_GET_REGION_IO_FDS = 6
VFIO_USER_DEVICE_GET_IRQ_INFO = 7
VFIO_USER_DEVICE_SET_IRQS = 8
VFIO_USER_REGION_READ = 9
VFIO_USER_REGION_WRITE = 10
VFIO_USER_DMA_READ = 11
VFIO_USER_DMA_WRITE = 12
VFIO_USER_DEVICE_RESET = 13

COMMAND_NAMES = {v: k for k, v in list(globals().items()) if k.startswith("VFIO_USER_") and isinstance(v, int)}

VFIO_USER_F_TYPE_COMMAND = 0
VFIO_USER_F_TYPE_REPLY = 1
VFIO_USER_F_TYPE_MASK = 0xF
VFIO_USER_F_NO_REPLY = 1 << 4
VFIO_USER_F_ERROR = 1 << 5

# The version this client speaks: libvfio-user API 0.1 (the pinned server revision checks the major).
CLIENT_VERSION_MAJOR = 0
CLIENT_VERSION_MINOR = 1
DEFAULT_MAX_DATA_XFER_SIZE = 1 << 20   # protocol default when the peer does not say
CLIENT_MAX_MSG_FDS = 8                 # fds we accept in one message

# DMA_MAP flags
VFIO_USER_F_DMA_REGION_READ = 1 << 0
VFIO_USER_F_DMA_REGION_WRITE = 1 << 1

# DEVICE_GET_INFO flags (linux/vfio.h)
VFIO_DEVICE_FLAGS_RESET = 1 << 0
VFIO_DEVICE_FLAGS_PCI = 1 << 1

# region info flags and capabilities (linux/vfio.h)
VFIO_REGION_INFO_FLAG_READ = 1 << 0
VFIO_REGION_INFO_FLAG_WRITE = 1 << 1
VFIO_REGION_INFO_FLAG_MMAP = 1 << 2
VFIO_REGION_INFO_FLAG_CAPS = 1 << 3
VFIO_REGION_INFO_CAP_SPARSE_MMAP = 1

# PCI region and IRQ indexes (linux/vfio.h: VFIO_PCI_*_REGION_INDEX, VFIO_PCI_*_IRQ_INDEX)
VFIO_PCI_BAR0_REGION_INDEX = 0
VFIO_PCI_ROM_REGION_INDEX = 6
VFIO_PCI_CONFIG_REGION_INDEX = 7
VFIO_PCI_INTX_IRQ_INDEX = 0
VFIO_PCI_MSI_IRQ_INDEX = 1
VFIO_PCI_MSIX_IRQ_INDEX = 2
VFIO_PCI_ERR_IRQ_INDEX = 3
VFIO_PCI_REQ_IRQ_INDEX = 4

# irq info / set flags (linux/vfio.h)
VFIO_IRQ_INFO_EVENTFD = 1 << 0
VFIO_IRQ_INFO_MASKABLE = 1 << 1
VFIO_IRQ_INFO_AUTOMASKED = 1 << 2
VFIO_IRQ_INFO_NORESIZE = 1 << 3
VFIO_IRQ_SET_DATA_NONE = 1 << 0
VFIO_IRQ_SET_DATA_BOOL = 1 << 1
VFIO_IRQ_SET_DATA_EVENTFD = 1 << 2
VFIO_IRQ_SET_ACTION_MASK = 1 << 3
VFIO_IRQ_SET_ACTION_UNMASK = 1 << 4
VFIO_IRQ_SET_ACTION_TRIGGER = 1 << 5

# ---- wire layouts ---------------------------------------------------------------------------------
VFIO_USER_HEADER = struct.Struct("<HHIII")          # 16: msg_id, cmd, msg_size, flags, error
VFIO_USER_VERSION_HDR = struct.Struct("<HH")        # 4: major, minor, then NUL-terminated JSON
VFIO_USER_DMA_MAP_S = struct.Struct("<IIQQQ")       # 32: argsz, flags, offset, address, size
VFIO_USER_DMA_UNMAP_S = struct.Struct("<IIQQ")      # 24: argsz, flags, address, size
VFIO_DEVICE_INFO = struct.Struct("<IIII")           # 16: argsz, flags, num_regions, num_irqs
VFIO_REGION_INFO = struct.Struct("<IIIIQQ")         # 32: argsz, flags, index, cap_offset, size, offset
VFIO_INFO_CAP_HEADER = struct.Struct("<HHI")        # 8: id, version, next
VFIO_SPARSE_MMAP_HDR = struct.Struct("<II")         # 8: nr_areas, reserved; then (offset le64, size le64)*
VFIO_SPARSE_MMAP_AREA = struct.Struct("<QQ")
VFIO_IRQ_INFO = struct.Struct("<IIII")              # 16: argsz, flags, index, count
VFIO_IRQ_SET = struct.Struct("<IIIII")              # 20: argsz, flags, index, start, count; then data
VFIO_USER_REGION_ACCESS = struct.Struct("<QII")     # 16: offset, region, count; then data


class VfioUserError(OSError):
    """The server answered a command with an error: ``errno``, ``command`` (its name), ``strerror``."""

    def __init__(self, err: int, command: str, detail: str = ""):
        msg = f"{command}: {os.strerror(err) if err else 'error reply without errno'}"
        if detail:
            msg += f" ({detail})"
        super().__init__(err, msg)
        self.command = command


class VfioUserTimeout(VfioUserError, TimeoutError):
    """No reply within the timeout; the connection has been closed."""


class VfioUserDisconnected(VfioUserError, ConnectionError):
    """The server closed the connection (or it was closed after an earlier failure)."""


class VfioUserProtocolError(VfioUserError):
    """The server sent something the protocol does not allow (bad size, wrong reply)."""


class DeviceInfo(NamedTuple):
    flags: int
    num_regions: int
    num_irqs: int


class RegionInfo(NamedTuple):
    """``size`` and ``offset`` in bytes; ``flags`` VFIO_REGION_INFO_FLAG_*; ``sparse_mmap`` [(offset, size)];
    ``fds`` file descriptors sent with the reply (closed unless ``keep_fds`` was asked)."""

    index: int
    flags: int
    size: int
    offset: int
    cap_offset: int
    sparse_mmap: list
    fds: tuple

    @property
    def readable(self) -> bool:
        return bool(self.flags & VFIO_REGION_INFO_FLAG_READ)

    @property
    def writable(self) -> bool:
        return bool(self.flags & VFIO_REGION_INFO_FLAG_WRITE)


class IrqInfo(NamedTuple):
    index: int
    flags: int
    count: int


def _cmd_name(cmd: int) -> str:
    return COMMAND_NAMES.get(cmd, f"command {cmd}")


class VfioUserClient:
    """Connected, version-negotiated vfio-user client on ``socket_path``.

    ``timeout`` (seconds) bounds the connect and every reply. After construction ``server_version``
    (major, minor), ``server_caps`` (the JSON capabilities object), ``max_data_xfer_size`` (bytes per
    REGION_READ/WRITE; larger accesses are split) and ``max_msg_fds`` (fds per message; larger
    SET_IRQS are split) are known. Raises ``OSError`` if the socket cannot be reached and
    :class:`VfioUserError` if the server refuses the version.
    """

    def __init__(self, socket_path: str, timeout: float = 5.0):
        self.socket_path = socket_path
        self.timeout = timeout
        self._lock = threading.Lock()
        self._msg_id = 0
        self._sock: socket.socket | None = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(socket_path)
        except BaseException:
            self._sock.close()
            self._sock = None
            raise
        self._cmsg_space = socket.CMSG_SPACE(CLIENT_MAX_MSG_FDS * 4)
        self.max_data_xfer_size = DEFAULT_MAX_DATA_XFER_SIZE
        self.max_msg_fds = 1
        self.server_caps: dict = {}
        self.server_version = (0, 0)
        try:
            self._negotiate()
        except BaseException:
            self.close()
            raise

    # ---- transport --------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._sock is not None

    def _next_id(self) -> int:
        self._msg_id = (self._msg_id + 1) & 0xFFFF
        return self._msg_id

    def _send(self, msg_id: int, cmd: int, payload, fds: Sequence[int], flags: int) -> None:
        sock = self._sock
        if sock is None:
            raise VfioUserDisconnected(_errno.ENOTCONN, _cmd_name(cmd), "connection closed")
        hdr = VFIO_USER_HEADER.pack(msg_id, cmd, VFIO_USER_HEADER.size + len(payload), flags, 0)
        data = hdr + bytes(payload) if payload else hdr
        try:
            if fds:
                anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
                sent = sock.sendmsg([data], anc)
                if sent < len(data):
                    sock.sendall(memoryview(data)[sent:])
            else:
                sock.sendall(data)
        except socket.timeout:
            self._fail()
            raise VfioUserTimeout(_errno.ETIMEDOUT, _cmd_name(cmd), "send timed out") from None
        except OSError as e:
            self._fail()
            raise VfioUserDisconnected(e.errno or _errno.EPIPE, _cmd_name(cmd), f"send failed: {e}") from None

    def _recv_exact(self, n: int, cmd: int, fds: list[int]) -> bytearray:
        """Read exactly ``n`` bytes; file descriptors that arrive on the way are appended to ``fds``."""
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        sock = self._sock
        while got < n:
            try:
                data, anc, _flags, _addr = sock.recvmsg(n - got, self._cmsg_space)
            except socket.timeout:
                self._fail()
                raise VfioUserTimeout(_errno.ETIMEDOUT, _cmd_name(cmd),
                                      f"no reply within {self.timeout} s") from None
            except OSError as e:
                self._fail()
                raise VfioUserDisconnected(e.errno or _errno.ECONNRESET, _cmd_name(cmd),
                                           f"receive failed: {e}") from None
            for level, typ, cdata in anc:
                if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                    a = array.array("i")
                    a.frombytes(cdata[:len(cdata) - len(cdata) % a.itemsize])
                    fds.extend(a)
            if not data:
                self._fail()
                raise VfioUserDisconnected(_errno.ECONNRESET, _cmd_name(cmd), "server closed the connection")
            view[got:got + len(data)] = data
            got += len(data)
        return buf

    def _recv_msg(self, cmd: int) -> tuple[tuple, bytearray, list[int]]:
        fds: list[int] = []
        hdr = VFIO_USER_HEADER.unpack(self._recv_exact(VFIO_USER_HEADER.size, cmd, fds))
        size = hdr[2]
        if size < VFIO_USER_HEADER.size or size > 16 * (1 << 20) + VFIO_USER_HEADER.size:
            self._fail()
            raise VfioUserProtocolError(_errno.EPROTO, _cmd_name(cmd), f"message size {size} in reply header")
        body = self._recv_exact(size - VFIO_USER_HEADER.size, cmd, fds) if size > VFIO_USER_HEADER.size \
            else bytearray()
        return hdr, body, fds

    def _fail(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def request(self, cmd: int, payload=b"", fds: Sequence[int] = (), no_reply: bool = False,
                keep_fds: bool = False) -> tuple[bytes, list[int]]:
        """Send command ``cmd`` with ``payload`` (and ``fds`` by SCM_RIGHTS); return the reply payload and
        any fds that came with it (closed unless ``keep_fds``).

        ``no_reply`` sets the No_reply flag and returns at once with ``(b"", [])``. Raises
        :class:`VfioUserError` for an error reply, :class:`VfioUserTimeout` / :class:`VfioUserDisconnected`
        for transport failures. The raw entry point for conformance tests; typed methods below.
        """
        with self._lock:
            msg_id = self._next_id()
            self._send(msg_id, cmd, payload, fds, VFIO_USER_F_NO_REPLY if no_reply else 0)
            if no_reply:
                return b"", []
            while True:
                hdr, body, rfds = self._recv_msg(cmd)
                r_id, r_cmd, _size, r_flags, r_err = hdr
                if r_flags & VFIO_USER_F_TYPE_MASK == VFIO_USER_F_TYPE_COMMAND:
                    self._refuse_server_command(r_id, r_cmd, rfds)
                    continue
                if r_id != msg_id or r_cmd != cmd:
                    for fd in rfds:
                        os.close(fd)
                    self._fail()
                    raise VfioUserProtocolError(_errno.EPROTO, _cmd_name(cmd),
                                                f"reply id {r_id} cmd {r_cmd} does not match request id "
                                                f"{msg_id}")
                break
            if r_flags & VFIO_USER_F_ERROR:
                for fd in rfds:
                    os.close(fd)
                raise VfioUserError(r_err, _cmd_name(cmd))
            if not keep_fds:
                for fd in rfds:
                    os.close(fd)
                rfds = []
            return bytes(body), rfds

    def _refuse_server_command(self, msg_id: int, cmd: int, fds: list[int]) -> None:
        """A server-to-client command (DMA_READ/WRITE): we share memory by fd, so answer EOPNOTSUPP."""
        for fd in fds:
            os.close(fd)
        hdr = VFIO_USER_HEADER.pack(msg_id, cmd, VFIO_USER_HEADER.size,
                                    VFIO_USER_F_TYPE_REPLY | VFIO_USER_F_ERROR, _errno.EOPNOTSUPP)
        try:
            self._sock.sendall(hdr)
        except OSError:
            self._fail()

    # ---- VFIO_USER_VERSION ----------------------------------------------------------------------
    def _negotiate(self) -> None:
        caps = {"capabilities": {"max_msg_fds": CLIENT_MAX_MSG_FDS,
                                 "max_data_xfer_size": DEFAULT_MAX_DATA_XFER_SIZE}}
        payload = VFIO_USER_VERSION_HDR.pack(CLIENT_VERSION_MAJOR, CLIENT_VERSION_MINOR) + \
            json.dumps(caps, separators=(",", ":")).encode() + b"\0"
        reply, _ = self.request(VFIO_USER_VERSION, payload)
        if len(reply) < VFIO_USER_VERSION_HDR.size:
            raise VfioUserProtocolError(_errno.EPROTO, "VFIO_USER_VERSION", f"reply of {len(reply)} bytes")
        major, minor = VFIO_USER_VERSION_HDR.unpack_from(reply)
        if major != CLIENT_VERSION_MAJOR or minor > CLIENT_VERSION_MINOR:
            raise VfioUserProtocolError(_errno.EPROTO, "VFIO_USER_VERSION",
                                        f"server answered version {major}.{minor}, we proposed "
                                        f"{CLIENT_VERSION_MAJOR}.{CLIENT_VERSION_MINOR}")
        self.server_version = (major, minor)
        text = reply[VFIO_USER_VERSION_HDR.size:].split(b"\0", 1)[0]
        if text:
            try:
                self.server_caps = json.loads(text).get("capabilities", {}) or {}
            except (ValueError, AttributeError) as e:
                raise VfioUserProtocolError(_errno.EPROTO, "VFIO_USER_VERSION", f"bad JSON: {e}") from None
        self.max_msg_fds = int(self.server_caps.get("max_msg_fds", 1))
        self.max_data_xfer_size = min(int(self.server_caps.get("max_data_xfer_size", DEFAULT_MAX_DATA_XFER_SIZE)),
                                      DEFAULT_MAX_DATA_XFER_SIZE)

    # ---- DMA ----------------------------------------------------------------------------------
    def dma_map(self, fd: int | None, offset: int, iova: int, size: int,
                prot: int = VFIO_USER_F_DMA_REGION_READ | VFIO_USER_F_DMA_REGION_WRITE) -> None:
        """VFIO_USER_DMA_MAP: guest range ``[iova, iova+size)`` is file ``fd`` from byte ``offset``.

        ``prot``: VFIO_USER_F_DMA_REGION_READ|WRITE bits. ``fd`` None maps without an fd (the server
        could then only use DMA_READ/WRITE messages, which this client refuses). EEXIST on overlap.
        """
        payload = VFIO_USER_DMA_MAP_S.pack(VFIO_USER_DMA_MAP_S.size, prot, offset if fd is not None else 0,
                                           iova, size)
        self.request(VFIO_USER_DMA_MAP, payload, fds=() if fd is None else (fd,))

    def dma_unmap(self, iova: int, size: int, flags: int = 0) -> None:
        """VFIO_USER_DMA_UNMAP of exactly a previous mapping; the server drops its references first."""
        self.request(VFIO_USER_DMA_UNMAP, VFIO_USER_DMA_UNMAP_S.pack(VFIO_USER_DMA_UNMAP_S.size, flags, iova, size))

    # ---- device, regions ----------------------------------------------------------------------
    def device_info(self) -> DeviceInfo:
        """VFIO_USER_DEVICE_GET_INFO: flags (VFIO_DEVICE_FLAGS_*), number of regions and IRQ types."""
        reply, _ = self.request(VFIO_USER_DEVICE_GET_INFO, VFIO_DEVICE_INFO.pack(VFIO_DEVICE_INFO.size, 0, 0, 0))
        if len(reply) < VFIO_DEVICE_INFO.size:
            raise VfioUserProtocolError(_errno.EPROTO, "VFIO_USER_DEVICE_GET_INFO", f"reply of {len(reply)} bytes")
        _argsz, flags, nreg, nirq = VFIO_DEVICE_INFO.unpack_from(reply)
        return DeviceInfo(flags, nreg, nirq)

    def region_info(self, index: int, keep_fds: bool = False) -> RegionInfo:
        """VFIO_USER_DEVICE_GET_REGION_INFO for region ``index`` (asks again with a larger argsz when the
        server has capabilities to add). Sparse mmap areas are decoded; a missing region has size 0."""
        argsz = VFIO_REGION_INFO.size
        for _ in range(2):
            reply, fds = self.request(VFIO_USER_DEVICE_GET_REGION_INFO,
                                      VFIO_REGION_INFO.pack(argsz, 0, index, 0, 0, 0) + bytes(argsz - 32),
                                      keep_fds=True)
            if len(reply) < VFIO_REGION_INFO.size:
                for fd in fds:
                    os.close(fd)
                raise VfioUserProtocolError(_errno.EPROTO, "VFIO_USER_DEVICE_GET_REGION_INFO",
                                            f"reply of {len(reply)} bytes")
            r_argsz, flags, r_index, cap_off, size, offset = VFIO_REGION_INFO.unpack_from(reply)
            if r_argsz <= len(reply) or r_argsz > 65536 or argsz >= r_argsz:
                break
            for fd in fds:
                os.close(fd)
            argsz = r_argsz
        sparse = []
        if flags & VFIO_REGION_INFO_FLAG_CAPS and cap_off:
            seen = set()
            while cap_off and cap_off + VFIO_INFO_CAP_HEADER.size <= len(reply) and cap_off not in seen:
                seen.add(cap_off)
                cid, _ver, nxt = VFIO_INFO_CAP_HEADER.unpack_from(reply, cap_off)
                if cid == VFIO_REGION_INFO_CAP_SPARSE_MMAP:
                    p = cap_off + VFIO_INFO_CAP_HEADER.size
                    if p + VFIO_SPARSE_MMAP_HDR.size <= len(reply):
                        nr, _ = VFIO_SPARSE_MMAP_HDR.unpack_from(reply, p)
                        p += VFIO_SPARSE_MMAP_HDR.size
                        for _i in range(min(nr, (len(reply) - p) // VFIO_SPARSE_MMAP_AREA.size)):
                            sparse.append(VFIO_SPARSE_MMAP_AREA.unpack_from(reply, p))
                            p += VFIO_SPARSE_MMAP_AREA.size
                cap_off = nxt
        if not keep_fds:
            for fd in fds:
                os.close(fd)
            fds = []
        return RegionInfo(index, flags, size, offset, cap_off, sparse, tuple(fds))

    def region_read(self, index: int, offset: int, size: int) -> bytes:
        """VFIO_USER_REGION_READ of ``size`` bytes at ``offset`` of region ``index`` (split at
        ``max_data_xfer_size``). EINVAL from the server for an out-of-bounds or unknown region."""
        if size <= self.max_data_xfer_size:
            return self._region_read1(index, offset, size)
        parts = []
        step = self.max_data_xfer_size
        for off in range(0, size, step):
            parts.append(self._region_read1(index, offset + off, min(step, size - off)))
        return b"".join(parts)

    def _region_read1(self, index: int, offset: int, size: int) -> bytes:
        reply, _ = self.request(VFIO_USER_REGION_READ, VFIO_USER_REGION_ACCESS.pack(offset, index, size))
        hs = VFIO_USER_REGION_ACCESS.size
        if size == 0 and not reply:
            return b""
        if len(reply) < hs:
            raise VfioUserProtocolError(_errno.EPROTO, "VFIO_USER_REGION_READ", f"reply of {len(reply)} bytes")
        _o, _r, count = VFIO_USER_REGION_ACCESS.unpack_from(reply)
        if count != size or len(reply) - hs != size:
            raise VfioUserProtocolError(_errno.EPROTO, "VFIO_USER_REGION_READ",
                                        f"asked {size} bytes at region {index} offset {offset:#x}, got "
                                        f"count {count} with {len(reply) - hs} data bytes")
        return reply[hs:]

    def region_write(self, index: int, offset: int, data, posted: bool = False) -> None:
        """VFIO_USER_REGION_WRITE of ``data`` at ``offset`` of region ``index`` (split at
        ``max_data_xfer_size``). ``posted`` sends it with No_reply (errors are then not reported)."""
        data = bytes(data)
        step = self.max_data_xfer_size
        if len(data) <= step:
            self.request(VFIO_USER_REGION_WRITE, VFIO_USER_REGION_ACCESS.pack(offset, index, len(data)) + data,
                         no_reply=posted)
            return
        for off in range(0, len(data), step):
            chunk = data[off:off + step]
            self.request(VFIO_USER_REGION_WRITE, VFIO_USER_REGION_ACCESS.pack(offset + off, index, len(chunk))
                         + chunk, no_reply=posted)

    # ---- interrupts ---------------------------------------------------------------------------
    def irq_info(self, index: int) -> IrqInfo:
        """VFIO_USER_DEVICE_GET_IRQ_INFO for IRQ type ``index`` (e.g. VFIO_PCI_MSIX_IRQ_INDEX)."""
        reply, _ = self.request(VFIO_USER_DEVICE_GET_IRQ_INFO, VFIO_IRQ_INFO.pack(VFIO_IRQ_INFO.size, 0, index, 0))
        if len(reply) < VFIO_IRQ_INFO.size:
            raise VfioUserProtocolError(_errno.EPROTO, "VFIO_USER_DEVICE_GET_IRQ_INFO", f"reply of {len(reply)} bytes")
        _argsz, flags, r_index, count = VFIO_IRQ_INFO.unpack_from(reply)
        return IrqInfo(r_index, flags, count)

    def set_irqs(self, index: int, start: int, eventfds: Sequence[int],
                 action: int = VFIO_IRQ_SET_ACTION_TRIGGER) -> None:
        """VFIO_USER_DEVICE_SET_IRQS with DATA_EVENTFD: sub-indexes ``start..start+len(eventfds)-1`` of
        IRQ type ``index`` signal those eventfds. Sent in pieces of at most the server's max_msg_fds."""
        if not eventfds:
            raise ValueError("set_irqs needs at least one eventfd (use disable_irqs to de-assign)")
        step = max(1, self.max_msg_fds)
        for i in range(0, len(eventfds), step):
            chunk = list(eventfds[i:i + step])
            self.set_irqs_raw(VFIO_IRQ_SET_DATA_EVENTFD | action, index, start + i, len(chunk), fds=chunk)

    def disable_irqs(self, index: int, start: int = 0, count: int = 0) -> None:
        """De-assign interrupts: all of type ``index`` (count 0, DATA_NONE|ACTION_TRIGGER), or the
        ``count`` sub-indexes from ``start`` (DATA_EVENTFD without fds)."""
        if count == 0:
            self.set_irqs_raw(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, index, 0, 0)
        else:
            self.set_irqs_raw(VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, index, start, count)

    def set_irqs_raw(self, flags: int, index: int, start: int, count: int, data: bytes = b"",
                     fds: Sequence[int] = ()) -> None:
        """VFIO_USER_DEVICE_SET_IRQS exactly as given (``data``: the DATA_BOOL array)."""
        payload = VFIO_IRQ_SET.pack(VFIO_IRQ_SET.size + len(data), flags, index, start, count) + data
        self.request(VFIO_USER_DEVICE_SET_IRQS, payload, fds=fds)

    # ---- reset, close -------------------------------------------------------------------------
    def reset(self) -> None:
        """VFIO_USER_DEVICE_RESET (no payload)."""
        self.request(VFIO_USER_DEVICE_RESET)

    def abort(self) -> None:
        """Shut the socket down, from any thread: a call blocked on it fails at once (:class:`VfioUserDisconnected`)
        and so does every later one. :meth:`close` still closes it."""
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        """Close the socket (the server then unmaps our memory and drops our eventfds)."""
        with self._lock:
            self._fail()

    def __enter__(self) -> "VfioUserClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
