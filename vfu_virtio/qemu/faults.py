"""The faults scenario on the host side: a Linux guest's virtio_crypto meets a device that misbehaves on purpose.

:class:`FaultPlan` holds the AES key, IV and input seed the guest encrypts with (as the linux scenario's
:class:`~.scenario.CryptoPlan`), the AF_ALG request sizes of the steps of ``guest/faults.sh`` and the ``--inject``
faults keyed to them (:meth:`FaultPlan.faults`). The faults count the guest's AF_ALG requests: every one is at least
:data:`BIG` device-readable bytes, every request of the kernel's own self-tests fewer (they stay under 1 KiB), and
each ``afalg check`` sends one encryption and two decryptions (``guest/afalg.c``). Sizes alone would not do: Linux's
virtio_crypto hands the device AF_ALG's whole source scatterlist, so an AF_ALG request of 16400 bytes arrives as
41128 readable bytes, one of 65536 as 557144. In the guest's order::

    error        okay: encrypt #1, decrypt #1 #2      error: encrypt #2 -> VIRTIO_CRYPTO_ERR
    hw-ready     hwready: encrypt #3, decrypt #3 -> HW_READY cleared CLEAR_MS later, set RESTORE_MS after that,
                 decrypt #4; then okay again: encrypt #4, decrypt #5 #6
    needs-reset  reset: encrypt #5 -> DEVICE_NEEDS_RESET

:func:`boot` serves the crypto device (one data queue) with those faults and boots the guest once; :func:`steps`
reads the ``VFU-FAULT`` markers.

What the steps expect from Linux is asserted by ``tests/test_guest_faults.py`` and told in the README (Fault
injection): an error status fails the AF_ALG request with EINVAL; HW_READY cleared unregisters the algorithms and
HW_READY set registers them again; DEVICE_NEEDS_RESET is not acted on -- the request it swallowed never completes.
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .kit import GuestKit
from .machine import LINUX, Machine
from .report import GuestReport
from .scenario import GuestRun, pattern, run_guest

#: device-readable bytes of a request the faults count: an AF_ALG request of the scenario has more, a self-test fewer
BIG = 2000
#: HW_READY is cleared this long after the request that triggers it (the guest's AF_ALG process has ended by then:
#: Linux unregisters the algorithms, which it must not do while a transform is in use), and set again after RESTORE_MS
CLEAR_MS = 3000
RESTORE_MS = 5000
TIMEOUT = 300.0  # seconds for the boot


@dataclass(frozen=True)
class FaultPlan:
    """The guest's inputs (``key``, ``iv``, ``seed``) and the AF_ALG sizes of the steps: ``okay`` (no fault),
    ``error``, ``hwready``, ``reset`` in bytes; ``wait`` seconds the guest waits for a change."""

    key: bytes
    iv: bytes
    seed: int
    okay: int = 4096
    error: int = 16400
    hwready: int = 32768
    reset: int = 65536
    wait: int = 20
    machine: Machine = LINUX

    @classmethod
    def random(cls, **kw) -> "FaultPlan":
        return cls(secrets.token_bytes(16), secrets.token_bytes(16), secrets.randbits(32), **kw)

    def params(self) -> dict[str, object]:
        return {"scenario": "faults", "key": self.key.hex(), "iv": self.iv.hex(), "seed": self.seed,
                "okay": self.okay, "error": self.error, "hwready": self.hwready, "reset": self.reset,
                "wait": self.wait}

    def files(self) -> dict[str, bytes]:
        return {}

    def faults(self) -> tuple[str, ...]:
        """The ``--inject`` arguments, each meeting one step (see the module docstring)."""
        return (f"error:op=CIPHER_ENCRYPT,min-bytes={BIG},after=1,count=1",
                f"clear-hw-ready:op=CIPHER_DECRYPT,min-bytes={BIG},after=2,ms={CLEAR_MS},restore-ms={RESTORE_MS}",
                f"needs-reset:op=CIPHER_ENCRYPT,min-bytes={BIG},after=4")

    def encrypted_sha256(self, size: int) -> str:
        """SHA-256 of the AES-CBC encryption of the guest's ``size``-byte input, as the host computes it."""
        enc = Cipher(algorithms.AES(self.key), modes.CBC(self.iv)).encryptor().update(pattern(self.seed, size))
        return hashlib.sha256(enc).hexdigest()


def boot(kit: GuestKit, plan: FaultPlan, workdir: Path | None = None) -> GuestRun:
    """One boot of the faults scenario: the crypto device (one data queue) with the plan's faults, and the RPMB
    device as always."""
    inject = tuple(a for spec in plan.faults() for a in ("--inject", spec))
    return run_guest(kit, "vfu-virtio", plan, device_options={"crypto": ("--queues", "1", *inject)},
                     workdir=workdir, timeout=TIMEOUT)


def steps(report: GuestReport) -> dict[str, dict[str, str]]:
    """The ``VFU-FAULT`` markers by step (boot, error, hw-ready, needs-reset)."""
    return {m["step"]: m for m in report.find("FAULT")}
