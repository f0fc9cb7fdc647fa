"""The checks of the ``linux`` scenario (``guest/linux.sh``: Linux's own virtio_crypto driver), as
:class:`~vfu_virtio.qemu.checks.Check` values: :data:`CHECKS`, run the same way on every device model.
"""
from __future__ import annotations

import re

from .checks import FAIL, NA, UNSUPPORTED, Check, Outcome, verdict
from .scenario import GuestRun


def _crypto_virtio(run: GuestRun, phase: str = "boot") -> dict[str, str]:
    found = run.report.virtio(phase, device="0x0014")
    return found[0] if len(found) == 1 else {}


def _irq_delta(run: GuestRun, before: str, after: str) -> int:
    """Interrupts of the crypto function's virtqueues (not its config vector) between two IRQ reports."""
    name = _crypto_virtio(run).get("name", "?")
    old, new = run.report.irqs(before), run.report.irqs(after)
    return sum(int(i["count"]) - int(old.get(n, {"count": 0})["count"]) for n, i in new.items()
               if n.startswith(f"{name}-") and not n.endswith("-config"))


def binding(run: GuestRun, plan) -> Outcome:
    dev = [d for d in run.report.pci(device="0x1054")]
    v = _crypto_virtio(run)
    if len(dev) != 1 or not v:
        return Outcome(FAIL, "no single crypto function / virtio device")
    features = v["features"]
    ring = "packed" if features[34:35] == "1" else "split"
    ok = dev[0]["driver"] == "virtio-pci" and v["driver"] == "virtio_crypto" and features[32:33] == "1" \
        and int(v["status"], 16) & 0x0F == 0x0F
    return verdict(ok, f"virtio-pci + virtio_crypto, VERSION_1, {ring} virtqueues")


def _phases(plan) -> tuple[str, ...]:
    return ("boot", "virtio-rebind", "pci-rebind") if getattr(plan, "reset", False) else ("boot",)


def selftest_aes(run: GuestRun, plan) -> Outcome:
    got = [run.report.algs(p).get("virtio_crypto_aes_cbc", {}).get("selftest", "absent") for p in _phases(plan)]
    return verdict(all(g == "passed" for g in got), f"cbc(aes) self-test {'/'.join(got)}")


def selftest_rsa(run: GuestRun, plan) -> Outcome:
    algs = run.report.algs()
    if "virtio-crypto-rsa" not in algs:
        return Outcome(UNSUPPORTED, "no akcipher offered")
    got = {d: algs.get(d, {}).get("selftest", "absent") for d in ("virtio-crypto-rsa", "virtio-pkcs1-rsa")}
    return verdict(all(g == "passed" for g in got.values()), ", ".join(f"{d} {g}" for d, g in got.items()))


def afalg(run: GuestRun, plan) -> Outcome:
    if run.report.find("SYSCTL", name="crypto.af_alg_restrict"):
        return Outcome(NA, "AF_ALG cannot bind a driver on this kernel (crypto.af_alg_restrict)")
    bad = [f"{phase}: {b}" for phase in _phases(plan) for b in plan.mismatches(run.report.afalg(phase))]
    return verdict(not bad, f"{min(plan.sizes)} B-{max(plan.sizes) // 1024} KiB = host, after each reset too"
                    if not bad else "; ".join(bad[:3]))


#: tcrypt lines naming an algorithm this kernel does not have (ENOENT): not the device's doing
_ABSENT = re.compile(r"failed to allocate transform for (\S+): -2|self-tests for (\S+) using \S+ failed \(rc=-2\)")


def tcrypt(run: GuestRun, plan) -> Outcome:
    if not run.report.find("TCRYPT"):
        return Outcome(FAIL, "tcrypt did not run")
    log = [m.text for m in run.report.markers if m.tag == "TCRYPTLOG"]
    absent = sorted({a for ln in log if (m := _ABSENT.search(ln)) for a in m.groups() if a})
    failed = [ln for ln in log if re.search(r"fail|error", ln, re.I) and not _ABSENT.search(ln)
              and not (absent and "one or more tests failed" in ln)]
    irqs = _irq_delta(run, "tcrypt-before", "tcrypt-after")
    detail = f"mode=10: {len(failed)} failed, {irqs} virtqueue interrupts" + \
        (f"; kernel lacks {', '.join(absent)}" if absent else "")
    return verdict(not failed and irqs > 0 and "cbc(aes)" not in absent, detail)


def rsa_keyctl(run: GuestRun, plan) -> Outcome:
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
    return verdict(irqs > 0, f"sign/verify/encrypt/decrypt = host via {sign_impl}, {irqs} virtqueue interrupts")


def msix(run: GuestRun, plan) -> Outcome:
    dev = run.report.pci(device="0x1054")
    name = _crypto_virtio(run).get("name", "?")
    after = run.report.irqs("boot-after")
    ok = bool(dev) and int(dev[0]["msix_vectors"]) >= 2 and dev[0]["msi_vectors"] == "0" and f"{name}-config" in after
    return verdict(ok, f"{dev[0]['msix_vectors'] if dev else 0} MSI-X vectors: config + " +
                    ", ".join(n.split("-", 1)[1] for n in after if n.startswith(f"{name}-") and "config" not in n))


def reset(run: GuestRun, plan) -> Outcome:
    if not getattr(plan, "reset", False):
        return Outcome(NA, "not asked")
    virtio = run.report.find("RESET", kind="virtio-rebind")
    pci = run.report.find("RESET", kind="pci-rebind")
    ok = len(virtio) == 1 and virtio[0].get("algs_gone_while_unbound") == "yes" and \
        virtio[0].get("driver") == "virtio_crypto" and len(pci) == 1 and pci[0].get("driver") == "virtio-pci" and \
        all(_crypto_virtio(run, p).get("driver") == "virtio_crypto" for p in ("virtio-rebind", "pci-rebind"))
    return verdict(ok, "virtio rebind and PCI rebind: bound again, self-tests passed again")


def quiet_kernel(run: GuestRun, plan) -> Outcome:
    complaints = run.report.kernel_complaints()
    return verdict(not complaints and bool(run.report.kernel_console),
                    "no kernel complaint" if not complaints else complaints[0])


CHECKS = (
    Check("binding", "virtio-pci binds, virtio_crypto probes (modern, VERSION_1)", "linux", binding),
    Check("selftest-aes", "kernel self-tests cbc(aes) through the device (after each reset too)", "linux",
          selftest_aes),
    Check("selftest-rsa", "kernel self-tests rsa, pkcs1pad(rsa) through the device", "linux", selftest_rsa),
    Check("afalg", "AF_ALG cbc(aes) by driver name, encrypt + decrypt = host", "linux", afalg),
    Check("tcrypt", "tcrypt mode=10 AES test vectors, device interrupts counted", "linux", tcrypt),
    Check("rsa-keyctl", "keyctl RSA-2048 sign, verify, encrypt, decrypt = host, by the device", "linux",
          rsa_keyctl),
    Check("msix", "MSI-X: config vector and one per virtqueue", "linux", msix),
    Check("reset", "guest resets the device (virtio and PCI rebind), it works after", "linux", reset),
    Check("kernel-quiet", "no kernel complaint on the console", "linux", quiet_kernel),
)
