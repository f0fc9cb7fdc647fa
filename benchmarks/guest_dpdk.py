"""DPDK crypto-perf throughput in the guest: the crypto_virtio PMD on vfu-virtio vs on QEMU's own virtio-crypto-pci.

Boots the ``dpdk`` guest scenario (``guest/dpdk.sh``) once per device model per round, alternating the models
(``--rounds``, default 3), and runs ``dpdk-test-crypto-perf --ptest throughput`` for AES-128-CBC
(``perf-cipher``) and AES-128-CBC + HMAC-SHA1 (``perf-chain``, which QEMU's builtin backend refuses) at
64..2048-byte buffers (DPDK 22.11's PMD refuses more), ``--ops`` operations per size, burst 32, one queue pair,
lcores 0 (main) and 1 (worker, polling). Prints a markdown table of the medians, the min-max and each round's
value, and the ratio vfu-virtio / QEMU; writes ``guest_dpdk.png`` into ``--out`` (``benchmarks/out/``). Not a test:
nothing asserts on time.

CPU placement: nothing is pinned. QEMU runs the guest's two vCPUs as two TCG threads (both lcores busy-poll),
vfu-virtio serves the device from its own process; all of them share the host's cores, which this script
prints.

    scripts/bench guest_dpdk [--rounds 3] [--ops 20000] [--kernel linux-6.1] [--out DIR] [--no-plot]
"""
from __future__ import annotations

import os
import platform
from pathlib import Path

from common import DEFAULT_OUT, Spread, bar_plot, parser
from vfu_virtio.qemu import dpdk
from vfu_virtio.qemu.kit import GuestKit
from vfu_virtio.qemu.scenario import MODELS, run_guest

STEPS = ("perf-cipher", "perf-chain")


def measure(kit: GuestKit, model: str, ops: int) -> dict[tuple[str, int], tuple[float, float] | None]:
    """{(step, size): (Mops/s, Gbit/s), or None where the device refused the session} from one boot."""
    plan = dpdk.DpdkPlan.random(steps=STEPS, perf_ops=ops)
    run = run_guest(kit, model, plan, device_options={"crypto": ("--queues", "1")}, log_level="warning",
                    timeout=900)
    steps = dpdk.steps(run.report)
    out: dict[tuple[str, int], tuple[float, float] | None] = {}
    for name in STEPS:
        step = steps.get(name)
        rows = dpdk.perf_rows(step) if step else []
        if step and not rows and dpdk.refusals(step):
            out.update({(name, size): None for size in plan.perf_sizes})
            continue
        if sorted(r.size for r in rows) != sorted(plan.perf_sizes) or any(r.dequeued != ops for r in rows):
            raise SystemExit(f"{model}: no valid {name} result\n{run.diagnosis()}")
        out.update({(name, r.size): (r.mops, r.gbps) for r in rows})
    return out


def cell(values: list[tuple[float, float] | None]) -> tuple[str, Spread | None]:
    """``"median (min-max) [each round] / Gbit/s median"`` and the Mops/s spread, or ("refused", None)."""
    if any(v is None for v in values):
        return "refused", None
    mops = Spread.of(v[0] for v in values)
    gbps = Spread.of(v[1] for v in values)
    return f"{mops.format('.3f')} [{' '.join(f'{v[0]:.3f}' for v in values)}] / {gbps.median:.2f}", mops


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--rounds", type=int, default=3,
                    help="boots per model, alternating; the tables show the median, the min-max and each round")
    ap.add_argument("--ops", type=int, default=20000, help="crypto-perf operations per buffer size")
    ap.add_argument("--kernel", help="guest kernel of the kit by label (None: the kit's default kernel)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="directory the plot is written to")
    ap.add_argument("--no-plot", action="store_true", help="print the table only")
    args = ap.parse_args()
    kit = GuestKit.from_env()
    if args.kernel:
        kit = kit.with_kernel(args.kernel)
    samples: dict[str, list[dict]] = {m: [] for m in MODELS}
    for r in range(args.rounds):
        for model in MODELS:
            samples[model].append(measure(kit, model, args.ops))
            print(f"round {r + 1}: {model} done", flush=True)
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    print(f"dpdk-test-crypto-perf --ptest throughput, burst 32, 1 queue pair, lcores 0-1, {args.ops} ops per size, "
          f"{args.rounds} alternating boot(s) per model; DPDK {kit.dpdk_version}; {kit.qemu_version()}, accel "
          f"{kit.accel}, -smp 2 -cpu max, guest kernel {kit.kernel_release}; host {platform.machine()} {cpu}, "
          f"{os.cpu_count()} cores, nothing pinned (QEMU's 2 vCPU threads and the vfu-virtio process share them)")
    print("\nMops/s median (min-max) [per round] / Gbit/s median\n")
    print("| operation | size (B) | vfu-virtio | QEMU builtin | ratio |")
    print("|---|---:|---|---|---:|")
    groups = {}
    for step in STEPS:
        for size in dpdk.PERF_SIZES:
            ours, ours_mops = cell([s[(step, size)] for s in samples["vfu-virtio"]])
            qemu, qemu_mops = cell([s[(step, size)] for s in samples["qemu-builtin"]])
            ratio = f"{ours_mops.median / qemu_mops.median:.2f}" if ours_mops and qemu_mops else "-"
            print(f"| {step} | {size} | {ours} | {qemu} | {ratio} |")
            groups[f"{step}\n{size} B"] = {m: v for m, v in (("vfu-virtio", ours_mops), ("qemu-builtin", qemu_mops))
                                             if v is not None}
    if not args.no_plot:
        print(bar_plot(args.out / "guest_dpdk.png", "DPDK crypto-perf throughput in the guest (median, min-max)",
                       "Mops/s", groups))


if __name__ == "__main__":
    main()
