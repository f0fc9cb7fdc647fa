"""CPU an attached but idle crypto device uses, per loop mode: polling must back off.

For each ``--mode`` a real crypto device server (``vfu-virtio crypto --queues 1`` plus the mode's options) is started,
the project's driver attaches (MSI-X, both queues enabled), sends ``--warm`` SHA-256 requests back to back (so a
polling loop is hot), then stays attached and idle for ``--seconds``. The device's user + sys time over that interval
(``/proc/<pid>/stat``) is printed as a percentage of one core, median (min-max) over ``--repeats`` alternating rounds,
beside the state the device left its ring in (notifications on: it went back to sleeping on the socket). Not a test:
nothing asserts on time.

    scripts/bench idle_cpu [--seconds 5] [--repeats 3] [--mode message=] [--mode poll=--poll-us,300]
        [--mode mmap=--notify,mmap,--poll-us,300] [--out DIR] [--no-plot]
"""
from __future__ import annotations

import os
import struct
import tempfile
import time
from pathlib import Path

from common import DEFAULT_OUT, Spread, bar_plot, host_line, parser, proc_cpu_seconds
from vfu_virtio.abi import crypto as C
from vfu_virtio.client import crypto as D
from vfu_virtio.client.spawn import ServerGroup
from vfu_virtio.client.virtio_pci import VirtioPciDriver

DEFAULT_MODES = ("message=", "poll=--poll-us,300", "mmap=--notify,mmap,--poll-us,300")


def one(group: ServerGroup, name: str, options: tuple[str, ...], warm: int, seconds: float) -> tuple[float, str]:
    """(% of a core while idle, notification state of the data queue afterwards)."""
    server = group.start("crypto", "--queues", "1", *options, name=name)
    try:
        with VirtioPciDriver.connect(server.socket) as drv:
            drv.init()
            ctrl, data = drv.queue(1), drv.queue(0)
            _u, (out,) = ctrl.request(*_io(D.hash_create_session(C.VIRTIO_CRYPTO_HASH_SHA_256, 32)))
            sid, status = D.session_input(out)
            assert status == C.VIRTIO_CRYPTO_OK
            req = D.digest_data(C.VIRTIO_CRYPTO_HASH, sid, b"idle" * 16, 32)
            for _ in range(warm):
                data.request(*_io(req))
            time.sleep(0.05)  # the polling window ends
            c0, t0 = proc_cpu_seconds(server.pid), time.monotonic()
            time.sleep(seconds)
            c1, t1 = proc_cpu_seconds(server.pid), time.monotonic()
            return 100 * (c1 - c0) / (t1 - t0), _state(drv, data)
    finally:
        server.stop()


def _io(req: D.Request):
    return [req.readable], [req.writable]


def _state(drv: VirtioPciDriver, q) -> str:
    vq = q.vq
    if vq.format == "packed":
        flags = struct.unpack("<H", drv.memory.read(vq.device_iova + 2, 2))[0]
        return "off" if flags == 1 else "on"
    avail_event = struct.unpack("<H", drv.memory.read(vq.device_iova + 4 + 8 * vq.size, 2))[0]
    avail_idx = struct.unpack("<H", drv.memory.read(vq.driver_iova + 2, 2))[0]
    return "on" if avail_event == avail_idx else "off"


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--seconds", type=float, default=5.0, help="idle seconds measured per round")
    ap.add_argument("--repeats", type=int, default=3, help="rounds per mode, alternating")
    ap.add_argument("--warm", type=int, default=200, help="requests before the idle interval")
    ap.add_argument("--mode", action="append", default=[],
                    help="LABEL=OPTIONS (comma-separated vfu-virtio options); default: " + " ".join(DEFAULT_MODES))
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="directory the plot is written to")
    ap.add_argument("--no-plot", action="store_true", help="print the table only")
    args = ap.parse_args()
    modes = {}
    for spec in args.mode or DEFAULT_MODES:
        label, _, opts = spec.partition("=")
        modes[label] = tuple(o for o in opts.split(",") if o)
    cpu: dict[str, list[float]] = {m: [] for m in modes}
    states: dict[str, set[str]] = {m: set() for m in modes}
    with tempfile.TemporaryDirectory(prefix="vfu-idle-") as tmp, ServerGroup(tmp, log_level="warning") as group:
        for r in range(args.repeats):
            for label, opts in modes.items():
                pct, state = one(group, f"{label}{r}", opts, args.warm, args.seconds)
                cpu[label].append(pct)
                states[label].add(state)
    print(f"idle crypto device, driver attached, {args.seconds:g} s after {args.warm} requests, {args.repeats} "
          f"round(s) per mode, alternating; {host_line()}; load average {os.getloadavg()[0]:.2f}")
    print("| mode | options | idle CPU, % of one core | notifications after |")
    print("|---|---|---:|---|")
    for label, opts in modes.items():
        print(f"| {label} | {' '.join(opts) or '(defaults)'} | {Spread.of(cpu[label]).format('.2f')} | "
              f"{'/'.join(sorted(states[label]))} |")
    if not args.no_plot:
        print(bar_plot(args.out / "idle_cpu.png", "idle device CPU, % of one core (driver attached)", "% of one core",
                       {"idle": {label: Spread.of(v) for label, v in cpu.items()}}))


if __name__ == "__main__":
    main()
