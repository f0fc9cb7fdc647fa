"""Fault injection: a device that misbehaves on purpose, in controlled and reproducible ways (``--inject SPEC``).

A fault is one ``--inject`` argument, ``KIND[:NAME=VALUE[,NAME=VALUE...]]`` (:func:`parse`)::

    error          answer the request with an error status instead of executing it; status=NAME (the device's
                   status names: crypto ERR (default), BADMSG, NOTSUPP, INVSESS, NOSPC, KEY_REJECTED; RPMB
                   GENERAL_FAILURE (default), AUTH_FAILURE, COUNT_FAILURE, ADDR_FAILURE, WRITE_FAILURE,
                   READ_FAILURE, NO_AUTH_KEY, WRITE_COUNTER_EXPIRED)
    delay          complete the request ms=N milliseconds later (required)
    reorder        hold completions until window=N (default 2) are held, or ms=N (default 20) passed, then complete
                   them newest first: out of order
    needs-reset    set DEVICE_NEEDS_RESET instead of handling the request (which is never completed)
    config-change  handle the request, then raise a configuration change (config_generation moves, the
                   configuration vector fires)
    clear-hw-ready handle the request, then clear the crypto device's VIRTIO_CRYPTO_S_HW_READY status bit (a
                   configuration change): at once, or ms=N milliseconds later; restore-ms=N sets it again N
                   milliseconds after that (default: never)
    drop-irq       do not send an interrupt the device sends: vector=N (an MSI-X vector), vector=intx, or any
    dup-irq        send an interrupt twice (same vector filter)

Which requests or interrupts a fault applies to (all optional): ``queue=N`` (virtqueue index), ``op=NAME`` (the
device's request types: crypto CIPHER_ENCRYPT, HASH, CIPHER_CREATE_SESSION, ...; RPMB DATA_WRITE, DATA_READ, ...),
``min-bytes=N`` / ``max-bytes=N`` (the chain's device-readable bytes), ``after=N`` (let the first N that match
through), ``count=N`` (fire at most N times; default unlimited for error, delay, reorder, drop-irq and dup-irq, 1 for
the others), ``rate=P`` (fire with probability P, 0..1, default 1). The probabilities come from one generator per
fault seeded with ``--inject-seed`` (default 0), the fault's position and its text: the same arguments give the same
faults on the same requests. Every fault is logged when it first fires (later firings at debug level) and counted
(:meth:`Injector.counters`, and one summary line at shutdown).

:class:`Injector` is built by the transport; request faults wrap ``device.handle`` (:meth:`Injector.handle`),
interrupt faults wrap the function's :class:`~vfu_virtio.pci.function.IrqSink` (:meth:`Injector.irq_sink`), and
deferred work (a delayed or reordered completion, HW_READY restored) runs on a timer thread that completes chains
(thread-safe, TD-ASYNC) or hands loop work to :meth:`Injector.run_due` on the event-loop thread. A fault the device
cannot do (``error`` on a device without error statuses, ``clear-hw-ready`` on another device than crypto, an
unknown ``op``) is refused at start-up with ValueError.
"""
from __future__ import annotations

import heapq
import itertools
import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from .chain import DescriptorChain, GuestError
from .device import VirtioDevice

log = logging.getLogger("vfu_virtio.virtio.inject")

REQUEST_KINDS = ("error", "delay", "reorder", "needs-reset", "config-change", "clear-hw-ready")
IRQ_KINDS = ("drop-irq", "dup-irq")
KINDS = REQUEST_KINDS + IRQ_KINDS
#: Kinds that fire once unless ``count`` says otherwise.
ONCE = ("needs-reset", "config-change", "clear-hw-ready")
_INT_PARAMS = ("queue", "min-bytes", "max-bytes", "after", "count", "ms", "window", "restore-ms")
_PARAMS = {
    "error": ("status",), "delay": ("ms",), "reorder": ("window", "ms"), "needs-reset": (), "config-change": (),
    "clear-hw-ready": ("ms", "restore-ms"), "drop-irq": ("vector",), "dup-irq": ("vector",),
}
_FILTERS = ("queue", "op", "min-bytes", "max-bytes")
_COMMON = ("after", "count", "rate")
INTX = "intx"


