"""A real Linux guest under QEMU uses the device: vfu-virtio side by side with QEMU's own virtio-crypto-pci.

One boot per device configuration (a TCG boot is ~8 s), each running every check of ``guest/init``: PCI
identity and driver, virtio feature negotiation, the virtio_crypto probe line, /proc/crypto self-tests,
AF_ALG encryption and decryption through the driver name ``virtio_crypto_aes_cbc`` for 16 B .. 64 KiB
(recomputed here with ``cryptography``), MSI-X interrupt counts, and all of it again after the guest
reset the device twice (virtio driver rebind, PCI driver rebind). ``vfu-virtio`` attaches our crypto and
RPMB servers through vfio-user-pci, twice: ``vfu-virtio`` offers VIRTIO_F_RING_PACKED (Linux negotiates it, so
every check runs over packed virtqueues) and ``vfu-virtio-split`` withholds it (``--ring split``); ``qemu-builtin``
is QEMU's virtio-crypto-pci on cryptodev-backend-builtin (one data queue, the most that backend takes), so every
claim is checked against the reference too.
"""
from __future__ import annotations

import subprocess
import sys

import pytest

from vfu_virtio.qemu.kit import TOP
from vfu_virtio.qemu.scenario import SIZES, CryptoPlan, run_guest

pytestmark = pytest.mark.guest

QUEUES = 3
MAX_SIZE = 1 << 21
PHASES = ("boot", "virtio-rebind", "pci-rebind")
VIRTIO_F_RING_PACKED = 34
#: configuration -> (harness model, --ring of every vfu-virtio server)
CONFIGS = {"vfu-virtio": ("vfu-virtio", "any"), "vfu-virtio-split": ("vfu-virtio", "split"),
           "qemu-builtin": ("qemu-builtin", None)}


@pytest.fixture(scope="module")
def runs(kit, tmp_path_factory):
    """Boots on demand, at most once per configuration for the whole module: {config: (run, plan)}."""
    cache = {}

    def get(config: str):
        if config not in cache:  # cached even when it failed: one boot per configuration, failed or not
            model, ring = CONFIGS[config]
            plan = CryptoPlan.random(key_bytes=32)  # AES-256 here; the demo uses AES-128
            ring_opts = ("--ring", ring) if ring else ()
            options = {"crypto": ("--queues", str(QUEUES), "--max-size", str(MAX_SIZE), *ring_opts),
                       "rpmb": ring_opts}
            cache[config] = run_guest(kit, model, plan, device_options=options,
                                      workdir=tmp_path_factory.mktemp(config)), plan
        run, plan = cache[config]
        assert run.report.done and run.boot.returncode == 0, run.diagnosis()
        return run, plan
    return get


@pytest.fixture(params=CONFIGS)
def model(request):
    return request.param


def ours(model: str) -> bool:
    return CONFIGS[model][0] == "vfu-virtio"


def crypto_function(run) -> dict:
    (dev,) = run.report.pci(device="0x1054")
    return dev


def crypto_virtio(run, phase: str = "boot") -> dict:
    (dev,) = run.report.virtio(phase, device="0x0014")
    return dev


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
        packed = "0" if CONFIGS[model][1] == "split" else "1"
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


def test_kernel_selftests_pass_through_the_device(runs, model):
    run, _ = runs(model)
    for phase in PHASES:
        algs = run.report.algs(phase)
        assert algs["virtio_crypto_aes_cbc"]["name"] == "cbc(aes)"
        assert algs["virtio_crypto_aes_cbc"]["selftest"] == "passed", (phase, algs)
        if ours(model):  # we offer AKCIPHER RSA; Debian's QEMU builtin backend does not
            assert algs["virtio-crypto-rsa"]["selftest"] == "passed", (phase, algs)
            assert "virtio-pkcs1-rsa" in algs
        else:
            assert "virtio-crypto-rsa" not in algs


def test_afalg_encrypt_and_decrypt_equal_the_host(runs, model):
    run, plan = runs(model)
    assert min(plan.sizes) == 16 and max(plan.sizes) == 65536
    assert plan.mismatches(run.report.afalg("boot")) == []


def test_msix_vectors_carry_the_interrupts(runs, model):
    run, plan = runs(model)
    dev = crypto_function(run)
    assert int(dev["msix_vectors"]) >= 2 and dev["msi_vectors"] == "0"
    name = crypto_virtio(run)["name"]
    before, after = run.report.irqs("boot-before"), run.report.irqs("boot-after")
    assert f"{name}-config" in after, after  # a config vector: MSI-X, not the INTx line "virtioN"
    if ours(model):  # one vector per queue
        assert set(after) == {f"{name}-config", f"{name}-controlq"} | {f"{name}-dataq.{i}" for i in range(QUEUES)}
    delta = {n: int(i["count"]) - int(before[n]["count"]) for n, i in after.items()}
    requests = 3 * len(plan.sizes)  # encrypt, decrypt, decrypt back per size; plus session create/destroy
    assert sum(d for n, d in delta.items() if not n.endswith("-config")) >= requests, delta


def test_device_works_after_the_guest_resets_it(runs, model):
    run, plan = runs(model)
    (virtio_reset,) = run.report.find("RESET", kind="virtio-rebind")
    assert virtio_reset["algs_gone_while_unbound"] == "yes"  # the driver really let go of the device
    assert virtio_reset["driver"] == "virtio_crypto"
    (pci_reset,) = run.report.find("RESET", kind="pci-rebind")
    assert pci_reset["driver"] == "virtio-pci" and pci_reset["slot"] == crypto_function(run)["slot"]
    for phase in ("virtio-rebind", "pci-rebind"):
        assert crypto_virtio(run, phase)["driver"] == "virtio_crypto"
        assert plan.mismatches(run.report.afalg(phase)) == [], phase


def test_kernel_did_not_complain(runs, model):
    run, _ = runs(model)
    assert run.report.kernel_console, "no kernel line at all: the console parsing is broken"
    assert run.report.kernel_complaints() == []


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
