"""virtio-crypto throughput through the device vs the same operation done directly with `cryptography`.

A real crypto device server (``vfu-virtio crypto --queues 2 [--bulk-threshold N]`` on a temporary socket, started by
the project's spawner) is driven by the project's vfio-user driver (guest memory
in a memfd, requests batched ``--batch`` per kick, two batches in flight per queue, completions by MSI-X) on
``--queues-driven`` data queues at once (one driver thread filling them in turn). Each operation is measured
``--repeats`` times for ``--seconds`` through the device and, in this process, directly with `cryptography` (the
ceiling: one call per request, as the device makes), alternately. Prints a markdown table with ops/s and MB/s as the
median and the min-max over the repeats, and the median of the paired ratios device/direct with their range (all
queues together); writes ``crypto_throughput.png`` (ratios with their range) into ``--out`` (``benchmarks/out/``).

With ``--compare-threshold N`` it instead serves two devices at once, bulk thresholds ``--bulk-threshold`` (default
0) and N, and measures every operation on both alternately (A B, B A, ...) for ``--rounds`` rounds of ``--seconds``
each, so a load change on a shared host hits both alike; the table gives each one's median ops/s and the median of
the paired ratios B/A with their range.

    scripts/bench crypto_throughput [--seconds 1.0] [--repeats 3] [--batch 64] [--quick]
        [--bulk-threshold BYTES] [--queues-driven 1|2] [--sizes 1024,65536] [--ops AES-128-CBC,SHA-256]
        [--compare-threshold BYTES [--rounds 6]] [--profile standard|v16|asym-rfc3] [--out DIR] [--no-plot]

``--profile`` serves another crypto profile: the drafts' session-mode requests (72-byte heads, no crypto feature bit)
are the standard's byte for byte, so the symmetric operations run unchanged; the signature rows need the standard's
AKCIPHER service (``benchmarks/crypto_keygen.py`` measures the ASYM RFC's key generation).
"""
from __future__ import annotations

import contextlib
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from common import Spread, add_output_options, line_plot, parser, proc_cpu_seconds
from vfu_virtio.abi import crypto as C
from vfu_virtio.client import crypto as D
from vfu_virtio.client.spawn import Server
from vfu_virtio.client.virtio_pci import DEFAULT_DRIVER_FEATURES, VirtioPciDriver

SIZES = (64, 256, 1024, 4096, 16384, 65536)
DATAQUEUES = 2
CTRLQ = DATAQUEUES
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
    def __init__(self, drv: VirtioPciDriver, batch: int, queues: int):
        self.drv, self.batch, self.queues = drv, batch, queues

    def session(self, req: D.Request) -> int:
        _u, (outcome,) = self.drv.queue(CTRLQ).request([req.readable], [req.writable])
        sid, status = D.session_input(outcome)
        assert status == C.VIRTIO_CRYPTO_OK, C.STATUS_NAMES.get(status, status)
        return sid

    def rate(self, req: D.Request, seconds: float) -> float:
        """Requests/s over all driven queues with two batches in flight on each: the driver refills one while the
        device works on the other, so the two processes overlap instead of taking turns. The device process's CPU
        time per request (user + sys, µs) goes to :attr:`cpu_us`."""
        c0 = proc_cpu_seconds(self.drv.server_pid)
        n, rate = self._rate(req, seconds)
        self.cpu_us = (proc_cpu_seconds(self.drv.server_pid) - c0) * 1e6 / n
        return rate

    def _rate(self, req: D.Request, seconds: float) -> tuple[int, float]:
        queues = [self.drv.queue(i) for i in range(self.queues)]
        for q in queues:
            results = q.run([([req.readable], [req.writable])] * self.batch, batch=self.batch)
            assert all(data[-1][-1] == C.VIRTIO_CRYPTO_OK for _u, data in results), "device answered an error"

        def submit_batches():
            for q in queues:
                for _ in range(self.batch):
                    q.submit([req.readable], [req.writable])
                q.kick()

        submit_batches()
        n, t0 = 0, time.perf_counter()
        while True:
            submit_batches()
            for q in queues:
                n += len(q.wait(timeout=30, min_completions=self.batch))
            dt = time.perf_counter() - t0
            if dt >= seconds:
                for q in queues:
                    while q.vq.in_flight:
                        n += len(q.wait(timeout=30, min_completions=q.vq.in_flight))
                return n, n / dt