@dataclass(frozen=True)
class Fault:
    """One parsed ``--inject`` argument: ``kind`` (:data:`KINDS`), ``params`` (name -> int, float or str) and the
    argument's ``text``."""

    kind: str
    params: dict
    text: str

    def get(self, name: str, default=None):
        return self.params.get(name, default)


def parse(text: str) -> Fault:
    """``KIND[:NAME=VALUE,...]`` -> :class:`Fault` (grammar in the module docstring); ValueError naming the argument
    and what is wrong with it."""
    kind, _, rest = text.strip().partition(":")
    if kind not in KINDS:
        raise ValueError(f"--inject {text!r}: unknown fault {kind!r} (one of {', '.join(KINDS)})")
    allowed = (*_PARAMS[kind], *_COMMON, *(_FILTERS if kind in REQUEST_KINDS else ()))
    params: dict = {}
    for item in filter(None, rest.split(",")):
        name, sep, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or name not in allowed:
            raise ValueError(f"--inject {text!r}: {item!r} is not NAME=VALUE with NAME one of {', '.join(allowed)}")
        try:
            if name in _INT_PARAMS:
                params[name] = int(value, 0)
                if params[name] < 0:
                    raise ValueError
            elif name == "rate":
                params[name] = float(value)
                if not 0.0 <= params[name] <= 1.0:
                    raise ValueError
            elif name == "vector":
                params[name] = INTX if value == INTX else int(value, 0)
            else:
                params[name] = value
        except ValueError:
            raise ValueError(f"--inject {text!r}: {name}={value!r} is not a valid value") from None
    if kind == "delay" and "ms" not in params:
        raise ValueError(f"--inject {text!r}: delay needs ms=N")
    if kind == "reorder" and params.get("window", 2) < 2:
        raise ValueError(f"--inject {text!r}: a reorder window holds at least 2 completions")
    return Fault(kind, params, text)


class _Armed:
    """A fault with its own state: matches seen, times fired, its generator."""

    def __init__(self, fault: Fault, index: int, seed: int):
        self.fault = fault
        self.kind = fault.kind
        self.after = fault.get("after", 0)
        self.count = fault.get("count", 1 if fault.kind in ONCE else None)
        self.rate = fault.get("rate", 1.0)
        self.rng = random.Random(f"{seed}/{index}/{fault.text}")
        self.seen = 0
        self.fired = 0

    def fire(self) -> bool:
        """This occurrence matched the filters: does the fault fire on it (after, count, rate)?"""
        self.seen += 1
        if self.seen <= self.after or (self.count is not None and self.fired >= self.count):
            return False
        if self.rate < 1.0 and self.rng.random() >= self.rate:
            return False
        self.fired += 1
        return True


