"""The guest checks, one list per scenario, run the same way on every device model, and the side-by-side table.

A :class:`Check` turns one guest run (and its plan) into an :class:`Outcome`: ``pass``; ``fail``; ``unsupported``
(the device does not offer what the check needs -- QEMU's builtin backend has no RSA and no cipher+hash
chaining -- and the client says so); or ``n/a`` (this client or kernel cannot reach the device that way:
Linux 7.x's AF_ALG never binds virtio_crypto). Every check runs on both device models; what a model is
expected to give is :func:`expected` (``pass`` unless :data:`EXPECTED` says otherwise), so the tests assert one
table and :func:`table` prints it: one row per check, one column per run (device model, kernel) -- what each
supports and what passed.

Linux checks (``linux`` scenario, :data:`LINUX_CHECKS`) read the markers of ``guest/linux.sh``; DPDK checks
(``dpdk`` scenario, :data:`DPDK_CHECKS`) those of ``guest/dpdk.sh`` through :mod:`vfu_virtio.qemu.dpdk`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Mapping

from . import dpdk
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


def _verdict(ok: bool, detail: str) -> Outcome:
    return Outcome(PASS if ok else FAIL, detail)


# ---- linux scenario -------------------------------------------------------------------------------------------
def _crypto_virtio(run: GuestRun, phase: str = "boot") -> dict[str, str]:
    found = run.report.virtio(phase, device="0x0014")
    return found[0] if len(found) == 1 else {}


def _irq_delta(run: GuestRun, before: str, after: str) -> int:
    """Interrupts of the crypto function's virtqueues (not its config vector) between two IRQ reports."""
    name = _crypto_virtio(run).get("name", "?")
    old, new = run.report.irqs(before), run.report.irqs(after)
    return sum(int(i["count"]) - int(old.get(n, {"count": 0})["count"]) for n, i in new.items()
               if n.startswith(f"{name}-") and not n.endswith("-config"))


def linux_binding(run: GuestRun, plan) -> Outcome:
    dev = [d for d in run.report.pci(device="0x1054")]
    v = _crypto_virtio(run)
    if len(dev) != 1 or not v:
        return Outcome(FAIL, "no single crypto function / virtio device")
    features = v["features"]
    ring = "packed" if features[34:35] == "1" else "split"
    ok = dev[0]["driver"] == "virtio-pci" and v["driver"] == "virtio_crypto" and features[32:33] == "1" \
        and int(v["status"], 16) & 0x0F == 0x0F
    return _verdict(ok, f"virtio-pci + virtio_crypto, VERSION_1, {ring} virtqueues")


def _phases(plan) -> tuple[str, ...]:
    return ("boot", "virtio-rebind", "pci-rebind") if getattr(plan, "reset", False) else ("boot",)


def linux_selftest_aes(run: GuestRun, plan) -> Outcome:
    got = [run.report.algs(p).get("virtio_crypto_aes_cbc", {}).get("selftest", "absent") for p in _phases(plan)]
    return _verdict(all(g == "passed" for g in got), f"cbc(aes) self-test {'/'.join(got)}")


def linux_selftest_rsa(run: GuestRun, plan) -> Outcome:
    algs = run.report.algs()
    if "virtio-crypto-rsa" not in algs:
        return Outcome(UNSUPPORTED, "no akcipher offered")
    got = {d: algs.get(d, {}).get("selftest", "absent") for d in ("virtio-crypto-rsa", "virtio-pkcs1-rsa")}
    return _verdict(all(g == "passed" for g in got.values()), ", ".join(f"{d} {g}" for d, g in got.items()))


def linux_afalg(run: GuestRun, plan) -> Outcome:
    if run.report.find("SYSCTL", name="crypto.af_alg_restrict"):
        return Outcome(NA, "AF_ALG cannot bind a driver on this kernel (crypto.af_alg_restrict)")
    bad = [f"{phase}: {b}" for phase in _phases(plan) for b in plan.mismatches(run.report.afalg(phase))]
    return _verdict(not bad, f"{min(plan.sizes)} B-{max(plan.sizes) // 1024} KiB = host, after each reset too"
                    if not bad else "; ".join(bad[:3]))


#: tcrypt lines naming an algorithm this kernel does not have (ENOENT): not the device's doing
_ABSENT = re.compile(r"failed to allocate transform for (\S+): -2|self-tests for (\S+) using \S+ failed \(rc=-2\)")


