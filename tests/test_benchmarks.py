"""The benchmark scripts as a person runs them: ``--help`` shows every option's default, results carry their spread
(median and min-max over the repeats), and a plot is written outside the tracked tree (or one line says how to get
matplotlib). A smoke run of the crypto benchmark, 0.1 s a cell; nothing here asserts on time."""
from __future__ import annotations

import importlib.util
import re
import subprocess
import sys

import pytest

from conftest import TOP

BENCH = TOP / "benchmarks"
SCRIPTS = ("crypto_throughput", "rpmb_throughput", "guest_afalg", "guest_dpdk", "guest_breakdown", "idle_cpu")

sys.path.insert(0, str(BENCH))
from common import NO_MATPLOTLIB, Spread  # noqa: E402


def run(name: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH / f"{name}.py"), *args], capture_output=True, text=True,
                          cwd=TOP, timeout=timeout)


def options_without_default(help_text: str) -> list[str]:
    """The options of an argparse ``--help`` whose description does not show ``(default: ...)``."""
    body = help_text.split("options:", 1)[1]
    entries = re.split(r"\n  (?=-)", "\n" + body)
    missing = []
    for entry in filter(str.strip, entries):
        flag = entry.split()[0].rstrip(",")
        if flag not in ("-h", "--help") and "(default:" not in " ".join(entry.split()):
            missing.append(flag)
    return missing


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_shows_every_default(name):
    r = run(name, "--help")
    assert r.returncode == 0, r.stderr
    assert options_without_default(r.stdout) == []
    assert "--out" in r.stdout and "--no-plot" in r.stdout


def test_the_help_checker_sees_a_missing_default():
    sample = ("usage: x\n\noptions:\n  -h, --help  show this help message and exit\n  --seconds S  seconds "
              "(default: 1.0)\n  --batch B    requests per kick\n")
    assert options_without_default(sample) == ["--batch"]


def test_a_spread_is_the_median_and_the_range():
    assert Spread.of([3.0, 1.0, 2.0]).format(".1f") == "2.0 (1.0-3.0)"
    assert Spread.of([1000, 3000]).format() == "2,000 (1,000-3,000)"
    assert Spread.of([0.5]).format(".2f") == "0.50"
    assert Spread.of([1.0, 2.0]).scaled(10).format(".0f") == "15 (10-20)"
    with pytest.raises(ValueError):
        Spread.of([])


def test_crypto_benchmark_smoke_run_with_spread_and_plot(tmp_path):
    r = run("crypto_throughput", "--quick", "--sizes", "64", "--ops", "SHA-256", "--repeats", "2", "--out",
            str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    n = r"[\d,.]+"
    assert re.search(rf"\| SHA-256 \| 64 \| {n} \({n}-{n}\) \| {n} \({n}-{n}\) \| {n} \({n}-{n}\) \| {n} \({n}-{n}\) "
                     rf"\| {n} \({n}-{n}\) \|", r.stdout), r.stdout
    assert "median (min-max) over 2 repeat(s)" in r.stdout
    if importlib.util.find_spec("matplotlib"):
        assert (tmp_path / "crypto_throughput.png").stat().st_size > 0
        assert f"plot: {tmp_path / 'crypto_throughput.png'}" in r.stdout
    else:
        assert NO_MATPLOTLIB in r.stdout


def test_the_default_output_is_git_ignored():
    r = subprocess.run(["git", "check-ignore", "-q", "benchmarks/out/crypto_throughput.png"], cwd=TOP)
    assert r.returncode == 0


def test_idle_benchmark_smoke_run():
    """One short idle interval per loop mode: the table has a spread of CPU percentages and the state the device
    left the ring's notifications in (on: it went back to sleeping on the socket)."""
    r = run("idle_cpu", "--seconds", "0.2", "--repeats", "1", "--warm", "5", "--no-plot")
    assert r.returncode == 0, r.stdout + r.stderr
    for mode in ("message", "poll", "mmap"):
        assert re.search(rf"\| {mode} \| [^|]+ \| [\d.]+ \| on \|", r.stdout), r.stdout
