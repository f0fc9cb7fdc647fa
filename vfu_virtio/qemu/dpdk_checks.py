"""The checks of the ``dpdk`` scenario (``guest/dpdk.sh``: DPDK 22.11's crypto_virtio PMD on uio_pci_generic), as
:class:`~vfu_virtio.qemu.checks.Check` values: :data:`CHECKS`, run the same way on every device model, with what
dpdk-test can run through the PMD (:data:`CIPHER_CASES`, :data:`CHAIN_CASES`, :data:`ESN_CASES`) and the
failures that are the client's, not the device's (:data:`KNOWN_CLIENT_FAILURES`, :data:`NEEDS_CHAINING`).
"""
from __future__ import annotations

from typing import Mapping

from . import dpdk
from .checks import FAIL, UNSUPPORTED, Check, Outcome, verdict
from .scenario import GuestRun


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


def binding(run: GuestRun, plan) -> Outcome:
    probe = run.report.find("INTXPROBE")
    bind = run.report.find("BIND")
    ok = bool(probe) and probe[0]["masking"] == probe[0].get("byte_write") == "ok" and bool(bind) \
        and bind[0]["driver"] == "uio_pci_generic"
    return verdict(ok, f"INTx masking probe {probe[0]['masking'] if probe else '?'} (16-bit write), "
                       f"{probe[0].get('byte_write', '?') if probe else '?'} (1-byte write to offset 5), "
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
    return verdict(got == set(cases) and not failed, f"{len(got)}/{len(cases)} cases succeeded" +
                    (f", failed: {', '.join(failed)}" if failed else ""))


def autotest_cipher(run: GuestRun, plan) -> Outcome:
    return _suite_outcome(run, "AES Cipher Only", CIPHER_CASES, refusable=False)


def autotest_chain(run: GuestRun, plan) -> Outcome:
    return _suite_outcome(run, "AES Chain", CHAIN_CASES, refusable=True)


def autotest_esn(run: GuestRun, plan) -> Outcome:
    return _suite_outcome(run, "ESN Test Suite", ESN_CASES, refusable=True)


def autotest_failures(run: GuestRun, plan) -> Outcome:
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
    return verdict(ok, f"{overall.get('passed', '?')} passed, {overall.get('failed', '?')} failed"
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
        return verdict(ok, f"{rows[0].dequeued} ops, {rows[0].failed_ops} failed, = host vectors" if rows
                        else f"rc {step.rc}, no result")
    ok = step.rc == 0 and sorted(r.size for r in rows) == sorted(plan.perf_sizes) and \
        all(r.dequeued == plan.perf_ops for r in rows)
    return verdict(ok, ", ".join(f"{r.size} B {r.mops:.3f} Mops/s" for r in rows) or f"rc {step.rc}, no result")


def intx(run: GuestRun, plan) -> Outcome:
    stages = dpdk.intx(run.report)
    if set(stages) != {"armed", "fired", "unmasked", "isr-read", "quiet", "reset"}:
        return Outcome(FAIL, f"INTx check incomplete: {sorted(stages)}")
    ok, why = intx_verdict(stages)
    return verdict(ok, why)


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


CHECKS = (
    Check("dpdk-binding", "uio_pci_generic binds (PCI 2.3 INTx masking probe, 16-bit and 1-byte writes)", "dpdk",
          binding),
    Check("dpdk-cipher", "autotest AES-CBC 128/192/256 (in place, OOP)", "dpdk", autotest_cipher),
    Check("dpdk-chain", "autotest AES-CBC + HMAC-SHA1 chains", "dpdk", autotest_chain),
    Check("dpdk-esn", "autotest ESN (AES-CBC + HMAC-SHA1)", "dpdk", autotest_esn),
    Check("dpdk-failures", "autotest: no failure but the known client-side ones", "dpdk", autotest_failures),
    Check("dpdk-verify-cipher", "crypto-perf verify AES-CBC: 0 failed ops", "dpdk",
          lambda run, plan: _perf_outcome(run, plan, "verify-cipher", verify=True)),
    Check("dpdk-verify-chain", "crypto-perf verify AES-CBC + HMAC-SHA1: 0 failed ops", "dpdk",
          lambda run, plan: _perf_outcome(run, plan, "verify-chain", verify=True)),
    Check("dpdk-perf-cipher", "crypto-perf throughput AES-CBC", "dpdk",
          lambda run, plan: _perf_outcome(run, plan, "perf-cipher", verify=False)),
    Check("dpdk-perf-chain", "crypto-perf throughput AES-CBC + HMAC-SHA1", "dpdk",
          lambda run, plan: _perf_outcome(run, plan, "perf-chain", verify=False)),
    Check("dpdk-intx", "forced config interrupt on INTx under uio_pci_generic", "dpdk", intx),
)
