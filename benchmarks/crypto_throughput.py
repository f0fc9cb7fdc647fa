"""virtio-crypto throughput through the device vs the same operation done directly with `cryptography`.

A real ``vfu-virtio crypto`` process on a temporary socket is driven by the project's vfio-user driver
(guest memory in a memfd, requests batched ``--batch`` per kick on data queue 0, completions by MSI-X).
Each operation is measured for ``--seconds`` through the device and, in this process, directly with
`cryptography` (the ceiling: one call per request, as the device makes). Prints a markdown table with
ops/s, MB/s and the ratio device/direct, and writes ``benchmarks/out/crypto_throughput.png``.

    .venv/bin/python benchmarks/crypto_throughput.py [--seconds 1.0] [--batch 64] [--quick]
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vfu_virtio.client.virtio_pci import DEFAULT_DRIVER_FEATURES, VirtioPciDriver
from vfu_virtio.abi import crypto as C
from vfu_virtio.client import crypto as D

SIZES = (64, 256, 1024, 4096, 16384, 65536)
CTRLQ = 1
KEY, IV, NONCE = bytes(range(16)), bytes(16), bytes(12)


def timed(fn, seconds: float, per_call: int) -> float:
    """Operations per second of ``fn`` (which performs ``per_call`` operations) over about ``seconds``."""
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += per_call
        dt = time.perf_counter() - t0
        if dt >= seconds:
            return n / dt


class Device:
    def __init__(self, drv: VirtioPciDriver, batch: int):
        self.drv, self.batch = drv, batch

    def session(self, req: D.Request) -> int:
        _u, (outcome,) = self.drv.queue(CTRLQ).request([req.readable], [req.writable])
        sid, status = D.session_input(outcome)
        assert status == C.VIRTIO_CRYPTO_OK, C.STATUS_NAMES.get(status, status)
        return sid

    def rate(self, req: D.Request, seconds: float) -> float:
        """Requests/s with two batches in flight: the driver refills one while the device works on the
        other, so the two processes overlap instead of taking turns."""
        q = self.drv.queue(0)
        results = q.run([([req.readable], [req.writable])] * self.batch, batch=self.batch)
        assert all(data[-1][-1] == C.VIRTIO_CRYPTO_OK for _u, data in results), "device answered an error"

        def submit_batch():
            for _ in range(self.batch):
                q.submit([req.readable], [req.writable])
            q.kick()

        submit_batch()
        n, t0 = 0, time.perf_counter()
        while True:
            submit_batch()
            done = q.wait(timeout=30, min_completions=self.batch)
            n += len(done)
            dt = time.perf_counter() - t0
            if dt >= seconds:
                while q.vq.in_flight:
                    q.wait(timeout=30, min_completions=q.vq.in_flight)
                return n / dt


def symmetric_cases(dev: Device):
    """(name, size, device request, direct callable) for the bulk operations."""
    cbc = dev.session(D.cipher_create_session(C.VIRTIO_CRYPTO_CIPHER_AES_CBC, KEY, C.VIRTIO_CRYPTO_OP_ENCRYPT))
    gcm = dev.session(D.aead_create_session(C.VIRTIO_CRYPTO_AEAD_GCM, KEY, 16, 0, C.VIRTIO_CRYPTO_OP_ENCRYPT))
    sha = dev.session(D.hash_create_session(C.VIRTIO_CRYPTO_HASH_SHA_256, 32))
    mac = dev.session(D.mac_create_session(C.VIRTIO_CRYPTO_MAC_HMAC_SHA_256, 32, KEY))
    for size in SIZES:
        data = os.urandom(size)
        yield ("AES-128-CBC", size, D.cipher_data(C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, cbc, IV, data),
               lambda d=data: Cipher(algorithms.AES(KEY), modes.CBC(IV)).encryptor().update(d))
        yield ("AES-128-GCM", size, D.aead_data(C.VIRTIO_CRYPTO_AEAD_ENCRYPT, gcm, NONCE, data, b"", 16, size + 16),
               lambda d=data: AESGCM(KEY).encrypt(NONCE, d, None))
        yield ("SHA-256", size, D.digest_data(C.VIRTIO_CRYPTO_HASH, sha, data, 32),
               lambda d=data: _digest(d))
        yield ("HMAC-SHA256", size, D.digest_data(C.VIRTIO_CRYPTO_MAC, mac, data, 32),
               lambda d=data: _hmac(d))


def _digest(d: bytes) -> bytes:
    h = hashes.Hash(hashes.SHA256())
    h.update(d)
    return h.finalize()


def _hmac(d: bytes) -> bytes:
    h = hmac.HMAC(KEY, hashes.SHA256())
    h.update(d)
    return h.finalize()


def signature_cases(dev: Device):
    digest = _digest(b"benchmark")
    rsa_key = rsa.generate_private_key(65537, 2048)
    der = rsa_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    sid = dev.session(D.akcipher_create_session(C.VIRTIO_CRYPTO_AKCIPHER_RSA, C.VIRTIO_CRYPTO_AKCIPHER_KEY_TYPE_PRIVATE,
                                                der, padding=C.VIRTIO_CRYPTO_RSA_PKCS1_PADDING,
                                                hash_algo=C.VIRTIO_CRYPTO_RSA_SHA256))
    yield ("RSA-2048 sign", 32, D.akcipher_data(C.VIRTIO_CRYPTO_AKCIPHER_SIGN, sid, digest, 256),
           lambda: rsa_key.sign(digest, padding.PKCS1v15(), Prehashed(hashes.SHA256())))
    ec_key = ec.generate_private_key(ec.SECP256R1())
    der = ec_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
                               serialization.NoEncryption())
    sid = dev.session(D.akcipher_create_session(C.VIRTIO_CRYPTO_AKCIPHER_ECDSA,
                                                C.VIRTIO_CRYPTO_AKCIPHER_KEY_TYPE_PRIVATE, der,
                                                curve=C.VIRTIO_CRYPTO_CURVE_NIST_P256))
    yield ("ECDSA-P256 sign", 32, D.akcipher_data(C.VIRTIO_CRYPTO_AKCIPHER_SIGN, sid, digest, 72),
           lambda: ec_key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256()))))


def plot(rows, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name in ("AES-128-CBC", "AES-128-GCM", "SHA-256", "HMAC-SHA256"):
        pts = [(size, ratio) for n, size, *_rest, ratio in rows if n == name]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("request size (bytes)")
    ax.set_ylabel("device / direct cryptography")
    ax.axhline(0.9, ls=":", c="grey")
    ax.axhline(0.5, ls=":", c="grey")
    ax.set_ylim(0, 1.05)
    ax.legend()
    ax.set_title("vfu-virtio crypto throughput relative to in-process cryptography")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.0, help="seconds per measurement")
    ap.add_argument("--batch", type=int, default=64, help="requests per kick")
    ap.add_argument("--quick", action="store_true", help="0.1 s per measurement (smoke run)")
    args = ap.parse_args()
    seconds = 0.1 if args.quick else args.seconds
    rows = []
    with tempfile.TemporaryDirectory() as d:
        sock = Path(d) / "crypto.sock"
        server = subprocess.Popen([sys.executable, "-m", "vfu_virtio", "--log-level", "warning", "crypto",
                                   "--socket", str(sock), "--state", str(Path(d) / "vfu.db"), "--queues", "1",
                                   "--max-size", str(1 << 20)])
        try:
            while not sock.exists():
                if server.poll() is not None:
                    raise SystemExit("server did not start")
                time.sleep(0.02)
            with VirtioPciDriver.connect(str(sock), mem_size=256 << 20) as drv:
                drv.init(features_wanted=DEFAULT_DRIVER_FEATURES)
                dev = Device(drv, args.batch)
                for cases in (symmetric_cases(dev), signature_cases(dev)):
                    for name, size, req, direct in cases:
                        via = dev.rate(req, seconds)
                        ceiling = timed(direct, seconds, 1)
                        rows.append((name, size, via, ceiling, via / ceiling))
        finally:
            server.terminate()
            server.wait()
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    print(f"{platform.machine()} {cpu}, {os.cpu_count()} cores; {args.batch} requests per kick; "
          f"{seconds} s per measurement")
    print("| operation | size (B) | device ops/s | device MB/s | direct ops/s | direct MB/s | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, size, via, ceiling, ratio in rows:
        print(f"| {name} | {size} | {via:,.0f} | {via * size / 1e6:.1f} | {ceiling:,.0f} | "
              f"{ceiling * size / 1e6:.1f} | {ratio:.2f} |")
    out = Path(__file__).resolve().parent / "out" / "crypto_throughput.png"
    try:
        plot(rows, out)
        print(f"plot: {out}")
    except ImportError:
        print("matplotlib not installed (pip install -e .[bench]): no plot")


if __name__ == "__main__":
    main()
