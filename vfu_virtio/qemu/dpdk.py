"""The dpdk guest scenario on the host side: what ``guest/dpdk.sh`` is asked, and what its output says.

:class:`DpdkPlan` holds the host-chosen inputs: the steps, the crypto-perf sizes and counts, and the verify vectors
-- a random AES-128 key, IV, HMAC-SHA1 key (64 bytes) and plaintext, with the ciphertext and digest computed here
with ``cryptography`` -- written as the test-vector file ``dpdk-test-crypto-perf --test-file`` reads
(:meth:`DpdkPlan.vector_file`; the digest in a section named :data:`VECTOR_SECTION`).

The parsers read the ``VFU-DPDKSTEP`` / ``VFU-DPDKOUT`` / ``VFU-INTX`` markers of a :class:`~.report.GuestReport`:
:func:`steps` (each step's exit status, seconds and result lines), :func:`autotest` (dpdk-test's per-suite
summaries and per-case results, and the shim's converted refusals), :func:`perf_rows` (crypto-perf's result rows,
verify and throughput), :func:`intx` (the forced config interrupt, by stage).

DPDK 22.11's limits (client side): the PMD refuses buffers over 2176 bytes in a way that leaks its request
cookies, so :data:`PERF_SIZES` stop at 2048; it negotiates no feature but VIRTIO_F_VERSION_1 and always sends
indirect descriptors (TD-INDIRECT); it cannot ask a device to verify a digest.
"""
from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .machine import DPDK, Machine
from .report import GuestReport

STEPS = ("autotest", "verify-cipher", "verify-chain", "perf-cipher", "perf-chain", "intx")
PERF_SIZES = (64, 256, 1024, 2048)  # 22.11's PMD refuses more than 2176 bytes and leaks a cookie each time
VECTOR_SECTION = "aes_cbc_128_sha1_hmac"


def _hex_list(data: bytes) -> str:
    """crypto-perf's vector value: ``0x..`` bytes, 16 to a line, a line ending in ``,`` continues the value."""
    rows = [", ".join(f"0x{b:02x}" for b in data[i:i + 16]) for i in range(0, len(data), 16)]
    return ",\n".join(rows)


@dataclass(frozen=True)
class DpdkPlan:
    cipher_key: bytes
    iv: bytes
    auth_key: bytes
    plaintext: bytes
    steps: tuple[str, ...] = STEPS
    perf_sizes: tuple[int, ...] = PERF_SIZES
    perf_ops: int = 4000
    verify_ops: int = 2000
    burst: int = 32
    hugepages: int = 256  # 2 MiB pages
    step_timeout: int = 300  # seconds, in the guest
    machine: Machine = DPDK

    @classmethod
    def random(cls, vector_bytes: int = 1024, **kw) -> "DpdkPlan":
        """Fresh random keys, IV and a ``vector_bytes`` plaintext (a multiple of 16, at most 2048)."""
        if vector_bytes % 16 or not 16 <= vector_bytes <= 2048:
            raise ValueError(f"vector of {vector_bytes} bytes: a multiple of 16 up to 2048 (DPDK 22.11's limit)")
        return cls(secrets.token_bytes(16), secrets.token_bytes(16), secrets.token_bytes(64),
                   secrets.token_bytes(vector_bytes), **kw)

    @property
    def ciphertext(self) -> bytes:
        enc = Cipher(algorithms.AES(self.cipher_key), modes.CBC(self.iv)).encryptor()
        return enc.update(self.plaintext) + enc.finalize()

    @property
    def digest(self) -> bytes:
        """HMAC-SHA1 over the ciphertext: what ``--optype cipher-then-auth`` must produce."""
        return hmac.digest(self.auth_key, self.ciphertext, "sha1")

    def vector_file(self) -> bytes:
        """The ``--test-file`` text (DPDK's cperf test vector format)."""
        parts = ["# vfu-virtio: AES-128-CBC, then HMAC-SHA1 over the ciphertext, computed with cryptography",
                 f"plaintext =\n{_hex_list(self.plaintext)}", f"ciphertext =\n{_hex_list(self.ciphertext)}",
                 f"cipher_key =\n{_hex_list(self.cipher_key)}", f"cipher_iv =\n{_hex_list(self.iv)}",
                 f"auth_key =\n{_hex_list(self.auth_key)}",
                 f"[{VECTOR_SECTION}]\ndigest =\n{_hex_list(self.digest)}"]
        return ("\n\n".join(parts) + "\n").encode()

    def params(self) -> dict[str, object]:
        return {"steps": ",".join(self.steps), "ops": self.perf_ops, "perfsizes": ",".join(map(str, self.perf_sizes)),
                "burst": self.burst, "vops": self.verify_ops, "vlen": len(self.plaintext),
                "hugepages": self.hugepages, "steptimeout": self.step_timeout, "mem": self.machine.memory_mib}

    def files(self) -> dict[str, bytes]:
        return {"etc/vfu/cperf.data": self.vector_file()}


