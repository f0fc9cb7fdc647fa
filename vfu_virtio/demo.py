"""The host-only main job: serve the crypto device and drive real AES-CBC requests through it.

``python -m vfu_virtio.demo`` starts ``vfu-virtio crypto`` as its own process on a temporary socket
(:mod:`vfu_virtio.client.spawn`: it returns once the socket listens),
attaches the project's vfio-user driver (guest memory in a memfd, DMA-mapped; MSI-X through eventfds),
negotiates features, creates AES-CBC sessions on the controlq exactly as the Linux driver lays them out,
encrypts and decrypts the NIST SP 800-38A F.2.1–F.2.6 vectors on the data queues, and prints what
happened. Exit status 0 only if every result matched.
"""
from __future__ import annotations

import shlex
import sys
import tempfile
import time
from pathlib import Path

from .client.spawn import Server, ServerFailed
from .client.virtio_pci import DEFAULT_DRIVER_FEATURES, VirtioPciDriver
from .abi import crypto as C
from .client import crypto as D

IV = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
PLAIN = bytes.fromhex("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
                      "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710")
SP800_38A_CBC = [  # (vectors, key, ciphertext): F.2.1/2 AES-128, F.2.3/4 AES-192, F.2.5/6 AES-256
    ("F.2.1/F.2.2", "2b7e151628aed2a6abf7158809cf4f3c",
     "7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2"
     "73bed6b8e3c1743b7116e69e222295163ff1caa1681fac09120eca307586e1a7"),
    ("F.2.3/F.2.4", "8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b",
     "4f021db243bc633d7178183a9fa071e8b4d9ada9ad7dedf4e5e738763f69145a"
     "571b242012fb7ae07fa9baac3df102e008b0e27988598881d920a9e64f5615cd"),
    ("F.2.5/F.2.6", "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
     "f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d"
     "39f23369a9d9bacfa530e26304231461b2eb05e2c39be9fcda6c19078c6a9d1b"),
]
QUEUES = 2


def _session(drv: VirtioPciDriver, key: bytes, op: int) -> int:
    req = D.cipher_create_session(C.VIRTIO_CRYPTO_CIPHER_AES_CBC, key, op)
    head = req.readable[:len(req.readable) - len(key)]
    _used, (outcome,) = drv.queue(QUEUES).request([head, key], [16])
    sid, status = D.session_input(outcome)
    if status != C.VIRTIO_CRYPTO_OK:
        raise RuntimeError(f"create session answered {C.STATUS_NAMES.get(status, status)}")
    return sid


def _cipher(drv: VirtioPciDriver, queue: int, opcode: int, sid: int, data: bytes) -> bytes:
    head = D.cipher_data(opcode, sid, IV, data).readable[:72]
    _used, (dst, status) = drv.queue(queue).request([head, IV, data], [len(data), 1])
    if status != bytes([C.VIRTIO_CRYPTO_OK]):
        raise RuntimeError(f"data request answered status {status[0]}")
    return dst


def run(socket_path: str) -> bool:
    ok = True
    with VirtioPciDriver.connect(socket_path) as drv:
        features = drv.init(features_wanted=DEFAULT_DRIVER_FEATURES)
        print(f"attached: PCI {drv.vendor_id:04x}:{drv.device_id:04x}, virtio device id {drv.virtio_device_id}, "
              f"{drv.num_queues} virtqueues, negotiated features {features:#x}")
        for name, key_hex, ct_hex in SP800_38A_CBC:
            key, expected = bytes.fromhex(key_hex), bytes.fromhex(ct_hex)
            enc = _session(drv, key, C.VIRTIO_CRYPTO_OP_ENCRYPT)
            dec = _session(drv, key, C.VIRTIO_CRYPTO_OP_DECRYPT)
            ct = _cipher(drv, 0, C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, enc, PLAIN)
            pt = _cipher(drv, 1, C.VIRTIO_CRYPTO_CIPHER_DECRYPT, dec, ct)
            good = ct == expected and pt == PLAIN
            ok &= good
            print(f"  AES-{len(key) * 8}-CBC {name}: sessions {enc}/{dec}, encrypt on dataq 0 "
                  f"{'matches' if ct == expected else 'DIFFERS FROM'} NIST, decrypt on dataq 1 "
                  f"{'returns the plaintext' if pt == PLAIN else 'DIFFERS'} -> {'ok' if good else 'FAIL'}")
            for sid in (enc, dec):
                req = D.destroy_session(C.VIRTIO_CRYPTO_CIPHER_DESTROY_SESSION, sid)
                drv.queue(QUEUES).request([req.readable], [1])
        t0, n = time.perf_counter(), 0
        sid = _session(drv, bytes(16), C.VIRTIO_CRYPTO_OP_ENCRYPT)
        block = bytes(4096)
        head = D.cipher_data(C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, sid, IV, block).readable[:72]
        while time.perf_counter() - t0 < 1.0:
            drv.queue(0).run([([head, IV, block], [len(block), 1])] * 32)
            n += 32
        dt = time.perf_counter() - t0
        print(f"  AES-128-CBC 4 KiB requests, 32 per kick: {n / dt:,.0f} requests/s ({n * 4096 / dt / 1e6:.1f} MB/s)")
    return ok


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="vfu-demo-") as d:
        server = Server("crypto", str(Path(d) / "crypto.sock"), str(Path(d) / "vfu.db"),
                        ("--queues", str(QUEUES), "--once"), log_path=str(Path(d) / "crypto.log"))
        print("serving: vfu-virtio", shlex.join(server.args()))
        try:
            server.start()
        except ServerFailed as e:
            print(e, file=sys.stderr)
            return 1
        try:
            ok = run(server.socket)
            server.proc.wait(timeout=15)  # --once: the server exits when the driver disconnects
        finally:
            server.stop()
        print("server log:")
        for line in server.log().splitlines():
            print("  " + line)
        print("result:", "every vector matched" if ok else "MISMATCH")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
