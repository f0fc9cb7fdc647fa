"""``python -m vfu_virtio.vm demo``: the main job with a real guest.

Starts vfu-virtio's crypto and RPMB devices, boots the Linux guest under QEMU with both attached through
``vfio-user-pci``, and prints what the guest saw: PCI ids and drivers, the virtio devices, the crypto
algorithms registered with their self-test results, AF_ALG encryptions checked against the host's
``cryptography``, interrupt counts, and the device servers' log lines. Exit status 0 only if the guest
bound the crypto device, its self-test passed and every AF_ALG result matched.
"""
from __future__ import annotations

import hashlib
import secrets
import sys
import tempfile
from pathlib import Path

import click
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .harness import DeviceServers, boot
from .kit import Kit, KitMissing

SIZES = (16, 4096, 65536)


def _expected(key: bytes, iv: bytes, size: int, seed: int) -> str:
    pt = bytes((i * 31 + seed) & 0xFF for i in range(size))
    return hashlib.sha256(Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor().update(pt)).hexdigest()


def demo(verbose: bool) -> int:
    try:
        kit = Kit.from_env()
    except KitMissing as e:
        print(f"guest kit missing: {e}\n(use scripts/run --host-only for the demo without QEMU)", file=sys.stderr)
        return 2
    print(f"{kit.qemu_version()}; guest kernel {kit.kernel_release}; accelerator {kit.accel}")
    key, iv, seed = secrets.token_bytes(16), secrets.token_bytes(16), secrets.randbelow(256)
    with tempfile.TemporaryDirectory(prefix="vfu-vm-") as d, DeviceServers(Path(d)) as servers:
        sockets = [servers.add("crypto", "--queues", "2"), servers.add("rpmb")]
        print(f"serving virtio-crypto on {sockets[0]} and virtio-rpmb on {sockets[1]}")
        report = boot(kit, sockets, params={"sizes": ",".join(map(str, SIZES)), "key": key.hex(), "iv": iv.hex(),
                                            "seed": seed})
        logs = servers.logs()
    print(f"guest ran {report.seconds:.1f} s (QEMU exit {report.returncode})")
    for dev in report.pci:
        print(f"  PCI {dev['slot']} {dev['vendor']}:{dev['device']} class {dev['class']} rev {dev['revision']} "
              f"driver {dev['driver']}")
    for v in report.virtio:
        print(f"  virtio {v['name']} device id {v['device']} driver {v['driver']}")
    for drv, alg in report.algs.items():
        print(f"  /proc/crypto {alg.get('name')} by {drv}: selftest {alg.get('selftest')}")
    ok = report.done and report.algs.get("virtio_crypto_aes_cbc", {}).get("selftest") == "passed"
    for size in SIZES:
        match = report.ct.get(size) == _expected(key, iv, size, seed) and report.afalg.get(size) == "match"
        ok &= match
        print(f"  AF_ALG virtio_crypto_aes_cbc {size} bytes: "
              f"{'equals the host' if match else 'DIFFERS from the host'} (decrypt {report.afalg.get(size)})")
    for phase, counts in report.irqs.items():
        print(f"  interrupts {phase}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    for line in report.dmesg:
        if "max_queues" in line:
            print(f"  dmesg: {line}")
    if verbose or not ok:
        print(logs)
    print("result:", "ok" if ok else "FAILED")
    return 0 if ok else 1


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Boot a Linux guest on vfu-virtio devices (needs the guest kit from scripts/setup)."""


@main.command("demo")
@click.option("-v", "--verbose", is_flag=True, help="Also print the device servers' logs.")
def demo_command(verbose: bool) -> None:
    """Serve crypto + RPMB, boot the guest with both attached, print what it saw."""
    sys.exit(demo(verbose))


if __name__ == "__main__":
    main()
