"""What the benchmark scripts share: argument parsers whose ``--help`` shows every default, results as a spread over
repeats (median and min-max), and plots written with matplotlib (the ``bench`` extra: ``scripts/setup --bench`` or
``pip install 'vfu-virtio[bench]'``) into ``--out`` (default ``benchmarks/out/``, git-ignored).

Not a test and not part of the package: the scripts beside it import it as ``common``.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

#: Where plots go unless ``--out`` says otherwise (git-ignored).
DEFAULT_OUT = Path(__file__).resolve().parent / "out"
NO_MATPLOTLIB = ("matplotlib is not installed: no plot written (install the bench extra: scripts/setup --bench, or "
                 "pip install 'vfu-virtio[bench]')")


def parser(doc: str) -> argparse.ArgumentParser:
    """An argument parser described by ``doc``'s first line, whose ``--help`` shows each option's default."""
    return argparse.ArgumentParser(description=doc.splitlines()[0],
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)


def add_output_options(ap: argparse.ArgumentParser, repeats: int = 3, repeats_help: str = "") -> None:
    """``--repeats``, ``--out`` and ``--no-plot``."""
    ap.add_argument("--repeats", type=int, default=repeats,
                    help=repeats_help or "measurements per cell; the tables show the median and the min-max range")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="directory the plots are written to")
    ap.add_argument("--no-plot", action="store_true", help="print the tables only")


@dataclass(frozen=True)
class Spread:
    """The repeats of one measurement: ``median``, ``low`` and ``high`` (min and max), ``n`` values."""

    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Iterable[float]) -> "Spread":
        vs = list(values)
        if not vs:
            raise ValueError("a spread needs at least one value")
        return cls(statistics.median(vs), min(vs), max(vs), len(vs))

    def format(self, fmt: str = ",.0f") -> str:
        """``"1,234 (1,200-1,300)"``: the median, then min-max (just the value when there is one)."""
        if self.n == 1:
            return format(self.median, fmt)
        return f"{format(self.median, fmt)} ({format(self.low, fmt)}-{format(self.high, fmt)})"

    def scaled(self, factor: float) -> "Spread":
        return Spread(self.median * factor, self.low * factor, self.high * factor, self.n)


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def bar_plot(path: Path, title: str, ylabel: str, groups: Mapping[str, Mapping[str, Spread]]) -> str:
    """Bars of medians with min-max error bars: one group of bars per key of ``groups`` (x axis), one bar per series
    (legend). Writes ``path`` (a PNG); returns the line to print (the path, or why there is no plot)."""
    try:
        plt = _pyplot()
    except ImportError:
        return NO_MATPLOTLIB
    series = list(dict.fromkeys(s for g in groups.values() for s in g))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(groups) * max(1, len(series))), 4.5))
    width = 0.8 / max(1, len(series))
    for i, name in enumerate(series):
        xs = [x + i * width for x, g in enumerate(groups.values()) if name in g]
        spreads = [g[name] for g in groups.values() if name in g]
        ax.bar(xs, [s.median for s in spreads], width, label=name,
               yerr=[[s.median - s.low for s in spreads], [s.high - s.median for s in spreads]], capsize=3)
    ax.set_xticks([x + width * (len(series) - 1) / 2 for x in range(len(groups))], list(groups), fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if len(series) > 1:
        ax.legend()
    return _save(fig, path)


def line_plot(path: Path, title: str, xlabel: str, ylabel: str, lines: Mapping[str, Sequence[tuple[float, Spread]]],
              log2_x: bool = True, hlines: Sequence[float] = ()) -> str:
    """Lines of medians with min-max error bars, one per key of ``lines`` ((x, spread) points). Writes ``path``;
    returns the line to print."""
    try:
        plt = _pyplot()
    except ImportError:
        return NO_MATPLOTLIB
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, points in lines.items():
        ax.errorbar([x for x, _s in points], [s.median for _x, s in points], marker="o", capsize=3, label=name,
                    yerr=[[s.median - s.low for _x, s in points], [s.high - s.median for _x, s in points]])
    if log2_x:
        ax.set_xscale("log", base=2)
    for y in hlines:
        ax.axhline(y, ls=":", c="grey")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend()
    return _save(fig, path)


def _save(fig, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return f"plot: {path}"


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (``/proc/<pid>/stat`` fields 14 and 15, utime and stime,
    in clock ticks)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def host_line() -> str:
    """``"host x86_64 <cpu model>, N cores"`` for a benchmark's header."""
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    return f"host {platform.machine()} {cpu}, {os.cpu_count()} cores"
