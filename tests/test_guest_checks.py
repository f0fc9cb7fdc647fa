"""The host side of the guest scenarios, without a boot: DPDK's inputs and outputs, the checks and their table.

Pinned against literal text: crypto-perf's vector file for the NIST SP 800-38A F.2.1 CBC-AES128 key and first
block (the digest is openssl's HMAC-SHA1 of that ciphertext under the key 00 01 .. 3f), and excerpts of real
dpdk-test and crypto-perf output as the guest forwards them. Every checker is also fed what a broken device or
client produces (the interrupt storm of the issue, an unexpected autotest failure, a wrong RSA signature) and
must say fail.
"""
from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from vfu_virtio.qemu import checks, dpdk, dpdk_checks, linux_checks
from vfu_virtio.qemu.report import parse
from vfu_virtio.qemu.scenario import CryptoPlan, GuestRun, _rsa_key

NIST = dpdk.DpdkPlan(cipher_key=bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c"),
                     iv=bytes.fromhex("000102030405060708090a0b0c0d0e0f"), auth_key=bytes(range(64)),
                     plaintext=bytes.fromhex("6bc1bee22e409f96e93d7e117393172a"))

VECTOR_FILE = """\
# vfu-virtio: AES-128-CBC, then HMAC-SHA1 over the ciphertext, computed with cryptography

plaintext =
0x6b, 0xc1, 0xbe, 0xe2, 0x2e, 0x40, 0x9f, 0x96, 0xe9, 0x3d, 0x7e, 0x11, 0x73, 0x93, 0x17, 0x2a

ciphertext =
0x76, 0x49, 0xab, 0xac, 0x81, 0x19, 0xb2, 0x46, 0xce, 0xe9, 0x8e, 0x9b, 0x12, 0xe9, 0x19, 0x7d

cipher_key =
0x2b, 0x7e, 0x15, 0x16, 0x28, 0xae, 0xd2, 0xa6, 0xab, 0xf7, 0x15, 0x88, 0x09, 0xcf, 0x4f, 0x3c

cipher_iv =
0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f

auth_key =
0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,
0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e, 0x2f,
0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d, 0x3e, 0x3f

[aes_cbc_128_sha1_hmac]
digest =
0x8e, 0x13, 0x99, 0x2a, 0x7e, 0x02, 0x10, 0xfc, 0x8f, 0x32, 0x8b, 0xce, 0xfd, 0x19, 0x11, 0x9d,
0x4c, 0xa6, 0x36, 0xdf
"""

#: how guest/dpdk.sh forwards a real dpdk-test run on vfu-virtio (excerpt: three suites, the summary, the verdict)
AUTOTEST = """\
VFU-DPDKSTEP name=autotest at=begin
VFU-DPDKOUT  + Test Suite : Cryptodev Unit Test Suite
VFU-DPDKOUT  + Test Suite : AES Cipher Only
VFU-DPDKOUT  + TestCase [ 0] : AES-128-CBC Encryption succeeded
VFU-DPDKOUT  + TestCase [ 1] : AES-128-CTR Encryption skipped
VFU-DPDKOUT  + TestCase [ 5] : AES-128-CBC Decryption succeeded
VFU-DPDKOUT  + Test Suite Summary : AES Cipher Only
VFU-DPDKOUT  + Tests Total :       75
VFU-DPDKOUT  + Tests Skipped :     73
VFU-DPDKOUT  + Tests Executed :     2
VFU-DPDKOUT  + Tests Unsupported:   0
VFU-DPDKOUT  + Tests Passed :       2
VFU-DPDKOUT  + Tests Failed :       0
VFU-DPDKOUT  + Test Suite : Auth Only
VFU-DPDKOUT VFU-SHIM refused=auth errno=1
VFU-DPDKOUT  + Test Suite Summary : Auth Only
VFU-DPDKOUT  + Tests Total :       36
VFU-DPDKOUT  + Tests Failed :       0
VFU-DPDKOUT  + Test Suite : Negative HMAC SHA1 Unit Test Suite
VFU-DPDKOUT  + TestCase [ 2] : auth_decryption_AES128CBC_HMAC_SHA1_fail_data_corrupt failed
VFU-DPDKOUT  + TestCase [ 3] : auth_decryption_AES128CBC_HMAC_SHA1_fail_tag_corrupt failed
VFU-DPDKOUT  + Test Suite Summary : Negative HMAC SHA1 Unit Test Suite
VFU-DPDKOUT  + Tests Total :        4
VFU-DPDKOUT  + Tests Failed :       2
VFU-DPDKOUT  + Test Suite Summary : Cryptodev Unit Test Suite
VFU-DPDKOUT  + AES Cipher Only : 2/75 passed, 73/75 skipped, 0/75 failed, 0/75 unsupported
VFU-DPDKOUT  + Tests Total :       697
VFU-DPDKOUT  + Tests Passed :      22
VFU-DPDKOUT  + Tests Failed :       2
VFU-DPDKOUT Test Failed
VFU-DPDKOUT tail:  + Tests Failed :       9
VFU-DPDKOUT tail: Test Failed

VFU-DPDKSTEP name=autotest at=end rc=255 seconds=3.6
"""

