"""Durable authenticated RPMB writes per second through the device, beside the disk's raw fsync rate.

Three measurements in one directory (default: a fresh temporary directory under ``--dir``, so all
three hit the same disk), each for ``--seconds``:

1. **raw fsync**: a loop of ``write(256 bytes)`` + ``fsync`` appending to one file -- the most a
   durable 256-byte write can do on this disk;
2. **device writes**: a ``vfu-virtio rpmb`` server process on a store in that directory, driven by the
   project's vfio-user driver (:class:`vfu_virtio.client.rpmb.RpmbClient`): one authenticated
   DATA_WRITE of one 256-byte block + RESULT_READ per chain, one chain in flight, each completion seen
   only after the store commit (WAL, ``synchronous=FULL``) -- so every counted write is durable;
3. **device reads**: authenticated DATA_READ of one block with a fresh nonce, MAC and nonce verified.

Every measurement is repeated ``--repeats`` times (raw and device alternately); the table gives the median and the
min-max of each, and of the device process's CPU (user + sys from ``/proc/<pid>/stat``) per request, and
``rpmb_throughput.png`` (bars of the medians with their range) goes into ``--out`` (``benchmarks/out/``).

Device writes run twice: one chain in flight (each write waits for the previous completion) and
``--depth`` chains in flight (the driver fills the ring and kicks once; the device stages every write of
the run and makes them durable with one store commit -- group commit -- before any used element is
published). Prints a markdown table and the ratio device writes / raw write+fsync (target >= 0.8; also
against in-place pwrite+fsync, which this disk does faster). Not a test: nothing here asserts on time.

Measured on the project VM (2 CPUs, ext4 on /dev/vda, 5 s each): raw append+fsync 5,701/s, in-place
7,779/s; device writes 2,355/s with 1 in flight (0.41) and 10,912/s with 16 in flight (1.91: one fsync per
kick instead of one per write); reads 6,460/s. With one write in flight the commit (~150 us) is not the
cost: the rest of the ~425 us is the round trip -- the driver building and MAC-ing the frames, the
vfio-user kick, parsing, MAC check and response MAC in the device, the MSI-X eventfd and the driver's
wake-up and MAC check, all Python on two cores.

    scripts/bench rpmb_throughput [--seconds 5] [--repeats 3] [--depth 16] [--dir /var/tmp] [--out DIR] [--no-plot]
"""
from __future__ import annotations

import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

from common import Spread, add_output_options, bar_plot, parser, proc_cpu_seconds
from vfu_virtio.abi.rpmb import Frame, verify
from vfu_virtio.client.rpmb import RpmbClient
from vfu_virtio.client.spawn import Server

KEY = bytes(range(32))
#: The rows of the table, as the plot labels them.
SHORT_NAMES = ("raw append\n+ fsync", "raw in place\n+ fsync", "device writes\n1 in flight",
               "device writes\npipelined", "device reads\n1 in flight")
BLOCKS = 128 * 512  # capacity 128 (16 MiB)


