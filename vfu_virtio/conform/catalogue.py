"""The catalogue of device checks: what a check is, what it can conclude, and the registry of all of them.

A :class:`Check` has a stable ``id`` (``area.name``: ``pci.revision``, ``split.used-flags``), the standard's
``section`` title it comes from, the ``requirement`` in the project's words, the ``level`` the standard gives it
(MUST or SHOULD), and a function ``run(target)`` that drives the device under test through the project's driver and
returns a :class:`Outcome`, or raises :class:`Failed` (with what was observed), :class:`Skipped` (why the check does
not apply). Any other exception is an ERROR of the device or of the run (a timeout, a closed connection). Checks
register with :func:`check`; the modules that define them are imported by :mod:`vfu_virtio.conform.runner`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

PASS, FAIL, SKIP, ERROR = "PASS", "FAIL", "SKIP", "ERROR"
MUST, SHOULD = "MUST", "SHOULD"


@dataclass(frozen=True)
class Outcome:
    """``status`` (PASS, FAIL, SKIP, ERROR), ``detail`` (one line: what was seen, or why), ``observed`` (the bytes
    a FAIL is about, shown in hex; empty when none) and ``seconds`` the check took."""

    status: str
    detail: str = ""
    observed: bytes = b""
    seconds: float = 0.0


class Failed(Exception):
    """The device broke the requirement: ``detail`` says how, ``observed`` holds the bytes read."""

    def __init__(self, detail: str, observed: bytes = b""):
        super().__init__(detail)
        self.detail = detail
        self.observed = bytes(observed)


class Skipped(Exception):
    """The check does not apply to this device (the message says why: a feature not offered, an unknown type)."""


@dataclass(frozen=True)
class Check:
    """One device-normative statement and how it is checked (see the module docstring)."""

    id: str
    section: str
    requirement: str
    run: Callable = field(compare=False, repr=False)
    level: str = MUST

    @property
    def area(self) -> str:
        return self.id.split(".", 1)[0]


#: Every registered check (:func:`ordered` gives the catalogue's order).
CHECKS: dict[str, Check] = {}
#: The catalogue's order of areas: the PCI function first, the device types last.
AREAS = ("pci", "cap", "msix", "common", "features", "config", "status", "queue", "ring", "split", "packed", "irq",
         "isr", "crypto", "rpmb")


def ordered() -> list[Check]:
    """Every check, by area (:data:`AREAS`), then in registration order."""
    return sorted(CHECKS.values(), key=lambda c: AREAS.index(c.area))


def check(id: str, section: str, requirement: str, level: str = MUST):  # noqa: A002 - the catalogue's term
    """Register the decorated ``run(target) -> str`` as check ``id``; its return value is the PASS detail."""
    def register(run: Callable) -> Callable:
        if id in CHECKS:
            raise ValueError(f"check {id!r} registered twice")
        CHECKS[id] = Check(id, section, requirement, run, level)
        return run
    return register


def expect(ok: bool, detail: str, observed: bytes = b"") -> None:
    """Raise :class:`Failed` with ``detail`` and ``observed`` unless ``ok``."""
    if not ok:
        raise Failed(detail, observed)
