"""virtio-crypto end to end: a real ``vfu-virtio crypto`` server process, the project's vfio-user client
and virtio-pci driver, requests in shared guest memory, completions by MSI-X.

The requests are laid out in descriptors exactly as the Linux ``virtio_crypto`` driver does (header,
key/IV/src each in its own descriptor; dst then a 1-byte status), so this is the Linux path over the
real transport: split rings, notifications, used lengths.
"""
from __future__ import annotations

import struct

import pytest

from vfu_virtio.devices.crypto import CryptoDevice
from vfu_virtio.abi import crypto as C
from vfu_virtio.client import crypto as D

virtio_pci = pytest.importorskip("vfu_virtio.client.virtio_pci")

KEY = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")  # NIST SP 800-38A F.2.1
IV = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
PLAIN = bytes.fromhex("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
                      "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710")
CIPHER = bytes.fromhex("7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2"
                       "73bed6b8e3c1743b7116e69e222295163ff1caa1681fac09120eca307586e1a7")
QUEUES = 2
CTRLQ = QUEUES
REV1_AND_STATELESS = 0x3F


@pytest.fixture
def server(serve):
    return serve("crypto", "--queues", str(QUEUES), "--max-sessions", "4", "--max-size", "65536")


def connect(server, crypto_features: int = 0):
    drv = virtio_pci.VirtioPciDriver.connect(server.socket)
    drv.init(features_wanted=virtio_pci.DEFAULT_DRIVER_FEATURES | crypto_features)
    return drv


@pytest.fixture
def drv(server):
    d = connect(server)
    yield d
    d.close()


def create(drv, req: D.Request, key: bytes = b"") -> tuple[int, int, int]:
    """Controlq: [72-byte head, key] -> [16-byte session input]; returns (session_id, status, used)."""
    head = req.readable[:len(req.readable) - len(key)]
    used, (outcome,) = drv.queue(CTRLQ).request([head, key] if key else [head], [16])
    sid, status = D.session_input(outcome)
    return sid, status, used


def test_config_space_matches_the_device(drv):
    expected = CryptoDevice(max_dataqueues=QUEUES, max_sessions=4, max_size=65536).config_space()
    assert drv.device_config() == expected
    assert drv.num_queues == QUEUES + 1


def test_linux_aes_cbc_path(drv):
    enc, st, used = create(drv, D.cipher_create_session(C.VIRTIO_CRYPTO_CIPHER_AES_CBC, KEY,
                                                         C.VIRTIO_CRYPTO_OP_ENCRYPT), KEY)
    assert (st, used) == (C.VIRTIO_CRYPTO_OK, 16) and enc
    dec, st, _ = create(drv, D.cipher_create_session(C.VIRTIO_CRYPTO_CIPHER_AES_CBC, KEY,
                                                      C.VIRTIO_CRYPTO_OP_DECRYPT), KEY)
    assert st == C.VIRTIO_CRYPTO_OK
    head = D.cipher_data(C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, enc, IV, PLAIN).readable[:72]
    used, (dst, status) = drv.queue(0).request([head, IV, PLAIN], [64, 1])
    assert (used, dst, status) == (65, CIPHER, b"\x00")
    head = D.cipher_data(C.VIRTIO_CRYPTO_CIPHER_DECRYPT, dec, IV, CIPHER).readable[:72]
    used, (d1, d2, status) = drv.queue(1).request([head, IV, CIPHER[:40], CIPHER[40:]], [40, 24, 1])
    assert (used, d1 + d2, status) == (65, PLAIN, b"\x00")
    for sid in (enc, dec):
        req = D.destroy_session(C.VIRTIO_CRYPTO_CIPHER_DESTROY_SESSION, sid)
        assert drv.queue(CTRLQ).request([req.readable], [1]) == (1, [b"\x00"])
    used, (_, status) = drv.queue(0).request([head, IV, CIPHER], [64, 1])
    assert (used, status) == (65, bytes([C.VIRTIO_CRYPTO_INVSESS]))


def test_many_requests_on_every_dataqueue(drv):
    sid, st, _ = create(drv, D.mac_create_session(C.VIRTIO_CRYPTO_MAC_HMAC_SHA_256, 32, b"key"), b"key")
    assert st == C.VIRTIO_CRYPTO_OK
    from cryptography.hazmat.primitives import hashes, hmac
    msgs = [bytes([i]) * (i * 7) for i in range(40)]
    for q in range(QUEUES):
        reqs = [([D.digest_data(C.VIRTIO_CRYPTO_MAC, sid, m, 32).readable], [32, 1]) for m in msgs]
        for m, (used, (mac, status)) in zip(msgs, drv.queue(q).run(reqs)):
            h = hmac.HMAC(b"key", hashes.SHA256())
            h.update(m)
            assert (used, mac, status) == (33, h.finalize(), b"\x00")


