"""Guest AF_ALG throughput: virtio_crypto_aes_cbc on vfu-virtio vs on QEMU's own virtio-crypto-pci.

Boots the guest once per device model in the same run (``--rounds`` > 1 alternates them; the table gives the
median and the min-max over the rounds, and ``guest_afalg.png`` goes into ``--out``, ``benchmarks/out/``). In the
guest, ``afalg bench`` encrypts back-to-back AES-128-CBC requests of 256 B, 4 KiB and 64 KiB for ``--ms``
milliseconds each through the driver name ``virtio_crypto_aes_cbc`` (AF_ALG keeps one request in flight), after one
AF_ALG check per model that must equal the host's result. Prints a markdown table with both models and the ratio
vfu-virtio / QEMU. Not a test: nothing asserts on time.

    scripts/bench guest_afalg [--ms 2000] [--rounds 1] [--out DIR] [--no-plot]
"""
from __future__ import annotations

import os
import platform
from pathlib import Path

from common import DEFAULT_OUT, Spread, bar_plot, parser
from vfu_virtio.qemu.kit import GuestKit
from vfu_virtio.qemu.scenario import MODELS, CryptoPlan, run_guest

SIZES = (256, 4096, 65536)


def measure(kit: GuestKit, model: str, ms: int) -> dict[int, float]:
    """{size: requests per second} from one boot of ``model``."""
    plan = CryptoPlan.random(sizes=(4096,), reset=False, bench_sizes=SIZES, bench_ms=ms, tcrypt=False, rsa_message=b"")
    run = run_guest(kit, model, plan, device_options={"crypto": ("--queues", "1")}, log_level="warning",
                    timeout=120 + 3 * len(SIZES) * ms / 1000)
    bad = plan.mismatches(run.report.afalg())
    results = {int(b["size"]): b for b in run.report.find("BENCH")}
    if not run.report.done or bad or set(results) != set(SIZES) or any("ops" not in b for b in results.values()):
        raise SystemExit(f"{model}: no valid benchmark ({'; '.join(bad) or 'see below'})\n{run.diagnosis()}")
    return {size: int(b["ops"]) / (int(b["usec"]) / 1e6) for size, b in results.items()}


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--ms", type=int, default=2000, help="milliseconds per size inside the guest")
    ap.add_argument("--rounds", type=int, default=1,
                    help="boots per model, alternating; the tables show the median and the min-max")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="directory the plot is written to")
    ap.add_argument("--no-plot", action="store_true", help="print the table only")
    args = ap.parse_args()
    kit = GuestKit.from_env()
    samples: dict[str, list[dict[int, float]]] = {m: [] for m in MODELS}
    for _ in range(args.rounds):
        for model in MODELS:
            samples[model].append(measure(kit, model, args.ms))
    rate = {m: {s: Spread.of(r[s] for r in samples[m]) for s in SIZES} for m in MODELS}
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    print(f"guest AF_ALG AES-128-CBC via virtio_crypto_aes_cbc, one request in flight, {args.ms} ms per size, "
          f"{args.rounds} boot(s) per model; {kit.qemu_version()}, accel {kit.accel}, guest kernel "
          f"{kit.kernel_release}; host {platform.machine()} {cpu}, {os.cpu_count()} cores")
    print("| size | vfu-virtio req/s | vfu-virtio MB/s | QEMU builtin req/s | QEMU builtin MB/s | ratio |")
    print("|---:|---:|---:|---:|---:|---:|")
    for size in SIZES:
        ours, qemu = rate["vfu-virtio"][size], rate["qemu-builtin"][size]
        ratio = Spread.of(a[size] / b[size] for a, b in zip(samples["vfu-virtio"], samples["qemu-builtin"]))
        print(f"| {size} | {ours.format()} | {ours.scaled(size / 1e6).format('.1f')} | {qemu.format()} | "
              f"{qemu.scaled(size / 1e6).format('.1f')} | {ratio.format('.2f')} |")
    print(f"\nmedian (min-max) over {args.rounds} boot(s) per model; ratio: paired by round")
    if not args.no_plot:
        print(bar_plot(args.out / "guest_afalg.png", "guest AF_ALG AES-128-CBC requests per second, one in flight",
                       "requests per second", {f"{size} B": {m: rate[m][size] for m in MODELS} for size in SIZES}))


if __name__ == "__main__":
    main()
