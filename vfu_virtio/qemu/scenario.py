"""The guest run shared by the tests, the demo and the benchmarks: what the guest is asked, what the host expects.

:class:`CryptoPlan` (the ``linux`` scenario, ``guest/linux.sh``) holds the host-chosen AES key, IV, input seed
and sizes that go to the guest on the kernel command line, and recomputes with ``cryptography`` what
``guest/afalg.c`` must output: the SHA-256 of AES-CBC encryption and of AES-CBC decryption of the seeded input
pattern. It also holds an RSA-2048 key and a message for ``guest/pkey.c`` (keyctl), which travel as per-boot
files: the host recomputes the PKCS#1 v1.5 SHA-256 signature and decrypts the guest's ciphertext. The ``dpdk``
scenario's plan is :class:`vfu_virtio.qemu.dpdk.DpdkPlan`. A plan names its :class:`~.machine.Machine` and gives
``params()`` (kernel command line) and ``files()`` (per-boot files).

:func:`run_guest` boots one device model with a plan: ``vfu-virtio`` starts a server of every registered
device kind flagged ``guest_attachable`` (crypto and RPMB among the built-in ones; see
``vfu_virtio.devices.registry``) and attaches each through vfio-user-pci; ``qemu-builtin`` attaches QEMU's own
virtio-crypto-pci instead. The servers are stopped before it returns, whatever happened. Every vfu-virtio server
runs with the driver audit (``--audit``): :attr:`GuestRun.audits` holds what each saw the guest's drivers break.
"""
from __future__ import annotations

import hashlib
import json
import secrets
import shlex
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Mapping, Protocol, Sequence

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from vfu_virtio.client.spawn import ServerGroup
from vfu_virtio.devices.registry import DeviceKind, kinds

from .kit import TOP, GuestKit
from .machine import LINUX, BootResult, Device, Machine, QemuBuiltinCrypto, VfioUser, boot
from .report import GuestReport, parse

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


class Plan(Protocol):
    """What a scenario's plan gives :func:`run_guest`."""
    machine: Machine

    def params(self) -> dict[str, object]: ...

    def files(self) -> dict[str, bytes]: ...


@lru_cache(maxsize=1)
def _rsa_key() -> rsa.RSAPrivateKey:
    """One RSA-2048 key per process (generating one costs ~0.1 s; each plan's message differs)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass(frozen=True)
class CryptoPlan:
    key: bytes
    iv: bytes
    seed: int
    sizes: tuple[int, ...] = SIZES
    reset: bool = True
    bench_sizes: tuple[int, ...] = ()
    bench_ms: int = 0
    tcrypt: bool = True  # the kernel's AES test vectors (tcrypt mode=10)
    rsa_message: bytes = b""  # keyctl RSA with _rsa_key() unless empty
    machine: Machine = LINUX

    @classmethod
    def random(cls, key_bytes: int = 16, **kw) -> "CryptoPlan":
        """A fresh random key (16, 24 or 32 bytes: AES-128/192/256), IV, seed and RSA message."""
        if key_bytes not in (16, 24, 32):
            raise ValueError(f"AES key of {key_bytes} bytes: expected 16, 24 or 32")
        kw.setdefault("rsa_message", secrets.token_bytes(64))
        return cls(secrets.token_bytes(key_bytes), secrets.token_bytes(16), secrets.randbits(32), **kw)

    def params(self) -> dict[str, object]:
        p: dict[str, object] = {"key": self.key.hex(), "iv": self.iv.hex(), "seed": self.seed}
        if self.sizes:
            p["sizes"] = ",".join(map(str, self.sizes))
        if self.reset:
            p["reset"] = 1
        if self.tcrypt:
            p["tcrypt"] = 1
        if self.rsa_message:
            p["pkey"] = 1
        if self.bench_sizes:
            p.update(bench=",".join(map(str, self.bench_sizes)), benchms=self.bench_ms)
        return p

    def files(self) -> dict[str, bytes]:
        """``guest/pkey.c``'s inputs: the PKCS#8 RSA key, the message and its SHA-256 (none without a message)."""
        if not self.rsa_message:
            return {}
        der = _rsa_key().private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())
        return {"etc/vfu/rsa.pk8": der, "etc/vfu/message": self.rsa_message,
                "etc/vfu/digest": hashlib.sha256(self.rsa_message).digest()}

    def rsa_mismatches(self, pkey: dict[str, str]) -> list[str]:
        """What differs between the guest's keyctl results (a ``VFU-PKEY`` marker's fields) and the host: the
        signature must equal the host's RSASSA-PKCS1-v1_5 SHA-256 signature, the ciphertext must decrypt to the
        message, and the guest's own verify, corrupt-verify and decrypt must have behaved; [] if all is well."""
        key, bad = _rsa_key(), []
        for name, want in (("load", "ok"), ("sign", "ok"), ("verify", "ok"), ("verify_corrupt", "rejected"),
                           ("encrypt", "ok"), ("decrypt", "ok")):
            if pkey.get(name) != want:
                bad.append(f"{name}: {pkey.get(name, 'missing')} (expected {want})")
        if "sig" in pkey and bytes.fromhex(pkey["sig"]) != key.sign(self.rsa_message, padding.PKCS1v15(),
                                                                    hashes.SHA256()):
            bad.append("signature differs from the host's")
        if "enc" in pkey:
            try:
                if key.decrypt(bytes.fromhex(pkey["enc"]), padding.PKCS1v15()) != self.rsa_message:
                    bad.append("the host decrypts the guest's ciphertext to another message")
            except ValueError:
                bad.append("the host cannot decrypt the guest's ciphertext")
        return bad

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
    #: device kind -> its driver audit file's data (``vfu_virtio.virtio.audit``; vfu-virtio only)
    audits: dict[str, dict] = field(default_factory=dict)

    def violations(self, kind: str) -> dict[str, int]:
        """What the guest's drivers broke on the ``kind`` device: check id -> count (empty when nothing)."""
        return {v["check"]: v["count"] for v in self.audits.get(kind, {}).get("violations", [])}

    def diagnosis(self) -> str:
        """Enough text to see why a run went wrong: exit, last step, console and log tails."""
        return (f"{self.model}: QEMU exit {self.boot.returncode} after {self.boot.seconds:.1f} s"
                f"{' (timed out)' if self.boot.timed_out else ''}, last guest step {self.report.last_step}\n"
                f"--- QEMU command ---\n{shlex.join(self.boot.argv)}\n"
                f"--- QEMU stderr ---\n{self.boot.stderr[-2000:]}\n--- console (tail) ---\n"
                f"{self.boot.console[-5000:]}\n{self.server_logs[-5000:]}")


