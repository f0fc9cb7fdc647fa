"""DPDK 22.11's crypto_virtio poll-mode driver in a Linux guest: vfu-virtio side by side with QEMU's own device.

One boot per device model and guest kernel (``guest/dpdk.sh``, ~30-45 s under TCG): the crypto function bound to
``uio_pci_generic``, dpdk-test's ``cryptodev_virtio_autotest`` (with the session-refusal shim
``guest/dpdk_enotsup.c``), ``dpdk-test-crypto-perf --ptest verify`` for AES-128-CBC and AES-128-CBC + HMAC-SHA1
against vectors computed here with ``cryptography``, ``--ptest throughput`` for both, then a config interrupt
forced onto INTx (DEVICE_NEEDS_RESET from a queue across the end of guest RAM) while uio_pci_generic owns the
function. Every check of :data:`vfu_virtio.qemu.dpdk_checks.CHECKS` must give the outcome
:func:`vfu_virtio.qemu.checks.expected` names, on both models and every kernel; the tests below look closer at
what only vfu-virtio's side shows (its log) and at the exact autotest result.
"""
from __future__ import annotations

import pytest

from conftest import assert_expected
from vfu_virtio.qemu import compare, dpdk, dpdk_checks

pytestmark = pytest.mark.guest
SCENARIO = "dpdk"  # conftest: the ``model`` configurations and ``runs``



@pytest.mark.parametrize("check", dpdk_checks.CHECKS, ids=lambda c: c.name)
def test_check_gives_the_expected_outcome(runs, model, check):
    assert_expected(check, model, *runs(model))


def test_autotest_on_vfu_virtio_fails_only_the_two_digest_verify_cases(runs):
    run, _ = runs("vfu-virtio")
    at = dpdk.autotest(dpdk.steps(run.report)["autotest"])
    assert sorted(c for _s, c in at.result("failed")) == sorted(dpdk_checks.KNOWN_CLIENT_FAILURES)
    succeeded = {c for _s, c in at.result("succeeded")}
    assert set(dpdk_checks.CIPHER_CASES + dpdk_checks.CHAIN_CASES + dpdk_checks.ESN_CASES) <= succeeded
    overall = at.suites[dpdk.OVERALL]
    assert (overall["passed"], overall["failed"]) == (len(succeeded), 2) and at.verdict == "Test Failed"
    # the shim only ever turned refusals of auth-only sessions (the PMD's own) into skips: nothing the device refused
    assert at.shim_refusals and set(at.shim_refusals) == {"auth"}


def test_crypto_perf_verify_ran_every_operation(runs, model):
    run, plan = runs(model)
    steps = dpdk.steps(run.report)
    (row,) = dpdk.perf_rows(steps["verify-cipher"])
    assert (row.size, row.enqueued, row.dequeued, row.failed_ops) == (len(plan.plaintext), plan.verify_ops,
                                                                      plan.verify_ops, 0)


def test_vfu_virtio_log_shows_what_dpdk_did(runs):
    """The device side of the same run: indirect descriptors noted once (TD-INDIRECT), the queue_enable = 0 writes
    of DPDK's teardowns logged at most once per queue (TD-QUEUE-ENABLE-0), one DEVICE_NEEDS_RESET (the INTx check's
    queue across the end of RAM), nothing else gone wrong."""
    run, _ = runs("vfu-virtio")
    crypto_log = run.server_logs.split("--- rpmb server")[0]
    indirect = [ln for ln in crypto_log.splitlines() if "INDIRECT descriptor without VIRTIO_F_INDIRECT_DESC" in ln]
    assert len(indirect) == 1 and "accepted" in indirect[0], crypto_log[-3000:]
    enable0 = [ln for ln in crypto_log.splitlines() if "to queue_enable" in ln]
    assert 1 <= len(enable0) <= compare.QUEUES + 1, enable0
    needs_reset = [ln for ln in crypto_log.splitlines() if "DEVICE_NEEDS_RESET" in ln]
    assert len(needs_reset) == 1 and "crosses the end of DMA region" in needs_reset[0], needs_reset
    assert "Traceback" not in run.server_logs and run.server_exit_codes == [0, 0], run.server_logs[-3000:]


def test_the_driver_audit_finds_what_dpdk_breaks(runs):
    """DPDK 22.11's PMD sends indirect descriptors without VIRTIO_F_INDIRECT_DESC and writes 0 to queue_enable at
    every teardown (README, Driver audit); nothing else, and nothing on the RPMB device."""
    run, _ = runs("vfu-virtio")
    crypto = run.violations("crypto")
    assert set(crypto) == {"indirect-without-feature", "queue-enable-0"} and min(crypto.values()) > 100, run.audits
    assert run.violations("rpmb") == {}


def test_qemu_device_met_the_same_intx_check(runs):
    run, _ = runs("qemu-builtin")
    assert "Failed to map descriptor ring" in run.boot.stderr, run.boot.stderr[-2000:]
