"""A ``vfu_ctx_t`` owned by Python: creation, setup calls, callbacks, errors.

Every callback passed to C is kept alive for the context's life. An exception raised by a Python
callback is caught here, logged with its traceback, and turned into ``-1``/``errno`` (``EINVAL`` unless
it is an :class:`OSError` with an errno): nothing unwinds through libvfio-user. libvfio-user's own log
lines reach the ``vfu_virtio.libvfio_user`` logger at the matching level, except two kinds that are debug: the ones
of a context reset (``vfu_reset_ctx: ...``, written at info on every disconnect, normal or not) and the version
negotiation's complaint about a client that connected and closed without sending anything (ENOMSG: what a probe
of the socket does, e.g. a second server checking whether the path is in use).
"""
from __future__ import annotations

import ctypes as C
import errno
import logging
import os
from typing import Callable, Sequence

from vfu_virtio import unixsock

from . import _lib as L

log = logging.getLogger("vfu_virtio.libvfio_user")

_SYSLOG_TO_LOGGING = {L.LOG_ERR: logging.ERROR, L.LOG_WARNING: logging.WARNING, L.LOG_NOTICE: logging.INFO,
                      L.LOG_INFO: logging.INFO, L.LOG_DEBUG: logging.DEBUG}


#: libvfio-user messages logged at debug whatever the library's level: a context reset on a disconnect.
_QUIET_PREFIXES = ("vfu_reset_ctx:",)
#: ... and a client that closed before the version negotiation (``failed to recv version: <ENOMSG>``).
_QUIET_SUFFIXES = (f"version: {os.strerror(errno.ENOMSG)}",)