def guest_kinds() -> list[DeviceKind]:
    """The registered device kinds the ``vfu-virtio`` model attaches, in registry order."""
    return [k for k in kinds().values() if k.guest_attachable]


def run_guest(kit: GuestKit, model: str, plan: Plan, *,
              device_options: Mapping[str, Sequence[str]] | None = None, workdir: Path | None = None,
              timeout: float = 300, log_level: str = "info",
              on_line: Callable[[str], None] | None = None, qemu_args: Sequence[str] = ()) -> GuestRun:
    """Boot ``model`` (one of :data:`MODELS`) once with ``plan`` (its machine, parameters and files); see the
    module docstring.

    ``device_options`` maps a kind name to further ``vfu-virtio <kind>`` options, used when the ``vfu-virtio``
    model attaches that kind (``{"crypto": ("--queues", "2")}``; ValueError naming a kind that is not
    guest-attachable); QEMU's builtin backend has one data queue. Server logs stay in ``workdir`` when one is
    given. ``qemu_args`` are added to QEMU's command line.
    """
    if model not in MODELS:
        raise ValueError(f"model {model!r}: expected one of {MODELS}")
    options = dict(device_options or {})
    unknown = set(options) - {k.name for k in guest_kinds()}
    if unknown:
        raise ValueError(f"device_options for {sorted(unknown)}: the guest-attachable kinds are "
                         f"{[k.name for k in guest_kinds()]}")
    attached = guest_kinds() if model == "vfu-virtio" else []
    with tempfile.TemporaryDirectory(prefix="vfu-guest-") as tmp, \
            ServerGroup(workdir or Path(tmp), log_level=log_level, cwd=str(TOP)) as servers:
        audits = {k.name: servers.workdir / f"{k.name}.audit.json" for k in attached}
        devices: list[Device] = [VfioUser(Path(servers.start(k.name, *options.get(k.name, ()), "--audit",
                                                             str(audits[k.name])).socket)) for k in attached]
        if model == "qemu-builtin":
            devices.append(QemuBuiltinCrypto())
        result = boot(kit, devices, plan.params(), timeout=timeout, on_line=on_line, machine=plan.machine,
                      files=plan.files(), qemu_args=qemu_args)
        alive = [s.alive() for s in servers.servers]
        servers.stop()
        return GuestRun(model, result, parse(result.console), alive,
                        [s.returncode for s in servers.servers], servers.logs(),
                        {kind: json.loads(path.read_text()) for kind, path in audits.items() if path.exists()})
