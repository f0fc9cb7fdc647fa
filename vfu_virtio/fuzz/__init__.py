"""The project's own fuzzing: in-process targets for every parser a guest or a vfio-user client reaches.

A target is one small function ``def name(data: bytes) -> None`` registered with :func:`target`: it feeds
``data`` to the code under test, catches what that code answers a hostile peer with (``GuestError``, a status
code, a refused message) and lets anything else escape: an escaping exception, a native crash, a hang or a
leaked fd is a **finding**. ``modules`` names the project modules the target exercises: they are instrumented
for coverage feedback and their line coverage is what :mod:`vfu_virtio.fuzz.coverage` reports. ``seeds``, if
given, returns valid inputs the fuzzer starts from (written into a corpus before a run).

The targets live in :mod:`vfu_virtio.fuzz.targets` (imported only once coverage instrumentation is on);
:mod:`vfu_virtio.fuzz.__main__` runs them under atheris (libFuzzer) for the CI smoke run and for long campaigns
(``scripts/fuzz``). This module imports nothing else of the project, so the instrumentation sees every target
module imported for the first time.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

Target = Callable[[bytes], None]
Seeds = Callable[[], list[bytes]]


@dataclass(frozen=True)
class FuzzTarget:
    """``name`` (command-line name), ``fn`` (the target), ``modules`` (project modules under test), ``summary``
    (one line), ``seeds`` (valid inputs to start from, or None), ``control`` (True for the negative control: a
    planted crash the smoke run must report)."""

    name: str
    fn: Target
    modules: tuple[str, ...]
    summary: str
    seeds: Seeds | None = None
    control: bool = False

    def write_seeds(self, corpus) -> int:
        """Write the seed inputs into directory ``corpus`` (a ``pathlib.Path``) as ``seed-N``; returns how many."""
        seeds = self.seeds() if self.seeds else []
        corpus.mkdir(parents=True, exist_ok=True)
        for i, data in enumerate(seeds):
            (corpus / f"seed-{i}").write_bytes(data)
        return len(seeds)


TARGETS: dict[str, FuzzTarget] = {}


def target(name: str, modules: tuple[str, ...], seeds: Seeds | None = None,
           control: bool = False) -> Callable[[Target], Target]:
    """Register the decorated function as fuzz target ``name``; its docstring's first line is the summary."""
    def register(fn: Target) -> Target:
        if name in TARGETS:
            raise ValueError(f"fuzz target {name!r} is defined twice")
        summary = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else name
        TARGETS[name] = FuzzTarget(name, fn, modules, summary, seeds, control)
        return fn
    return register


class Finding(AssertionError):
    """A target's own oracle failed (an fd leaked, an invariant of the code under test broke)."""


class Reader:
    """Fixed-width little-endian fields taken from the front of a fuzz input; zeros once it runs out."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        """The next ``n`` bytes (fewer at the end of the input)."""
        out = self.data[self.pos:self.pos + n]
        self.pos += len(out)
        return out

    def uint(self, n: int) -> int:
        """An ``n``-byte little-endian unsigned integer (missing bytes read as zero)."""
        return int.from_bytes(self.take(n), "little")

    def rest(self) -> bytes:
        return self.take(len(self.data) - self.pos)

    @property
    def left(self) -> int:
        return len(self.data) - self.pos
