"""The v16 profile: the v16 crypto patch's configuration, feature bits and rule, session mode without
VIRTIO_CRYPTO_F_NON_SESSION_MODE and the mux wrapper with it (session and non-session requests), v16's status codes.

Wire layouts are pinned against literal bytes written field by field from the v16 tables (the docs' decisions
AMB-20, AMB-21, AMB-4), and those literal requests are what the device is fed, so a swapped field on either side
fails. Known answers come from published vectors (NIST SP 800-38A AES-CBC, SHA-256, RFC 4231 HMAC, NIST GCM), in
process (the device object, as ``test_crypto_vectors``) and through a real server on split and packed virtqueues.
"""
from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes, hmac
from hypothesis import given, settings
from hypothesis import strategies as st

from vfu_virtio.abi import crypto as C
from vfu_virtio.abi import crypto_v16 as V
from vfu_virtio.abi.virtio import VIRTIO_F_VERSION_1, bit
from vfu_virtio.client import crypto as D
from vfu_virtio.client import crypto_v16 as V16
from vfu_virtio.client.virtio_pci import PACKED, VirtioPciDriver
from vfu_virtio.devices.crypto import CryptoDevice
from vfu_virtio.devices.crypto.profiles import v16
from vfu_virtio.devices.crypto.values import Status
from vfu_virtio.virtio.chain import DescriptorChain

from crypto_harness import InProcess, handle
from test_crypto_profiles import config_bytes
from test_crypto_vectors import h, load

OK, ERR, BADMSG, NOTSUPP, INVSESS = 0, 1, 2, 3, 4
MUX = 0x01  # VIRTIO_CRYPTO_F_NON_SESSION_MODE
ALL = 0x1F  # and the four per-service NON_SESSION_MODE bits
ENC = C.VIRTIO_CRYPTO_OP_ENCRYPT
KEY = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")  # NIST SP 800-38A F.2.1 (CBC-AES128.Encrypt)
IV = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
PLAIN = bytes.fromhex("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51")
CIPHER = bytes.fromhex("7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2")


def le32(*values: int) -> bytes:
    return b"".join(v.to_bytes(4, "little") for v in values)


def le64(value: int) -> bytes:
    return value.to_bytes(8, "little")


def device(features: int = ALL, **kw) -> InProcess:
    return InProcess(CryptoDevice(max_dataqueues=1, profile="v16", **kw), features)


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    mac = hmac.HMAC(key, hashes.SHA256())
    mac.update(data)
    return mac.finalize()


# ---- configuration, features, structs -------------------------------------------------------------------------
def test_configuration_and_feature_bits():
    dev = CryptoDevice(max_dataqueues=3, max_size=12345, profile="v16")
    # v16's 56 bytes: the standard's field order with reserved (0) at 44 where it has akcipher_algo; no AKCIPHER
    assert dev.config_space() == config_bytes(services=0x0F, akcipher=0, queues=3, max_size=12345)
    assert dev.device_features() == ALL


@pytest.mark.parametrize("features, refused", [
    (0, False), (MUX, False), (ALL, False), (0b00011, False),
    *[(1 << b, True) for b in range(1, 5)], (0b11110, True),
])
def test_non_session_bits_require_bit_0(features, refused):
    assert (v16.refuse_features(features) is not None) is refused


@pytest.mark.parametrize("struct_, size", [
    (V.VIRTIO_CRYPTO_CIPHER_PARA_NON_SESS, 24), (V.VIRTIO_CRYPTO_ALG_CHAIN_DATA_PARA_NON_SESS, 72),
    (V.VIRTIO_CRYPTO_SYM_DATA_REQ_NON_SESS, 80), (V.VIRTIO_CRYPTO_HASH_PARA_NON_SESS, 16),
    (V.VIRTIO_CRYPTO_MAC_PARA_NON_SESS, 16), (V.VIRTIO_CRYPTO_AEAD_PARA_NON_SESS, 32),
    (V.VIRTIO_CRYPTO_DESTROY_SESSION_REQ_INPUT, 8), (V.VIRTIO_CRYPTO_CONFIG, 56),
])
def test_struct_sizes(struct_, size):
    assert struct_.size == size
    assert V.MUX_HEAD == 104