class VfuError(OSError):
    """A libvfio-user call failed; ``errno`` and the message (naming the call or the socket path) are kept;
    ``str()`` is the message alone."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


def _check(rc: int, what: str) -> int:
    if rc < 0:
        e = C.get_errno()
        raise VfuError(e, f"{what}: {os.strerror(e)}")
    return rc


def _errno_of(exc: BaseException) -> int:
    return exc.errno if isinstance(exc, OSError) and exc.errno else errno.EINVAL


# (region access(offset, data_or_size, is_write)) -> bytes for reads, None for writes
RegionHandler = Callable[[int, int, bytes | None], bytes | None]


class VfuContext:
    """One vfio-user server endpoint on a UNIX socket (non-blocking attach, libvfio-user's poll fd).

    ``socket_path`` is checked first (:func:`vfu_virtio.unixsock.check_listen_path`: at most 107 bytes, an
    existing writable directory, nothing there but a stale socket, which is removed; a socket another process
    serves is never taken over). Raises :class:`VfuError` on any failing call; for the socket, one line naming
    the path.
    """

    def __init__(self, socket_path: str, log_level: int = logging.INFO):
        self.lib = L.load_library()
        self.socket_path = socket_path
        self._keep: list = []  # ctypes callbacks that C holds pointers to
        self._owns_path = False
        self.ctx = None
        try:
            unixsock.check_listen_path(socket_path, "vfio-user socket")
            unixsock.remove_stale(socket_path, "vfio-user socket")
        except unixsock.SocketPathError as e:
            raise VfuError(e.errno, e.strerror) from None
        ctx = self.lib.vfu_create_ctx(L.VFU_TRANS_SOCK, os.fsencode(socket_path), L.LIBVFIO_USER_FLAG_ATTACH_NB,
                                      None, L.VFU_DEV_TYPE_PCI)
        if not ctx:
            e = C.get_errno()
            raise VfuError(e, f"vfio-user socket {socket_path}: cannot listen: {os.strerror(e)}")
        self._owns_path = True
        self.ctx = ctx
        self._setup_log(log_level)

    # ---- setup -------------------------------------------------------------------------------
    def _setup_log(self, level: int) -> None:
        @L.vfu_log_fn_t
        def _log(_ctx, lvl, msg):
            try:
                text = msg.decode(errors="replace").rstrip()
                quiet = text.startswith(_QUIET_PREFIXES) or text.endswith(_QUIET_SUFFIXES)
                level = logging.DEBUG if quiet else _SYSLOG_TO_LOGGING.get(lvl, logging.DEBUG)
                log.log(level, "%s", text)
            except Exception:  # noqa: BLE001 - never unwind through C
                pass
        self._keep.append(_log)
        syslog_level = L.LOG_DEBUG if level <= logging.DEBUG else L.LOG_INFO if level <= logging.INFO else L.LOG_ERR
        _check(self.lib.vfu_setup_log(self.ctx, _log, syslog_level), "vfu_setup_log")

    def pci_init(self, vendor: int, device: int, subsys_vendor: int, subsys: int,
                 class_code: tuple[int, int, int]) -> None:
        """Conventional PCI, normal header, 256-byte config space; sets ids and class code."""
        _check(self.lib.vfu_pci_init(self.ctx, L.VFU_PCI_TYPE_CONVENTIONAL, L.PCI_HEADER_TYPE_NORMAL, 0),
               "vfu_pci_init")
        self.lib.vfu_pci_set_id(self.ctx, vendor, device, subsys_vendor, subsys)
        self.lib.vfu_pci_set_class(self.ctx, *class_code)

    def config_space(self) -> C.Array:
        """The library's config space buffer (256 bytes) as a writable ctypes array."""
        ptr = self.lib.vfu_pci_get_config_space(self.ctx)
        return (C.c_char * L.PCI_CFG_SPACE_SIZE).from_address(ptr)

    def add_capability(self, data: bytes, pos: int = 0, flags: int = 0) -> int:
        """Copy a capability (header first, ``next`` ignored) into config space; returns its offset."""
        buf = C.create_string_buffer(bytes(data), len(data))
        return _check(self.lib.vfu_pci_add_capability(self.ctx, pos, flags, buf), "vfu_pci_add_capability")

    def setup_region(self, index: int, size: int, handler: RegionHandler, flags: int,
                     mmap_areas: Sequence[tuple[int, int]] = (), fd: int = -1) -> None:
        """A region whose accesses call ``handler``; with ``fd`` (backing the region from file offset 0) and
        ``mmap_areas`` (``[(offset, size)]`` inside the region, page-aligned) the client may map those areas of the
        fd instead (``VFIO_REGION_INFO_CAP_SPARSE_MMAP``), and accesses it makes there never reach ``handler``.

        ``handler(offset, size, None)`` returns ``size`` bytes for a read; ``handler(offset, size, data)``
        performs a write. Exceptions become -1/errno for the client.
        """
        @L.vfu_region_access_cb_t
        def _access(_ctx, buf, count, offset, is_write):
            try:
                if is_write:
                    handler(offset, count, C.string_at(buf, count))
                else:
                    data = handler(offset, count, None)
                    C.memmove(buf, data, count)
                return count
            except Exception as exc:  # noqa: BLE001
                log.error("region %d %s of %d bytes at %#x failed: %s", index, "write" if is_write else "read",
                          count, offset, exc, exc_info=not isinstance(exc, OSError))
                C.set_errno(_errno_of(exc))
                return -1
        self._keep.append(_access)
        areas = (L.iovec * len(mmap_areas))(*(L.iovec(off, n) for off, n in mmap_areas)) if mmap_areas else None
        _check(self.lib.vfu_setup_region(self.ctx, index, size, _access, flags, areas, len(mmap_areas), fd, 0),
               f"vfu_setup_region({index})")

    def setup_reset(self, on_reset: Callable[[int], None]) -> None:
        """``on_reset(vfu_reset_type)`` on client device reset or lost connection."""
        @L.vfu_reset_cb_t
        def _reset(_ctx, kind):
            try:
                on_reset(kind)
                return 0
            except Exception as exc:  # noqa: BLE001
                log.error("reset callback failed: %s", exc, exc_info=True)
                C.set_errno(_errno_of(exc))
                return -1
        self._keep.append(_reset)
        _check(self.lib.vfu_setup_device_reset_cb(self.ctx, _reset), "vfu_setup_device_reset_cb")

    def setup_dma(self, on_map: Callable[[int, int, int | None, int], None],
                  on_unmap: Callable[[int, int], None]) -> None:
        """``on_map(iova, length, vaddr_or_None, prot)`` / ``on_unmap(iova, length)`` for DMA regions.

        libvfio-user maps fd-backed regions itself and gives us ``vaddr``; the unmap callback must drop
        every reference before it returns (the library munmaps right after).
        """
        def _wrap(fn, what):
            def cb(_ctx, info_p):
                try:
                    info = info_p.contents
                    if what == "map":
                        fn(info.iova.iov_base or 0, info.iova.iov_len, info.vaddr, info.prot)
                    else:
                        fn(info.iova.iov_base or 0, info.iova.iov_len)
                except Exception as exc:  # noqa: BLE001
                    log.error("DMA %s callback failed: %s", what, exc, exc_info=True)
            return cb
        reg = L.vfu_dma_register_cb_t(_wrap(on_map, "map"))
        unreg = L.vfu_dma_unregister_cb_t(_wrap(on_unmap, "unmap"))
        self._keep += [reg, unreg]
        _check(self.lib.vfu_setup_device_dma(self.ctx, reg, unreg), "vfu_setup_device_dma")

    def setup_irqs(self, kind: int, count: int) -> None:
        _check(self.lib.vfu_setup_device_nr_irqs(self.ctx, kind, count), "vfu_setup_device_nr_irqs")

    def setup_irq_state(self, kind: int, on_state: Callable[[int, int, bool], None]) -> None:
        """``on_state(start, count, masked)`` when the client masks or unmasks interrupts of type ``kind``
        (VFIO_USER_DEVICE_SET_IRQS with ACTION_MASK / ACTION_UNMASK)."""
        @L.vfu_dev_irq_state_cb_t
        def _state(_ctx, start, count, mask):
            try:
                on_state(start, count, bool(mask))
            except Exception as exc:  # noqa: BLE001 - never unwind through C
                log.error("IRQ state callback failed: %s", exc, exc_info=True)
        self._keep.append(_state)
        _check(self.lib.vfu_setup_irq_state_callback(self.ctx, kind, _state), "vfu_setup_irq_state_callback")

    # ---- running -----------------------------------------------------------------------------
    def realize(self) -> None:
        _check(self.lib.vfu_realize_ctx(self.ctx), "vfu_realize_ctx")

    def attach(self) -> bool:
        """Non-blocking attach: True once a client is connected, False on EAGAIN."""
        if self.lib.vfu_attach_ctx(self.ctx) < 0:
            e = C.get_errno()
            if e in (errno.EAGAIN, errno.EWOULDBLOCK):
                return False
            raise VfuError(e, f"vfu_attach_ctx: {os.strerror(e)}")
        return True

    def poll_fd(self) -> int:
        return _check(self.lib.vfu_get_poll_fd(self.ctx), "vfu_get_poll_fd")

    def run(self) -> int:
        """Handle at most one message; returns the number handled (0 on EAGAIN).

        Raises :class:`ConnectionError` when the client went away (ENOTCONN/ECONNRESET) and
        :class:`VfuError` for any other failure.
        """
        rc = self.lib.vfu_run_ctx(self.ctx)
        if rc >= 0:
            return rc
        e = C.get_errno()
        if e in (errno.EAGAIN, errno.EWOULDBLOCK):
            return 0
        if e in (errno.ENOTCONN, errno.ECONNRESET, errno.EPIPE):
            raise ConnectionError(e, os.strerror(e))
        raise VfuError(e, f"vfu_run_ctx: {os.strerror(e)}")

    def irq_trigger(self, subindex: int) -> bool:
        """Signal MSI-X vector ``subindex``; False (no raise) when the client gave no eventfd for it."""
        if self.lib.vfu_irq_trigger(self.ctx, subindex) < 0:
            e = C.get_errno()
            log.debug("vfu_irq_trigger(%d): %s", subindex, os.strerror(e))
            return False
        return True

    def destroy(self) -> None:
        """Destroy the context and remove the socket file (the pinned revision leaves it behind)."""
        if self.ctx:
            self.lib.vfu_destroy_ctx(self.ctx)
            self.ctx = None
        if self._owns_path:  # only the path this context bound: never another server's
            self._owns_path = False
            try:
                os.unlink(self.socket_path)
            except FileNotFoundError:
                pass
