"""The guest run shared by the tests, the demo and the benchmark: what the guest is asked, what the host expects.

:class:`CryptoPlan` holds the host-chosen AES key, IV, input seed and sizes that go to the guest on the
kernel command line, and recomputes with ``cryptography`` what ``guest/afalg.c`` must output: the
SHA-256 of AES-CBC encryption and of AES-CBC decryption of the seeded input pattern.

:func:`run_guest` boots one device model with a plan: ``vfu-virtio`` starts our crypto server (and
the RPMB server beside it) and attaches both through vfio-user-pci; ``qemu-builtin`` attaches QEMU's
own virtio-crypto-pci instead. The servers are stopped before it returns, whatever happened.
"""
from __future__ import annotations

import hashlib
import secrets
import shlex
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .kit import GuestKit
from .machine import BootResult, Device, QemuBuiltinCrypto, VfioUser, boot
from .report import GuestReport, parse
from .servers import DeviceServers

MODELS = ("vfu-virtio", "qemu-builtin")
#: one AES block up to 64 KiB, with sizes that are not page multiples in between
SIZES = (16, 240, 4096, 16400, 65536)


@lru_cache(maxsize=32)
def pattern(seed: int, size: int) -> bytes:
    """The guest program's input: 32-bit xorshift (13, 17, 5) from ``seed`` (0 -> 0x9e3779b9), top byte."""
    x, out = seed or 0x9E3779B9, bytearray(size)
    for i in range(size):
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        out[i] = x >> 24
    return bytes(out)


@dataclass(frozen=True)
class CryptoPlan:
    key: bytes
    iv: bytes
    seed: int
    sizes: tuple[int, ...] = SIZES
    reset: bool = True
    bench_sizes: tuple[int, ...] = ()
    bench_ms: int = 0

    @classmethod
    def random(cls, key_bytes: int = 16, **kw) -> "CryptoPlan":
        """A fresh random key (16, 24 or 32 bytes: AES-128/192/256), IV and seed."""
        if key_bytes not in (16, 24, 32):
            raise ValueError(f"AES key of {key_bytes} bytes: expected 16, 24 or 32")
        return cls(secrets.token_bytes(key_bytes), secrets.token_bytes(16), secrets.randbits(32), **kw)

    def params(self) -> dict[str, object]:
        p: dict[str, object] = {"key": self.key.hex(), "iv": self.iv.hex(), "seed": self.seed}
        if self.sizes:
            p["sizes"] = ",".join(map(str, self.sizes))
        if self.reset:
            p["reset"] = 1
        if self.bench_sizes:
            p.update(bench=",".join(map(str, self.bench_sizes)), benchms=self.bench_ms)
        return p

    def expected(self, size: int) -> tuple[str, str]:
        """(SHA-256 of CBC-encrypt(input), SHA-256 of CBC-decrypt(input)) as the host computes them."""
        cipher = Cipher(algorithms.AES(self.key), modes.CBC(self.iv))
        data = pattern(self.seed, size)
        enc = cipher.encryptor().update(data)
        dec = cipher.decryptor().update(data)
        return hashlib.sha256(enc).hexdigest(), hashlib.sha256(dec).hexdigest()

    def mismatches(self, afalg: dict[int, dict[str, str]]) -> list[str]:
        """What differs between the guest's AF_ALG results (``GuestReport.afalg``) and the host; [] if all equal."""
        bad = []
        for size in self.sizes:
            got = afalg.get(size)
            if got is None:
                bad.append(f"{size} B: no result")
                continue
            enc, dec = self.expected(size)
            if got["result"] != "ok":
                bad.append(f"{size} B: guest round trip {got['result']}")
            if got["enc_sha256"] != enc:
                bad.append(f"{size} B: encryption differs from the host")
            if got["dec_sha256"] != dec:
                bad.append(f"{size} B: decryption differs from the host")
        return bad


@dataclass
class GuestRun:
    model: str
    boot: BootResult
    report: GuestReport
    servers_alive_after_boot: list[bool] = field(default_factory=list)
    server_exit_codes: list[int | None] = field(default_factory=list)
    server_logs: str = ""

    def diagnosis(self) -> str:
        """Enough text to see why a run went wrong: exit, last step, console and log tails."""
        return (f"{self.model}: QEMU exit {self.boot.returncode} after {self.boot.seconds:.1f} s"
                f"{' (timed out)' if self.boot.timed_out else ''}, last guest step {self.report.last_step}\n"
                f"--- QEMU command ---\n{shlex.join(self.boot.argv)}\n"
                f"--- QEMU stderr ---\n{self.boot.stderr[-2000:]}\n--- console (tail) ---\n"
                f"{self.boot.console[-5000:]}\n{self.server_logs[-5000:]}")


def run_guest(kit: GuestKit, model: str, plan: CryptoPlan, *, queues: int = 1, crypto_options: tuple[str, ...] = (),
              workdir: Path | None = None, timeout: float = 300,
              log_level: str = "info", on_line: Callable[[str], None] | None = None) -> GuestRun:
    """Boot ``model`` (one of :data:`MODELS`) once with ``plan``; see the module docstring.

    ``queues`` (data queues) and ``crypto_options`` (further ``vfu-virtio crypto`` options) configure
    vfu-virtio's device; QEMU's builtin backend has one data queue. Server logs stay in ``workdir`` when
    one is given.
    """
    if model not in MODELS:
        raise ValueError(f"model {model!r}: expected one of {MODELS}")
    with tempfile.TemporaryDirectory(prefix="vfu-guest-") as tmp, \
            DeviceServers(workdir or Path(tmp), log_level=log_level) as servers:
        devices: list[Device] = []
        if model == "vfu-virtio":
            devices.append(VfioUser(servers.start("crypto", "--queues", str(queues), *crypto_options).socket))
            devices.append(VfioUser(servers.start("rpmb").socket))
        else:
            devices.append(QemuBuiltinCrypto())
        result = boot(kit, devices, plan.params(), timeout=timeout, on_line=on_line)
        alive = [s.alive() for s in servers.servers]
        servers.stop()
        return GuestRun(model, result, parse(result.console), alive,
                        [s.returncode for s in servers.servers], servers.logs())