# ---- non-session requests: literal bytes in, known answers out -------------------------------------------------
def test_non_session_cipher_bytes_and_answer():
    literal = (le32(C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, C.VIRTIO_CRYPTO_CIPHER_AES_CBC) + le64(0) + le32(2, 0)  # flag 2
               + le32(3, 16, ENC, 16, 32, 32)  # sess_para {algo, keylen, op}, iv_len, src_data_len, dst_data_len @24
               + bytes(48) + le32(C.VIRTIO_CRYPTO_SYM_OP_CIPHER, 0))  # padding[48], op_type @96, padding @100
    req = V16.cipher_data_non_sess(C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, C.VIRTIO_CRYPTO_CIPHER_AES_CBC, KEY, ENC, IV,
                                   PLAIN)
    assert req.readable == literal + KEY + IV + PLAIN and req.writable == 33
    done = device().data(D.Request(literal + KEY + IV + PLAIN, 33))
    assert (done.status, done.out, done.used) == (OK, CIPHER, 33)


def chain_literal(iv_src_aad_order: bool, aad: bytes, mac_key: bytes) -> bytes:
    """Non-session AES-128-CBC then HMAC-SHA-256 (CIPHER_THEN_HASH, AUTH) over PLAIN, written from v16's table."""
    para = le32(C.VIRTIO_CRYPTO_SYM_ALG_CHAIN_ORDER_CIPHER_THEN_HASH, len(aad),  # sess_para @24, @28
                C.VIRTIO_CRYPTO_CIPHER_AES_CBC, 16, ENC,  # cipher @32..43
                C.VIRTIO_CRYPTO_MAC_HMAC_SHA_256, len(mac_key), C.VIRTIO_CRYPTO_SYM_HASH_MODE_AUTH,  # hash @44..55
                16, 32, 32, 0, 32, 0, 32, len(aad), 32, 0)  # iv_len @56 .. hash_result_len @88, reserved @92
    head = (le32(C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, C.VIRTIO_CRYPTO_CIPHER_AES_CBC) + le64(0) + le32(2, 0) + para
            + le32(C.VIRTIO_CRYPTO_SYM_OP_ALGORITHM_CHAINING, 0))  # op_type @96
    tail = IV + PLAIN + aad if iv_src_aad_order else IV + aad + PLAIN
    return head + KEY + mac_key + tail


def test_non_session_chain_bytes_order_and_answer():
    """AMB-20: v16's readable order is cipher key, auth key, iv, src_data, aad; the standard's stateless order (iv,
    aad, src_data) is read as v16's and gives another answer (the negative control)."""
    aad, mac_key = b"associated data!", b"k" * 20
    literal = chain_literal(True, aad, mac_key)
    req = V16.chain_data_non_sess(C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, C.VIRTIO_CRYPTO_SYM_ALG_CHAIN_ORDER_CIPHER_THEN_HASH,
                                  C.VIRTIO_CRYPTO_SYM_HASH_MODE_AUTH, C.VIRTIO_CRYPTO_CIPHER_AES_CBC, KEY, ENC,
                                  C.VIRTIO_CRYPTO_MAC_HMAC_SHA_256, mac_key, IV, PLAIN, aad, 0, 32, 0, 32, 32)
    assert req.readable == literal
    want = CIPHER + hmac_sha256(mac_key, aad + CIPHER)
    drv = device()
    done = drv.data(D.Request(literal, 65))
    assert (done.status, done.out) == (OK, want)
    other = drv.data(D.Request(chain_literal(False, aad, mac_key), 65))
    assert other.status == OK and other.out != want


