"""Crypto profiles: the registry (the built-in standard, v16 and asym-rfc3) and its plug-ins, the standard's
configuration bytes, a test-only profile served end to end by a real server, and the profile fixed in the store with
the instance. (The v16 and asym-rfc3 profiles' own tests: ``test_crypto_v16.py``, ``test_crypto_asym.py``.)

The test profile (``tests/profiles/no_akcipher.py``) is the standard without AKCIPHER: its own feature bits (0x1F)
and configuration bytes (no AKCIPHER service bit, akcipher_algo 0), AKCIPHER requests answered NOTSUPP.
Configuration bytes are written out from "Device configuration layout" (le32 fields @0..44, le64 max_size @48).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from vfu_virtio.abi import crypto as C
from vfu_virtio.client import crypto as D
from vfu_virtio.abi.virtio import VIRTIO_F_VERSION_1, bit
from vfu_virtio.client.virtio_pci import DEFAULT_DRIVER_FEATURES, PACKED, VirtioPciDriver
from vfu_virtio.devices import registry
from vfu_virtio.devices.crypto import KIND, CryptoDevice, profiles
from vfu_virtio.devices.crypto.values import Service
from vfu_virtio.store import open_namespace

from conftest import SERVER_ENV
from crypto_harness import InProcess

TOP = Path(__file__).resolve().parents[1]
TEST_PROFILE = "standard-no-akcipher"
TEST_MODULE = "profiles.no_akcipher"
KEY = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")  # NIST SP 800-38A F.2.1
IV = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
PLAIN = bytes.fromhex("6bc1bee22e409f96e93d7e117393172a")
CIPHER = bytes.fromhex("7649abac8119b246cee98e9b12e9197d")
NOTSUPP = 3


def config_bytes(services: int, akcipher: int, queues: int, max_size: int) -> bytes:
    """struct virtio_crypto_config written out field by field; the cipher bitmap lacks ARC4 (bit 1) where this
    OpenSSL has no legacy provider, and always 3DES-CTR (bit 9)."""
    arc4 = C.VIRTIO_CRYPTO_CIPHER_ARC4 in profiles.standard.PROFILE.advertised[Service.CIPHER]
    cipher_l = 0x21FC | (0x2 if arc4 else 0)  # bits 2-8 (AES-ECB..3DES-CBC) and 13 (AES-XTS)
    fields = [
        (1, 4),             # status: VIRTIO_CRYPTO_S_HW_READY
        (queues, 4),        # max_dataqueues
        (services, 4),      # crypto_services
        (cipher_l, 4), (0, 4),                    # cipher_algo_l, cipher_algo_h
        (0x1FFE, 4),        # hash_algo: MD5 .. SHAKE256 (bits 1-12)
        (0x0600007E, 4),    # mac_algo_l: HMAC-MD5 .. HMAC-SHA-512 (bits 1-6), CMAC-3DES (25), CMAC-AES (26)
        (0, 4),             # mac_algo_h
        (0xE, 4),           # aead_algo: GCM, CCM, ChaCha20-Poly1305 (bits 1-3)
        (64, 4), (512, 4),  # max_cipher_key_len, max_auth_key_len
        (akcipher, 4),      # akcipher_algo
        (max_size, 8),      # max_size
    ]
    return b"".join(value.to_bytes(width, "little") for value, width in fields)


@pytest.fixture
def test_profile(monkeypatch):
    monkeypatch.setenv(profiles.ENV, TEST_MODULE)


# ---- registry ----------------------------------------------------------------------------------------------
def test_standard_is_built_in_and_the_default():
    assert profiles.DEFAULT == "standard" and "standard" in profiles.available()
    assert CryptoDevice().profile is profiles.standard.PROFILE


def test_unknown_profile_is_refused_naming_the_available_ones():
    with pytest.raises(ValueError, match="no crypto profile 'nope' \\(available: asym-rfc3, standard, v16\\)"):
        CryptoDevice(profile="nope")


def test_plug_in_profiles_come_from_the_environment(test_profile):
    assert sorted(profiles.available()) == ["asym-rfc3", "standard", TEST_PROFILE, "v16"]
    assert CryptoDevice(profile=TEST_PROFILE).profile.name == TEST_PROFILE


@pytest.mark.parametrize("modules, message", [
    ("profiles.does_not_exist", "'profiles.does_not_exist' does not import"),
    ("json", "module 'json' has no PROFILE"),
    ("vfu_virtio.devices.crypto.profiles.standard", "names its profile 'standard', which is taken"),
    (f"{TEST_MODULE}, {TEST_MODULE}", f"names its profile '{TEST_PROFILE}', which is taken"),
])
def test_bad_plug_ins_are_one_line_errors(monkeypatch, modules, message):
    monkeypatch.setenv(profiles.ENV, modules)
    with pytest.raises(ValueError, match=message) as e:
        profiles.available()
    assert profiles.ENV in str(e.value) and "\n" not in str(e.value)


def test_a_profile_must_serve_what_it_advertises():
    import dataclasses

    from vfu_virtio.devices.crypto.values import AkcipherParams
    standard = profiles.standard.PROFILE
    without_akcipher_sessions = {p: s for p, s in standard.sessions.items() if p is not AkcipherParams}
    with pytest.raises(ValueError, match="'broken' advertises \\['AKCIPHER'\\] without a session class"):
        dataclasses.replace(standard, name="broken", sessions=without_akcipher_sessions)
    # negative control: dropping the AKCIPHER algorithms too makes it a valid profile
    algorithms = {s: t for s, t in standard.algorithms.items() if s is not Service.AKCIPHER}
    assert Service.AKCIPHER not in dataclasses.replace(standard, name="fine", sessions=without_akcipher_sessions,
                                                       algorithms=algorithms).services


# ---- the standard profile ------------------------------------------------------------------------------------
def test_standard_configuration_bytes():
    dev = CryptoDevice(max_dataqueues=3, max_size=12345)
    assert dev.config_space() == config_bytes(services=0x1F, akcipher=0x6, queues=3, max_size=12345)
    assert dev.device_features() == 0x3F


# ---- the test profile, in-process --------------------------------------------------------------------------
def test_test_profile_configuration_features_and_rule(test_profile):
    dev = CryptoDevice(max_dataqueues=2, max_size=4096, profile=TEST_PROFILE)
    assert dev.config_space() == config_bytes(services=0x0F, akcipher=0, queues=2, max_size=4096)
    assert dev.device_features() == 0x1F
    assert dev.refuse_features(0b00010) is not None  # CIPHER_STATELESS_MODE without REVISION_1
    assert dev.refuse_features(0b00011) is None


def test_test_profile_answers_akcipher_notsupp_and_serves_the_rest(test_profile):
    drv = InProcess(CryptoDevice(max_dataqueues=1, profile=TEST_PROFILE))
    ecdsa = D.akcipher_create_session(C.VIRTIO_CRYPTO_AKCIPHER_ECDSA, C.VIRTIO_CRYPTO_AKCIPHER_KEY_TYPE_PUBLIC,
                                      b"\x04" + bytes(64), curve=C.VIRTIO_CRYPTO_CURVE_NIST_P256)
    assert drv.create(ecdsa) == (0, NOTSUPP)
    done = drv.data(D.akcipher_data(C.VIRTIO_CRYPTO_AKCIPHER_SIGN, 1, bytes(32), 72))
    assert (done.status, done.out, done.used) == (NOTSUPP, bytes(72), 73)
    sid, status = drv.create(D.cipher_create_session(C.VIRTIO_CRYPTO_CIPHER_AES_CBC, KEY, C.VIRTIO_CRYPTO_OP_ENCRYPT))
    assert status == 0
    done = drv.data(D.cipher_data(C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, sid, IV, PLAIN))
    assert (done.status, done.out, done.used) == (0, CIPHER, 17)


# ---- the test profile, end to end ------------------------------------------------------------------------------
def test_test_profile_served_end_to_end(serve, ring):
    server = serve("crypto", "--queues", "2", "--max-size", "65536", "--profile", TEST_PROFILE)
    with VirtioPciDriver.connect(server.socket) as drv:
        assert drv.device_features() & 0xFFFFFF == 0x1F
        revision_1 = bit(VIRTIO_F_VERSION_1) | bit(C.VIRTIO_CRYPTO_F_REVISION_1) | (PACKED if ring == "packed" else 0)
        for crypto_bit, accepted in ((C.VIRTIO_CRYPTO_F_AEAD_STATELESS_MODE, True),
                                     (C.VIRTIO_CRYPTO_F_AKCIPHER_STATELESS_MODE, False)):  # not offered here
            drv.begin_init()
            drv.set_features_raw(revision_1 | bit(crypto_bit))
            assert drv.features_ok() is accepted
    with VirtioPciDriver.connect(server.socket) as drv:
        drv.init(features_wanted=DEFAULT_DRIVER_FEATURES)
        assert drv.device_config() == config_bytes(services=0x0F, akcipher=0, queues=2, max_size=65536)
        ctrlq = drv.queue(2)
        req = D.akcipher_create_session(C.VIRTIO_CRYPTO_AKCIPHER_RSA, C.VIRTIO_CRYPTO_AKCIPHER_KEY_TYPE_PUBLIC, b"k")
        used, (outcome,) = ctrlq.request([req.readable], [16])
        assert (used, D.session_input(outcome)) == (16, (0, NOTSUPP))
        req = D.cipher_create_session(C.VIRTIO_CRYPTO_CIPHER_AES_CBC, KEY, C.VIRTIO_CRYPTO_OP_ENCRYPT)
        _used, (outcome,) = ctrlq.request([req.readable[:72], KEY], [16])
        sid, status = D.session_input(outcome)
        assert status == 0
        head = D.cipher_data(C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, sid, IV, PLAIN).readable[:72]
        assert drv.queue(1).request([head, IV, PLAIN], [16, 1]) == (17, [CIPHER, b"\x00"])
    server.stop()
    refused = subprocess.run([sys.executable, "-m", "vfu_virtio", "crypto", "--socket", server.socket, "--state",
                              server.state, "--profile", "standard"], capture_output=True, text=True, cwd=TOP,
                             env={**os.environ, **SERVER_ENV}, timeout=60)
    assert refused.returncode == 1
    (line,) = refused.stderr.strip().splitlines()
    assert line == (f"Error: state store {server.state}: crypto instance '0' has profile {TEST_PROFILE}; it cannot "
                    "become standard (--profile is fixed when the instance is created)")


# ---- the profile and the options in the store ------------------------------------------------------------------
def open_crypto(state: str, instance: str = "0", **given):
    """The crypto device of ``instance`` under the registry's stored-settings rule (as ``vfu-virtio crypto`` opens it)."""
    return registry.open_device(KIND, state, instance, given)


