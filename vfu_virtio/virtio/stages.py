"""Per-stage timers of the event loop (``--stage-timers``): where the device's share of a request's round trip goes.

A :class:`StageClock` accumulates, per named stage, how often it ran and the nanoseconds it took
(``time.perf_counter_ns``). The loop calls :meth:`StageClock.start` when ``poll`` returns (the device wakes) and
:meth:`StageClock.mark` at the end of each stage, which charges the time since the previous mark to that stage.
The stages, in the order one kicked request passes them (:data:`STAGES`):

``message``   the vfio-user message is received and parsed by libvfio-user and its region write reaches the
              notify register (wake -> available buffer notification);
``walk``      the transport starts the queue and walks the next available descriptor chain (-> chain popped);
``device``    the device handles the chain (parse, session lookup, the ``cryptography`` call, status write);
``publish``   the used element is written and published (``used.idx`` / the packed descriptor's flags);
``interrupt`` the MSI-X vector is triggered (``vfu_irq_trigger``: an eventfd write) -> back in the loop.

Requests handed to a worker thread (TD-ASYNC) charge the wait for their completion to ``publish``. With several
requests per wake the stages repeat; :meth:`StageClock.summary` gives counts, totals and means. When the clock is
off (the default) the transport holds ``None`` and no timer runs.
"""
from __future__ import annotations

import time

#: The stages in round-trip order (see the module docstring).
STAGES = ("message", "walk", "device", "publish", "interrupt")


class StageClock:
    """Accumulated time per stage of the event loop. ``now`` is the clock (ns), replaceable in unit tests."""

    __slots__ = ("now", "_last", "count", "total_ns", "wakes")

    def __init__(self, now=time.perf_counter_ns):
        self.now = now
        self._last = 0
        self.count = dict.fromkeys(STAGES, 0)
        self.total_ns = dict.fromkeys(STAGES, 0)
        self.wakes = 0

    def start(self) -> None:
        """The loop woke (``poll`` returned or the polling loop found work): stages are timed from now."""
        self._last = self.now()
        self.wakes += 1

    def mark(self, stage: str) -> None:
        """``stage`` ended now: charge it the time since the previous mark (or :meth:`start`)."""
        t = self.now()
        self.count[stage] += 1
        self.total_ns[stage] += t - self._last
        self._last = t

    def summary(self) -> dict[str, dict[str, float]]:
        """``{stage: {"count": n, "total_us": µs, "mean_us": µs per occurrence}}`` in :data:`STAGES` order, plus
        ``"wakes"`` (``{"count": n}``)."""
        out: dict[str, dict[str, float]] = {}
        for s in STAGES:
            n, t = self.count[s], self.total_ns[s]
            out[s] = {"count": n, "total_us": round(t / 1000, 1), "mean_us": round(t / n / 1000, 2) if n else 0.0}
        out["wakes"] = {"count": self.wakes}
        return out

    def line(self) -> str:
        """One log line: ``"message 12.3 µs x 100, walk ..."`` (mean per occurrence and count)."""
        s = self.summary()
        return ", ".join(f"{k} {s[k]['mean_us']:.1f} us x {s[k]['count']}" for k in STAGES) + \
            f"; {self.wakes} wake(s)"
