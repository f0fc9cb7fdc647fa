"""Key generation of the asymmetric service (crypto profile asym-rfc3) through the device: how long the largest
request the device allows takes, and whether the other data queue is held up meanwhile.

A real server (``vfu-virtio crypto --profile asym-rfc3 --queues 2`` with the given key-generation bounds, started by
the project's spawner) is driven by the project's vfio-user driver. For each kind -- an RSA key pair, DSA domain
parameters and key pair, DH domain parameters (a safe prime) -- at the device's bound, ``--runs`` requests go to
data queue 0 one at a time. While one is in flight the driver keeps sending non-session SHA-256 requests (64 bytes)
on data queue 1, one after the other, and polls queue 0 between them: the key generation's time is from its kick to
the first poll that sees it completed (within one hash request's round trip), and the hash requests' largest round
trip during it shows whether the device went on serving the other queue (the first row: the same loop for 10 s
without key generation, the baseline on a shared host). Prints a markdown table.

    .venv/bin/python benchmarks/crypto_keygen.py [--runs 10] [--max-rsa-keygen-bits 4096]
        [--max-dsa-keygen-bits 2048] [--max-dh-param-bits 1024]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from vfu_virtio.abi import crypto as C
from vfu_virtio.abi.virtio import VIRTIO_F_VERSION_1, bit
from vfu_virtio.client import crypto_asym as AS
from vfu_virtio.client import crypto_v16 as V16
from vfu_virtio.client.spawn import Server
from vfu_virtio.client.virtio_pci import VirtioPciDriver

#: v16's non-session mode bits and VIRTIO_CRYPTO_F_ASYM.
ASYM_FEATURES = 0x3F


SMALL = V16.hash_data_non_sess(C.VIRTIO_CRYPTO_HASH_SHA_256, bytes(64), 32)


def hash_once(drv: VirtioPciDriver) -> float:
    """One SHA-256 request on data queue 1 -> its round trip in seconds."""
    t = time.perf_counter()
    _used, (out,) = drv.queue(1).request([SMALL.readable], [SMALL.writable])
    assert out[-1] == C.VIRTIO_CRYPTO_OK
    return time.perf_counter() - t


def one(drv: VirtioPciDriver, req) -> tuple[float, float, int]:
    """Run ``req`` on data queue 0 while hashing on data queue 1 -> (seconds to completion, the largest hash round
    trip in seconds meanwhile, hash requests answered)."""
    keygen = drv.queue(0)
    keygen.submit([req.readable], [req.writable])
    start = time.perf_counter()
    keygen.kick(force=True)
    worst, answered = 0.0, 0
    while True:
        worst = max(worst, hash_once(drv))
        answered += 1
        done = keygen.poll()
        if done:
            elapsed = time.perf_counter() - start
            (idata,) = done[0].data
            assert AS.idata_head(idata)[0] == C.VIRTIO_CRYPTO_OK, "the device refused the key generation"
            return elapsed, worst, answered


def alone(drv: VirtioPciDriver, seconds: float) -> tuple[float, int]:
    """Hash requests alone for ``seconds`` -> (the largest round trip in seconds, requests answered): the baseline."""
    worst, answered, start = 0.0, 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        worst = max(worst, hash_once(drv))
        answered += 1
    return worst, answered


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10, help="requests of each kind")
    ap.add_argument("--max-rsa-keygen-bits", type=int, default=4096)
    ap.add_argument("--max-dsa-keygen-bits", type=int, default=2048)
    ap.add_argument("--max-dh-param-bits", type=int, default=1024)
    args = ap.parse_args()
    bounds = {"--max-rsa-keygen-bits": args.max_rsa_keygen_bits, "--max-dsa-keygen-bits": args.max_dsa_keygen_bits,
              "--max-dh-param-bits": args.max_dh_param_bits}
    kinds = [(f"RSA key pair, {args.max_rsa_keygen_bits} bits", AS.rsa_keygen(args.max_rsa_keygen_bits // 8)),
             (f"DSA parameters + key pair, {args.max_dsa_keygen_bits} bits",
              AS.dsa_keygen(args.max_dsa_keygen_bits // 8)),
             (f"DH parameters (safe prime), {args.max_dh_param_bits} bits",
              AS.dh_param_gen(args.max_dh_param_bits // 8))]
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    print(f"{platform.machine()} {cpu}, {os.cpu_count()} cores; {args.runs} requests of each kind")
    print("| request | runs | median s | max s | min s | hash requests answered meanwhile "
          "| their worst round trip ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as d:
        options = ["--profile", "asym-rfc3", "--queues", "2", *(f"{k}={v}" for k, v in bounds.items())]
        server = Server("crypto", str(Path(d) / "keygen.sock"), str(Path(d) / "keygen.db"), options,
                        log_path=str(Path(d) / "keygen.log"), log_level="warning").start()
        try:
            with VirtioPciDriver.connect(server.socket) as drv:
                drv.init(features_wanted=bit(VIRTIO_F_VERSION_1) | ASYM_FEATURES)
                worst, answered = alone(drv, 10.0)
                print(f"| (no key generation, 10 s) | | | | | {answered} | {worst * 1e3:.1f} |", flush=True)
                for name, req in kinds:
                    runs = [one(drv, req) for _ in range(args.runs)]
                    times = [r[0] for r in runs]
                    print(f"| {name} | {len(runs)} | {statistics.median(times):.2f} | {max(times):.2f} | "
                          f"{min(times):.2f} | {sum(r[2] for r in runs)} | {max(r[1] for r in runs) * 1e3:.1f} |",
                          flush=True)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