def test_profile_is_stored_with_the_instance_and_fixed(tmp_path):
    state = str(tmp_path / "s.db")
    dev = open_crypto(state, "a", bulk_threshold=4096, max_dataqueues=2)
    dev.close()
    dev = open_crypto(state, "a")  # a restarted instance keeps what it was made with
    assert (dev.profile.name, dev.bulk_threshold, dev.max_dataqueues) == ("standard", 4096, 2)
    dev.close()
    dev = open_crypto(state, "a", bulk_threshold=0)  # other options may change; the change is stored
    dev.close()
    ns = open_namespace(state, "crypto", "a")
    assert ns.config() == {"max_dataqueues": 2, "max_sessions": 1024, "max_size": 1 << 20,
                           "profile": "standard", "bulk_threshold": 0, "max_rsa_keygen_bits": 4096,
                           "max_dsa_keygen_bits": 2048, "max_dh_param_bits": 1024}
    ns.save_config({"profile": TEST_PROFILE})  # an instance made with another profile (served end to end above)
    ns.close()
    with pytest.raises(ValueError, match=f"has profile {TEST_PROFILE}; it cannot become standard"):
        open_crypto(state, "a", profile="standard")  # fixed at creation: another profile is refused


# ---- the README's example of each draft profile ------------------------------------------------------------------
def readme_example(profile: str) -> str:
    """The Python the README feeds to ``.venv/bin/python - SOCKET`` after serving ``--profile`` ``profile``."""
    found = re.search(rf"--profile {profile} --socket \S+ --state \S+ &\n\.venv/bin/python - \S+ <<'PY'\n(.*?)\nPY\n",
                      (TOP / "README.md").read_text(), re.S)
    assert found, f"no README example for profile {profile}"
    return found.group(1)


@pytest.mark.ring_neutral  # the example picks its own features (split rings)
@pytest.mark.parametrize("profile, output", [
    ("v16", "status 0 ciphertext 7649abac8119b246cee98e9b12e9197d"),  # NIST SP 800-38A F.2.1
    ("asym-rfc3", r"shared secret [0-9a-f]{64} agree: True"),
])
def test_readme_examples_run(serve, profile, output):
    server = serve("crypto", "--profile", profile)
    done = subprocess.run([sys.executable, "-", server.socket], input=readme_example(profile), capture_output=True,
                          text=True, cwd=TOP, timeout=60)
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(output, done.stdout.strip()), done.stdout
