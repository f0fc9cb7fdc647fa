"""``python -m vfu_virtio.fuzz``: run the fuzz targets under atheris (libFuzzer), replay corpora, run campaigns.

Commands::

    list                                   the targets, one line each
    run TARGET [LIBFUZZER_ARG...]          fuzz TARGET in this process (corpus directories and -flags as for
                                           libFuzzer, e.g. -runs=500 -seed=1 -artifact_prefix=DIR/); exit status
                                           0 when the run ended without a finding
    coverage TARGET DIR...                 line coverage of TARGET's modules over every input in DIR...
    campaign [--seconds N] [--dir D] [TARGET...]
                                           every target (or those named) for N seconds each (default 120), corpus
                                           in D/corpus/TARGET (the target's seeds added), findings in
                                           D/findings/TARGET (D default .fuzz, git-ignored); prints inputs
                                           executed, edges, line coverage and findings

A finding is whatever libFuzzer reports: an exception escaping the target, a native crash, an input running
longer than 10 s (-timeout), or memory above 2 GiB (-rss_limit_mb). It writes the input to the findings
directory (crash-*, timeout-*, oom-*); ``run TARGET FILE`` replays it.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

from . import TARGETS

FINDING_PREFIXES = ("crash-", "timeout-", "oom-", "leak-", "slow-unit-")
DEFAULT_FLAGS = ("-timeout=10", "-rss_limit_mb=2048", "-max_len=8192", "-print_final_stats=1")


def load_targets(instrument: bool) -> None:
    """Import the targets, with atheris's coverage instrumentation of every vfu_virtio module they import."""
    if instrument:
        import atheris
        with atheris.instrument_imports(include=["vfu_virtio"], exclude=["vfu_virtio.fuzz.coverage"]):
            from . import targets  # noqa: F401
    else:
        from . import targets  # noqa: F401


def cmd_run(name: str, argv: list[str]) -> None:
    """Fuzz target ``name`` (loaded instrumented) with libFuzzer arguments ``argv``; never returns."""
    import atheris
    atheris.Setup([f"fuzz-{name}", *DEFAULT_FLAGS, *argv], TARGETS[name].fn)
    atheris.Fuzz()


def cmd_coverage(name: str, dirs: list[str]) -> tuple[list, int]:
    """(line coverage per module of target ``name``, number of inputs) over every file in ``dirs``."""
    from .coverage import replay
    t = TARGETS[name]
    inputs = [p.read_bytes() for d in dirs for p in sorted(Path(d).iterdir()) if p.is_file()]
    return replay(t.fn, inputs, t.modules), len(inputs)


def findings(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*") if p.name.startswith(FINDING_PREFIXES)) if directory.exists() else []


def campaign(names: list[str], seconds: float, top: Path) -> int:
    """Fuzz each target for ``seconds`` (restarting after a finding), then report; exit status 1 on findings."""
    rows = []
    for name in names:
        corpus, found = top / "corpus" / name, top / "findings" / name
        TARGETS[name].write_seeds(corpus)
        found.mkdir(parents=True, exist_ok=True)
        log_path = top / f"{name}.log"
        runs, cov, ft, deadline = 0, "?", "?", time.monotonic() + seconds
        with open(log_path, "w") as log:
            while (left := int(deadline - time.monotonic())) > 0:
                proc = subprocess.run([sys.executable, "-m", "vfu_virtio.fuzz", "run", name, str(corpus),
                                       f"-max_total_time={left}", f"-artifact_prefix={found}/"],
                                      stdout=log, stderr=subprocess.STDOUT)
                text = Path(log_path).read_text(errors="replace")
                done = re.findall(r"stat::number_of_executed_units: (\d+)", text)
                stats = re.findall(r"#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+)", text)
                runs = sum(int(n) for n in done) if done else (int(stats[-1][0]) if stats else runs)
                if stats:
                    cov, ft = stats[-1][1], stats[-1][2]
                if proc.returncode == 0:
                    break
        per_module, n_inputs = cmd_coverage(name, [str(corpus)])
        hit = sum(m.hit for m in per_module)
        total = sum(m.total for m in per_module)
        rows.append((name, runs, cov, ft, n_inputs, hit, total, len(findings(found))))
        print(f"{name}: {runs} inputs executed, {cov} edges ({ft} features), corpus {n_inputs}, "
              f"line coverage {hit}/{total} ({100 * hit / max(total, 1):.1f} %), {len(findings(found))} finding(s)")
        for m in per_module:
            print(f"    {m.module}: {m.hit}/{m.total} lines ({m.percent:.1f} %)")
        sys.stdout.flush()
    print("\n| target | inputs executed | edges | corpus | line coverage | findings |\n|---|---:|---:|---:|---:|---:|")
    for name, runs, cov, _ft, n_inputs, hit, total, nfound in rows:
        print(f"| {name} | {runs:,} | {cov} | {n_inputs} | {hit}/{total} ({100 * hit / max(total, 1):.1f} %) "
              f"| {nfound} |")
    return 1 if any(r[-1] for r in rows) else 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    command, rest = argv[0], argv[1:]
    if command in ("run", "coverage"):
        load_targets(instrument=command == "run")  # instrumented before anything else imports them
        if not rest or rest[0] not in TARGETS:
            print(f"{command}: name a target: {', '.join(TARGETS)}", file=sys.stderr)
            return 2
    if command == "list":
        load_targets(instrument=False)
        for t in TARGETS.values():
            print(f"{t.name:16} {t.summary}{' (negative control)' if t.control else ''}")
        return 0
    if command == "run":
        cmd_run(rest[0], rest[1:])
        return 0
    if command == "coverage":
        per_module, n = cmd_coverage(rest[0], rest[1:])
        print(f"{n} inputs")
        for m in per_module:
            print(f"{m.module}: {m.hit}/{m.total} lines ({m.percent:.1f} %)")
        return 0
    if command == "campaign":
        p = argparse.ArgumentParser(prog="python -m vfu_virtio.fuzz campaign")
        p.add_argument("--seconds", type=float, default=120.0, help="per target")
        p.add_argument("--dir", default=".fuzz", help="corpus, findings and logs (git-ignored)")
        p.add_argument("targets", nargs="*", help="default: every target except the negative control")
        a = p.parse_args(rest)
        load_targets(instrument=False)
        names = a.targets or [t.name for t in TARGETS.values() if not t.control]
        unknown = [n for n in names if n not in TARGETS]
        if unknown:
            p.error(f"unknown target(s): {', '.join(unknown)}")
        return campaign(names, a.seconds, Path(a.dir))
    print(f"unknown command {command!r}; see --help", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
