"""Fault injection meets a real Linux guest: one boot of the faults scenario (``guest/faults.sh``,
:mod:`vfu_virtio.qemu.faults`) on the kit's first kernel whose AF_ALG can bind virtio_crypto by driver name
(bookworm's 6.1: 7.x restricts AF_ALG), with three faults whose guest-visible reaction is asserted:

* an error status (VIRTIO_CRYPTO_ERR) for one AF_ALG encryption: the guest's read fails with EINVAL, the request
  before it is unaffected (its ciphertext equals the host's);
* VIRTIO_CRYPTO_S_HW_READY cleared, then set again: virtio_crypto logs "Accelerator is not ready" and unregisters its
  algorithms (AF_ALG cannot bind the driver: ENOENT), then "Accelerator device is ready", the algorithms are back
  and AF_ALG works again; a configuration interrupt each time;
* DEVICE_NEEDS_RESET instead of an answer: Linux takes the configuration interrupt, shows the status (0x4f) and does
  nothing else -- no reset, the algorithms stay registered, and the AF_ALG request never completes (the process
  sleeps uninterruptibly).
"""
from __future__ import annotations

import pytest

from vfu_virtio.qemu import faults

pytestmark = pytest.mark.guest

#: kernels whose AF_ALG binds a driver by name (the scenario needs it)
AF_ALG_BY_NAME = ("linux-6.1",)


@pytest.fixture(scope="module")
def run(kit, tmp_path_factory):
    label = next((k.label for k in kit.kernels if k.label in AF_ALG_BY_NAME), None)
    if label is None:
        pytest.skip(f"no kit kernel of {AF_ALG_BY_NAME} (AF_ALG by driver name)")
    plan = faults.FaultPlan.random()
    result = faults.boot(kit.with_kernel(label), plan, tmp_path_factory.mktemp("faults"))
    assert result.report.done and result.boot.returncode == 0, result.diagnosis()
    return result, plan, faults.steps(result.report)


def test_the_guest_met_each_fault_once(run):
    result, plan, _ = run
    log = result.server_logs
    for spec in plan.faults():
        assert f"injected fault {spec!r} (1): " in log and f"{spec!r} 1 time(s)" in log, log[-3000:]


def test_an_error_status_fails_the_af_alg_request_with_einval(run):
    _result, plan, steps = run
    assert steps["boot"]["status"] == "0x0000000f" and steps["boot"]["algs"] == "present"
    s = steps["error"]
    assert (s["okay"], s["okay_enc_sha256"]) == ("ok", plan.encrypted_sha256(plan.okay))
    assert s["error"] == "error:read:22"  # EINVAL: virtio_crypto maps VIRTIO_CRYPTO_ERR to -EINVAL


def test_hw_ready_cleared_unregisters_the_algorithms_until_it_is_set_again(run):
    result, _plan, steps = run
    s = steps["hw-ready"]
    assert (s["trigger"], s["algs_after_clear"], s["bind_while_gone"]) == ("ok", "gone", "error:bind:2")
    assert (s["algs_after_restore"], s["after"]) == ("present", "ok")
    assert (s["not_ready_logged"], s["ready_logged"]) == ("yes", "yes") and int(s["config_irqs"]) == 2
    assert "HW_READY cleared" in result.server_logs and "HW_READY set" in result.server_logs
    assert "crypto-not-ready" not in result.violations("crypto")  # Linux sent nothing while it was clear


def test_device_needs_reset_is_seen_and_left_alone(run):
    result, _plan, steps = run
    s = steps["needs-reset"]
    assert s["status"] == "0x0000004f" and int(s["config_irqs"]) == 1
    assert (s["afalg_state"], s["afalg_output"], s["algs"]) == ("D", "", "present")
    assert "DEVICE_NEEDS_RESET: injected fault 'needs-reset" in result.server_logs
    assert "Traceback" not in result.server_logs and result.server_exit_codes == [0, 0]
