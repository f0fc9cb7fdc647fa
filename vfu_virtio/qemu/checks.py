"""The guest checks, one list per scenario, run the same way on every device model, and the side-by-side table.

A :class:`Check` turns one guest run (and its plan) into an :class:`Outcome`: ``pass``; ``fail``; ``unsupported``
(the device does not offer what the check needs -- QEMU's builtin backend has no RSA and no cipher+hash
chaining -- and the client says so); or ``n/a`` (this client or kernel cannot reach the device that way:
Linux 7.x's AF_ALG never binds virtio_crypto). Every check runs on both device models; what a model is
expected to give is :func:`expected` (``pass`` unless :data:`EXPECTED` says otherwise), so the tests assert one
table and :func:`table` prints it: one row per check, one column per run (device model, kernel) -- what each
supports and what passed.

The checks themselves: :mod:`vfu_virtio.qemu.linux_checks` (the ``linux`` scenario, ``guest/linux.sh``) and
:mod:`vfu_virtio.qemu.dpdk_checks` (the ``dpdk`` scenario, ``guest/dpdk.sh``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

from .scenario import GuestRun


PASS, FAIL, UNSUPPORTED, NA = "pass", "fail", "unsupported", "n/a"


@dataclass(frozen=True)
class Outcome:
    status: str  # PASS, FAIL, UNSUPPORTED or NA
    detail: str  # what was seen, one line

    def cell(self) -> str:
        return f"{self.status}: {self.detail}" if self.detail else self.status


@dataclass(frozen=True)
class Check:
    name: str
    title: str  # the table's row
    scenario: str  # linux or dpdk
    run: Callable[[GuestRun, object], Outcome]


def verdict(ok: bool, detail: str) -> Outcome:
    """PASS or FAIL with ``detail``."""
    return Outcome(PASS if ok else FAIL, detail)


#: documented differences: (check, model) -> the outcome expected instead of pass. QEMU's builtin backend
#: (Debian's, nettle) offers no akcipher and refuses every cipher+hash chain ("Unsupported optype :2").
EXPECTED = {
    ("selftest-rsa", "qemu-builtin"): UNSUPPORTED,
    ("rsa-keyctl", "qemu-builtin"): UNSUPPORTED,
    ("dpdk-chain", "qemu-builtin"): UNSUPPORTED,
    ("dpdk-esn", "qemu-builtin"): UNSUPPORTED,
    ("dpdk-verify-chain", "qemu-builtin"): UNSUPPORTED,
    ("dpdk-perf-chain", "qemu-builtin"): UNSUPPORTED,
}


def expected(check: str, model: str, run: GuestRun) -> str:
    """The outcome ``model`` should give: :data:`EXPECTED`, else ``n/a`` for AF_ALG where the kernel restricts it,
    else pass."""
    if check == "afalg" and run.report.find("SYSCTL", name="crypto.af_alg_restrict"):
        return NA
    return EXPECTED.get((check, model), PASS)


def table(checks: tuple[Check, ...], columns: Mapping[str, tuple[GuestRun, object]]) -> str:
    """A markdown table: one row per check, one column per run of ``columns`` (``{heading: (run, plan)}``)."""
    lines = ["| check | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for check in checks:
        lines.append(f"| {check.title} | " + " | ".join(check.run(run, plan).cell() for run, plan in columns.values())
                     + " |")
    return "\n".join(lines)
