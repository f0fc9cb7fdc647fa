"""A real Linux guest under QEMU uses the device: vfu-virtio side by side with QEMU's own virtio-crypto-pci.

One boot per device configuration and guest kernel (every kernel of the kit: bookworm's 6.1 and a current one;
a TCG boot is ~10-20 s), each running every check of ``guest/linux.sh``: PCI identity and driver, virtio
feature negotiation, the virtio_crypto probe line, /proc/crypto self-tests, AF_ALG encryption and decryption
through the driver name ``virtio_crypto_aes_cbc`` for 16 B .. 64 KiB (recomputed here with ``cryptography``;
Linux 7.x's AF_ALG cannot bind a driver, so there it is n/a), the kernel's AES test vectors (tcrypt mode=10)
with the device's interrupts counted, RSA-2048 through keyctl (signature and ciphertext checked here), MSI-X
interrupt counts, and all of it again after the guest reset the device twice (virtio driver rebind, PCI driver
rebind). The configurations are :data:`vfu_virtio.qemu.compare.SCENARIOS` ``["linux"]``: ``vfu-virtio`` offers
VIRTIO_F_RING_PACKED (Linux negotiates it), ``vfu-virtio-split`` withholds it (``--ring split``), ``qemu-builtin``
is QEMU's virtio-crypto-pci on cryptodev-backend-builtin (one data queue, no RSA). Every check of
:data:`vfu_virtio.qemu.linux_checks.CHECKS` must give the outcome :func:`vfu_virtio.qemu.checks.expected` names,
on every configuration and kernel; the tests below look closer where a check summarizes.
"""
from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import assert_expected
from vfu_virtio.qemu import compare, linux_checks
from vfu_virtio.qemu.kit import TOP
from vfu_virtio.qemu.scenario import SIZES

pytestmark = pytest.mark.guest
SCENARIO = "linux"  # conftest: the ``model`` configurations and ``runs``

QUEUES = compare.QUEUES
MAX_SIZE = compare.MAX_SIZE
PHASES = ("boot", "virtio-rebind", "pci-rebind")
VIRTIO_F_RING_PACKED = 34


def ours(model: str) -> bool:
    return compare.config("linux", model).model == "vfu-virtio"


def crypto_function(run) -> dict:
    (dev,) = run.report.pci(device="0x1054")
    return dev


def crypto_virtio(run, phase: str = "boot") -> dict:
    (dev,) = run.report.virtio(phase, device="0x0014")
    return dev


@pytest.mark.parametrize("check", linux_checks.CHECKS, ids=lambda c: c.name)
def test_check_gives_the_expected_outcome(runs, model, check):
    assert_expected(check, model, *runs(model))


def test_guest_sees_virtio_crypto_pci_function(runs, model):
    run, _ = runs(model)
    dev = crypto_function(run)
    assert (dev["vendor"], dev["device"]) == ("0x1af4", "0x1054")
    assert dev["class"] == "0x00ff00"  # PCI_CLASS_OTHERS, as QEMU's virtio-crypto-pci presents it
    assert int(dev["revision"], 16) >= 1  # a modern-only (non-transitional) function
    assert dev["driver"] == "virtio-pci"


def test_same_pci_identity_as_qemus_device(runs):
    ours, theirs = crypto_function(runs("vfu-virtio")[0]), crypto_function(runs("qemu-builtin")[0])
    keys = ("vendor", "device", "subsystem_vendor", "subsystem_device", "class", "revision", "driver")
    assert {k: ours[k] for k in keys} == {k: theirs[k] for k in keys}


def test_virtio_pci_binds_in_modern_mode(runs, model):
    run, _ = runs(model)
    v = crypto_virtio(run)
    assert v["driver"] == "virtio_crypto"
    assert v["pci"] == crypto_function(run)["slot"]
    assert v["features"][32] == "1", v["features"]  # VIRTIO_F_VERSION_1 negotiated
    if ours(model):  # Linux takes RING_PACKED whenever it is offered
        packed = "0" if compare.config("linux", model).ring == "split" else "1"
        assert v["features"][VIRTIO_F_RING_PACKED] == packed, v["features"]
    assert int(v["status"], 16) & 0x0F == 0x0F  # ACKNOWLEDGE | DRIVER | DRIVER_OK | FEATURES_OK
    assert not [line for line in run.report.dmesg() if "legacy" in line]


