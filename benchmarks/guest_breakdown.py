"""Where one guest AF_ALG request's round trip goes, in µs: guest, QEMU, the device's own stages; loop modes compared.

Boots the guest (one vCPU, TCG) with vfu-virtio serving the crypto device (``--queues 1 --stage-timers`` plus each
mode's options) and, alternately, QEMU's own virtio-crypto-pci with its builtin backend, ``--rounds`` times each. In
the guest, ``afalg bench`` encrypts back-to-back AES-128-CBC requests of each ``--sizes`` for ``--ms`` ms through
``virtio_crypto_aes_cbc`` (one request in flight). Three clocks, all read while the bench runs (between the guest's
``STEP bench-N`` and ``BENCH`` lines):

* the guest: ``usec / ops`` of the bench, the whole round trip;
* QEMU's trace events (``-trace vfio_region_write,vfio_msi_interrupt -msg timestamp=on``, wall-clock µs): the
  notify write reaching QEMU (the kick leaves the guest), and QEMU reading the device's MSI-X eventfd (the interrupt
  goes into the guest). kick -> interrupt is QEMU's view of the device's round trip; interrupt -> next kick is the
  guest's own time (interrupt handling, the AF_ALG completion, user space, the next ``sendmsg``) under TCG;
* the device's stage timers (``vfu-virtio status``: :mod:`vfu_virtio.virtio.stages`), as differences over the bench.

The remainder of QEMU's kick -> interrupt after the device's stages is QEMU's vfio-user message, the socket, the
device's wake-up and the eventfd: outside this process. CPU per request is the device process's user + sys time
(``/proc/<pid>/stat``) over the bench divided by its requests. Tracing costs QEMU a little; the rate columns come
from the same boots. Not a test: nothing asserts on time.

    scripts/bench guest_breakdown [--sizes 256,65536] [--ms 2000] [--rounds 3]
        [--mode message=] [--mode poll=--poll-us,300] [--mode mmap=--notify,mmap,--poll-us,300] [--no-qemu]
"""
from __future__ import annotations

import os
import re
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from common import DEFAULT_OUT, Spread, bar_plot, host_line, parser, proc_cpu_seconds
from vfu_virtio import control
from vfu_virtio.qemu.kit import GuestKit
from vfu_virtio.qemu.scenario import CryptoPlan, run_guest
from vfu_virtio.virtio.stages import STAGES

# QEMU's log lines with -msg timestamp=on: "2026-11-30T07:08:19.417921Z vfio_region_write  (vfio-user:/x/crypto.sock:
# region0+0x3000, 0x0, 2)"; the crypto device's notify writes (BAR0 0x3000 + 4 * queue) and MSI-X interrupts
NOTIFY_WRITE = re.compile(r"^(\S+)Z vfio_region_write\s+\(\S*/crypto\.sock:region0\+0x30[0-9a-f][048c], ")
MSI = re.compile(r"^(\S+)Z vfio_msi_interrupt\s+\(\S*/crypto\.sock\)")
TRACE_ARGS = ("-msg", "timestamp=on")


class BenchProbe:
    """Follows the guest console (``on_line``) and snapshots the device's stage timers and CPU time when a bench
    size starts and ends."""

    def __init__(self, socket: Path | None):
        self.socket = socket
        self.windows: dict[int, list] = {}  # size -> [t0, t1, status0, status1, cpu0, cpu1]
        self._size = None

    def _snap(self):
        if self.socket is None:
            return None, 0.0
        st = control.query(str(self.socket))
        return st["loop"]["stages"], proc_cpu_seconds(st["pid"])

    def __call__(self, line: str) -> None:
        m = re.search(r"VFU-STEP name=bench-(\d+)", line)
        if m:
            self._size = int(m.group(1))
            stages, cpu = self._snap()
            self.windows[self._size] = [time.time(), None, stages, None, cpu, None]
        elif "VFU-BENCH " in line and self._size is not None:
            w = self.windows[self._size]
            w[1] = time.time()
            w[3], w[5] = self._snap()
            self._size = None


def trace_intervals(path: Path, t0: float, t1: float) -> tuple[list[float], list[float]]:
    """(kick -> interrupt, interrupt -> next kick) in µs, for the trace events between wall-clock ``t0`` and ``t1``."""
    events = []
    with open(path, errors="replace") as f:
        for line in f:
            for kind, rx in (("kick", NOTIFY_WRITE), ("msi", MSI)):
                m = rx.match(line)
                if m:
                    t = datetime.fromisoformat(m.group(1)).replace(tzinfo=timezone.utc).timestamp()
                    if t0 <= t <= t1:
                        events.append((t, kind))
    k2i, i2k = [], []
    last_kick = last_msi = None
    for t, kind in events:
        if kind == "kick":
            if last_msi is not None:
                i2k.append((t - last_msi) * 1e6)
                last_msi = None
            last_kick = t
        else:
            if last_kick is not None:
                k2i.append((t - last_kick) * 1e6)
                last_kick = None
            last_msi = t
    return k2i, i2k


