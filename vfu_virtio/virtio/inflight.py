"""Requests of one virtqueue between "handed to the device" and "used element published" (decision TD-ASYNC).

A device finishes a :class:`~vfu_virtio.virtio.chain.DescriptorChain` either by returning its used length from
``handle`` (the transport calls :meth:`Inflight.finish` at once) or later, from any thread, with
``chain.complete(written)``. Completed chains wait in :class:`Inflight` until the event-loop thread takes them
(:meth:`Inflight.take`) and publishes their used elements: only that thread touches the ring and interrupts.

Whoever is about to take memory or the queue away from in-flight work (device reset, queue reset, DMA unmap,
client disconnect) calls :meth:`Inflight.wait_idle` first, then :meth:`Inflight.discard` what must not be published;
a completion that arrives for a discarded generation (after a timeout) is dropped, never published.
"""
from __future__ import annotations

import logging
import threading
from typing import Callable

from .chain import DescriptorChain

log = logging.getLogger("vfu_virtio.virtio.inflight")


class Inflight:
    """Thread-safe bookkeeping of one queue's requests. ``wake()`` is called (from the completing thread) when a
    chain completes outside the event loop, so the loop comes round to publish it.

    Counters (read by status tools): ``started``, ``completed``, ``dropped`` (completed but never published: the
    queue or device was reset, or the device failed).
    """

    def __init__(self, index: int, wake: Callable[[], None]):
        self.index = index
        self._wake = wake
        self._cond = threading.Condition()
        self._done: list[tuple[DescriptorChain, int]] = []
        self.outstanding = 0  # handed to the device and not completed yet
        self.epoch = 0
        self.started = self.completed = self.dropped = 0

    def start(self, chain: DescriptorChain) -> None:
        """``chain`` goes to the device now (event-loop thread)."""
        chain.epoch = self.epoch
        chain.completer = self._complete
        with self._cond:
            self.outstanding += 1
        self.started += 1

    def finish(self, chain: DescriptorChain, written: int) -> None:
        """The device answered ``chain`` synchronously (event-loop thread: no wake-up needed)."""
        self._record(chain, written, True)

    def abandon(self, chain: DescriptorChain) -> None:
        """``chain`` will never complete (the device failed on it): forget it without a used element."""
        self._record(chain, None, False)

    def _complete(self, chain: DescriptorChain, written: int) -> None:
        if self._record(chain, written, True):
            self._wake()

    def _record(self, chain: DescriptorChain, written: int | None, publish: bool) -> bool:
        with self._cond:
            if chain.completer is None:
                log.error("queue %d: chain %d completed twice (device bug); the second completion is ignored",
                          self.index, chain.id)
                return False
            chain.completer = None
            self.outstanding -= 1
            self.completed += 1
            keep = publish and chain.epoch == self.epoch and written is not None
            if keep:
                self._done.append((chain, written))
            else:
                self.dropped += 1
            if self.outstanding == 0:
                self._cond.notify_all()
            return keep

    def take(self) -> list[tuple[DescriptorChain, int]]:
        """Completed chains not yet published, oldest completion first (event-loop thread)."""
        with self._cond:
            done, self._done = self._done, []
        return done

    def has_done(self) -> bool:
        return bool(self._done)

    def wait_idle(self, timeout: float | None) -> bool:
        """Wait until no chain is outstanding; False if ``timeout`` seconds passed first."""
        with self._cond:
            return self._cond.wait_for(lambda: self.outstanding == 0, timeout)

    def discard(self) -> int:
        """Drop every completed-but-unpublished chain and every later completion of chains started before now;
        returns how many completed ones were dropped."""
        with self._cond:
            n = len(self._done)
            self._done = []
            self.epoch += 1
            self.dropped += n
            return n