def raw_fsync_rate(directory: Path, seconds: float, append: bool) -> float:
    """write(256 bytes) + fsync per iteration: appended to one file (``append``, as a log grows) or
    overwriting 256-byte slots of a preallocated 1 MiB file in place; iterations per second."""
    fd = os.open(directory / "raw.bin", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    data = os.urandom(256)
    n = 0
    try:
        if not append:
            os.write(fd, bytes(1 << 20))
            os.fsync(fd)
        start = time.perf_counter()
        end = start + seconds
        while time.perf_counter() < end:
            if append:
                os.write(fd, data)
            else:
                os.pwrite(fd, data, (n % 4096) * 256)
            os.fsync(fd)
            n += 1
        return n / (time.perf_counter() - start)
    finally:
        os.close(fd)


def device_rates(directory: Path, seconds: float, depth: int) -> tuple[tuple[float, float, float],
                                                                      tuple[float, float, float]]:
    """((durable authenticated 256-byte writes per second with one chain in flight, the same with ``depth`` chains
    in flight, authenticated 1-block reads per second with one in flight), the device process's CPU (user + sys,
    ``/proc/<pid>/stat``) in µs per request of each), on a fresh store."""
    for old in directory.glob("bench.db*"):
        old.unlink()
    server = Server("rpmb", str(directory / "rpmb.sock"), str(directory / "bench.db"), ("--capacity", "128"),
                    log_path=str(directory / "rpmb.log"), log_level="warning").start()
    try:
        with RpmbClient.connect(server.socket) as c:
            if c.program_key(KEY) != 0:
                raise SystemExit("PROGRAM_KEY failed")
            data = os.urandom(256)
            counter = 0
            cpu0 = proc_cpu_seconds(server.pid)
            start = time.perf_counter()
            end = start + seconds
            while time.perf_counter() < end:
                result, counter_after = c.write(counter % BLOCKS, [data], counter)
                if result != 0 or counter_after != counter + 1:
                    raise SystemExit(f"write {counter} failed: result {result:#x}")
                counter += 1
            serial = counter / (time.perf_counter() - start)
            cpu1 = proc_cpu_seconds(server.pid)
            serial_cpu = (cpu1 - cpu0) * 1e6 / max(counter, 1)
            queue = c.driver.queue(0)
            done = 0
            start = time.perf_counter()
            end = start + seconds
            while time.perf_counter() < end:
                chunk = [(c.write_request((counter + i) % BLOCKS, [data], counter + i), [512])
                         for i in range(depth * 8)]
                for used, (resp,) in queue.run(chunk, batch=depth):
                    f = Frame.unpack(resp)
                    counter += 1
                    if used != 512 or f.result != 0 or f.write_counter != counter or not verify(KEY, resp):
                        raise SystemExit(f"pipelined write to counter {counter} failed: result {f.result:#x}")
                done += len(chunk)
            pipelined = done / (time.perf_counter() - start)
            cpu2 = proc_cpu_seconds(server.pid)
            pipelined_cpu = (cpu2 - cpu1) * 1e6 / max(done, 1)
            n = 0
            start = time.perf_counter()
            end = start + seconds
            while time.perf_counter() < end:
                if c.read(n % BLOCKS)[0] != 0:
                    raise SystemExit("read failed")
                n += 1
            reads = n / (time.perf_counter() - start)
            reads_cpu = (proc_cpu_seconds(server.pid) - cpu2) * 1e6 / max(n, 1)
    finally:
        server.stop()
    return (serial, pipelined, reads), (serial_cpu, pipelined_cpu, reads_cpu)


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--seconds", type=float, default=5.0, help="duration of each measurement")
    ap.add_argument("--depth", type=int, default=16, help="chains in flight for the pipelined write run")
    ap.add_argument("--dir", default=None, help="parent directory on the disk to measure (None: $TMPDIR)")
    add_output_options(ap)
    args = ap.parse_args()
    runs = []  # per repeat: raw append, raw in place, serial writes, pipelined writes, reads
    cpus = []  # per repeat: device CPU µs per request of serial writes, pipelined writes, reads
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="rpmb-bench-") as d:
        directory = Path(d)
        fs = subprocess.run(["df", "-T", d], capture_output=True, text=True).stdout.splitlines()[-1].split()
        for _ in range(args.repeats):
            raw = (raw_fsync_rate(directory, args.seconds, append=True),
                   raw_fsync_rate(directory, args.seconds, append=False))
            rates, cpu = device_rates(directory, args.seconds, args.depth)
            runs.append((*raw, *rates))
            cpus.append(cpu)
    print(f"host: {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"disk {fs[0]} ({fs[1]}), {args.seconds:g} s per measurement, {args.repeats} repeat(s): median "
          "(min-max)\n")
    print("| measurement | per second | / raw append | / raw in place | device CPU µs/request |")
    print("|---|---:|---:|---:|---:|")
    names = ["raw write(256 B) + fsync, appending", "raw pwrite(256 B) + fsync, in place",
             "device: durable authenticated 256 B writes, 1 in flight",
             f"device: durable authenticated 256 B writes, {args.depth} in flight",
             "device: authenticated 1-block reads, 1 in flight"]
    rates = {name: Spread.of(run[i] for run in runs) for i, name in enumerate(names)}
    for i, name in enumerate(names):  # ratios paired within each repeat
        cpu = Spread.of(c[i - 2] for c in cpus).format(".1f") if i >= 2 else "-"
        print(f"| {name} | {rates[name].format()} | {Spread.of(run[i] / run[0] for run in runs).format('.2f')} | "
              f"{Spread.of(run[i] / run[1] for run in runs).format('.2f')} | {cpu} |")
    pipelined = Spread.of(run[3] / run[0] for run in runs)
    serial = Spread.of(run[2] / run[0] for run in runs)
    print(f"\nratio device writes ({args.depth} in flight) / raw write+fsync: **{pipelined.format('.2f')}** "
          f"(target >= 0.8); with 1 in flight {serial.format('.2f')}")
    if not args.no_plot:
        print(bar_plot(args.out / "rpmb_throughput.png", f"RPMB: operations per second, median and min-max of "
                       f"{args.repeats} ({fs[1]})", "per second",
                       {short: {"per second": rates[name]} for short, name in zip(SHORT_NAMES, names)}))


if __name__ == "__main__":
    main()
