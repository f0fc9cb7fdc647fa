"""The crypto wire codec alone: struct sizes from the standard, parse results as plain values, and a fuzz
property that no byte sequence makes the device raise or write outside its writable stream."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vfu_virtio.devices.crypto import CryptoDevice
from vfu_virtio.devices.crypto import codec as K
from vfu_virtio.devices.crypto import constants as C
from vfu_virtio.devices.crypto import driver as D
from vfu_virtio.devices.crypto.errors import CryptoStatus
from vfu_virtio.virtio.chain import ChainReader, DescriptorChain

LIMITS = K.Limits(max_size=4096, max_cipher_key_len=64, max_auth_key_len=512)


@pytest.mark.parametrize("struct_, size", [
    (K.VIRTIO_CRYPTO_CTRL_HEADER, 16), (K.VIRTIO_CRYPTO_OP_HEADER, 24),
    (K.VIRTIO_CRYPTO_SYM_CREATE_SESSION_FLF, 56), (K.VIRTIO_CRYPTO_ALG_CHAIN_SESSION_FLF, 48),
    (K.VIRTIO_CRYPTO_CIPHER_SESSION_FLF, 16), (K.VIRTIO_CRYPTO_HASH_CREATE_SESSION_FLF, 8),
    (K.VIRTIO_CRYPTO_MAC_CREATE_SESSION_FLF, 16), (K.VIRTIO_CRYPTO_AEAD_CREATE_SESSION_FLF, 24),
    (K.VIRTIO_CRYPTO_AKCIPHER_CREATE_SESSION_FLF, 56), (K.VIRTIO_CRYPTO_DESTROY_SESSION_FLF, 8),
    (K.VIRTIO_CRYPTO_CREATE_SESSION_INPUT, 16), (K.VIRTIO_CRYPTO_DESTROY_SESSION_INPUT, 1),
    (K.VIRTIO_CRYPTO_SYM_DATA_FLF, 48), (K.VIRTIO_CRYPTO_ALG_CHAIN_DATA_FLF, 40),
    (K.VIRTIO_CRYPTO_CIPHER_DATA_FLF, 16), (K.VIRTIO_CRYPTO_HASH_DATA_FLF, 8), (K.VIRTIO_CRYPTO_AEAD_DATA_FLF, 24),
    (K.VIRTIO_CRYPTO_AKCIPHER_DATA_FLF, 8), (K.VIRTIO_CRYPTO_SYM_DATA_FLF_STATELESS, 76),
    (K.VIRTIO_CRYPTO_ALG_CHAIN_DATA_FLF_STATELESS, 72), (K.VIRTIO_CRYPTO_CIPHER_DATA_FLF_STATELESS, 24),
    (K.VIRTIO_CRYPTO_HASH_DATA_FLF_STATELESS, 16), (K.VIRTIO_CRYPTO_MAC_DATA_FLF_STATELESS, 16),
    (K.VIRTIO_CRYPTO_AEAD_DATA_FLF_STATELESS, 32), (K.VIRTIO_CRYPTO_AKCIPHER_DATA_FLF_STATELESS, 28),
    (K.VIRTIO_CRYPTO_INHDR, 1),
])
def test_struct_sizes(struct_, size):
    assert struct_.size == size


def test_legacy_heads_are_72_bytes():
    assert D.CTRL_HEAD_LEGACY == D.DATA_HEAD_LEGACY == 72
    assert len(D.hash_create_session(C.VIRTIO_CRYPTO_HASH_SHA1, 20).readable) == 72
    assert len(D.destroy_session(C.VIRTIO_CRYPTO_AEAD_DESTROY_SESSION, 5).readable) == 72
    assert len(D.digest_data(C.VIRTIO_CRYPTO_HASH, 1, b"", 20).readable) == 72


def _reader(data: bytes) -> ChainReader:
    return ChainReader([memoryview(bytearray(data))])


def _parse_ctrl(codec: K.StandardCodec, data: bytes):
    r = _reader(data)
    return codec.parse_ctrl(codec.parse_ctrl_header(r), r)


def test_parse_create_and_destroy():
    codec = K.StandardCodec(0, LIMITS)
    req = _parse_ctrl(codec, D.cipher_create_session(C.VIRTIO_CRYPTO_CIPHER_AES_CBC, b"k" * 16,
                                                     C.VIRTIO_CRYPTO_OP_DECRYPT).readable)
    assert req == K.CreateSession(C.VIRTIO_CRYPTO_SERVICE_CIPHER, C.VIRTIO_CRYPTO_SYM_OP_CIPHER,
                                  K.CipherParams(C.VIRTIO_CRYPTO_CIPHER_AES_CBC, b"k" * 16, C.VIRTIO_CRYPTO_OP_DECRYPT))
    req = _parse_ctrl(codec, D.chain_create_session(2, 2, 3, b"c" * 16, 1, 4, 32, b"a" * 7, aad_len=9).readable)
    assert req.params == K.ChainParams(2, 2, K.CipherParams(3, b"c" * 16, 1), K.MacParams(4, 32, b"a" * 7), 9)
    req = _parse_ctrl(codec, D.destroy_session(C.VIRTIO_CRYPTO_MAC_DESTROY_SESSION, 1 << 40).readable)
    assert req == K.DestroySession(C.VIRTIO_CRYPTO_SERVICE_MAC, 1 << 40)
    req = _parse_ctrl(codec, D.akcipher_create_session(C.VIRTIO_CRYPTO_AKCIPHER_ECDSA, 2, b"der", curve=4).readable)
    assert req.params == K.AkcipherParams(C.VIRTIO_CRYPTO_AKCIPHER_ECDSA, 2, b"der", curve=4)


def test_parse_data_session_and_outputs():
    codec = K.StandardCodec(0, LIMITS)
    req = codec.parse_data(_reader(D.aead_data(C.VIRTIO_CRYPTO_AEAD_DECRYPT, 7, b"i" * 12, b"s" * 20, b"a" * 3,
                                               16, 4).readable), 5)
    assert req == K.DataRequest(C.VIRTIO_CRYPTO_SERVICE_AEAD, C.VIRTIO_CRYPTO_AEAD_DECRYPT, 7, None, 0,
                                K.AeadOp(False, b"i" * 12, b"a" * 3, b"s" * 20, 4, 16), 4)
    with pytest.raises(CryptoStatus) as e:  # 4 output bytes + status need 5
        codec.parse_data(_reader(D.aead_data(C.VIRTIO_CRYPTO_AEAD_DECRYPT, 7, b"", b"", b"", 16, 4).readable), 4)
    assert e.value.status == C.VIRTIO_CRYPTO_ERR
    verify = codec.parse_data(_reader(D.akcipher_data(C.VIRTIO_CRYPTO_AKCIPHER_VERIFY, 1, b"sig", 0,
                                                      message=b"digest").readable), 1)
    assert verify.op == K.AkcipherOp(C.VIRTIO_CRYPTO_AKCIPHER_VERIFY, b"sig", 0, b"digest") and verify.out_len == 0


def test_flag_is_ignored_without_revision_1():
    codec = K.StandardCodec(0, LIMITS)
    raw = bytearray(D.digest_data(C.VIRTIO_CRYPTO_HASH, 3, b"x", 20).readable)
    raw[16] = 0  # flag 0 would be "stateless" with REVISION_1
    assert codec.parse_data(_reader(bytes(raw)), 21).session_id == 3


def test_stateless_bits_need_revision_1():
    assert K.StandardCodec(0b111110, LIMITS).stateless == frozenset()
    assert K.StandardCodec(0b000101, LIMITS).stateless == {C.VIRTIO_CRYPTO_SERVICE_HASH}


def test_key_limits_are_checked_before_reading():
    codec = K.StandardCodec(0, LIMITS)
    head = D.mac_create_session(C.VIRTIO_CRYPTO_MAC_HMAC_SHA1, 20, bytes(513)).readable[:72]
    with pytest.raises(CryptoStatus) as e:
        _parse_ctrl(codec, head)  # no key bytes at all: the limit answers first
    assert e.value.status == C.VIRTIO_CRYPTO_ERR and "limit" in e.value.why


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