def one_boot(kit: GuestKit, model: str, options: tuple[str, ...], sizes: tuple[int, ...], ms: int) -> dict[int, dict]:
    """{size: {"rtt": µs per request, "k2i"/"i2k": median µs or None, "stages": {stage: µs per request},
    "cpu": device µs per request or None}} from one boot."""
    plan = CryptoPlan.random(sizes=(4096,), reset=False, bench_sizes=sizes, bench_ms=ms, tcrypt=False, rsa_message=b"")
    with tempfile.TemporaryDirectory(prefix="vfu-breakdown-") as tmp:
        trace = Path(tmp) / "qemu.trace"
        probe = BenchProbe(Path(tmp) / "crypto.sock" if model == "vfu-virtio" else None)
        events = Path(tmp) / "events"
        events.write_text("vfio_region_write\nvfio_msi_interrupt\n")
        qemu_args = ("-trace", f"events={events},file={trace}", *TRACE_ARGS)
        run = run_guest(kit, model, plan, device_options={"crypto": ("--queues", "1", "--stage-timers", *options)},
                        log_level="warning", timeout=120 + 3 * len(sizes) * ms / 1000, workdir=Path(tmp),
                        on_line=probe, qemu_args=qemu_args)
        bad = plan.mismatches(run.report.afalg())
        bench = {int(b["size"]): b for b in run.report.find("BENCH")}
        if not run.report.done or bad or set(bench) != set(sizes) or any("ops" not in b for b in bench.values()):
            raise SystemExit(f"{model} {' '.join(options)}: no valid benchmark ({'; '.join(bad) or 'see below'})\n"
                             f"{run.diagnosis()}")
        out = {}
        for size in sizes:
            ops, usec = int(bench[size]["ops"]), int(bench[size]["usec"])
            t0, t1, s0, s1, c0, c1 = probe.windows[size]
            k2i, i2k = trace_intervals(trace, t0, t1)
            stages = None
            if s0 is not None and s1 is not None:
                stages = {s: (s1[s]["total_us"] - s0[s]["total_us"]) / ops for s in STAGES}
            out[size] = {"rtt": usec / ops, "k2i": statistics.median(k2i) if k2i else None,
                         "i2k": statistics.median(i2k) if i2k else None, "kicks": len(k2i) / ops,
                         "stages": stages, "cpu": (c1 - c0) * 1e6 / ops if s0 is not None else None}
        return out


def spread(rounds: list[dict], size: int, key, fmt=".1f") -> str:
    vals = [key(r[size]) for r in rounds]
    vals = [v for v in vals if v is not None]
    return Spread.of(vals).format(fmt) if vals else "-"


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--sizes", default="256,65536", help="request sizes in bytes, comma-separated")
    ap.add_argument("--ms", type=int, default=2000, help="milliseconds per size inside the guest")
    ap.add_argument("--rounds", type=int, default=3, help="boots per mode, alternating with the other modes")
    ap.add_argument("--mode", action="append", default=[],
                    help="LABEL=OPTIONS: a vfu-virtio loop configuration (options comma-separated, e.g. "
                         "poll=--poll-us,300); default: message= (the device's defaults)")
    ap.add_argument("--no-qemu", action="store_true", help="leave QEMU's builtin device out")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="directory the plot is written to")
    ap.add_argument("--no-plot", action="store_true", help="print the tables only")
    args = ap.parse_args()
    sizes = tuple(int(s) for s in args.sizes.split(","))
    modes = {}
    for spec in args.mode or ["message="]:
        label, _, opts = spec.partition("=")
        modes[label] = tuple(o for o in opts.split(",") if o)
    runs = [(label, "vfu-virtio", opts) for label, opts in modes.items()]
    if not args.no_qemu:
        runs.append(("QEMU builtin", "qemu-builtin", ()))
    kit = GuestKit.from_env()
    results: dict[str, list[dict]] = {label: [] for label, _m, _o in runs}
    for _ in range(args.rounds):
        for label, model, opts in runs:
            results[label].append(one_boot(kit, model, opts, sizes, args.ms))
    print(f"guest AF_ALG AES-128-CBC via virtio_crypto_aes_cbc, one request in flight, {args.ms} ms per size, "
          f"{args.rounds} boot(s) per configuration, alternating; {kit.qemu_version()}, accel {kit.accel}, guest "
          f"kernel {kit.kernel_release}; {host_line()}; load average {os.getloadavg()[0]:.2f} at the end")
    print("modes: " + "; ".join(f"{k}: {' '.join(v) or '(defaults)'}" for k, v in modes.items()))
    for size in sizes:
        print(f"\n### {size} B: µs per request, median (min-max) over {args.rounds} boot(s)\n")
        print("| part | " + " | ".join(results) + " |")
        print("|---|" + "---:|" * len(results))
        rows = [("guest round trip (AF_ALG usec/ops)", lambda r: r["rtt"]),
                ("  guest: interrupt -> next kick (QEMU trace)", lambda r: r["i2k"]),
                ("  QEMU: kick -> interrupt (QEMU trace)", lambda r: r["k2i"]),
                ("  kicks per request", lambda r: r["kicks"])]
        rows += [(f"    device {s}", lambda r, s=s: r["stages"][s] if r["stages"] else None) for s in STAGES]
        rows += [("    device stages total", lambda r: sum(r["stages"].values()) if r["stages"] else None),
                 ("    outside the device (QEMU kick -> interrupt - device stages)",
                  lambda r: r["k2i"] - sum(r["stages"].values()) if r["stages"] and r["k2i"] else None),
                 ("device CPU per request (user+sys)", lambda r: r["cpu"]),
                 ("requests per second", lambda r: 1e6 / r["rtt"])]
        for name, key in rows:
            fmt = ".2f" if "kicks" in name else (",.0f" if "per second" in name else ".1f")
            print(f"| {name} | " + " | ".join(spread(results[lab], size, key, fmt) for lab in results) + " |")
    if not args.no_plot:
        print(bar_plot(args.out / "guest_breakdown.png", "guest AF_ALG requests per second, one in flight",
                       "requests per second", {f"{size} B": {lab: Spread.of(1e6 / r[size]["rtt"] for r in rs)
                                                             for lab, rs in results.items()} for size in sizes}))


if __name__ == "__main__":
    main()