def test_session_cap_and_malformed_requests_keep_the_device_running(drv, server):
    mk = D.hash_create_session(C.VIRTIO_CRYPTO_HASH_SHA1, 20)
    assert [create(drv, mk)[1] for _ in range(4)] == [C.VIRTIO_CRYPTO_OK] * 4
    assert create(drv, mk)[:2] == (0, C.VIRTIO_CRYPTO_ERR)  # no REVISION_1: ERR, not NOSPC
    assert drv.queue(CTRLQ).request([b"\x01\x02"], [16]) == (16, [struct.pack("<QII", 0, C.VIRTIO_CRYPTO_ERR, 0)])
    assert drv.queue(0).request([b"\xff" * 80], [10]) == (10, [bytes(9) + bytes([C.VIRTIO_CRYPTO_NOTSUPP])])
    assert drv.status & 0x40 == 0  # no DEVICE_NEEDS_RESET
    assert server.alive()


def test_akcipher_used_length_is_result_plus_status(drv):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
    key = rsa.generate_private_key(65537, 2048)
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    sid, st, _ = create(drv, D.akcipher_create_session(
        C.VIRTIO_CRYPTO_AKCIPHER_RSA, C.VIRTIO_CRYPTO_AKCIPHER_KEY_TYPE_PRIVATE, der,
        C.VIRTIO_CRYPTO_RSA_PKCS1_PADDING, C.VIRTIO_CRYPTO_RSA_SHA256), der)
    assert st == C.VIRTIO_CRYPTO_OK
    ct = key.public_key().encrypt(b"twelve bytes", padding.PKCS1v15())
    head = D.akcipher_data(C.VIRTIO_CRYPTO_AKCIPHER_DECRYPT, sid, ct, 256).readable[:72]
    used, (dst, status) = drv.queue(0).request([head, ct], [256, 1])
    assert (used, dst[:12], status) == (13, b"twelve bytes", b"\x00")


def test_revision_1_and_stateless_negotiated(server):
    drv = connect(server, REV1_AND_STATELESS)
    try:
        assert drv.negotiated & 0x3F == REV1_AND_STATELESS
        req = D.hash_data_stateless(C.VIRTIO_CRYPTO_HASH_SHA_256, b"abc", 32)
        used, (out,) = drv.queue(1).request([req.readable], [33])
        assert used == 33 and out[:32].hex().startswith("ba7816bf") and out[32] == 0
        mk = D.hash_create_session(C.VIRTIO_CRYPTO_HASH_SHA1, 20, revision_1=True)
        assert [create(drv, mk)[1] for _ in range(5)] == [C.VIRTIO_CRYPTO_OK] * 4 + [C.VIRTIO_CRYPTO_NOSPC]
    finally:
        drv.close()


def test_reset_drops_sessions(server):
    drv = connect(server)
    sid, st, _ = create(drv, D.hash_create_session(C.VIRTIO_CRYPTO_HASH_SHA1, 20))
    assert st == C.VIRTIO_CRYPTO_OK
    drv.close()  # writes device_status 0
    drv = connect(server)
    try:
        req = D.digest_data(C.VIRTIO_CRYPTO_HASH, sid, b"abc", 20)
        used, (out,) = drv.queue(0).request([req.readable], [21])
        assert out[20] == C.VIRTIO_CRYPTO_INVSESS
    finally:
        drv.close()


@pytest.mark.parametrize("features, refused", [(0, C.VIRTIO_CRYPTO_ERR), (1, C.VIRTIO_CRYPTO_KEY_REJECTED)],
                         ids=["linux", "revision-1"])
def test_refused_key_and_bad_rsa_padding_over_the_wire(server, features, refused):
    """A valid DER key with one byte after it is refused (KEY_REJECTED with REVISION_1, ERR without: AMB-KEYS);
    an RSAES-PKCS1-v1_5 ciphertext whose padding does not parse is BADMSG with nothing written (AMB-RSA-DECRYPT)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    key = rsa.generate_private_key(65537, 2048)
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    rev1 = bool(features)
    drv = connect(server, features)
    try:
        for blob, status in ((der + b"\0", refused), (der, C.VIRTIO_CRYPTO_OK)):
            sid, st, used = create(drv, D.akcipher_create_session(
                C.VIRTIO_CRYPTO_AKCIPHER_RSA, C.VIRTIO_CRYPTO_AKCIPHER_KEY_TYPE_PRIVATE, blob,
                C.VIRTIO_CRYPTO_RSA_PKCS1_PADDING, revision_1=rev1), blob)
            assert (st, used, sid > 0) == (status, 16, status == C.VIRTIO_CRYPTO_OK)
        n = key.public_key().public_numbers()
        em = b"\x00\x01" + b"\xff" * 8 + b"\x00" + b"M" * 245  # block type 1: not an encryption block
        ct = pow(int.from_bytes(em, "big"), n.e, n.n).to_bytes(256, "big")
        req = D.akcipher_data(C.VIRTIO_CRYPTO_AKCIPHER_DECRYPT, sid, ct, 256, revision_1=rev1)
        head = req.readable[:len(req.readable) - len(ct)]
        used, (dst, status) = drv.queue(0).request([head, ct], [256, 1])
        assert (used, dst, status) == (257, bytes(256), bytes([C.VIRTIO_CRYPTO_BADMSG]))
    finally:
        drv.close()