def symmetric_cases(dev: Device, sizes):
    """(name, size, device request, direct callable) for the bulk operations."""
    cbc = dev.session(D.cipher_create_session(C.VIRTIO_CRYPTO_CIPHER_AES_CBC, KEY, C.VIRTIO_CRYPTO_OP_ENCRYPT))
    gcm = dev.session(D.aead_create_session(C.VIRTIO_CRYPTO_AEAD_GCM, KEY, 16, 0, C.VIRTIO_CRYPTO_OP_ENCRYPT))
    sha = dev.session(D.hash_create_session(C.VIRTIO_CRYPTO_HASH_SHA_256, 32))
    mac = dev.session(D.mac_create_session(C.VIRTIO_CRYPTO_MAC_HMAC_SHA_256, 32, KEY))
    for size in sizes:
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


@contextlib.contextmanager
def served(directory: str, name: str, bulk_threshold: int | None, profile: str = "standard", loop: tuple = ()):
    """A ``vfu-virtio crypto`` server process of crypto profile ``profile`` (bulk_threshold None: the device
    default; ``loop``: further options, e.g. ``--poll-us 50``), started with the project's spawner (ready when it
    says so), and an initialized driver on it (its ``server_pid`` is the device process)."""
    options = ["--queues", str(DATAQUEUES), "--max-size", str(4 << 20), "--profile", profile, *loop]
    if bulk_threshold is not None:
        options += ["--bulk-threshold", str(bulk_threshold)]
    server = Server("crypto", str(Path(directory) / f"{name}.sock"), str(Path(directory) / f"{name}.db"), options,
                    log_path=str(Path(directory) / f"{name}.log"), log_level="warning").start()
    try:
        with VirtioPciDriver.connect(server.socket, mem_size=256 << 20) as drv:
            drv.init(features_wanted=DEFAULT_DRIVER_FEATURES)
            drv.server_pid = server.pid
            yield drv
    finally:
        server.stop()


def selected(cases, wanted):
    return [case for case in cases if wanted is None or case[0] in wanted]