def linux_tcrypt(run: GuestRun, plan) -> Outcome:
    if not run.report.find("TCRYPT"):
        return Outcome(FAIL, "tcrypt did not run")
    log = [m.text for m in run.report.markers if m.tag == "TCRYPTLOG"]
    absent = sorted({a for ln in log if (m := _ABSENT.search(ln)) for a in m.groups() if a})
    failed = [ln for ln in log if re.search(r"fail|error", ln, re.I) and not _ABSENT.search(ln)
              and not (absent and "one or more tests failed" in ln)]
    irqs = _irq_delta(run, "tcrypt-before", "tcrypt-after")
    detail = f"mode=10: {len(failed)} failed, {irqs} virtqueue interrupts" + \
        (f"; kernel lacks {', '.join(absent)}" if absent else "")
    return _verdict(not failed and irqs > 0 and "cbc(aes)" not in absent, detail)


def linux_rsa_keyctl(run: GuestRun, plan) -> Outcome:
    found = run.report.find("PKEY")
    if not found:
        return Outcome(FAIL, "keyctl did not run")
    bad = plan.rsa_mismatches(found[0])
    impl = {r["name"]: r["driver"] for r in run.report.find("RSAIMPL")}
    sign_impl = next((d for n, d in impl.items() if n.startswith("pkcs1") and "sha256" in n), "?")
    irqs = _irq_delta(run, "pkey-before", "pkey-after")
    if bad:
        return Outcome(FAIL, "; ".join(bad))
    if "virtio" not in sign_impl:
        return Outcome(UNSUPPORTED, f"= host, but computed by {sign_impl}: the device offers no RSA")
    return _verdict(irqs > 0, f"sign/verify/encrypt/decrypt = host via {sign_impl}, {irqs} virtqueue interrupts")


def linux_msix(run: GuestRun, plan) -> Outcome:
    dev = run.report.pci(device="0x1054")
    name = _crypto_virtio(run).get("name", "?")
    after = run.report.irqs("boot-after")
    ok = bool(dev) and int(dev[0]["msix_vectors"]) >= 2 and dev[0]["msi_vectors"] == "0" and f"{name}-config" in after
    return _verdict(ok, f"{dev[0]['msix_vectors'] if dev else 0} MSI-X vectors: config + " +
                    ", ".join(n.split("-", 1)[1] for n in after if n.startswith(f"{name}-") and "config" not in n))


def linux_reset(run: GuestRun, plan) -> Outcome:
    if not getattr(plan, "reset", False):
        return Outcome(NA, "not asked")
    virtio = run.report.find("RESET", kind="virtio-rebind")
    pci = run.report.find("RESET", kind="pci-rebind")
    ok = len(virtio) == 1 and virtio[0].get("algs_gone_while_unbound") == "yes" and \
        virtio[0].get("driver") == "virtio_crypto" and len(pci) == 1 and pci[0].get("driver") == "virtio-pci" and \
        all(_crypto_virtio(run, p).get("driver") == "virtio_crypto" for p in ("virtio-rebind", "pci-rebind"))
    return _verdict(ok, "virtio rebind and PCI rebind: bound again, self-tests passed again")


def linux_quiet_kernel(run: GuestRun, plan) -> Outcome:
    complaints = run.report.kernel_complaints()
    return _verdict(not complaints and bool(run.report.kernel_console),
                    "no kernel complaint" if not complaints else complaints[0])


LINUX_CHECKS = (
    Check("binding", "virtio-pci binds, virtio_crypto probes (modern, VERSION_1)", "linux", linux_binding),
    Check("selftest-aes", "kernel self-tests cbc(aes) through the device (after each reset too)", "linux",
          linux_selftest_aes),
    Check("selftest-rsa", "kernel self-tests rsa, pkcs1pad(rsa) through the device", "linux", linux_selftest_rsa),
    Check("afalg", "AF_ALG cbc(aes) by driver name, encrypt + decrypt = host", "linux", linux_afalg),
    Check("tcrypt", "tcrypt mode=10 AES test vectors, device interrupts counted", "linux", linux_tcrypt),
    Check("rsa-keyctl", "keyctl RSA-2048 sign, verify, encrypt, decrypt = host, by the device", "linux",
          linux_rsa_keyctl),
    Check("msix", "MSI-X: config vector and one per virtqueue", "linux", linux_msix),
    Check("reset", "guest resets the device (virtio and PCI rebind), it works after", "linux", linux_reset),
    Check("kernel-quiet", "no kernel complaint on the console", "linux", linux_quiet_kernel),
)


# ---- dpdk scenario --------------------------------------------------------------------------------------------
#: dpdk-test cases that fail on any device that computes the MAC: the 22.11 PMD cannot ask for digest verification
#: (the virtio-crypto chain request has no verify flag; the device writes the digest over the reference)
KNOWN_CLIENT_FAILURES = ("auth_decryption_AES128CBC_HMAC_SHA1_fail_data_corrupt",
                         "auth_decryption_AES128CBC_HMAC_SHA1_fail_tag_corrupt")
