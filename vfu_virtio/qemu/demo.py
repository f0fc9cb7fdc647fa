"""The main job: serve vfu-virtio's guest-attachable devices (crypto, RPMB), boot a Linux guest on them, say
what it saw.

:func:`demo` starts the device servers, boots the guest with each attached through ``vfio-user-pci``
(or, with ``model="qemu-builtin"``, QEMU's own virtio-crypto-pci for comparison), and prints: the PCI
functions with the driver bound, the virtio devices, the driver's probe line, the algorithms the kernel
registered with its self-test results, AF_ALG encryptions and decryptions checked against the host's
``cryptography``, the kernel's AES test vectors (tcrypt) and keyctl RSA through the device, the MSI-X
interrupt counts, and whether the device came back after the guest reset it. The exit status is 0 only if
everything the guest reported is as expected.
"""
from __future__ import annotations

import sys
from typing import Callable

from vfu_virtio.devices.registry import kinds

from . import checks, linux_checks
from .kit import GuestKit
from .report import GuestReport
from .scenario import CryptoPlan, GuestRun, guest_kinds, run_guest

QUEUES = 2
RESET_PHASES = ("virtio-rebind", "pci-rebind")


def _irq_deltas(report: GuestReport, phase: str) -> dict[str, int]:
    before, after = report.irqs(f"{phase}-before"), report.irqs(f"{phase}-after")
    return {name: int(i["count"]) - int(before.get(name, {"count": 0})["count"]) for name, i in after.items()}


def summarize(run: GuestRun, plan: CryptoPlan, say: Callable[[str], None] = print) -> bool:
    """Print what the guest saw; True if it is all as expected (crypto bound, self-tests passed, AF_ALG
    equal to the host before and after the resets, every vfu-virtio function bound by virtio-pci)."""
    r = run.report
    ok = r.done and run.boot.returncode == 0
    say(f"guest ran {run.boot.seconds:.1f} s, QEMU exit {run.boot.returncode}"
        + ("" if r.done else f", guest did not finish (last step: {r.last_step})"))
    say("PCI functions (vendor 0x1af4):")
    for d in r.pci():
        say(f"  {d['slot']}  {d['vendor'][2:]}:{d['device'][2:]}  class {d['class']}  rev {d['revision']}  "
            f"subsystem {d['subsystem_vendor'][2:]}:{d['subsystem_device'][2:]}  driver {d['driver']}  "
            f"MSI-X vectors {d['msix_vectors']}")
        ok &= d["driver"] == "virtio-pci"
    say("virtio devices:")
    names = {f"0x{k.virtio_id:04x}": k.name for k in kinds().values()}
    for v in r.virtio():
        if v["driver"] == "none":
            negotiated = "no features negotiated"
            driver = "none (Linux has no driver for it)"
        else:
            negotiated = "VERSION_1 (modern)" if v["features"][32:33] == "1" else "WITHOUT VERSION_1"
            driver = v["driver"]
        say(f"  {v['name']}  device id {v['device']} ({names.get(v['device'], '?')}) on {v['pci']}  "
            f"{negotiated}  status {v['status']}  driver {driver}")
    ok &= any(v["driver"] == "virtio_crypto" for v in r.virtio(device="0x0014"))
    for line in r.dmesg():
        if "max_queues" in line or "legacy" in line:
            say(f"  dmesg: {line.split('] ', 1)[-1]}")
            break
    say("algorithms in /proc/crypto (the kernel ran its self-test vectors through the device):")
    algs = r.algs()
    for a in algs.values():
        say(f"  {a['name']:<16} {a['driver']:<22} {a['type']:<9} selftest {a['selftest']}")
    ok &= algs.get("virtio_crypto_aes_cbc", {}).get("selftest") == "passed"
    say(f"AF_ALG through virtio_crypto_aes_cbc, AES-{len(plan.key) * 8}-CBC, key/IV/input from the host "
        f"(seed {plan.seed:#x}), compared with the host's cryptography:")
    results = r.afalg()
    for size in plan.sizes:
        got = results.get(size)
        if got is None:
            say(f"  {size:>6} B  no result")
            ok = False
            continue
        enc, dec = plan.expected(size)
        same_enc, same_dec = got["enc_sha256"] == enc, got["dec_sha256"] == dec
        ok &= same_enc and same_dec and got["result"] == "ok"
        say(f"  {size:>6} B  encrypt {'= host' if same_enc else 'DIFFERS'}  decrypt {'= host' if same_dec else 'DIFFERS'}"
            f"  round trip {got['result']}  sha256(ciphertext) {got['enc_sha256'][:16]}...")
    for check in (c for c in linux_checks.CHECKS if c.name in ("tcrypt", "rsa-keyctl")):  # both by the device
        outcome = check.run(run, plan)
        ok &= outcome.status == checks.expected(check.name, run.model, run)
        say(f"{check.title}: {outcome.cell()}")
    deltas = _irq_deltas(r, "boot")
    say("interrupts during those requests: " + ", ".join(f"{n} +{d}" for n, d in deltas.items()))
    ok &= sum(d for n, d in deltas.items() if not n.endswith("-config")) > 0
    if plan.reset:
        for phase in RESET_PHASES:
            bad = plan.mismatches(r.afalg(phase))
            selftest = r.algs(phase).get("virtio_crypto_aes_cbc", {}).get("selftest")
            ok &= not bad and selftest == "passed"
            say(f"after the guest reset the device ({phase}): selftest {selftest}, AF_ALG "
                + ("equal to the host" if not bad else "; ".join(bad)))
    complaints = r.kernel_complaints()
    ok &= not complaints
    for line in complaints:
        say(f"  kernel: {line}")
    if run.servers_alive_after_boot:
        ok &= all(run.servers_alive_after_boot)
        say(f"device servers alive after the guest powered off: {run.servers_alive_after_boot}, "
            f"exit codes on SIGTERM: {run.server_exit_codes}")
    say("result: " + ("ok" if ok else "FAILED"))
    return ok


def demo(model: str = "vfu-virtio", verbose: bool = False, timeout: float = 300) -> int:
    """The main job (see the module docstring); returns the exit status."""
    kit = GuestKit.from_env()
    print(f"{kit.qemu_version()}; guest kernel {kit.kernel_release}; accelerator {kit.accel}")
    plan = CryptoPlan.random()
    if model == "vfu-virtio":
        names = [k.name for k in guest_kinds()]
        print(f"serving vfu-virtio {' and '.join(names)} (crypto with {QUEUES} data queues); attaching each with "
              "vfio-user-pci")
    else:
        print("attaching QEMU's own virtio-crypto-pci (cryptodev-backend-builtin, one data queue)")
    run = run_guest(kit, model, plan, device_options={"crypto": ("--queues", str(QUEUES))}, timeout=timeout,
                    on_line=(lambda line: print(f"  | {line}")) if verbose else None)
    ok = summarize(run, plan)
    if verbose or not ok:
        print(run.diagnosis() if not ok else run.server_logs, file=sys.stderr)
    return 0 if ok else 1
