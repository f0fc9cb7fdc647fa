"""The device server: one virtio-pci function on a vfio-user socket, and the loop that runs it.

:class:`DeviceServer` builds the PCI function with libvfio-user (ids, class, revision, the capability
chain and BARs of :mod:`vfu_virtio.pci.layout`, MSI-X with one vector per queue plus config, DMA
callbacks) around a :class:`~vfu_virtio.virtio.transport.VirtioPciTransport`, then runs the event loop:
one thread owns every libvfio-user call; non-blocking attach; ``poll`` on ``vfu_get_poll_fd`` and a
wake-up pipe; after each vfio-user message the notified virtqueues are processed; when the client
goes away the device is reset and the server waits for the next client. SIGINT/SIGTERM stop it
cleanly and the socket file is removed.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import signal
import struct
import threading

from .libvfio_user import VfuContext
from .libvfio_user import _lib as L
from .pci import capabilities as caps
from .pci import layout
from .virtio.constants import (VIRTIO_PCI_CAP_COMMON_CFG, VIRTIO_PCI_CAP_DEVICE_CFG, VIRTIO_PCI_CAP_ISR_CFG,
                               VIRTIO_MSI_NO_VECTOR, VIRTIO_PCI_DEVICE_ID_BASE,
                               VIRTIO_PCI_VENDOR_ID)
from .virtio.device import VirtioDevice
from .virtio.memory import GuestMemory
from .virtio.transport import VirtioPciTransport

log = logging.getLogger("vfu_virtio.server")

PCI_SUBSYSTEM_ID = 0x1100  # "PCI Device Discovery": non-transitional devices use 0x40 or higher
PCI_REVISION_ID_OFFSET = 0x08
# libvfio-user's blocking receives (the version negotiation after accept, a message body after its
# header) are interrupted after this long by SIGALRM, so a client that goes silent mid-message cannot
# hang the device (main thread only: that is where the signal lands).
CLIENT_RECEIVE_TIMEOUT_S = 5.0


class DeviceServer:
    """Serve ``device`` on ``socket_path`` until :meth:`stop` (or SIGINT/SIGTERM in :meth:`serve_forever`).

    Raises :class:`vfu_virtio.libvfio_user.VfuError` if the socket cannot be created (the message names
    the path and errno) and ``LibraryNotFound`` if libvfio-user is missing or not the pinned revision.
    """

    def __init__(self, device: VirtioDevice, socket_path: str, log_level: int = logging.INFO,
                 pci_class: tuple[int, int, int] = layout.PCI_CLASS_OTHERS):
        self.device = device
        self.pci_class = pci_class  # (base class, subclass, programming interface)
        self.socket_path = socket_path
        self.memory = GuestMemory()
        self.ctx = VfuContext(socket_path, log_level)
        self.transport = VirtioPciTransport(device, self.memory, self._interrupt)
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.clients = 0
        self._alarm = False
        self._build()

    # ---- the PCI function -----------------------------------------------------------------------
    def _build(self) -> None:
        ctx, dev = self.ctx, self.device
        ctx.pci_init(VIRTIO_PCI_VENDOR_ID, VIRTIO_PCI_DEVICE_ID_BASE + dev.device_id,
                     VIRTIO_PCI_VENDOR_ID, PCI_SUBSYSTEM_ID, self.pci_class)
        self.cfg = ctx.config_space()
        self.cfg[PCI_REVISION_ID_OFFSET] = bytes([layout.PCI_REVISION])  # modern-only device: revision >= 1
        cfg_len = len(dev.config_space())
        if cfg_len > layout.DEVICE_CFG_MAX:
            raise ValueError(f"device config of {cfg_len} bytes exceeds the {layout.DEVICE_CFG_MAX}-byte window")
        # the config space callback must exist before a VFU_CAP_FLAG_CALLBACK capability is added
        ctx.setup_region(L.VFU_PCI_DEV_CFG_REGION_IDX, L.PCI_CFG_SPACE_SIZE, self._config_access, L.VFU_REGION_FLAG_RW)
        B = layout.VIRTIO_BAR
        ctx.add_capability(caps.virtio_cap(VIRTIO_PCI_CAP_COMMON_CFG, B, layout.COMMON_CFG_OFFSET,
                                           layout.COMMON_CFG_LENGTH), layout.CAP_COMMON, L.VFU_CAP_FLAG_READONLY)
        ctx.add_capability(caps.notify_cap(B, layout.NOTIFY_OFFSET,
                                           dev.num_queues * layout.NOTIFY_OFF_MULTIPLIER,
                                           layout.NOTIFY_OFF_MULTIPLIER), layout.CAP_NOTIFY, L.VFU_CAP_FLAG_READONLY)
        ctx.add_capability(caps.virtio_cap(VIRTIO_PCI_CAP_ISR_CFG, B, layout.ISR_OFFSET, layout.ISR_LENGTH),
                           layout.CAP_ISR, L.VFU_CAP_FLAG_READONLY)
        ctx.add_capability(caps.virtio_cap(VIRTIO_PCI_CAP_DEVICE_CFG, B, layout.DEVICE_CFG_OFFSET,
                                           max(cfg_len, 1)), layout.CAP_DEVICE, L.VFU_CAP_FLAG_READONLY)
        ctx.add_capability(caps.pci_cfg_cap(), layout.CAP_PCI_CFG, L.VFU_CAP_FLAG_CALLBACK)
        ctx.add_capability(caps.msix_cap(self.transport.num_vectors, layout.MSIX_BAR, layout.MSIX_TABLE_OFFSET,
                                         layout.MSIX_BAR, layout.MSIX_PBA_OFFSET), layout.CAP_MSIX)
        mem_rw = L.VFU_REGION_FLAG_RW | L.VFU_REGION_FLAG_MEM
        ctx.setup_region(layout.VIRTIO_BAR, layout.VIRTIO_BAR_SIZE, self.transport.bar0_access, mem_rw)
        ctx.setup_region(layout.MSIX_BAR, layout.MSIX_BAR_SIZE, self.transport.msix_access, mem_rw)
        ctx.setup_irqs(L.VFU_DEV_INTX_IRQ, 1)
        ctx.setup_irqs(L.VFU_DEV_MSIX_IRQ, self.transport.num_vectors)
        ctx.setup_dma(self._dma_map, self._dma_unmap)
        ctx.setup_reset(self._reset)
        ctx.realize()

    def _config_access(self, offset: int, size: int, data: bytes | None) -> bytes | None:
        """Config space outside what libvfio-user handles itself: the PCI configuration access capability.

        ``struct virtio_pci_cfg_cap`` ("PCI configuration access capability"): the driver writes bar,
        offset and length, then reads or writes ``pci_cfg_data`` to access that BAR window.
        """
        base = layout.CAP_PCI_CFG
        rel = offset - base
        if not 0 <= rel < caps.VIRTIO_PCI_CFG_CAP.size:
            if data is None:
                return bytes(self.cfg[offset:offset + size])
            log.debug("write of %d bytes to config space offset %#x ignored", size, offset)
            return None
        if data is not None and rel >= caps.CFG_CAP_DATA:
            self._cfg_window(data)
            return None
        if data is not None:
            if rel < caps.CFG_CAP_BAR:
                raise PermissionError(errno.EPERM, "capability header is read-only")
            self.cfg[offset:offset + size] = data
            return None
        if rel + size > caps.CFG_CAP_DATA:
            window = self._cfg_window(None) or b""
            self.cfg[base + caps.CFG_CAP_DATA:base + caps.CFG_CAP_DATA + len(window)] = window
        return bytes(self.cfg[offset:offset + size])

    def _cfg_window(self, data: bytes | None) -> bytes | None:
        base = layout.CAP_PCI_CFG
        bar = self.cfg[base + caps.CFG_CAP_BAR][0]
        off, length = struct.unpack_from("<II", bytes(self.cfg[base + caps.CFG_CAP_OFFSET:base + 16]))
        if bar != layout.VIRTIO_BAR or length not in (1, 2, 4) or off % length or off + length > layout.VIRTIO_BAR_SIZE:
            log.debug("PCI cfg access window bar=%d offset=%#x length=%d not served (BAR0, 1/2/4 bytes, aligned)",
                      bar, off, length)
            return None
        if data is None:
            return self.transport.bar0_access(off, length, None)
        self.transport.bar0_access(off, length, bytes(data[:length]))
        self._after_message()
        return None

    def _interrupt(self, vector: int) -> None:
        """MSI-X vector ``vector`` if the driver enabled MSI-X (Message Control bit 15), else INTx."""
        if self.cfg[layout.CAP_MSIX + 3][0] & 0x80:
            if vector != VIRTIO_MSI_NO_VECTOR:
                self.ctx.irq_trigger(vector)
        else:
            self.ctx.irq_trigger(0)

    def _dma_map(self, iova: int, length: int, vaddr: int | None, prot: int) -> None:
        log.debug("DMA region mapped: iova=%#x len=%#x vaddr=%s prot=%d", iova, length,
                  hex(vaddr) if vaddr else None, prot)
        if not vaddr:
            log.debug("DMA region %#x+%#x came without an fd: the device cannot access it", iova, length)
        self.memory.add(iova, length, vaddr, prot)

    def _dma_unmap(self, iova: int, length: int) -> None:
        log.debug("DMA region unmapped: iova=%#x len=%#x", iova, length)
        self.memory.remove(iova, length)

    def _reset(self, kind: int) -> None:
        what = {L.VFU_RESET_DEVICE: "vfio-user device reset", L.VFU_RESET_LOST_CONN: "client connection lost"}
        log.info("%s: resetting the device", what.get(kind, f"reset type {kind}"))
        self.transport.reset()

    # ---- the loop -----------------------------------------------------------------------------------
    def _after_message(self) -> None:
        if self.transport.pending:
            self.transport.process_pending()

    def stop(self) -> None:
        """Ask the loop to finish (thread-safe, signal-safe)."""
        self._stop.set()
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def serve_forever(self, max_clients: int | None = None) -> None:
        """Run until :meth:`stop`, SIGINT/SIGTERM (when called from the main thread) or ``max_clients``
        clients have come and gone. Always destroys the context and removes the socket on the way out."""
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda s, _f: (log.info("%s: shutting down", signal.Signals(s).name),
                                                  self.stop()))
            signal.signal(signal.SIGALRM, lambda _s, _f: log.warning(
                "client silent for %.0f s inside a message: dropping it", CLIENT_RECEIVE_TIMEOUT_S))
            self._alarm = True
            # a file size limit (RLIMIT_FSIZE) must fail the store's write with EFBIG -- a commit error the
            # device answers with DEVICE_NEEDS_RESET -- instead of killing the device with SIGXFSZ
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        try:
            log.info("serving virtio %s (PCI %04x:%04x) on %s", self.device.name, VIRTIO_PCI_VENDOR_ID,
                     VIRTIO_PCI_DEVICE_ID_BASE + self.device.device_id, self.socket_path)
            while not self._stop.is_set():
                if not self._wait_for_client():
                    break
                self.clients += 1
                log.info("client %d attached", self.clients)
                self._serve_client()
                self.memory.clear()
                self.transport.reset()
                if max_clients is not None and self.clients >= max_clients:
                    log.info("client %d gone; device reset; exiting after %d client(s)", self.clients, max_clients)
                    break
                log.info("client %d gone; device reset, waiting for the next client", self.clients)
        finally:
            self.close()

    def _poll(self, fd: int, timeout_ms: int) -> bool:
        p = select.poll()
        p.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        p.register(self._wake_r, select.POLLIN)
        ready = dict(p.poll(timeout_ms))
        if self._wake_r in ready:
            try:
                os.read(self._wake_r, 64)
            except BlockingIOError:
                pass
        return fd in ready

    @contextlib.contextmanager
    def _deadline(self):
        """Interrupt a libvfio-user call that blocks on a silent client (EINTR) after the receive timeout."""
        if not self._alarm:
            yield
            return
        signal.setitimer(signal.ITIMER_REAL, CLIENT_RECEIVE_TIMEOUT_S)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)

    def _wait_for_client(self) -> bool:
        listen_fd = self.ctx.poll_fd()
        while not self._stop.is_set():
            if not self._poll(listen_fd, 1000) or self._stop.is_set():
                continue
            try:
                with self._deadline():
                    if self.ctx.attach():
                        return True
            except OSError as e:
                # a client that connected and failed the version negotiation: wait for the next one
                log.warning("client refused during attach: %s", e)
        return False

    def _serve_client(self) -> None:
        fd = self.ctx.poll_fd()
        while not self._stop.is_set():
            if not self._poll(fd, 1000) and not self.transport.pending:
                continue
            try:
                with self._deadline():
                    while self.ctx.run():
                        self._after_message()
            except ConnectionError:
                return
            except OSError as e:  # the library answered the client with an error, or was interrupted
                log.warning("vfio-user message handling failed: %s", e)
            self._after_message()

    def close(self) -> None:
        """Destroy the libvfio-user context, remove the socket, close the device."""
        self.memory.clear()
        self.ctx.destroy()
        self.device.close()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
