"""The standard profile's wire codec alone: struct sizes from the standard, parse results as profile-neutral values
(algorithms by name, enumerations as members, unnamed wire values as ints), outcomes as literal bytes, and a fuzz
property that no byte sequence makes the device raise or write outside its writable stream."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vfu_virtio.abi import crypto as C
from vfu_virtio.client import crypto as D
from vfu_virtio.devices.crypto import CryptoDevice
from vfu_virtio.devices.crypto.errors import CryptoStatus
from vfu_virtio.devices.crypto.profiles.standard import PROFILE, StandardCodec
from vfu_virtio.devices.crypto.values import (AeadOp, AkcipherOp, AkcipherOperation, AkcipherParams, ChainOrder,
                                              ChainParams, CipherParams, CreateSession, DataRequest, DestroySession,
                                              Direction, KeyType, Limits, MacParams, RsaPadding, Service, Status)
from vfu_virtio.virtio.chain import ChainReader, ChainWriter, DescriptorChain

LIMITS = Limits(max_size=4096, max_cipher_key_len=64, max_auth_key_len=512)


def codec(features: int = 0) -> StandardCodec:
    return PROFILE.new_codec(features, LIMITS)


@pytest.mark.parametrize("struct_, size", [
    (C.VIRTIO_CRYPTO_CTRL_HEADER, 16), (C.VIRTIO_CRYPTO_OP_HEADER, 24),
    (C.VIRTIO_CRYPTO_SYM_CREATE_SESSION_FLF, 56), (C.VIRTIO_CRYPTO_ALG_CHAIN_SESSION_FLF, 48),
    (C.VIRTIO_CRYPTO_CIPHER_SESSION_FLF, 16), (C.VIRTIO_CRYPTO_HASH_CREATE_SESSION_FLF, 8),
    (C.VIRTIO_CRYPTO_MAC_CREATE_SESSION_FLF, 16), (C.VIRTIO_CRYPTO_AEAD_CREATE_SESSION_FLF, 24),
    (C.VIRTIO_CRYPTO_AKCIPHER_CREATE_SESSION_FLF, 56), (C.VIRTIO_CRYPTO_DESTROY_SESSION_FLF, 8),
    (C.VIRTIO_CRYPTO_CREATE_SESSION_INPUT, 16), (C.VIRTIO_CRYPTO_DESTROY_SESSION_INPUT, 1),
    (C.VIRTIO_CRYPTO_SYM_DATA_FLF, 48), (C.VIRTIO_CRYPTO_ALG_CHAIN_DATA_FLF, 40),
    (C.VIRTIO_CRYPTO_CIPHER_DATA_FLF, 16), (C.VIRTIO_CRYPTO_HASH_DATA_FLF, 8), (C.VIRTIO_CRYPTO_AEAD_DATA_FLF, 24),
    (C.VIRTIO_CRYPTO_AKCIPHER_DATA_FLF, 8), (C.VIRTIO_CRYPTO_SYM_DATA_FLF_STATELESS, 76),
    (C.VIRTIO_CRYPTO_ALG_CHAIN_DATA_FLF_STATELESS, 72), (C.VIRTIO_CRYPTO_CIPHER_DATA_FLF_STATELESS, 24),
    (C.VIRTIO_CRYPTO_HASH_DATA_FLF_STATELESS, 16), (C.VIRTIO_CRYPTO_MAC_DATA_FLF_STATELESS, 16),
    (C.VIRTIO_CRYPTO_AEAD_DATA_FLF_STATELESS, 32), (C.VIRTIO_CRYPTO_AKCIPHER_DATA_FLF_STATELESS, 28),
    (C.VIRTIO_CRYPTO_INHDR, 1), (C.VIRTIO_CRYPTO_CONFIG, 56),
])
def test_struct_sizes(struct_, size):
    assert struct_.size == size


def test_legacy_heads_are_72_bytes():
    assert C.CTRL_HEAD_LEGACY == C.DATA_HEAD_LEGACY == 72
    assert len(D.hash_create_session(C.VIRTIO_CRYPTO_HASH_SHA1, 20).readable) == 72
    assert len(D.destroy_session(C.VIRTIO_CRYPTO_AEAD_DESTROY_SESSION, 5).readable) == 72
    assert len(D.digest_data(C.VIRTIO_CRYPTO_HASH, 1, b"", 20).readable) == 72


def _reader(data: bytes) -> ChainReader:
    return ChainReader([memoryview(bytearray(data))])


def _parse_ctrl(codec: StandardCodec, data: bytes, capacity: int = 16):
    r = _reader(data)
    return codec.parse_ctrl(codec.parse_ctrl_header(r), r, capacity)


def test_parse_create_and_destroy():
    c = codec()
    req = _parse_ctrl(c, D.cipher_create_session(C.VIRTIO_CRYPTO_CIPHER_AES_CBC, b"k" * 16,
                                                 C.VIRTIO_CRYPTO_OP_DECRYPT).readable)
    assert req == CreateSession(Service.CIPHER, CipherParams("AES-CBC", b"k" * 16, Direction.DECRYPT))
    req = _parse_ctrl(c, D.chain_create_session(2, 2, 3, b"c" * 16, 1, 4, 32, b"a" * 7, aad_len=9).readable)
    assert req.params == ChainParams(ChainOrder.CIPHER_THEN_HASH, CipherParams("AES-CBC", b"c" * 16, Direction.ENCRYPT),
                                     MacParams("HMAC-SHA-256", 32, b"a" * 7), 9)
    req = _parse_ctrl(c, D.destroy_session(C.VIRTIO_CRYPTO_MAC_DESTROY_SESSION, 1 << 40).readable, 1)
    assert req == DestroySession(Service.MAC, 1 << 40)
    req = _parse_ctrl(c, D.akcipher_create_session(C.VIRTIO_CRYPTO_AKCIPHER_ECDSA, 2, b"der", curve=4).readable)
    assert req.params == AkcipherParams("ECDSA", KeyType.PRIVATE, b"der", curve="P-384")
    req = _parse_ctrl(c, D.akcipher_create_session(C.VIRTIO_CRYPTO_AKCIPHER_RSA, 1, b"der", padding=1,
                                                   hash_algo=C.VIRTIO_CRYPTO_RSA_NO_HASH).readable)
    assert req.params == AkcipherParams("RSA", KeyType.PUBLIC, b"der", padding=RsaPadding.PKCS1, hash_algo=None)


def test_unnamed_wire_values_reach_the_services_as_ints():
    """Numbers the standard profile does not name (or does not advertise) are not guessed at: the services answer
    them NOTSUPP or ERR, as the device test of malformed requests pins."""
    c = codec()
    req = _parse_ctrl(c, D.cipher_create_session(C.VIRTIO_CRYPTO_CIPHER_KASUMI_F8, b"k" * 16, 7).readable)
    assert req.params == CipherParams(C.VIRTIO_CRYPTO_CIPHER_KASUMI_F8, b"k" * 16, 7)
    req = _parse_ctrl(c, D.chain_create_session(9, 1, 3, b"c" * 16, 1, 99, 32).readable)
    assert req.params.order == 9 and req.params.auth.algo == 99
    req = _parse_ctrl(c, D.akcipher_create_session(C.VIRTIO_CRYPTO_AKCIPHER_RSA, 3, b"", padding=5,
                                                   hash_algo=C.VIRTIO_CRYPTO_RSA_MD2).readable)
    assert req.params == AkcipherParams("RSA", 3, b"", padding=5, hash_algo="MD2")


def test_parse_data_session_and_outputs():
    c = codec()
    req = c.parse_data(_reader(D.aead_data(C.VIRTIO_CRYPTO_AEAD_DECRYPT, 7, b"i" * 12, b"s" * 20, b"a" * 3,
                                           16, 4).readable), 5)
    assert req == DataRequest(Service.AEAD, 7, None, AeadOp(False, b"i" * 12, b"a" * 3, b"s" * 20, 4, 16))
    with pytest.raises(CryptoStatus) as e:  # 4 output bytes + status need 5
        c.parse_data(_reader(D.aead_data(C.VIRTIO_CRYPTO_AEAD_DECRYPT, 7, b"", b"", b"", 16, 4).readable), 4)
    assert e.value.status is Status.ERR
    verify = c.parse_data(_reader(D.akcipher_data(C.VIRTIO_CRYPTO_AKCIPHER_VERIFY, 1, b"sig", 0,
                                                  message=b"digest").readable), 1)
    assert verify.op == AkcipherOp(AkcipherOperation.VERIFY, b"sig", 0, b"digest")


def test_stateless_request_carries_named_parameters():
    c = codec(0b000011)  # REVISION_1 + CIPHER_STATELESS_MODE
    req = c.parse_data(_reader(D.cipher_data_stateless(C.VIRTIO_CRYPTO_CIPHER_DECRYPT, C.VIRTIO_CRYPTO_CIPHER_AES_CTR,
                                                       b"k" * 16, C.VIRTIO_CRYPTO_OP_DECRYPT, b"i" * 16,
                                                       b"s" * 5).readable), 6)
    assert (req.session_id, req.params) == (None, CipherParams("AES-CTR", b"k" * 16, Direction.DECRYPT))
    req = c.parse_data(_reader(D.aead_data(C.VIRTIO_CRYPTO_AEAD_ENCRYPT, 1, b"i" * 12, b"s", b"", 16, 17,
                                           revision_1=True).readable), 18)
    assert req.params is None and req.op.encrypt


def test_flag_is_ignored_without_revision_1():
    raw = bytearray(D.digest_data(C.VIRTIO_CRYPTO_HASH, 3, b"x", 20).readable)
    raw[16] = 0  # flag 0 would be "stateless" with REVISION_1
    assert codec().parse_data(_reader(bytes(raw)), 21).session_id == 3


def test_stateless_bits_need_revision_1():
    assert codec(0b111110).stateless == frozenset()
    assert codec(0b000101).stateless == {Service.HASH}


def test_key_limits_are_checked_before_reading():
    head = D.mac_create_session(C.VIRTIO_CRYPTO_MAC_HMAC_SHA1, 20, bytes(513)).readable[:72]
    with pytest.raises(CryptoStatus) as e:
        _parse_ctrl(codec(), head)  # no key bytes at all: the limit answers first
    assert e.value.status is Status.ERR and "limit" in e.value.why


def _writer(n: int) -> tuple[ChainWriter, bytearray]:
    out = bytearray(b"\xee" * n)
    return ChainWriter([memoryview(out)]), out


@pytest.mark.parametrize("features, status, wire", [
    (0, Status.OK, 0), (0, Status.ERR, 1), (0, Status.BADMSG, 2), (0, Status.NOTSUPP, 3), (0, Status.INVSESS, 4),
    (0, Status.NOSPC, 1), (1, Status.NOSPC, 5), (0, Status.KEY_REJECTED, 6),
])
def test_status_bytes(features, status, wire):
    """"Operation Status": the numbers written for each outcome; NOSPC only with REVISION_1, ERR without."""
    assert codec(features).wire_status(status) == wire


@pytest.mark.parametrize("features, wire", [(0, "01000000"), (1, "06000000")])
def test_a_refused_key_on_the_controlq(features, wire):
    """KEY_REJECTED at session creation is a refused key (AMB-KEYS): ERR without REVISION_1, KEY_REJECTED with it;
    on the dataq it stays the failed verification, 6 either way (test_status_bytes)."""
    w, out = _writer(16)
    assert codec(features).ctrl_outcome(w, C.VIRTIO_CRYPTO_AKCIPHER_CREATE_SESSION, Status.KEY_REJECTED, 9) == 16
    assert out == bytes.fromhex("0000000000000000" + wire + "00000000")


def test_outcome_bytes_and_used_lengths():
    """Literal outcome bytes: virtio_crypto_create_session_input is le64 session_id, le32 status, le32 padding;
    a destroy outcome is one status byte; a dataq status is the last writable byte."""
    c = codec()
    w, out = _writer(16)
    assert c.ctrl_outcome(w, C.VIRTIO_CRYPTO_HASH_CREATE_SESSION, Status.OK, 0x0102030405060708) == 16
    assert out == bytes.fromhex("0807060504030201" "00000000" "00000000")
    w, out = _writer(16)
    assert c.ctrl_outcome(w, C.VIRTIO_CRYPTO_HASH_CREATE_SESSION, Status.NOTSUPP, 7) == 16
    assert out == bytes.fromhex("0000000000000000" "03000000" "00000000")
    w, out = _writer(4)
    assert c.ctrl_outcome(w, C.VIRTIO_CRYPTO_HASH_DESTROY_SESSION, Status.OK, 0) == 1 and out == b"\x00\xee\xee\xee"
    w, out = _writer(8)
    assert c.ctrl_outcome(w, None, Status.ERR, 0) == 1 and out == b"\x01" + b"\xee" * 7
    w, out = _writer(6)
    assert c.data_outcome(w, None, Status.INVSESS, 0) == 6 and out == b"\x00" * 5 + b"\x04"
    hash_request = DataRequest(Service.HASH, 1, None, None)
    w, out = _writer(6)
    assert c.data_outcome(w, hash_request, Status.OK, 2) == 6 and out == b"\xee" * 5 + b"\x00"
    akcipher_request = DataRequest(Service.AKCIPHER, 1, None, None)
    w, out = _writer(6)
    assert c.data_outcome(w, akcipher_request, Status.OK, 2) == 3 and out == b"\xee" * 5 + b"\x00"


# ---- fuzz: never raise, never write outside the writable stream --------------------------------------------
_OPCODES = sorted({*C.CREATE_SESSION_OPCODES, *C.DESTROY_SESSION_OPCODES, *C.DATA_OPCODES, 0x0FFF})


@settings(max_examples=400, deadline=None)
@given(opcode=st.sampled_from(_OPCODES), body=st.binary(max_size=200), features=st.integers(0, 63),
       queue=st.sampled_from([0, 1]), capacity=st.integers(0, 80), small=st.booleans())
def test_fuzz_requests_always_complete(opcode, body, features, queue, capacity, small):
    dev = CryptoDevice(max_dataqueues=1, max_size=512)
    dev.activate(features)
    # small lengths make it likely that the declared lengths fit and a real operation runs
    if small:
        body = bytes(b % 24 for b in body)
    readable = opcode.to_bytes(4, "little") + body
    out = bytearray(b"\xee" * capacity)
    used = dev.handle(queue, DescriptorChain(0, [memoryview(bytearray(readable))], [memoryview(out)]))
    assert 0 <= used <= capacity
    if capacity:
        assert used > 0
