"""Guest AF_ALG throughput: virtio_crypto_aes_cbc through vfu-virtio vs QEMU's own virtio-crypto-pci.

One boot per device model in the same run; inside the guest ``afalg bench`` encrypts back-to-back
requests of 256 B, 4 KiB and 64 KiB for ``--ms`` milliseconds each through the driver name
``virtio_crypto_aes_cbc`` (one request in flight, as AF_ALG does). Prints a markdown table with both
models and the ratio vfu-virtio / QEMU builtin. Not a test: nothing here asserts on time.

    . .vmkit/env.sh && .venv/bin/python benchmarks/guest_afalg.py [--ms 2000]
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
from pathlib import Path

from vfu_virtio.vm.harness import BUILTIN_CRYPTO, DeviceServers, boot
from vfu_virtio.vm.kit import Kit

SIZES = (256, 4096, 65536)


def measure(kit: Kit, model: str, ms: int) -> dict[int, tuple[float, float]]:
    params = {"bench": ",".join(map(str, SIZES)), "benchms": ms}
    with tempfile.TemporaryDirectory() as d, DeviceServers(Path(d), log_level="warning") as servers:
        if model == "vfu-virtio":
            report = boot(kit, [servers.add("crypto", "--queues", "1")], params=params, timeout=300)
        else:
            report = boot(kit, extra=BUILTIN_CRYPTO, params=params, timeout=300)
    if not report.bench:
        raise SystemExit(f"{model}: the guest reported no benchmark:\n{report.console[-3000:]}")
    return {b["size"]: (b["ops"] / (b["usec"] / 1e6), b["ops"] * b["size"] / b["usec"]) for b in report.bench}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ms", type=int, default=2000, help="milliseconds per size inside the guest")
    args = ap.parse_args()
    kit = Kit.from_env()
    results = {m: measure(kit, m, args.ms) for m in ("vfu-virtio", "qemu-builtin")}
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    print(f"guest AF_ALG cbc(aes) via virtio_crypto_aes_cbc; {kit.qemu_version()}, accel {kit.accel}; "
          f"host {platform.machine()} {cpu}, {os.cpu_count()} cores")
    print("| size | vfu-virtio ops/s | vfu-virtio MB/s | QEMU builtin ops/s | QEMU builtin MB/s | ratio |")
    print("|---:|---:|---:|---:|---:|---:|")
    for size in SIZES:
        v_ops, v_mb = results["vfu-virtio"][size]
        q_ops, q_mb = results["qemu-builtin"][size]
        print(f"| {size} | {v_ops:,.0f} | {v_mb:.1f} | {q_ops:,.0f} | {q_mb:.1f} | {v_ops / q_ops:.2f} |")


if __name__ == "__main__":
    main()