PERF = """\
VFU-DPDKSTEP name=verify-chain at=begin
VFU-DPDKOUT            1        1024          32        2000        2000       16238       24307           0
VFU-DPDKSTEP name=verify-chain at=end rc=0 seconds=0.7
VFU-DPDKSTEP name=perf-cipher at=begin
VFU-DPDKOUT            1          64          32        2000        2000       21079       49998      0.0339      0.0174    76589.54
VFU-DPDKOUT            1        2048          32        2000        2000       15955       36924      0.0294      0.4821    88363.39
VFU-DPDKSTEP name=perf-cipher at=end rc=0 seconds=0.8
VFU-DPDKSTEP name=perf-chain at=begin
VFU-DPDKOUT SESSION: virtio_crypto_sym_configure_session(): create session failed: -1
VFU-DPDKOUT USER1: Test run constructor failed
VFU-DPDKSTEP name=perf-chain at=end rc=1 seconds=0.3
"""

#: the INTx check on a device that behaves, and on the device of the issue (Status bit 3 never set: a storm that
#: uio_pci_generic disowns until the kernel disables the line)
INTX_GOOD = """\
VFU-INTX at=armed events=0 status=0x0010 command=0x0106 device_status=0x0f irq=21
VFU-INTX at=fired events=1 status=0x0018 command=0x0506 device_status=0x4f
VFU-INTX at=unmasked events=2 status=0x0018 command=0x0506 device_status=0x4f
VFU-INTX at=isr-read isr=0x02 events=2 status=0x0010 command=0x0506 device_status=0x4f
VFU-INTX at=quiet events=2 status=0x0010 command=0x0106 device_status=0x4f
VFU-INTX at=reset events=2 status=0x0010 command=0x0106 device_status=0x00 nobody_cared=0 irq_disabled=0
"""
INTX_STORM = """\
VFU-INTX at=armed events=0 status=0x0010 command=0x0106 device_status=0x0f irq=21
VFU-INTX at=fired events=0 status=0x0010 command=0x0106 device_status=0x4f
VFU-INTX at=unmasked events=0 status=0x0010 command=0x0106 device_status=0x4f
VFU-INTX at=isr-read isr=0x02 events=0 status=0x0010 command=0x0106 device_status=0x4f
VFU-INTX at=quiet events=0 status=0x0010 command=0x0106 device_status=0x4f
VFU-INTX at=reset events=0 status=0x0010 command=0x0106 device_status=0x00 nobody_cared=1 irq_disabled=1
"""


DPDK = {c.name: c for c in dpdk_checks.CHECKS}


def run_of(console: str) -> GuestRun:
    return GuestRun("vfu-virtio", None, parse(console))


def test_vector_file_is_crypto_perfs_format_with_the_host_results():
    assert NIST.ciphertext == bytes.fromhex("7649abac8119b246cee98e9b12e9197d")  # SP 800-38A F.2.1, block 1
    assert NIST.vector_file().decode() == VECTOR_FILE
    assert NIST.files() == {"etc/vfu/cperf.data": VECTOR_FILE.encode()}
    assert NIST.params()["vlen"] == 16 and NIST.params()["mem"] == NIST.machine.memory_mib


def test_plan_refuses_what_dpdk_22_11_cannot_take():
    for size in (15, 2064, 4096):
        try:
            dpdk.DpdkPlan.random(vector_bytes=size)
        except ValueError as e:
            assert "2048" in str(e)
        else:
            raise AssertionError(f"{size}-byte vectors accepted")
    assert max(dpdk.PERF_SIZES) <= 2048


def test_autotest_output_is_parsed_by_suite_and_case():
    step = dpdk.steps(parse(AUTOTEST))["autotest"]
    assert (step.rc, step.seconds) == (255, 3.6)
    at = dpdk.autotest(step)
    assert at.cases == [("AES Cipher Only", "AES-128-CBC Encryption", "succeeded"),
                        ("AES Cipher Only", "AES-128-CTR Encryption", "skipped"),
                        ("AES Cipher Only", "AES-128-CBC Decryption", "succeeded"),
                        ("Negative HMAC SHA1 Unit Test Suite",
                         "auth_decryption_AES128CBC_HMAC_SHA1_fail_data_corrupt", "failed"),
                        ("Negative HMAC SHA1 Unit Test Suite",
                         "auth_decryption_AES128CBC_HMAC_SHA1_fail_tag_corrupt", "failed")]
    assert at.suites["AES Cipher Only"] == {"total": 75, "skipped": 73, "executed": 2, "unsupported": 0,
                                            "passed": 2, "failed": 0}
    assert at.suites[dpdk.OVERALL] == {"total": 697, "passed": 22, "failed": 2}  # not the "tail:" repeat
    assert at.shim_refusals == ["auth"] and at.verdict == "Test Failed"