# ---- the guest's output ------------------------------------------------------------------------------------------
@dataclass
class Step:
    name: str
    rc: int | None = None  # None: the step never ended (the guest was cut off)
    seconds: float | None = None
    lines: list[str] = field(default_factory=list)


def steps(report: GuestReport) -> dict[str, Step]:
    """The DPDK steps the guest ran, by name, with their result lines."""
    out: dict[str, Step] = {}
    current: Step | None = None
    for m in report.markers:
        if m.tag == "DPDKSTEP" and m.fields.get("at") == "begin":
            current = out[m.fields["name"]] = Step(m.fields["name"])
        elif m.tag == "DPDKSTEP" and m.fields.get("at") == "end" and m.fields.get("name") in out:
            step = out[m.fields["name"]]
            step.rc = int(m.fields["rc"])
            step.seconds = float(m.fields["seconds"]) if "seconds" in m.fields else None
            current = None
        elif m.tag == "DPDKOUT" and current is not None:
            current.lines.append(m.text)
    return out


_CASE = re.compile(r"\+ TestCase \[\s*(\d+)\] : (.*) (succeeded|failed|skipped|unsupported)\s*$")
_SUITE = re.compile(r"\+ Test Suite(?: Summary)? : (.*?)\s*$")
_COUNT = re.compile(r"\+ Tests (Total|Skipped|Executed|Unsupported|Passed|Failed)\s*:\s*(\d+)")


@dataclass
class Autotest:
    #: per-suite summary counts, by suite name: total, skipped, executed, unsupported, passed, failed
    suites: dict[str, dict[str, int]] = field(default_factory=dict)
    #: (suite, case name, result) in order; result is succeeded, failed, skipped or unsupported
    cases: list[tuple[str, str, str]] = field(default_factory=list)
    #: session refusals the preload shim turned into ENOTSUP: transform chains, e.g. "cipher+auth"
    shim_refusals: list[str] = field(default_factory=list)
    #: dpdk-test's closing verdict line (Test OK, Test Failed, Test Skipped), "" if it never came
    verdict: str = ""

    def result(self, result: str) -> list[tuple[str, str]]:
        """(suite, case) of every case with ``result``."""
        return [(s, c) for s, c, r in self.cases if r == result]


#: dpdk-test's outermost suite, whose summary adds up the sub-suites
OVERALL = "Cryptodev Unit Test Suite"


def autotest(step: Step) -> Autotest:
    """What dpdk-test's ``cryptodev_virtio_autotest`` reported (see :class:`Autotest`)."""
    out = Autotest()
    suite = ""
    counts: dict[str, int] | None = None
    for line in step.lines:
        if line.startswith("tail: "):  # the last lines of a failed run repeat what came before
            continue
        if m := _CASE.search(line):
            out.cases.append((suite, m.group(2).strip(), m.group(3)))
        elif m := _SUITE.search(line):
            suite = m.group(1)
            if "Summary" in line:
                counts = out.suites.setdefault(suite, {})
        elif (m := _COUNT.search(line)) and counts is not None:
            counts[m.group(1).lower()] = int(m.group(2))
        elif line.startswith("VFU-SHIM "):
            out.shim_refusals.append(line.split("refused=", 1)[-1].split()[0])
        elif line.strip() in ("Test OK", "Test Failed", "Test Skipped"):
            out.verdict = line.strip()
    return out


@dataclass(frozen=True)
class PerfRow:
    """One result row of dpdk-test-crypto-perf: verify rows have ``failed_ops``; throughput rows ``mops``,
    ``gbps`` and ``cycles_per_buf``."""
    lcore: int
    size: int
    burst: int
    enqueued: int
    dequeued: int
    failed_enq: int
    failed_deq: int
    failed_ops: int | None = None
    mops: float | None = None
    gbps: float | None = None
    cycles_per_buf: float | None = None


def perf_rows(step: Step) -> list[PerfRow]:
    rows = []
    for line in step.lines:
        cols = line.split()
        if not cols or not all(re.fullmatch(r"\d+(\.\d+)?", c) for c in cols):
            continue
        ints = [int(c) for c in cols[:7]]
        if len(cols) == 8:
            rows.append(PerfRow(*ints, failed_ops=int(cols[7])))
        elif len(cols) == 10:
            rows.append(PerfRow(*ints, mops=float(cols[7]), gbps=float(cols[8]), cycles_per_buf=float(cols[9])))
    return rows


def refusals(step: Step) -> list[str]:
    """The step's lines saying a session was refused (by the PMD or the device) or could not be set up."""
    return [ln for ln in step.lines if re.search(r"create session failed|constructor failed|[Uu]nsupported", ln)]


def intx(report: GuestReport) -> dict[str, dict[str, str]]:
    """The forced config interrupt's stages (armed, fired, unmasked, isr-read, quiet, reset) and their fields:
    events (interrupts uio_pci_generic claimed since armed), status and command (PCI config words, hex),
    device_status, and at reset nobody_cared / irq_disabled (dmesg line counts)."""
    return {f["at"]: f for f in report.find("INTX")}