#: dpdk-test cases that need a cipher+HMAC session: they fail where the device refuses chaining
NEEDS_CHAINING = ("test_stats",)
#: what the PMD's capabilities (AES-CBC, HMAC-SHA1) let dpdk-test run, by suite
CIPHER_CASES = ("AES-128-CBC Encryption", "AES-128-CBC Decryption", "AES-192-CBC Encryption",
                "AES-192-CBC Decryption", "AES-256-CBC Encryption", "AES-256-CBC Decryption",
                "AES-256-CBC OOP Encryption", "AES-256-CBC OOP Decryption")
CHAIN_CASES = ("AES-128-CBC HMAC-SHA1 Encryption Digest", "AES-128-CBC HMAC-SHA1 Encryption Digest (short buffers)",
               "AES-128-CBC HMAC-SHA1 Decryption Digest Verify",
               "AES-128-CBC HMAC-SHA1 Decryption Digest Verify (short buffers)",
               "AES-128-CBC HMAC-SHA1 Encryption Digest OOP", "AES-128-CBC HMAC-SHA1 Encryption Digest OOP Offset",
               "AES-128-CBC HMAC-SHA1 Decryption Digest Verify OOP",
               "AES-128-CBC HMAC-SHA1 Decryption Digest Verify OOP Offset")
ESN_CASES = ("auth_encrypt_AES128CBC_HMAC_SHA1_esn_check", "auth_decrypt_AES128CBC_HMAC_SHA1_esn_check")


def _step(run: GuestRun, name: str) -> dpdk.Step | None:
    return dpdk.steps(run.report).get(name)


def _chaining_refused(at: dpdk.Autotest) -> bool:
    """The device refused every cipher+hash session (the shim saw them) and so nothing of the chain suite ran."""
    chain = at.suites.get("AES Chain", {})
    return any("+" in r for r in at.shim_refusals) and chain.get("executed", 0) == 0


def dpdk_binding(run: GuestRun, plan) -> Outcome:
    probe = run.report.find("INTXPROBE")
    bind = run.report.find("BIND")
    ok = bool(probe) and probe[0]["masking"] == "ok" and bool(bind) and bind[0]["driver"] == "uio_pci_generic"
    return _verdict(ok, f"INTx masking probe {probe[0]['masking'] if probe else '?'}, "
                        f"{bind[0]['driver'] if bind else 'not bound'}")


def _suite_outcome(run: GuestRun, suite: str, cases: tuple[str, ...], refusable: bool) -> Outcome:
    step = _step(run, "autotest")
    if step is None:
        return Outcome(FAIL, "autotest did not run")
    at = dpdk.autotest(step)
    got = {c for s, c, r in at.cases if s == suite and r == "succeeded"}
    failed = [c for s, c, r in at.cases if s == suite and r == "failed"]
    if refusable and not got and not failed and _chaining_refused(at):
        return Outcome(UNSUPPORTED, "cipher+HMAC sessions refused by the device")
    return _verdict(got == set(cases) and not failed, f"{len(got)}/{len(cases)} cases succeeded" +
                    (f", failed: {', '.join(failed)}" if failed else ""))


def dpdk_autotest_cipher(run: GuestRun, plan) -> Outcome:
    return _suite_outcome(run, "AES Cipher Only", CIPHER_CASES, refusable=False)


def dpdk_autotest_chain(run: GuestRun, plan) -> Outcome:
    return _suite_outcome(run, "AES Chain", CHAIN_CASES, refusable=True)


def dpdk_autotest_esn(run: GuestRun, plan) -> Outcome:
    return _suite_outcome(run, "ESN Test Suite", ESN_CASES, refusable=True)


def dpdk_autotest_failures(run: GuestRun, plan) -> Outcome:
    step = _step(run, "autotest")
    if step is None:
        return Outcome(FAIL, "autotest did not run")
    at = dpdk.autotest(step)
    overall = at.suites.get(dpdk.OVERALL, {})
    failed = [c for _s, c in at.result("failed")]
    refused = _chaining_refused(at)
    unexplained = [c for c in failed if c not in KNOWN_CLIENT_FAILURES and not (refused and c in NEEDS_CHAINING)]
    known = [c for c in failed if c not in unexplained]
    ok = bool(overall) and at.verdict in ("Test OK", "Test Failed") and not unexplained
    return _verdict(ok, f"{overall.get('passed', '?')} passed, {overall.get('failed', '?')} failed"
                        + (f" (known: {', '.join(_short(c) for c in known)})" if known else "")
                        + (f", UNEXPLAINED: {', '.join(unexplained)}" if unexplained else ""))


def _short(case: str) -> str:
    return {KNOWN_CLIENT_FAILURES[0]: "data_corrupt: no digest verify in the PMD",
            KNOWN_CLIENT_FAILURES[1]: "tag_corrupt: no digest verify in the PMD",
            "test_stats": "test_stats: needs chaining"}.get(case, case)


