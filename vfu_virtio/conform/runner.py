"""Running the catalogue against one device: selection, a time limit per check, and a device that stops answering.

:func:`run` takes the first look at the device (:func:`~.target.discover`), then runs each selected check in a
thread of its own with a fresh :class:`~.target.Target`; a check that has not ended after ``timeout`` seconds has its
connections aborted and is reported ERROR. After an ERROR the device is asked once whether it still answers (a
vfio-user version exchange within :data:`ALIVE_TIMEOUT_S`); if not, every check left is reported ERROR at once, so a
device that hangs or closes its socket costs one time limit, not one per check. No exception escapes :func:`run`
but :class:`~.target.NotVirtio` and :class:`~.target.Unreachable`, which the caller reports.
"""
from __future__ import annotations

import dataclasses

import fnmatch
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

from ..client import vfio_user as vu
from . import checks_irq, checks_pci, checks_rings, checks_transport, checks_types  # noqa: F401 - they register
from .catalogue import CHECKS, ERROR, FAIL, PASS, SKIP, Check, Failed, Outcome, Skipped, ordered  # noqa: F401
from .target import Facts, Target, discover

#: How long a device that just failed a check has to answer a fresh connection before the run gives it up.
ALIVE_TIMEOUT_S = 2.0
DEFAULT_TIMEOUT_S = 20.0


@dataclass
class Report:
    """The run: ``facts`` of the device, ``results`` in catalogue order, ``seconds`` in all."""

    facts: Facts
    results: list[tuple[Check, Outcome]] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(1 for _c, o in self.results if o.status == status)

    @property
    def exit_status(self) -> int:
        """1 if a check FAILed, else 2 if one ended in ERROR, else 0."""
        return 1 if self.count(FAIL) else 2 if self.count(ERROR) else 0


class UnknownCheck(ValueError):
    """A ``--only`` or ``--skip`` pattern that names no check (the message lists the pattern)."""


def select(only: Iterable[str] = (), skip: Iterable[str] = ()) -> list[Check]:
    """The checks whose id matches a pattern of ``only`` (all when empty) and none of ``skip``; patterns are ids or
    shell globs (``split.*``). :class:`UnknownCheck` for a pattern that matches nothing."""
    only, skip = list(only), list(skip)
    for pattern in only + skip:
        if not fnmatch.filter(CHECKS, pattern):
            raise UnknownCheck(f"no check matches {pattern!r} (see --list)")
    return [c for c in ordered()
            if (not only or any(fnmatch.fnmatchcase(c.id, p) for p in only))
            and not any(fnmatch.fnmatchcase(c.id, p) for p in skip)]


def run_check(check: Check, facts: Facts, timeout: float, ring: str, rpmb_key: bytes | None = None) -> Outcome:
    """Run one check within ``timeout`` seconds (see the module docstring)."""
    target = Target(facts, min(timeout, vu_reply_timeout(timeout)), ring, rpmb_key)
    box: list[Outcome] = []
    t0 = time.monotonic()

    def work() -> None:
        try:
            box.append(Outcome(PASS, check.run(target) or ""))
        except Failed as e:
            box.append(Outcome(FAIL, e.detail, e.observed))
        except Skipped as e:
            box.append(Outcome(SKIP, str(e)))
        except Exception as e:  # noqa: BLE001 - whatever the device did, the run goes on
            box.append(Outcome(ERROR, f"{type(e).__name__}: {e}"))

    worker = threading.Thread(target=work, name=f"conform {check.id}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        target.abort()
        worker.join(ALIVE_TIMEOUT_S)
        box[:] = [Outcome(ERROR, f"no end within the {timeout:g} s time limit")]
    target.close()
    outcome = box[0] if box else Outcome(ERROR, "the check's thread did not end")
    return Outcome(outcome.status, outcome.detail, outcome.observed, time.monotonic() - t0)


def vu_reply_timeout(timeout: float) -> float:
    """How long one vfio-user reply is awaited inside a check of ``timeout`` seconds."""
    return max(1.0, min(5.0, timeout / 2))


def alive(socket_path: str) -> bool:
    """Whether the device still completes a vfio-user version exchange within :data:`ALIVE_TIMEOUT_S`."""
    try:
        vu.VfioUserClient(socket_path, ALIVE_TIMEOUT_S).close()
        return True
    except (OSError, vu.VfioUserError):
        return False


def run(socket_path: str, checks: list[Check], timeout: float = DEFAULT_TIMEOUT_S, ring: str = "auto",
        rpmb_key: bytes | None = None, on_start: Callable[[Facts], None] | None = None,
        on_result: Callable[[Check, Outcome], None] | None = None, crypto_layout: str = "standard") -> Report:
    """Check the device on ``socket_path`` with ``checks`` (:func:`select`); ``ring``: auto, split or packed (the
    format of the ``ring.*`` checks); ``rpmb_key``: an RPMB device's programmed key, if known; ``on_start`` sees the
    first look's facts, ``on_result`` each outcome as it comes; ``crypto_layout``: a crypto device's configuration
    layout (:data:`~.devtypes.CRYPTO_LAYOUTS`). Raises NotVirtio, Unreachable."""
    t0 = time.monotonic()
    report = Report(dataclasses.replace(discover(socket_path, vu_reply_timeout(timeout)), crypto_layout=crypto_layout))
    if on_start:
        on_start(report.facts)
    gone: str | None = None
    for check in checks:
        if gone:
            outcome = Outcome(ERROR, gone)
        else:
            outcome = run_check(check, report.facts, timeout, ring, rpmb_key)
            if outcome.status == ERROR and not alive(socket_path):
                gone = f"the device stopped answering during {check.id}"
        report.results.append((check, outcome))
        if on_result:
            on_result(check, outcome)
    report.seconds = time.monotonic() - t0
    return report