def test_non_session_hash_mac_aead_bytes_and_answers():
    drv = device()
    for v in load("hashes/SHA2/SHA256ShortMsg.rsp", new_on="len", limit=8):
        msg, md = h(v["msg"])[:int(v["len"]) // 8], h(v["md"])
        literal = le32(C.VIRTIO_CRYPTO_HASH, C.VIRTIO_CRYPTO_HASH_SHA_256) + le64(0) + le32(2, 0) + \
            le32(C.VIRTIO_CRYPTO_HASH_SHA_256, len(msg), 32, 0) + bytes(64)  # hash_para_non_sess + padding[64]
        assert V16.hash_data_non_sess(C.VIRTIO_CRYPTO_HASH_SHA_256, msg, 32).readable == literal + msg
        assert drv.data(D.Request(literal + msg, 33)).out == md, v["len"]
    for v in load("HMAC/rfc-4231-sha256.txt", new_on="len"):
        key, msg, md = h(v["key"]), h(v["msg"]), h(v["md"])
        literal = le32(C.VIRTIO_CRYPTO_MAC, C.VIRTIO_CRYPTO_MAC_HMAC_SHA_256) + le64(0) + le32(2, 0) + \
            le32(C.VIRTIO_CRYPTO_MAC_HMAC_SHA_256, len(key), len(msg), len(md)) + bytes(64)
        assert V16.mac_data_non_sess(C.VIRTIO_CRYPTO_MAC_HMAC_SHA_256, key, msg, len(md)).readable == \
            literal + key + msg
        assert drv.data(D.Request(literal + key + msg, len(md) + 1)).out == md, v
    n = 0
    for v in load("ciphers/AES/GCM/gcmEncryptExtIV128.rsp", limit=200):
        if int(v["ivlen"]) != 96 or not v["aad"] or not v["pt"]:
            continue
        key, iv, pt, aad, ct, tag = (h(v[k]) for k in ("key", "iv", "pt", "aad", "ct", "tag"))
        # aead_para_non_sess: sess_para {algo, key_len, op} @24, iv_len @36, tag_len @40, aad_len @44,
        # src_data_len @48, dst_data_len @52, padding[48]; then key, iv, src_data, aad
        literal = le32(C.VIRTIO_CRYPTO_AEAD_ENCRYPT, C.VIRTIO_CRYPTO_AEAD_GCM) + le64(0) + le32(2, 0) + \
            le32(C.VIRTIO_CRYPTO_AEAD_GCM, 16, ENC, 12, len(tag), len(aad), len(pt), len(pt) + len(tag)) + bytes(48)
        req = V16.aead_data_non_sess(C.VIRTIO_CRYPTO_AEAD_ENCRYPT, C.VIRTIO_CRYPTO_AEAD_GCM, key, ENC, iv, pt, aad,
                                     len(tag), len(pt) + len(tag))
        assert req.readable == literal + key + iv + pt + aad
        done = drv.data(D.Request(literal + key + iv + pt + aad, len(pt) + len(tag) + 1))
        assert (done.status, done.out) == (OK, ct + tag), v["count"]
        n += 1
    assert n >= 10


# ---- session mode, with and without the mux ------------------------------------------------------------------------
def test_session_requests_in_the_mux_keep_their_offsets():
    drv = device(MUX)
    sid, status = drv.create(D.cipher_create_session(C.VIRTIO_CRYPTO_CIPHER_AES_CBC, KEY, ENC))
    assert status == OK and sid
    literal = (le32(C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, 0) + le64(sid) + le32(1, 0)  # flag SESSION_MODE
               + le32(16, 32, 32, 0) + bytes(24)  # virtio_crypto_cipher_para @24, union padding to 64
               + le32(C.VIRTIO_CRYPTO_SYM_OP_CIPHER, 0) + bytes(32))  # op_type @64, padding, mux padding[32]
    assert V16.mux(D.cipher_data(C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, sid, IV, PLAIN)).readable == literal + IV + PLAIN
    done = drv.data(D.Request(literal + IV + PLAIN, 33))
    assert (done.status, done.out) == (OK, CIPHER)
    # the 72-byte head of the same request is read as a 104-byte one: what follows is too short -> ERR
    assert drv.data(D.cipher_data(C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, sid, IV, PLAIN)).status == ERR


def test_without_bit_0_the_72_byte_heads_and_flag_ignored():
    """The Linux driver of the time negotiates no crypto bit: the standard's 72-byte requests, whatever the flag."""
    drv = device(0)
    sid, status = drv.create(D.cipher_create_session(C.VIRTIO_CRYPTO_CIPHER_AES_CBC, KEY, ENC))
    assert status == OK
    for flag in (0, 1, 2, 0xFFFF):
        req = D.cipher_data(C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, sid, IV, PLAIN)
        readable = req.readable[:16] + le32(flag) + req.readable[20:]
        assert drv.data(D.Request(readable, 33)).out == CIPHER, flag
    assert drv.data(V16.hash_data_non_sess(C.VIRTIO_CRYPTO_HASH_SHA_256, b"abc", 32)).status == INVSESS


def with_flag(req: D.Request, flag: int) -> D.Request:
    return D.Request(req.readable[:16] + le32(flag) + req.readable[20:], req.writable)


@pytest.mark.parametrize("features, flag, status", [
    (MUX, 1, OK), (MUX, 0, OK), (MUX, 7, OK), (MUX, 2, NOTSUPP),  # no HASH bit: 2 refused, the rest session mode
    (MUX | 1 << V.VIRTIO_CRYPTO_F_HASH_NON_SESSION_MODE, 1, OK),
    (MUX | 1 << V.VIRTIO_CRYPTO_F_HASH_NON_SESSION_MODE, 0, ERR),
    (MUX | 1 << V.VIRTIO_CRYPTO_F_HASH_NON_SESSION_MODE, 3, ERR),
])
def test_flag_matrix_of_a_session_request(features, flag, status):
    """AMB-21: with the mux, flag picks the mode only for a service whose non-session bit is negotiated."""
    drv = device(features)
    sid, st = drv.create(D.hash_create_session(C.VIRTIO_CRYPTO_HASH_SHA_256, 32))
    assert st == OK
    done = drv.data(with_flag(V16.mux(D.digest_data(C.VIRTIO_CRYPTO_HASH, sid, b"abc", 32)), flag))
    assert done.status == status
    assert done.out == (h("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") if status == OK
                        else bytes(32))


def test_non_session_request_needs_its_service_bit():
    req = V16.hash_data_non_sess(C.VIRTIO_CRYPTO_HASH_SHA_256, b"abc", 32)
    assert device(MUX | 1 << V.VIRTIO_CRYPTO_F_MAC_NON_SESSION_MODE).data(req).status == NOTSUPP
    assert device(MUX | 1 << V.VIRTIO_CRYPTO_F_HASH_NON_SESSION_MODE).data(req).status == OK


# ---- v16's outcomes and status codes ------------------------------------------------------------------------------
def test_destroy_session_answers_le32_status_and_padding():
    drv = device()
    sid, _ = drv.create(D.mac_create_session(C.VIRTIO_CRYPTO_MAC_HMAC_SHA_256, 32, b"key"))
    destroy = D.destroy_session(C.VIRTIO_CRYPTO_MAC_DESTROY_SESSION, sid)
    assert drv.raw(destroy, drv.device.controlq, writable=8) == (le32(OK, 0), 8)
    assert drv.raw(destroy, drv.device.controlq, writable=8) == (le32(ERR, 0), 8)  # gone: ERR (AMB-11)
    assert drv.raw(destroy, drv.device.controlq, writable=1) == (bytes([ERR]), 1)
    assert V16.destroy_status(le32(ERR, 0)) == ERR and V16.destroy_status(b"\x00") == OK


def test_only_v16_status_codes():
    """AMB-27: a full session table is ERR (the standard's NOSPC, 5, does not exist in v16); AKCIPHER opcodes are
    unknown; a bad tag is BADMSG; an unknown session INVSESS."""
    drv = device(max_sessions=1)
    mk = D.hash_create_session(C.VIRTIO_CRYPTO_HASH_SHA1, 20)
    assert drv.create(mk)[1] == OK
    assert drv.create(mk) == (0, ERR)
    rsa = D.akcipher_create_session(C.VIRTIO_CRYPTO_AKCIPHER_RSA, C.VIRTIO_CRYPTO_AKCIPHER_KEY_TYPE_PUBLIC, b"k")
    assert drv.create(rsa) == (0, NOTSUPP)
    assert drv.data(V16.mux(D.akcipher_data(C.VIRTIO_CRYPTO_AKCIPHER_SIGN, 1, bytes(32), 64))).status == NOTSUPP
    assert drv.data(V16.mux(D.digest_data(C.VIRTIO_CRYPTO_HASH, 999, b"abc", 20))).status == INVSESS
    bad_tag = V16.aead_data_non_sess(C.VIRTIO_CRYPTO_AEAD_DECRYPT, C.VIRTIO_CRYPTO_AEAD_GCM, KEY,
                                     C.VIRTIO_CRYPTO_OP_DECRYPT, bytes(12), bytes(32), b"", 16, 16)
    done = drv.data(bad_tag)
    assert (done.status, done.out) == (BADMSG, bytes(16))
    codec = drv.device.codec
    assert sorted({codec.wire_status(s) for s in Status}) == [OK, ERR, BADMSG, NOTSUPP, INVSESS]


def test_refusals_in_non_session_mode_change_nothing():
    """An algorithm v16 numbers but the device does not offer (KASUMI F8) is NOTSUPP; a key over max_cipher_key_len,
    a declared source longer than what is readable, outputs that do not fit are ERR; no session appears, the
    existing one still works."""
    drv = device()
    sid, _ = drv.create(D.hash_create_session(C.VIRTIO_CRYPTO_HASH_SHA_256, 32))
    kasumi = V16.cipher_data_non_sess(C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, C.VIRTIO_CRYPTO_CIPHER_KASUMI_F8, KEY, ENC,
                                      IV, PLAIN)
    assert drv.data(kasumi).status == NOTSUPP
    long_key = V16.cipher_data_non_sess(C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, C.VIRTIO_CRYPTO_CIPHER_AES_CBC, bytes(65),
                                        ENC, IV, PLAIN)
    good = V16.cipher_data_non_sess(C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, C.VIRTIO_CRYPTO_CIPHER_AES_CBC, KEY, ENC, IV,
                                    PLAIN)
    for req in (long_key, D.Request(good.readable[:-1], good.writable), D.Request(good.readable, 32)):
        done = drv.data(req)
        assert (done.status, done.out) == (ERR, bytes(len(done.out)))
    assert len(drv.device.sessions) == 1
    assert drv.data(V16.mux(D.digest_data(C.VIRTIO_CRYPTO_HASH, sid, b"abc", 32))).out[:4] == h("ba7816bf")


# ---- hostile input: every byte sequence is answered -----------------------------------------------------------------
_OPCODES = sorted({*V.DATA_OPCODES, *C.DATA_OPCODES, 0x0FFF})


@settings(max_examples=300, deadline=None)
@given(opcode=st.sampled_from(_OPCODES), flag=st.sampled_from([0, 1, 2, 3]), body=st.binary(max_size=200),
       features=st.integers(0, ALL), capacity=st.integers(0, 80))
def test_fuzz_dataq_requests_always_complete(opcode, flag, body, features, capacity):
    dev = CryptoDevice(max_dataqueues=1, max_size=512, profile="v16")
    if v16.refuse_features(features):
        features |= MUX
    dev.activate(features)
    readable = le32(opcode, 0) + le64(1) + le32(flag, 0) + bytes(b % 24 for b in body)
    out = bytearray(b"\xee" * capacity)
    used = handle(dev, 0, DescriptorChain(0, [memoryview(bytearray(readable))], [memoryview(out)]))
    assert 0 <= used <= capacity and (used > 0) == (capacity > 0)
    if capacity:
        assert out[-1] in (OK, ERR, BADMSG, NOTSUPP, INVSESS)


# ---- a real server, split and packed virtqueues ---------------------------------------------------------------------
def test_v16_served_end_to_end(serve, ring):
    server = serve("crypto", "--queues", "2", "--max-size", "65536", "--profile", "v16")
    packed = PACKED if ring == "packed" else 0
    with VirtioPciDriver.connect(server.socket) as drv:
        assert drv.device_features() & 0xFFFFFF == ALL
        for crypto_bits, accepted in ((1 << V.VIRTIO_CRYPTO_F_AEAD_NON_SESSION_MODE, False), (ALL, True)):
            drv.begin_init()
            drv.set_features_raw(bit(VIRTIO_F_VERSION_1) | packed | crypto_bits)
            assert drv.features_ok() is accepted
    with VirtioPciDriver.connect(server.socket) as drv:
        drv.init(features_wanted=bit(VIRTIO_F_VERSION_1) | packed | ALL)
        assert drv.negotiated & 0xFFFFFF == ALL
        assert drv.device_config() == config_bytes(services=0x0F, akcipher=0, queues=2, max_size=65536)
        req = V16.cipher_data_non_sess(C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, C.VIRTIO_CRYPTO_CIPHER_AES_CBC, KEY, ENC, IV,
                                       PLAIN)
        head = req.readable[:V.MUX_HEAD]
        assert drv.queue(1).request([head, KEY, IV, PLAIN[:7], PLAIN[7:]], [20, 12, 1]) == \
            (33, [CIPHER[:20], CIPHER[20:], b"\x00"])
        ctrlq = drv.queue(2)
        used, (outcome,) = ctrlq.request([D.hash_create_session(C.VIRTIO_CRYPTO_HASH_SHA_256, 32).readable], [16])
        sid, status = D.session_input(outcome)
        assert (used, status) == (16, OK)
        used, (digest, status) = drv.queue(0).request(
            [V16.mux(D.digest_data(C.VIRTIO_CRYPTO_HASH, sid, b"abc", 32)).readable], [32, 1])
        assert (used, digest[:4], status) == (33, h("ba7816bf"), b"\x00")
        destroy = D.destroy_session(C.VIRTIO_CRYPTO_HASH_DESTROY_SESSION, sid).readable
        assert ctrlq.request([destroy], [8]) == (8, [le32(OK, 0)])
    with VirtioPciDriver.connect(server.socket) as drv:  # the Linux driver's way: no crypto bit, 72-byte heads
        drv.init(features_wanted=bit(VIRTIO_F_VERSION_1) | packed)
        used, (outcome,) = drv.queue(2).request(
            [D.cipher_create_session(C.VIRTIO_CRYPTO_CIPHER_AES_CBC, KEY, ENC).readable], [16])
        sid, status = D.session_input(outcome)
        assert status == OK
        head = D.cipher_data(C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, sid, IV, PLAIN).readable[:72]
        assert drv.queue(0).request([head, IV, PLAIN], [32, 1]) == (33, [CIPHER, b"\x00"])