def _perf_outcome(run: GuestRun, plan, name: str, verify: bool) -> Outcome:
    step = _step(run, name)
    if step is None:
        return Outcome(FAIL, f"{name} did not run")
    rows = dpdk.perf_rows(step)
    if step.rc != 0 and not rows and any("create session failed" in ln for ln in dpdk.refusals(step)):
        return Outcome(UNSUPPORTED, "session refused by the device")
    if verify:
        ok = step.rc == 0 and len(rows) == 1 and rows[0].failed_ops == 0 and rows[0].dequeued == plan.verify_ops
        return _verdict(ok, f"{rows[0].dequeued} ops, {rows[0].failed_ops} failed, = host vectors" if rows
                        else f"rc {step.rc}, no result")
    ok = step.rc == 0 and sorted(r.size for r in rows) == sorted(plan.perf_sizes) and \
        all(r.dequeued == plan.perf_ops for r in rows)
    return _verdict(ok, ", ".join(f"{r.size} B {r.mops:.3f} Mops/s" for r in rows) or f"rc {step.rc}, no result")


def dpdk_intx(run: GuestRun, plan) -> Outcome:
    stages = dpdk.intx(run.report)
    if set(stages) != {"armed", "fired", "unmasked", "isr-read", "quiet", "reset"}:
        return Outcome(FAIL, f"INTx check incomplete: {sorted(stages)}")
    ok, why = intx_verdict(stages)
    return _verdict(ok, why)


def intx_verdict(stages: Mapping[str, Mapping[str, str]]) -> tuple[bool, str]:
    """Whether the forced config interrupt behaved (see ``guest/dpdk.sh``), and one line saying how."""
    def events(at: str) -> int:
        return int(stages[at]["events"])

    def bit(at: str, word: str, mask: int) -> bool:
        return bool(int(stages[at][word], 16) & mask)

    problems = []
    if not int(stages["fired"]["device_status"], 16) & 0x40:
        problems.append("no DEVICE_NEEDS_RESET")
    if not (events("fired") >= 1 and bit("fired", "status", 0x08) and bit("fired", "command", 0x400)):
        problems.append("not claimed and masked by uio_pci_generic")
    if not (events("unmasked") > events("fired") and events("unmasked") < 100):
        problems.append("not delivered again on unmask (or a storm)")
    if not int(stages["isr-read"]["isr"], 16) & 0x02 or bit("isr-read", "status", 0x08):
        problems.append("ISR read did not end the condition")
    if events("quiet") != events("isr-read"):
        problems.append("interrupts after the ISR read")
    if stages["reset"].get("nobody_cared") != "0" or stages["reset"].get("irq_disabled") != "0":
        problems.append("the kernel disabled the line (nobody cared)")
    if problems:
        return False, "; ".join(problems)
    return True, (f"claimed ({events('fired')}), again on unmask ({events('unmasked')}), "
                  f"ISR {stages['isr-read']['isr']} ends it, line never disabled")


DPDK_CHECKS = (
    Check("dpdk-binding", "uio_pci_generic binds (PCI 2.3 INTx masking probe)", "dpdk", dpdk_binding),
    Check("dpdk-cipher", "autotest AES-CBC 128/192/256 (in place, OOP)", "dpdk", dpdk_autotest_cipher),
    Check("dpdk-chain", "autotest AES-CBC + HMAC-SHA1 chains", "dpdk", dpdk_autotest_chain),
    Check("dpdk-esn", "autotest ESN (AES-CBC + HMAC-SHA1)", "dpdk", dpdk_autotest_esn),
    Check("dpdk-failures", "autotest: no failure but the known client-side ones", "dpdk", dpdk_autotest_failures),
    Check("dpdk-verify-cipher", "crypto-perf verify AES-CBC: 0 failed ops", "dpdk",
          lambda run, plan: _perf_outcome(run, plan, "verify-cipher", verify=True)),
    Check("dpdk-verify-chain", "crypto-perf verify AES-CBC + HMAC-SHA1: 0 failed ops", "dpdk",
          lambda run, plan: _perf_outcome(run, plan, "verify-chain", verify=True)),
    Check("dpdk-perf-cipher", "crypto-perf throughput AES-CBC", "dpdk",
          lambda run, plan: _perf_outcome(run, plan, "perf-cipher", verify=False)),
    Check("dpdk-perf-chain", "crypto-perf throughput AES-CBC + HMAC-SHA1", "dpdk",
          lambda run, plan: _perf_outcome(run, plan, "perf-chain", verify=False)),
    Check("dpdk-intx", "forced config interrupt on INTx under uio_pci_generic", "dpdk", dpdk_intx),
)
CHECKS = {c.name: c for c in LINUX_CHECKS + DPDK_CHECKS}

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
