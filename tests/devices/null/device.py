"""The test-only "null" device: loopback virtqueues and a doorbell in its configuration space.

Virtio device id 63 (0x3f, PCI 1af4:107f): the last id a modern PCI function can carry (PCI device ids
0x1040..0x107f, "PCI Device Discovery") and one the published standard's device id table ("Device Types")
leaves unassigned (it lists 0..13, 16..36 and 38..49). No feature bits of its own.

Virtqueues: ``queues`` of them (1..8), all alike. A request's device-readable bytes are copied, in order,
into its device-writable buffers; used length = bytes written = min(readable, writable) (0 when either part
is empty).

Asynchronous completion (decision TD-ASYNC), with ``delay_ms`` > 0: a request whose first readable buffer starts with
the 4 bytes ``b"SLOW"`` is kept; a worker thread completes it (same loopback) ``delay_ms`` milliseconds later, in
arrival order, while every other request completes at once, so completions come back out of order. The worker
writes guest memory only when the delay has passed: if the transport did not wait for it before a reset, a DMA
unmap or a disconnect, the write would land in memory the client took back (and kill the process).

Configuration space, ``struct virtio_null_config``, 12 bytes, little-endian:
``le32 queues`` @0 (read-only), ``le32 counter`` @4 (read-only), ``le32 doorbell`` @8 (reads 0). A driver
write of exactly 4 bytes at offset 8 adds its value to ``counter`` (modulo 2**32) and raises a configuration
change ("Notification of Device Configuration Changes": config_generation moves, the configuration vector
fires); a value of 0, and any other write, changes nothing (one debug line). The counter is not reset by a
device reset: the transport re-reads the configuration only when the device announces a change.
"""
from __future__ import annotations

import queue
import struct
import threading
import time

from vfu_virtio.virtio.chain import DescriptorChain
from vfu_virtio.virtio.device import VirtioDevice

VIRTIO_ID_NULL = 0x3F
MAX_QUEUES = 8
MAX_DELAY_MS = 10_000
SLOW = b"SLOW"

#: struct virtio_null_config, 12 bytes: le32 queues @0, le32 counter @4, le32 doorbell @8.
VIRTIO_NULL_CONFIG = struct.Struct("<III")
DOORBELL_OFFSET = 8
_LE32 = struct.Struct("<I")


class NullDevice(VirtioDevice):
    """The loopback device (see the module docstring); ``queues`` 1..:data:`MAX_QUEUES`, ``delay_ms``
    0..:data:`MAX_DELAY_MS` (ValueError otherwise)."""

    device_id = VIRTIO_ID_NULL
    name = "null"

    def __init__(self, queues: int = 2, delay_ms: int = 0):
        super().__init__()
        if not 1 <= queues <= MAX_QUEUES:
            raise ValueError(f"queues must be 1..{MAX_QUEUES}, not {queues}")
        if not 0 <= delay_ms <= MAX_DELAY_MS:
            raise ValueError(f"delay_ms must be 0..{MAX_DELAY_MS}, not {delay_ms}")
        self.num_queues = queues
        self.counter = 0
        self.delay = delay_ms / 1000
        self._slow: queue.SimpleQueue[DescriptorChain | None] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None

    def config_space(self) -> bytes:
        """``struct virtio_null_config`` (12 bytes); the doorbell reads 0."""
        return VIRTIO_NULL_CONFIG.pack(self.num_queues, self.counter, 0)

    def write_config(self, offset: int, data: bytes) -> None:
        """A le32 written to the doorbell adds to the counter and announces the configuration change."""
        value = _LE32.unpack(data)[0] if offset == DOORBELL_OFFSET and len(data) == _LE32.size else 0
        if not value:
            self.log.debug("config write of %d bytes at offset %d changes nothing", len(data), offset)
            return
        self.counter = (self.counter + value) & 0xFFFFFFFF
        self.notify_config_change()

    def handle(self, queue_index: int, chain: DescriptorChain) -> int | None:
        """Copy min(readable, writable) bytes and return that count (the used length); a ``SLOW`` request with
        ``delay_ms`` set returns None and completes later on the worker."""
        if self.delay and chain.readable and bytes(chain.readable[0][:len(SLOW)]) == SLOW:
            if self._worker is None:
                self._worker = threading.Thread(target=self._run_slow, name="null-slow", daemon=True)
                self._worker.start()
            self._slow.put((time.monotonic() + self.delay, chain))
            return None
        return self._loopback(chain)

    @staticmethod
    def _loopback(chain: DescriptorChain) -> int:
        n = min(chain.reader.remaining, chain.writer.capacity)
        chain.writer.write_at(0, chain.reader.take(n))
        return n

    def _run_slow(self) -> None:
        while (item := self._slow.get()) is not None:
            due, chain = item
            time.sleep(max(0.0, due - time.monotonic()))
            chain.complete(self._loopback(chain))

    def close(self) -> None:
        """Stop the worker (after what it holds)."""
        if self._worker is not None:
            self._slow.put(None)
            self._worker.join()