def test_perf_rows_and_refusals():
    steps = dpdk.steps(parse(PERF))
    (verify,) = dpdk.perf_rows(steps["verify-chain"])
    assert verify == dpdk.PerfRow(1, 1024, 32, 2000, 2000, 16238, 24307, failed_ops=0)
    rows = dpdk.perf_rows(steps["perf-cipher"])
    assert [(r.size, r.mops, r.gbps, r.cycles_per_buf) for r in rows] == [(64, 0.0339, 0.0174, 76589.54),
                                                                          (2048, 0.0294, 0.4821, 88363.39)]
    assert dpdk.perf_rows(steps["perf-chain"]) == []
    assert len(dpdk.refusals(steps["perf-chain"])) == 2


def test_autotest_failures_check_knows_only_the_client_side_failures():
    plan = dpdk.DpdkPlan.random()
    ok = dpdk_checks.autotest_failures(run_of(AUTOTEST), plan)
    assert ok.status == checks.PASS and "no digest verify" in ok.detail
    broken = AUTOTEST.replace("AES-128-CBC Decryption succeeded", "AES-128-CBC Decryption failed")
    bad = dpdk_checks.autotest_failures(run_of(broken), plan)
    assert bad.status == checks.FAIL and "UNEXPLAINED: AES-128-CBC Decryption" in bad.detail
    # test_stats may fail only where the device refused every chained session
    stats = AUTOTEST.replace("fail_tag_corrupt failed", "fail_tag_corrupt failed\nVFU-DPDKOUT  + TestCase [ 3] : "
                             "test_stats failed")
    assert dpdk_checks.autotest_failures(run_of(stats), plan).status == checks.FAIL


def test_perf_checks_tell_refusal_from_failure():
    plan = dpdk.DpdkPlan.random()
    run = run_of(PERF)
    assert DPDK["dpdk-verify-chain"].run(run, plan).status == checks.PASS
    assert DPDK["dpdk-perf-chain"].run(run, plan).status == checks.UNSUPPORTED
    assert DPDK["dpdk-perf-cipher"].run(run, plan).status == checks.FAIL  # 2 of the plan's 4 sizes
    wrong = PERF.replace("24307           0", "24307           3")
    assert DPDK["dpdk-verify-chain"].run(run_of(wrong), plan).status == checks.FAIL


def test_intx_verdict_passes_a_masking_device_and_fails_the_storm():
    good = run_of(INTX_GOOD)
    assert dpdk_checks.intx(good, None).status == checks.PASS
    ok, why = dpdk_checks.intx_verdict(dpdk.intx(parse(INTX_STORM)))
    assert not ok
    assert "not claimed and masked by uio_pci_generic" in why and "nobody cared" in why
    no_redelivery = INTX_GOOD.replace("at=unmasked events=2", "at=unmasked events=1")
    assert "not delivered again" in dpdk_checks.intx_verdict(dpdk.intx(parse(no_redelivery)))[1]
    assert dpdk_checks.intx(run_of(INTX_GOOD.splitlines()[0]), None).status == checks.FAIL  # incomplete


def test_rsa_check_recomputes_the_signature_and_decrypts():
    plan = CryptoPlan.random()
    key = _rsa_key()
    sig = key.sign(plan.rsa_message, padding.PKCS1v15(), hashes.SHA256()).hex()
    enc = key.public_key().encrypt(plan.rsa_message, padding.PKCS1v15()).hex()
    fields = f"load=ok bits=2048 sign=ok sig={sig} verify=ok verify_corrupt=rejected encrypt=ok enc={enc} decrypt=ok"
    assert plan.rsa_mismatches(dict(f.split("=", 1) for f in fields.split())) == []
    forged = fields.replace(f"sig={sig}", f"sig={sig[:-2]}{int(sig[-2:], 16) ^ 1:02x}")
    assert plan.rsa_mismatches(dict(f.split("=", 1) for f in forged.split())) == ["signature differs from the host's"]
    accepted = fields.replace("verify_corrupt=rejected", "verify_corrupt=ACCEPTED")
    assert plan.rsa_mismatches(dict(f.split("=", 1) for f in accepted.split())) == \
        ["verify_corrupt: ACCEPTED (expected rejected)"]
    files = plan.files()
    assert set(files) == {"etc/vfu/rsa.pk8", "etc/vfu/message", "etc/vfu/digest"} and len(files["etc/vfu/digest"]) == 32