class Injector:
    """The faults of one device (see the module docstring).

    ``device`` the device, ``config_changed`` the transport's configuration change (loop thread), ``wake`` brings
    the event loop round (any thread). Raises ValueError for a fault the device cannot do.
    """

    def __init__(self, faults: Sequence[Fault], seed: int, device: VirtioDevice,
                 config_changed: Callable[[], None], wake: Callable[[], None]):
        self.device = device
        self.seed = seed
        self._config_changed = config_changed
        self._wake = wake
        for fault in faults:
            self._validate(fault)
        armed = [_Armed(f, i, seed) for i, f in enumerate(faults)]
        self._requests = [a for a in armed if a.kind in REQUEST_KINDS]
        self._irqs = [a for a in armed if a.kind in IRQ_KINDS]
        self._all = armed
        self._lock = threading.Lock()
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition(self._lock)
        self._loop_work: list[Callable[[], None]] = []
        self._held: list[tuple[Callable, DescriptorChain, int]] = []
        self._thread: threading.Thread | None = None
        self._closed = False
        log.info("fault injection, seed %d: %s", seed, "; ".join(f.text for f in faults))

    def _validate(self, fault: Fault) -> None:
        dev = self.device
        op = fault.get("op")
        if op is not None and op not in dev.request_types:
            raise ValueError(f"--inject {fault.text!r}: the {dev.name} device has no request type {op!r} "
                             f"(it has {', '.join(dev.request_types) or 'none'})")
        if fault.kind == "error":
            status = fault.get("status")
            if not dev.error_statuses:
                raise ValueError(f"--inject {fault.text!r}: the {dev.name} device has no error status to answer with")
            if status is not None and status not in dev.error_statuses:
                raise ValueError(f"--inject {fault.text!r}: the {dev.name} device's error statuses are "
                                 f"{', '.join(dev.error_statuses)}")
        if fault.kind == "clear-hw-ready" and not hasattr(dev, "set_ready"):
            raise ValueError(f"--inject {fault.text!r}: the {dev.name} device has no HW_READY status bit (crypto "
                             "has)")
        queue = fault.get("queue")
        if queue is not None and queue >= dev.num_queues:
            raise ValueError(f"--inject {fault.text!r}: the {dev.name} device has queues 0..{dev.num_queues - 1}")

    def counters(self) -> dict[str, int]:
        """How often each fault fired, by its ``--inject`` text (for the metrics)."""
        return {a.fault.text: a.fired for a in self._all}

    def _fired(self, armed: _Armed, what: str) -> None:
        level = logging.WARNING if armed.fired == 1 else logging.DEBUG
        log.log(level, "injected fault %r (%d): %s", armed.fault.text, armed.fired, what)

    # ---- requests ------------------------------------------------------------------------------------------
    def _matches(self, fault: Fault, queue: int, chain: DescriptorChain, op: Callable[[], str | None]) -> bool:
        if fault.get("queue", queue) != queue:
            return False
        size = chain.reader.remaining
        if size < fault.get("min-bytes", 0) or size > fault.get("max-bytes", size):
            return False
        return fault.get("op") is None or fault.get("op") == op()

    def handle(self, queue: int, chain: DescriptorChain) -> int | None:
        """``device.handle`` with the request faults applied (event-loop thread; the transport set
        ``chain.completer``). Raises GuestError for needs-reset (the transport sets DEVICE_NEEDS_RESET)."""
        kind_cache: list = []

        def op() -> str | None:
            if not kind_cache:
                kind_cache.append(self.device.request_type(queue, chain))
            return kind_cache[0]

        if log.isEnabledFor(logging.DEBUG):  # what a filter sees, for whoever writes one
            log.debug("request on queue %d: %s, %d readable bytes", queue, op(), chain.reader.remaining)
        fired = [a for a in self._requests if self._matches(a.fault, queue, chain, op) and a.fire()]
        if not fired:
            return self.device.handle(queue, chain)
        what = f"request on queue {queue} ({op() or 'request'}, {chain.reader.remaining} readable bytes)"
        error = None
        wrap: list[_Armed] = []
        after: list[_Armed] = []
        for armed in fired:
            self._fired(armed, f"{armed.kind} on a {what}")
            if armed.kind == "needs-reset":
                raise GuestError(f"injected fault {armed.fault.text!r} on a {what}")
            if armed.kind == "error":
                error = armed.fault.get("status", self.device.error_statuses[0])
            elif armed.kind in ("config-change", "clear-hw-ready"):
                after.append(armed)
            else:
                wrap.append(armed)
        for armed in wrap:
            self._wrap_completion(chain, armed)
        written = self.device.answer_error(queue, chain, error) if error else self.device.handle(queue, chain)
        for armed in after:
            self._after(armed)
        if written is not None and wrap:
            chain.complete(written)
            return None
        return written

    def _after(self, armed: _Armed) -> None:
        """A fault that follows the request: a configuration change, or HW_READY cleared (at once or ``ms`` later,
        restored ``restore-ms`` after that)."""
        if armed.kind == "config-change":
            self._config_changed()
            return
        later, restore = armed.fault.get("ms", 0), armed.fault.get("restore-ms")

        def clear() -> None:
            self.device.set_ready(False)
            if restore is not None:
                self._at(restore, lambda: self._on_loop(lambda: self.device.set_ready(True)))
        if later:
            self._at(later, lambda: self._on_loop(clear))
        else:
            clear()

    def _wrap_completion(self, chain: DescriptorChain, armed: _Armed) -> None:
        complete = chain.completer
        if armed.kind == "delay":
            ms = armed.fault.get("ms")
            chain.completer = lambda c, w: self._at(ms, lambda: complete(c, w))
            return
        window, ms = armed.fault.get("window", 2), armed.fault.get("ms", 20)

        def hold(c: DescriptorChain, w: int) -> None:
            with self._lock:
                self._held.append((complete, c, w))
                full = len(self._held) >= window
                first = len(self._held) == 1
            if full:
                self._release()
            elif first:
                self._at(ms, self._release)
        chain.completer = hold

    def _release(self) -> None:
        """Complete every held chain, newest first."""
        with self._lock:
            held, self._held = self._held, []
        for complete, c, w in reversed(held):
            complete(c, w)

    # ---- interrupts ----------------------------------------------------------------------------------------
    def irq_sink(self, sink):
        """``sink`` (an IrqSink) with the drop-irq and dup-irq faults applied; ``sink`` itself without them."""
        return _FaultyIrq(self, sink) if self._irqs else sink

    def _irq(self, vector, send: Callable[[], None]) -> None:
        times = 1
        for armed in self._irqs:
            if armed.fault.get("vector", vector) == vector and armed.fire():
                self._fired(armed, f"{armed.kind} on {'INTx' if vector == INTX else f'MSI-X vector {vector}'}")
                times = 0 if armed.kind == "drop-irq" else 2 if times else 0
        for _ in range(times):
            send()

    # ---- deferred work -------------------------------------------------------------------------------------
    def _at(self, ms: int, action: Callable[[], None]) -> None:
        """Run ``action`` on the timer thread ``ms`` milliseconds from now."""
        with self._cond:
            heapq.heappush(self._timers, (time.monotonic() + ms / 1000, next(self._seq), action))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run_timers, name="inject-timers", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run_timers(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (not self._timers or self._timers[0][0] > time.monotonic()):
                    self._cond.wait(None if not self._timers else self._timers[0][0] - time.monotonic())
                if self._closed and not self._timers:
                    return
                _due, _seq, action = heapq.heappop(self._timers)
            try:
                action()
            except Exception:  # noqa: BLE001 - a timer must survive; a completion error is the device's log line
                log.exception("injected fault: deferred action failed")

    def _on_loop(self, action: Callable[[], None]) -> None:
        with self._lock:
            self._loop_work.append(action)
        self._wake()

    def run_due(self) -> None:
        """Run the work the timers handed to the event loop (event-loop thread)."""
        if not self._loop_work:
            return
        with self._lock:
            work, self._loop_work = self._loop_work, []
        for action in work:
            action()

    def close(self) -> None:
        """Run what is still scheduled at once (held completions included), stop the timer thread, log the counts."""
        with self._cond:
            self._closed = True
            self._timers = [(0.0, s, a) for _d, s, a in self._timers]
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()
        self._release()
        log.info("injected faults fired: %s", ", ".join(f"{t!r} {n} time(s)" for t, n in self.counters().items()))


class _FaultyIrq:
    """An IrqSink passing interrupts through :meth:`Injector._irq`."""

    def __init__(self, injector: Injector, sink):
        self._injector = injector
        self._sink = sink

    def trigger_msix(self, vector: int) -> None:
        self._injector._irq(vector, lambda: self._sink.trigger_msix(vector))

    def trigger_intx(self) -> None:
        self._injector._irq(INTX, self._sink.trigger_intx)