def test_probe_line_reports_the_configuration(runs, model):
    run, _ = runs(model)
    probes = [line for line in run.report.dmesg() if "virtio_crypto" in line and "max_queues" in line]
    assert len(probes) == len(PHASES), run.report.dmesg()  # one probe per bind
    queues = QUEUES if ours(model) else 1  # QEMU's builtin backend supports one data queue
    expected = f"max_queues: {queues}, max_cipher_key_len: 64, max_auth_key_len: 512, max_size "
    assert all(expected in p for p in probes), probes
    if ours(model):  # key lengths are CryptoDevice's defaults; max_size is ours to set
        assert all(p.endswith(f"max_size {MAX_SIZE:#x}") for p in probes), probes


def test_msix_vectors_carry_the_interrupts(runs, model):
    run, plan = runs(model)
    dev = crypto_function(run)
    assert int(dev["msix_vectors"]) >= 2 and dev["msi_vectors"] == "0"
    name = crypto_virtio(run)["name"]
    before, after = run.report.irqs("boot-before"), run.report.irqs("boot-after")
    assert f"{name}-config" in after, after  # a config vector: MSI-X, not the INTx line "virtioN"
    if ours(model):  # one vector per queue
        assert set(after) == {f"{name}-config", f"{name}-controlq"} | {f"{name}-dataq.{i}" for i in range(QUEUES)}
    # AF_ALG (where the kernel lets it bind the driver) and then tcrypt: encrypt, decrypt, decrypt back per size,
    # plus sessions, then the kernel's test vectors
    done = run.report.irqs("tcrypt-after")
    delta = {n: int(i["count"]) - int(before[n]["count"]) for n, i in done.items()}
    assert sum(d for n, d in delta.items() if not n.endswith("-config")) >= 3 * len(plan.sizes), delta


def test_both_vfu_virtio_devices_bind(runs):
    run, _ = runs("vfu-virtio")
    (rpmb,) = run.report.pci(device="0x105c")
    assert (rpmb["vendor"], rpmb["class"], rpmb["driver"]) == ("0x1af4", "0x00ff00", "virtio-pci")
    (v,) = run.report.virtio(device="0x001c")
    assert v["pci"] == rpmb["slot"]
    assert v["driver"] == "none"  # Linux has no virtio-rpmb driver; virtio-pci found a virtio device id 0x1c


def test_servers_outlive_the_guest_and_stop_cleanly(runs):
    run, _ = runs("vfu-virtio")
    assert run.servers_alive_after_boot == [True, True]
    assert run.server_exit_codes == [0, 0], run.server_logs
    assert "Traceback" not in run.server_logs, run.server_logs


def test_the_driver_audit_finds_what_linux_breaks(runs, model):
    """Every vfu-virtio server runs with ``--audit``: where AF_ALG reaches virtio_crypto (6.1), its 64 KiB requests
    come as indirect tables of 292 descriptors on 256-entry virtqueues (README, Driver audit); nothing else is broken,
    on any kernel, on either device."""
    if not ours(model):
        pytest.skip("QEMU's own device keeps no driver audit")
    run, _ = runs(model)
    crypto = run.violations("crypto")
    if run.report.find("SYSCTL", name="crypto.af_alg_restrict"):
        assert crypto == {}, run.audits
    else:
        assert set(crypto) == {"chain-longer-than-queue-size"}, run.audits
        (entry,) = run.audits["crypto"]["violations"]
        assert entry["detail"] == "queue 0: indirect table of 292 descriptors on a queue of size 256 (accepted)"
    assert run.violations("rpmb") == {}


def test_main_job(kit):
    """``python -m vfu_virtio.qemu demo``, as scripts/run starts it: its own boot, exit 0, the report."""
    proc = subprocess.run([sys.executable, "-m", "vfu_virtio.qemu", "demo"], cwd=TOP, capture_output=True,
                          text=True, timeout=280)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "1af4:1054" in out and "1af4:105c" in out
    assert "driver virtio_crypto" in out
    assert "virtio_crypto_aes_cbc  skcipher  selftest passed" in out
    assert out.count("encrypt = host  decrypt = host  round trip ok") == len(SIZES)
    assert out.rstrip().endswith("result: ok")