def measure(args, sizes, wanted, seconds) -> None:
    """One device: the table against direct `cryptography` (and the plot), ``--repeats`` paired measurements a
    cell."""
    rows = []
    with tempfile.TemporaryDirectory() as d, \
            served(d, "crypto", args.bulk_threshold, args.profile, tuple(args.device_options.split())) as drv:
        dev = Device(drv, args.batch, args.queues_driven)
        # the drafts' profiles have no AKCIPHER service (their session-mode requests are the standard's, byte for byte)
        signatures = signature_cases(dev) if args.profile == "standard" else []
        for name, size, req, direct in selected([*symmetric_cases(dev, sizes), *signatures], wanted):
            pairs, cpu = [], []
            for _ in range(args.repeats):  # device and direct alternate, so a load change hits both alike
                pairs.append((dev.rate(req, seconds), timed(direct, seconds, 1)))
                cpu.append(dev.cpu_us)
            rows.append((name, size, Spread.of(v for v, _c in pairs), Spread.of(c for _v, c in pairs),
                         Spread.of(v / c for v, c in pairs), Spread.of(cpu)))
    print("| operation | size (B) | device ops/s | device MB/s | direct ops/s | direct MB/s | ratio "
          "| device CPU µs/req |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, size, via, ceiling, ratio, cpu in rows:
        print(f"| {name} | {size} | {via.format()} | {via.scaled(size / 1e6).format('.1f')} | {ceiling.format()} | "
              f"{ceiling.scaled(size / 1e6).format('.1f')} | {ratio.format('.2f')} | {cpu.format('.1f')} |")
    print(f"\nmedian (min-max) over {args.repeats} repeat(s) of {seconds:g} s; ratio: the median of the paired "
          "ratios device/direct")
    if args.no_plot:
        return
    lines = {}
    for name, size, _via, _ceiling, ratio, _cpu in rows:
        if not name.startswith(("RSA", "ECDSA")):
            lines.setdefault(name, []).append((size, ratio))
    print(line_plot(args.out / "crypto_throughput.png", "vfu-virtio crypto throughput relative to in-process "
                    f"cryptography (median, min-max of {args.repeats})", "request size (bytes)",
                    "device / direct cryptography", lines, hlines=(0.5, 0.9)))


def compare(args, sizes, wanted, seconds) -> None:
    """Two devices (bulk thresholds A and B) measured alternately: paired ratios B/A."""
    a_threshold = args.bulk_threshold or 0
    print(f"| operation | size (B) | A ({a_threshold} B) ops/s | B ({args.compare_threshold} B) ops/s | "
          "B/A paired median | range |")
    print("|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as d, served(d, "a", a_threshold, args.profile) as drv_a, \
            served(d, "b", args.compare_threshold, args.profile) as drv_b:
        devs = (Device(drv_a, args.batch, args.queues_driven), Device(drv_b, args.batch, args.queues_driven))
        pairs = zip(*(selected(symmetric_cases(dev, sizes), wanted) for dev in devs))
        for (name, size, req_a, _direct), (_name, _size, req_b, _direct_b) in pairs:
            rates: tuple[list[float], list[float]] = ([], [])
            for r in range(args.rounds):
                for i in ((0, 1) if r % 2 == 0 else (1, 0)):
                    rates[i].append(devs[i].rate((req_a, req_b)[i], seconds))
            ratios = [b / a for a, b in zip(*rates)]
            print(f"| {name} | {size} | {statistics.median(rates[0]):,.0f} | {statistics.median(rates[1]):,.0f} | "
                  f"{statistics.median(ratios):.2f} | {min(ratios):.2f}-{max(ratios):.2f} |", flush=True)


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--seconds", type=float, default=1.0, help="seconds per measurement")
    ap.add_argument("--batch", type=int, default=64, help="requests per kick")
    ap.add_argument("--quick", action="store_true", help="0.1 s per measurement (smoke run)")
    ap.add_argument("--bulk-threshold", type=int, default=None,
                    help="the device's bulk_threshold in bytes (0: every request on the event-loop thread; "
                         "None: the device default, or 0 with --compare-threshold)")
    ap.add_argument("--compare-threshold", type=int, default=None,
                    help="serve a second device with this bulk_threshold (bytes) and compare them in pairs")
    ap.add_argument("--rounds", type=int, default=6, help="paired rounds per operation with --compare-threshold")
    ap.add_argument("--queues-driven", type=int, choices=(1, 2), default=1, help="data queues driven at once")
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)), help="request sizes in bytes, comma-separated")
    ap.add_argument("--ops", default=None, help="only these operations (comma-separated names as in the table)")
    ap.add_argument("--device-options", default="", help="further vfu-virtio options for the device, space-separated "
                    "(e.g. '--poll-us 50' or '--notify mmap --poll-us 50')")
    add_output_options(ap)
    ap.add_argument("--profile", default="standard", help="the device's crypto profile (standard, v16, asym-rfc3: "
                    "the drafts serve the symmetric operations only, in session mode)")
    args = ap.parse_args()
    seconds = 0.1 if args.quick else args.seconds
    sizes = [int(x) for x in args.sizes.split(",")]
    wanted = set(args.ops.split(",")) if args.ops else None
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    threshold = "device default" if args.bulk_threshold is None else f"{args.bulk_threshold} B"
    print(f"{platform.machine()} {cpu}, {os.cpu_count()} cores; profile {args.profile}; {args.batch} requests per "
          f"kick; {seconds} s per measurement; {args.queues_driven} data queue(s) driven; bulk threshold "
          + (f"{threshold}" if args.compare_threshold is None else f"A vs B, {args.rounds} rounds")
          + f"; device options: {args.device_options or '(defaults)'}; load average {os.getloadavg()[0]:.2f}")
    if args.compare_threshold is None:
        measure(args, sizes, wanted, seconds)
    else:
        compare(args, sizes, wanted, seconds)


if __name__ == "__main__":
    main()