def test_table_has_a_row_per_check_and_a_column_per_run():
    plan = dpdk.DpdkPlan.random()
    text = checks.table(dpdk_checks.CHECKS, {"vfu-virtio (linux-6.1)": (run_of(INTX_GOOD), plan),
                                             "qemu-builtin (linux-6.1)": (run_of(INTX_STORM), plan)})
    lines = text.splitlines()
    assert lines[0] == "| check | vfu-virtio (linux-6.1) | qemu-builtin (linux-6.1) |"
    assert len(lines) == 2 + len(dpdk_checks.CHECKS)
    (intx,) = [ln for ln in lines if ln.startswith("| forced config interrupt")]
    assert "| pass: claimed (1)" in intx and "| fail: " in intx


#: the tcrypt part of a linux-scenario console: the crypto function's queues, tcrypt between two interrupt counts
TCRYPT = """\
VFU-VIRTIO phase=boot name=virtio0 device=0x0014 vendor=0x1af4 status=0x0000000f features=0 driver=virtio_crypto pci=x
VFU-IRQ phase=tcrypt-before irq=24 chip=PCI-MSIX name=virtio0-config count=0
VFU-IRQ phase=tcrypt-before irq=25 chip=PCI-MSIX name=virtio0-dataq.0 count=99
VFU-IRQ phase=tcrypt-after irq=24 chip=PCI-MSIX name=virtio0-config count=0
VFU-IRQ phase=tcrypt-after irq=25 chip=PCI-MSIX name=virtio0-dataq.0 count=926
VFU-TCRYPTLOG [    6.62] alg: skcipher: failed to allocate transform for xctr(aes): -2
VFU-TCRYPTLOG [    6.62] alg: self-tests for xctr(aes) using xctr(aes) failed (rc=-2)
VFU-TCRYPTLOG [    6.62] tcrypt: one or more tests failed!
VFU-TCRYPT mode=10 rc=1 output=modprobe:_can't_load_module_tcrypt
"""


def test_tcrypt_check_tells_an_absent_mode_from_a_failing_device():
    ok = linux_checks.tcrypt(run_of(TCRYPT), None)
    assert ok == checks.Outcome(checks.PASS, "mode=10: 0 failed, 827 virtqueue interrupts; kernel lacks xctr(aes)")
    wrong = TCRYPT.replace("VFU-TCRYPT mode", "VFU-TCRYPTLOG [    6.70] alg: skcipher: cbc(aes) encryption test "
                           "failed (wrong result) on test vector 0, cfg=\"in-place\"\nVFU-TCRYPT mode")
    assert linux_checks.tcrypt(run_of(wrong), None).status == checks.FAIL
    idle = TCRYPT.replace("count=926", "count=99")  # the vectors never reached the device
    assert linux_checks.tcrypt(run_of(idle), None).status == checks.FAIL


def test_afalg_is_not_applicable_only_where_the_kernel_restricts_it():
    plan = CryptoPlan(bytes(16), bytes(16), 1, sizes=(16,), reset=False)
    failed = "VFU-AFALG phase=boot size=16 result=error:bind:2 enc_sha256=none dec_sha256=none\n"
    assert linux_checks.afalg(run_of(failed), plan).status == checks.FAIL
    restricted = "VFU-SYSCTL name=crypto.af_alg_restrict value=1\n" + failed
    assert linux_checks.afalg(run_of(restricted), plan).status == checks.NA
    assert checks.expected("afalg", "vfu-virtio", run_of(restricted)) == checks.NA
    assert checks.expected("afalg", "vfu-virtio", run_of(failed)) == checks.PASS


def test_binding_check_needs_both_command_writes_to_work():
    probe = ("VFU-INTXPROBE command=0x0102 toggled=0x0502 byte_toggled=0x0502 restored=0x0102 masking=ok "
             "byte_write=ok\nVFU-BIND slot=0000:00:01.0 driver=uio_pci_generic uio=uio0 irq=21\n")
    assert dpdk_checks.binding(run_of(probe), None).status == checks.PASS
    refused = probe.replace("byte_toggled=0x0502", "byte_toggled=0x0102").replace("byte_write=ok", "byte_write=broken")
    assert dpdk_checks.binding(run_of(refused), None).status == checks.FAIL
    unbound = probe.replace("driver=uio_pci_generic", "driver=none")
    assert dpdk_checks.binding(run_of(unbound), None).status == checks.FAIL
