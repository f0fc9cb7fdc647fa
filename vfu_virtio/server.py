"""The device server: one virtio-pci function on a vfio-user socket, and the event loop that runs it.

:class:`DeviceServer` connects libvfio-user to the transport and nothing more: every config space access
(``VFU_REGION_FLAG_ALWAYS_CB``: libvfio-user keeps no header logic of its own), BAR0 and BAR2 accesses go to the
transport's :class:`~vfu_virtio.pci.function.PciFunction`; interrupts leave through ``vfu_irq_trigger``; the
client's INTx mask/unmask, DMA regions and resets come back in. Then it runs the event loop: one thread owns every
libvfio-user call; non-blocking attach; ``poll`` on ``vfu_get_poll_fd`` and a wake-up pipe (written by device
threads that completed a request, and by :meth:`DeviceServer.stop`); after each vfio-user message the notified
virtqueues are processed and completed requests published; when the client goes away the device is reset (after
its in-flight requests finished) and the server waits for the next client. SIGINT/SIGTERM stop it cleanly and the
socket file is removed. The driver audit file (``audit_path``) is brought up to date when a client goes away and at
shutdown.

Beside the vfio-user socket the server answers on its status socket (:mod:`vfu_virtio.control`, from a thread of
its own) with :meth:`DeviceServer.status`: the transport's state and counters, the device's own figures, the
clients' attach and detach times. Logs at info: one line per client attach and detach, one per guest error (with
its reason, from the transport), and a final ``stopped`` line with the totals.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import signal
import stat
import threading
import time
from collections import deque
from typing import Mapping

from . import __version__, control
from .abi.virtio import VIRTIO_PCI_DEVICE_ID_BASE, VIRTIO_PCI_VENDOR_ID
from .libvfio_user import VfuContext
from .libvfio_user import _lib as L
from .pci import layout
from .virtio.audit import Audit
from .virtio.device import VirtioDevice
from .virtio.inject import Fault
from .virtio.memory import GuestMemory
from .virtio.metrics import transport_status
from .virtio.notify_area import NOTIFY_CHOICES, NotifyArea
from .virtio.stages import StageClock
from .virtio.transport import DEFAULT_POLL_US, VirtioPciTransport

log = logging.getLogger("vfu_virtio.server")

# libvfio-user's blocking receives (the version negotiation after accept, the rest of a message whose first
# bytes arrived: the project's patch assembles a message however its bytes arrive) are interrupted after this
# long by SIGALRM, armed for each message, so a client that goes silent mid-message is dropped instead of
# hanging the device (main thread only: that is where the signal lands).
CLIENT_RECEIVE_TIMEOUT_S = 5.0
#: Clients whose attach and detach times the status keeps (the count covers all of them).
CLIENTS_KEPT = 16
#: With ``notify="mmap"`` an idle loop looks at the notification area at intervals that double from
#: :data:`MMAP_FIRST_US` up to :data:`MMAP_IDLE_US` (microseconds): a request soon after the last one is seen within
#: tens of µs, and an idle device wakes ~125 times a second, well under 1 % of a core.
MMAP_FIRST_US = 25
MMAP_IDLE_US = 8000


class DeviceServer:
    """Serve ``device`` on ``socket_path`` until :meth:`stop` (or SIGINT/SIGTERM in :meth:`serve_forever`).

    ``rings`` (:data:`~vfu_virtio.virtio.transport.RING_CHOICES`), ``pci_class``, ``strict``, ``faults`` and
    ``fault_seed`` go to the transport; ``audit_path`` is the driver audit file (:mod:`vfu_virtio.virtio.audit`).
    ``labels`` (e.g. ``{"kind": "rpmb", "instance": "0", "state": "/x.db"}``) are shown in :meth:`status`.
    ``status_endpoint``: answer on the status socket (``socket_path + ".status"``, :mod:`vfu_virtio.control`).
    ``poll_us``: after a queue's ring runs dry the loop keeps its available buffer notifications off and polls the
    ring for this many microseconds, restarting the window with each request, before enabling them again and
    re-checking the ring (0: enable at once). ``notify``: ``"message"`` (notify writes arrive as vfio-user region
    writes) or ``"mmap"`` (the notification area is a memfd the client maps,
    :mod:`vfu_virtio.virtio.notify_area`; the loop polls it, backing off to :data:`MMAP_IDLE_US` when idle).
    ``stage_timers``: time the loop's stages (:mod:`vfu_virtio.virtio.stages`; shown in :meth:`status` and the final
    log line).
    Raises :class:`vfu_virtio.libvfio_user.VfuError` if the socket cannot be created (one line naming the path),
    :class:`vfu_virtio.unixsock.SocketPathError` for the status socket, ``LibraryNotFound`` if libvfio-user is
    missing or not the pinned revision, OSError if the audit file cannot be written, and ValueError for a device
    that does not fit the PCI layout or cannot do a fault.
    """

    def __init__(self, device: VirtioDevice, socket_path: str, log_level: int = logging.INFO, rings: str = "any",
                 pci_class: tuple[int, int, int] = layout.PCI_CLASS_OTHERS, labels: Mapping[str, str] | None = None,
                 status_endpoint: bool = True, audit_path: str | None = None, strict: bool = False,
                 faults: tuple[Fault, ...] = (), fault_seed: int = 0, poll_us: int = DEFAULT_POLL_US,
                 notify: str = "message", stage_timers: bool = False):
        if notify not in NOTIFY_CHOICES:
            raise ValueError(f"notify {notify!r}: expected one of {', '.join(NOTIFY_CHOICES)}")
        if poll_us < 0:
            raise ValueError(f"poll_us {poll_us}: must be >= 0")
        self.device = device
        self.socket_path = socket_path
        self.labels = dict(labels or {})
        self.memory = GuestMemory()
        self.audit = Audit(audit_path, device.name)
        self.transport = VirtioPciTransport(device, self.memory, self, self._wake, rings, pci_class, self.audit,
                                            strict, faults, fault_seed)
        self.poll_ns = poll_us * 1000
        self.notify_mode = notify
        self.transport.polling = poll_us > 0 or notify == "mmap"
        self.clock = self.transport.clock = StageClock() if stage_timers else None
        self.notify_area: NotifyArea | None = None
        self._idle_us = 1_000_000
        self._stop = threading.Event()
        self.clients = 0
        self.client_times: deque[list[float | None]] = deque(maxlen=CLIENTS_KEPT)  # [attached, detached or None]
        self.started = time.time()
        self.endpoint: control.StatusEndpoint | None = None
        self._alarm = False
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            if notify == "mmap":
                self.notify_area = NotifyArea(self.transport.num_queues)
            self.ctx = VfuContext(socket_path, log_level)
            self._build()
            if status_endpoint:
                mode = stat.S_IMODE(os.stat(socket_path).st_mode)
                self.endpoint = control.StatusEndpoint(socket_path, self.status, mode).start()
        except BaseException:
            if getattr(self, "ctx", None) is not None:
                self.ctx.destroy()
            if self.notify_area is not None:
                self.notify_area.close()
            self._close_pipe()
            raise

    # ---- libvfio-user <-> the transport ---------------------------------------------------------------
    def _build(self) -> None:
        ctx, fn = self.ctx, self.transport.function
        ctx.pci_init(VIRTIO_PCI_VENDOR_ID, VIRTIO_PCI_DEVICE_ID_BASE + self.device.device_id, VIRTIO_PCI_VENDOR_ID,
                     0, fn.identity.class_code)  # placeholders: every config space read is served by ``fn``
        ctx.setup_region(L.VFU_PCI_DEV_CFG_REGION_IDX, L.PCI_CFG_SPACE_SIZE, fn.config_access,
                         L.VFU_REGION_FLAG_RW | L.VFU_REGION_FLAG_ALWAYS_CB)
        mem_rw = L.VFU_REGION_FLAG_RW | L.VFU_REGION_FLAG_MEM
        area = self.notify_area
        for bar, size in ((layout.VIRTIO_BAR, layout.VIRTIO_BAR_SIZE), (layout.MSIX_BAR, layout.MSIX_BAR_SIZE)):
            mapped = area is not None and bar == layout.VIRTIO_BAR
            ctx.setup_region(bar, size, lambda off, n, data, bar=bar: fn.bar_access(bar, off, n, data), mem_rw,
                             area.mmap_areas if mapped else (), area.fd if mapped else -1)
        ctx.setup_irqs(L.VFU_DEV_INTX_IRQ, 1)
        ctx.setup_irqs(L.VFU_DEV_MSIX_IRQ, self.transport.num_vectors)
        ctx.setup_irq_state(L.VFU_DEV_INTX_IRQ, lambda _start, _count, masked: fn.intx_client_mask(masked))
        ctx.setup_dma(self._dma_map, self._dma_unmap)
        ctx.setup_reset(self._reset)
        ctx.realize()

    # IrqSink of the transport's PCI function
    def trigger_msix(self, vector: int) -> None:
        self.ctx.irq_trigger(vector)

    def trigger_intx(self) -> None:
        self.ctx.irq_trigger(0)

    def _dma_map(self, iova: int, length: int, vaddr: int | None, prot: int) -> None:
        log.debug("DMA region mapped: iova=%#x len=%#x vaddr=%s prot=%d", iova, length,
                  hex(vaddr) if vaddr else None, prot)
        if not vaddr:
            log.debug("DMA region %#x+%#x came without an fd: the device cannot access it", iova, length)
        self.memory.add(iova, length, vaddr, prot)

    def _dma_unmap(self, iova: int, length: int) -> None:
        log.debug("DMA region unmapped: iova=%#x len=%#x", iova, length)
        self.transport.quiesce("DMA unmap")  # no request may still be writing into the region (TD-ASYNC)
        self.memory.remove(iova, length)

    def _reset(self, kind: int) -> None:
        what = {L.VFU_RESET_DEVICE: "vfio-user device reset", L.VFU_RESET_LOST_CONN: "client connection lost"}
        # a lost connection is the client's detach, logged once by the loop
        log.log(logging.DEBUG if kind == L.VFU_RESET_LOST_CONN else logging.INFO, "%s: resetting the device",
                what.get(kind, f"reset type {kind}"))
        self.transport.reset()
        self.transport.function.reset()
        if self.notify_area is not None:
            self.notify_area.reset()

    def _wake(self) -> None:
        """A request completed on another thread: bring the loop round to publish it (thread-safe)."""
        try:
            os.write(self._wake_w, b"c")
        except BlockingIOError:
            pass  # the pipe is full of wake-ups already

    # ---- status ---------------------------------------------------------------------------------------
    def status(self) -> dict:
        """The server's state as JSON-ready data (any thread; read without stopping the loop).

        ``{"version", "pid", "socket", "labels": {...}, "device": device name, "virtio_id", "started" (unix
        seconds), "uptime_s", "clients": {"served": count, "attached": bool, "recent": [{"client": n, "attached":
        unix s, "detached": unix s or None}]}, "transport": vfu_virtio.virtio.metrics.transport_status(...),
        "device_stats": device.stats()}``.
        """
        now = time.time()
        recent = list(self.client_times)
        first = self.clients - len(recent) + 1
        return {
            "version": __version__, "pid": os.getpid(), "socket": self.socket_path, "labels": dict(self.labels),
            "device": self.device.name, "virtio_id": self.device.device_id, "started": self.started,
            "uptime_s": round(now - self.started, 3),
            "clients": {"served": self.clients, "attached": bool(recent) and recent[-1][1] is None,
                        "recent": [{"client": first + i, "attached": a, "detached": d}
                                   for i, (a, d) in enumerate(recent)]},
            "transport": transport_status(self.transport, self.device.feature_names()),
            "device_stats": self.device.stats(),
            "loop": {"notify": self.notify_mode, "poll_us": self.poll_ns // 1000,
                     "stages": self.clock.summary() if self.clock is not None else None},
        }

    def totals(self) -> str:
        """The totals of the final log line: clients, requests, errors, DEVICE_NEEDS_RESET events (said without the
        word, so that a count of DEVICE_NEEDS_RESET lines in a log counts the warnings alone)."""
        t = self.transport
        requests = sum(q.inflight.started for q in t.queues)
        errors = sum(m.errors for m in t.metrics.queues)
        return (f"{self.clients} client(s) served, {requests} request(s), {errors} answered with an error, "
                f"{t.metrics.needs_reset} needs-reset event(s)")

    # ---- the loop -----------------------------------------------------------------------------------
    def _after_message(self) -> None:
        if self.transport.pending:
            self.transport.process_pending()
        self.transport.publish_completions()

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
                times = [time.time(), None]
                self.client_times.append(times)
                self.audit.clients = self.clients
                log.info("client %d attached", self.clients)
                self.serve_client()
                times[1] = time.time()
                self.audit.flush()
                if max_clients is not None and self.clients >= max_clients:
                    log.info("client %d gone after %.1f s; device reset; exiting after %d client(s)", self.clients,
                             times[1] - times[0], max_clients)
                    break
                log.info("client %d gone after %.1f s; device reset, waiting for the next client", self.clients,
                         times[1] - times[0])
        finally:
            self.close()
            if self.clock is not None:
                log.info("stage timers: %s", self.clock.line())
            log.info("stopped: %s", self.totals())

    def _poll(self, fd: int, timeout_us: int) -> bool:
        """Wait up to ``timeout_us`` microseconds (``select``: poll's timeout has a whole-millisecond granularity)
        for ``fd`` or a wake-up; True if ``fd`` is readable or hung up."""
        ready, _w, _x = select.select((fd, self._wake_r), (), (), timeout_us / 1e6)
        if self._wake_r in ready:
            try:
                os.read(self._wake_r, 4096)
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
            if not self._poll(listen_fd, 1_000_000) or self._stop.is_set():
                continue
            try:
                with self._deadline():
                    if self.ctx.attach():
                        return True
            except OSError as e:
                # a client that connected and failed the version negotiation: wait for the next one
                if e.errno == errno.ENOMSG:  # it closed without a word: a probe of the socket
                    log.info("a connection closed before the vfio-user version negotiation (a probe of the socket?)")
                else:
                    log.warning("client refused during attach: %s", e)
        return False

    def serve_client(self) -> None:
        """Serve the attached client until it goes away (or :meth:`stop`), then reset the device and forget
        its DMA regions. The caller attached it (``ctx.attach()``)."""
        self._serve_client()
        self.transport.reset()  # waits for in-flight requests before the memory goes
        self.transport.function.reset()
        self.memory.clear()
        if self.notify_area is not None:
            self.notify_area.reset()

    def _serve_client(self) -> None:
        fd = self.ctx.poll_fd()
        t = self.transport
        self._idle_us = MMAP_FIRST_US if self.notify_area is not None else 1_000_000
        while not self._stop.is_set():
            ready = self._poll(fd, self._idle_us)
            if self.clock is not None:
                self.clock.start()
            t.publish_completions()
            self._doorbells()
            if not ready and not t.pending:
                if self.notify_area is not None:
                    self._idle_us = min(2 * self._idle_us, MMAP_IDLE_US)
                continue
            if not self._messages():
                return
            if self.notify_area is not None:
                self._idle_us = MMAP_FIRST_US
            if t.hot and not self._poll_window(fd):
                return

    def _messages(self) -> bool:
        """Handle every waiting vfio-user message, processing the queues after each; False when the client went."""
        try:
            while self._run_one():
                self._after_message()
        except ConnectionError:
            return False
        except OSError as e:  # the library answered the client with an error, or was interrupted
            log.warning("vfio-user message handling failed: %s", e)
        self._after_message()
        return True

    def _doorbells(self) -> None:
        """``--notify mmap``: the notify writes the driver stored into the mapped area since the last look."""
        if self.notify_area is not None:
            for q in self.notify_area.take():
                self.transport.notify(q)

    def _poll_window(self, fd: int) -> bool:
        """Poll the hot rings (and the notification area, completions and the socket) without sleeping until
        ``poll_us`` passed without a request, then enable notifications again and re-check the rings
        (:meth:`~vfu_virtio.virtio.transport.VirtioPciTransport.rearm`). False when the client went."""
        t = self.transport
        clock = self.clock
        now = time.perf_counter_ns
        window = self.poll_ns
        deadline = now() + window
        sock = select.poll()
        sock.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        while not self._stop.is_set():
            self._doorbells()
            if t.poll_rings() or t.has_completions():
                if clock is not None:
                    clock.start()
                self._after_message()
                deadline = now() + window
            elif sock.poll(0):
                if clock is not None:
                    clock.start()
                if not self._messages():
                    return False
                deadline = now() + window
            elif now() >= deadline:
                if not t.rearm():
                    return True
                if clock is not None:
                    clock.start()
                self._after_message()
                deadline = now() + window
        return True

    def _run_one(self) -> int:
        """Handle at most one vfio-user message, within the receive deadline; 0 when none was waiting."""
        with self._deadline():
            return self.ctx.run()

    def close(self) -> None:
        """Stop the status endpoint, destroy the libvfio-user context, remove the sockets, close the device."""
        if self.endpoint is not None:
            self.endpoint.close()
        self.transport.quiesce("shutdown")
        if self.transport.injector:
            self.transport.injector.close()
        self.audit.flush()
        self.memory.clear()
        self.ctx.destroy()
        if self.notify_area is not None:
            self.notify_area.close()
        self.device.close()
        self._close_pipe()

    def _close_pipe(self) -> None:
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
