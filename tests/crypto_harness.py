"""Test harness for the crypto device: requests handed straight to a device object.

:class:`InProcess` lives with the tests because it joins both sides: the driver side's request builders
(``vfu_virtio.client.crypto``, which import nothing of the device side) and the device object itself, whose chains
it builds over fresh bytearrays. It honours the asynchronous completion contract of ``VirtioDevice.handle``
(decision TD-ASYNC): a request that a data queue's worker completes is waited for.

"""
from __future__ import annotations

import queue
from dataclasses import dataclass

from vfu_virtio.client import crypto as D
from vfu_virtio.virtio.chain import DescriptorChain

#: Seconds to wait for a request completed on a worker thread.
COMPLETION_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Completion:
    """A completed request: ``status`` (the last writable byte), ``out`` (the writable bytes before it),
    ``used`` (the used length the device returned)."""

    status: int
    out: bytes
    used: int


def handle(device, queue_index: int, chain: DescriptorChain) -> int:
    """``device.handle(queue_index, chain)``, waiting for the completion if the device keeps the chain; the used
    length. Raises ``queue.Empty`` if it does not complete within :data:`COMPLETION_TIMEOUT_S`."""
    done: queue.SimpleQueue[int] = queue.SimpleQueue()
    chain.completer = lambda _chain, written: done.put(written)
    used = device.handle(queue_index, chain)
    return done.get(timeout=COMPLETION_TIMEOUT_S) if used is None else used


class InProcess:
    """Hands requests to a device object directly: each becomes a DescriptorChain over fresh bytearrays
    (one readable and one writable descriptor).

    ``features`` are the negotiated crypto feature bits passed to ``activate`` (0 = the Linux driver). The
    controlq helpers build the standard's requests (REVISION_1 when bit 0 is set): for another profile, send its
    requests with :meth:`raw`.
    """

    def __init__(self, device, features: int = 0):
        self.device = device
        self.revision_1 = bool(features & 1)
        device.activate(features)

    def _run(self, queue_index: int, readable: list[bytes], writable: list[int]) -> tuple[bytes, int]:
        outs = [bytearray(n) for n in writable]
        chain = DescriptorChain(0, [memoryview(bytearray(b)) for b in readable], [memoryview(o) for o in outs])
        used = handle(self.device, queue_index, chain)
        return b"".join(bytes(o) for o in outs), used

    def create(self, req: D.Request) -> tuple[int, int]:
        """Send a create-session request on the controlq -> (session_id, status)."""
        out, _used = self._run(self.device.max_dataqueues, [req.readable], [req.writable])
        return D.session_input(out)

    def destroy(self, opcode: int, session_id: int) -> int:
        """Destroy a session -> status."""
        req = D.destroy_session(opcode, session_id, self.revision_1)
        out, _used = self._run(self.device.max_dataqueues, [req.readable], [req.writable])
        return out[0]

    def raw(self, req: D.Request, queue_index: int = 0, writable: int | None = None) -> tuple[bytes, int]:
        """Send ``req`` (one readable, one writable descriptor of ``writable`` bytes, default ``req.writable``) on
        queue ``queue_index`` -> (the writable bytes, the used length)."""
        return self._run(queue_index, [req.readable], [req.writable if writable is None else writable])

    def data(self, req: D.Request, queue_index: int = 0, extra: int = 0) -> Completion:
        """Send a dataq request with ``extra`` spare writable bytes -> :class:`Completion`."""
        out, used = self._run(queue_index, [req.readable], [req.writable + extra])
        return Completion(out[-1], out[:-1], used)
