"""virtio-crypto device, in-process: chains over bytearrays handed to ``CryptoDevice.handle``.

First path exactly as the Linux ``virtio_crypto`` driver uses it (no feature bits): AES-CBC sessions
on the controlq (72-byte head, key, 16-byte session input), encryption/decryption on a dataq (72-byte
head, IV, src; dst, then the status byte last), destroy, INVSESS, and a status byte for every malformed
request. Known answers: NIST SP 800-38A F.2.1-F.2.6 (CBC-AES128/192/256 encrypt and decrypt).
"""
from __future__ import annotations

import struct

import pytest

from vfu_virtio.devices.crypto import CryptoDevice
from vfu_virtio.abi import crypto as C
from vfu_virtio.client import crypto as D
from vfu_virtio.virtio.chain import DescriptorChain

# ---- NIST SP 800-38A, Appendix F.2 (CBC) --------------------------------------------------------------
SP800_38A_IV = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
SP800_38A_PLAIN = bytes.fromhex(
    "6bc1bee22e409f96e93d7e117393172a" "ae2d8a571e03ac9c9eb76fac45af8e51"
    "30c81c46a35ce411e5fbc1191a0a52ef" "f69f2445df4f9b17ad2b417be66c3710")
SP800_38A_CBC = {  # F.2.1/F.2.2 (AES-128), F.2.3/F.2.4 (AES-192), F.2.5/F.2.6 (AES-256)
    "F.2.1-2": ("2b7e151628aed2a6abf7158809cf4f3c",
                "7649abac8119b246cee98e9b12e9197d" "5086cb9b507219ee95db113a917678b2"
                "73bed6b8e3c1743b7116e69e22229516" "3ff1caa1681fac09120eca307586e1a7"),
    "F.2.3-4": ("8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b",
                "4f021db243bc633d7178183a9fa071e8" "b4d9ada9ad7dedf4e5e738763f69145a"
                "571b242012fb7ae07fa9baac3df102e0" "08b0e27988598881d920a9e64f5615cd"),
    "F.2.5-6": ("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
                "f58c4c04d6e5f1ba779eabfb5f7bfbd6" "9cfc4e967edb808d679f777bc6702c7d"
                "39f23369a9d9bacfa530e26304231461" "b2eb05e2c39be9fcda6c19078c6a9d1b"),
}


def chain(readable: list[bytes], writable: list[int]) -> tuple[DescriptorChain, list[bytearray]]:
    """A chain whose readable descriptors hold ``readable`` and whose writable ones have the given sizes
    (pre-filled with 0xEE so unwritten bytes show)."""
    outs = [bytearray(b"\xee" * n) for n in writable]
    return DescriptorChain(0, [memoryview(bytearray(b)) for b in readable], [memoryview(o) for o in outs]), outs


def split(data: bytes, *cuts: int) -> list[bytes]:
    """``data`` cut at the given offsets."""
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:])]


class Linux:
    """Plays the Linux driver against a device: descriptors exactly as virtio_crypto_skcipher_algs.c makes them."""

    def __init__(self, device: CryptoDevice):
        self.dev = device
        self.ctrlq = device.max_dataqueues

    def create(self, req: D.Request, key_len: int) -> tuple[int, int, int, bytes]:
        """header+op_flf (72) | key ; session_input (16). Returns (session_id, status, used, outcome)."""
        head = req.readable[:72]
        ch, outs = chain([head, req.readable[72:]] if key_len else [head], [16])
        used = self.dev.handle(self.ctrlq, ch)
        sid, status = D.session_input(outs[0])
        return sid, status, used, bytes(outs[0])

    def destroy(self, opcode: int, session_id: int) -> tuple[int, int]:
        ch, outs = chain([D.destroy_session(opcode, session_id).readable], [1])
        used = self.dev.handle(self.ctrlq, ch)
        return outs[0][0], used

    def cipher(self, opcode: int, session_id: int, iv: bytes, src: bytes, dst_sizes: list[int] | None = None,
               queue: int = 0) -> tuple[int, bytes, int]:
        """head (72) | iv | src ; dst sg list | status (1). Returns (status, dst bytes, used)."""
        dst_sizes = dst_sizes or [len(src)]
        req = D.cipher_data(opcode, session_id, iv, src, dst_len=min(len(src), sum(dst_sizes)))
        ch, outs = chain([req.readable[:72], iv, src], [*dst_sizes, 1])
        used = self.dev.handle(queue, ch)
        return outs[-1][0], b"".join(bytes(o) for o in outs[:-1]), used


@pytest.fixture
def dev():
    return CryptoDevice(max_dataqueues=2, max_sessions=8, max_size=4096)


@pytest.fixture
def linux(dev):
    return Linux(dev)


# ---- config space and features ------------------------------------------------------------------------
def test_config_space_layout():
    dev = CryptoDevice(max_dataqueues=3, max_size=12345, max_cipher_key_len=64, max_auth_key_len=512)
    cfg = dev.config_space()
    assert len(cfg) == 56
    f = struct.unpack("<12IQ", cfg)
    assert f[0] == C.VIRTIO_CRYPTO_S_HW_READY
    assert f[1] == 3
    assert f[2] == 0b11111  # CIPHER, HASH, MAC, AEAD, AKCIPHER; no IPSEC
    assert f[3] & (1 << C.VIRTIO_CRYPTO_CIPHER_AES_CBC)
    assert not f[3] & 1 and not f[5] & 1 and not f[6] & 1 and not f[8] & 1 and not f[11] & 1  # NO_* bits
    assert not f[3] & (1 << C.VIRTIO_CRYPTO_CIPHER_3DES_CTR)  # OpenSSL has no 3DES-CTR: not advertised
    assert f[9] == 64 and f[10] == 512
    assert f[11] == (1 << C.VIRTIO_CRYPTO_AKCIPHER_RSA) | (1 << C.VIRTIO_CRYPTO_AKCIPHER_ECDSA)
    assert f[12] == 12345
    assert dev.num_queues == 4 and dev.device_id == 20


def test_features_offered():
    assert CryptoDevice().device_features() == 0b111111


@pytest.mark.parametrize("n", [0, 65])
def test_dataqueue_bounds(n):
    with pytest.raises(ValueError):
        CryptoDevice(max_dataqueues=n)


# ---- the Linux first path -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(SP800_38A_CBC))
def test_sp800_38a_cbc_encrypt_decrypt(linux, name):
    key_hex, ct_hex = SP800_38A_CBC[name]
    key, ct = bytes.fromhex(key_hex), bytes.fromhex(ct_hex)
    enc, st, used, _ = linux.create(D.cipher_create_session(C.VIRTIO_CRYPTO_CIPHER_AES_CBC, key,
                                                            C.VIRTIO_CRYPTO_OP_ENCRYPT), len(key))
    assert (st, used) == (C.VIRTIO_CRYPTO_OK, 16) and enc != 0
    dec, st, used, _ = linux.create(D.cipher_create_session(C.VIRTIO_CRYPTO_CIPHER_AES_CBC, key,
                                                            C.VIRTIO_CRYPTO_OP_DECRYPT), len(key))
    assert st == C.VIRTIO_CRYPTO_OK and dec not in (0, enc)
    status, out, used = linux.cipher(C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, enc, SP800_38A_IV, SP800_38A_PLAIN)
    assert (status, out, used) == (C.VIRTIO_CRYPTO_OK, ct, len(ct) + 1)
    status, out, used = linux.cipher(C.VIRTIO_CRYPTO_CIPHER_DECRYPT, dec, SP800_38A_IV, ct)
    assert (status, out, used) == (C.VIRTIO_CRYPTO_OK, SP800_38A_PLAIN, len(ct) + 1)
    assert linux.destroy(C.VIRTIO_CRYPTO_CIPHER_DESTROY_SESSION, enc) == (C.VIRTIO_CRYPTO_OK, 1)
    assert linux.destroy(C.VIRTIO_CRYPTO_CIPHER_DESTROY_SESSION, dec) == (C.VIRTIO_CRYPTO_OK, 1)


def test_create_session_wire_bytes(dev):
    """The 72-byte head built by hand from the standard's offsets, not from the codec's structs."""
    key = bytes(range(16))
    head = bytearray(72)
    struct.pack_into("<IIII", head, 0, C.VIRTIO_CRYPTO_CIPHER_CREATE_SESSION, C.VIRTIO_CRYPTO_CIPHER_AES_CBC, 0, 0)
    struct.pack_into("<III", head, 16, C.VIRTIO_CRYPTO_CIPHER_AES_CBC, 16, C.VIRTIO_CRYPTO_OP_ENCRYPT)
    struct.pack_into("<I", head, 64, C.VIRTIO_CRYPTO_SYM_OP_CIPHER)
    ch, outs = chain([bytes(head), key], [16])
    assert dev.handle(2, ch) == 16
    assert bytes(outs[0]) == struct.pack("<QII", 1, 0, 0)
    data = bytearray(72)
    struct.pack_into("<IIQII", data, 0, C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, 0, 1, 0, 0)
    struct.pack_into("<III", data, 24, 16, 16, 16)
    struct.pack_into("<I", data, 64, C.VIRTIO_CRYPTO_SYM_OP_CIPHER)
    ch, outs = chain([bytes(data), bytes(16), bytes(16)], [16, 1])
    assert dev.handle(0, ch) == 17
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    enc = Cipher(algorithms.AES(key), modes.CBC(bytes(16))).encryptor()
    assert bytes(outs[0]) == enc.update(bytes(16)) + enc.finalize()
    assert outs[1] == b"\x00"


@pytest.mark.parametrize("readable_cuts, writable", [
    ((), [65]),                       # everything merged: one readable, one writable descriptor
    ((1, 30, 71, 72, 80), [3, 61, 1]),  # head split mid-field, IV split, dst split
    ((72, 88), [64, 1]),              # Linux
    ((5, 100), [10, 10, 10, 35]),     # status shares the last descriptor with dst
])
def test_descriptor_split_does_not_matter(dev, readable_cuts, writable):
    key, ct = (bytes.fromhex(x) for x in SP800_38A_CBC["F.2.1-2"])
    linux = Linux(dev)
    sid, st, _, _ = linux.create(D.cipher_create_session(C.VIRTIO_CRYPTO_CIPHER_AES_CBC, key,
                                                         C.VIRTIO_CRYPTO_OP_ENCRYPT), 16)
    req = D.cipher_data(C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, sid, SP800_38A_IV, SP800_38A_PLAIN)
    ch, outs = chain(split(req.readable, *readable_cuts), writable)
    assert dev.handle(1, ch) == 65
    w = b"".join(bytes(o) for o in outs)
    assert w[:64] == ct and w[64] == C.VIRTIO_CRYPTO_OK


def test_oversized_dst_is_left_alone_and_status_last(linux):
    """Linux passes its whole dst scatterlist: the status goes at the END of the writable stream, and the
    bytes between the result and the status are not written (the kernel's self-test scatterlists map one
    page twice there; zero padding clobbered the result in a real guest, "two even aligned splits")."""
    key, ct = (bytes.fromhex(x) for x in SP800_38A_CBC["F.2.1-2"])
    sid, *_ = linux.create(D.cipher_create_session(C.VIRTIO_CRYPTO_CIPHER_AES_CBC, key, C.VIRTIO_CRYPTO_OP_ENCRYPT), 16)
    req = D.cipher_data(C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, sid, SP800_38A_IV, SP800_38A_PLAIN, dst_len=64)
    ch, outs = chain([req.readable], [100])
    outs[0][:] = b"\xee" * 100
    assert linux.dev.handle(0, ch) == 100
    assert bytes(outs[0][:64]) == ct and bytes(outs[0][64:99]) == b"\xee" * 35 and outs[0][99] == 0


def test_sessions_work_from_every_dataqueue(linux):
    key, ct = (bytes.fromhex(x) for x in SP800_38A_CBC["F.2.1-2"])
    sid, *_ = linux.create(D.cipher_create_session(C.VIRTIO_CRYPTO_CIPHER_AES_CBC, key, C.VIRTIO_CRYPTO_OP_ENCRYPT), 16)
    for q in (0, 1):
        assert linux.cipher(C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, sid, SP800_38A_IV, SP800_38A_PLAIN, queue=q)[:2] == \
            (C.VIRTIO_CRYPTO_OK, ct)


def test_destroyed_and_unknown_sessions(linux):
    key = bytes(16)
    sid, *_ = linux.create(D.cipher_create_session(C.VIRTIO_CRYPTO_CIPHER_AES_CBC, key, C.VIRTIO_CRYPTO_OP_ENCRYPT), 16)
    assert linux.destroy(C.VIRTIO_CRYPTO_CIPHER_DESTROY_SESSION, sid) == (C.VIRTIO_CRYPTO_OK, 1)
    status, out, used = linux.cipher(C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, sid, bytes(16), bytes(32))
    assert (status, out, used) == (C.VIRTIO_CRYPTO_INVSESS, bytes(32), 33)
    assert linux.cipher(C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, 12345, bytes(16), bytes(16))[0] == C.VIRTIO_CRYPTO_INVSESS
    assert linux.destroy(C.VIRTIO_CRYPTO_CIPHER_DESTROY_SESSION, sid) == (C.VIRTIO_CRYPTO_ERR, 1)
    assert linux.destroy(C.VIRTIO_CRYPTO_CIPHER_DESTROY_SESSION, 0) == (C.VIRTIO_CRYPTO_ERR, 1)


def test_session_of_another_service_is_invalid(linux):
    sid, *_ = linux.create(D.cipher_create_session(C.VIRTIO_CRYPTO_CIPHER_AES_CBC, bytes(16),
                                                   C.VIRTIO_CRYPTO_OP_ENCRYPT), 16)
    assert linux.destroy(C.VIRTIO_CRYPTO_HASH_DESTROY_SESSION, sid) == (C.VIRTIO_CRYPTO_ERR, 1)
    ch, outs = chain([D.digest_data(C.VIRTIO_CRYPTO_HASH, sid, b"abc", 32).readable], [33])
    assert linux.dev.handle(0, ch) == 33 and outs[0][32] == C.VIRTIO_CRYPTO_INVSESS


def test_session_ids_are_never_reused_and_reset_drops_sessions(linux):
    mk = D.cipher_create_session(C.VIRTIO_CRYPTO_CIPHER_AES_CBC, bytes(16), C.VIRTIO_CRYPTO_OP_ENCRYPT)
    a = linux.create(mk, 16)[0]
    linux.destroy(C.VIRTIO_CRYPTO_CIPHER_DESTROY_SESSION, a)
    b = linux.create(mk, 16)[0]
    assert b != a
    linux.dev.reset()
    assert linux.cipher(C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, b, bytes(16), bytes(16))[0] == C.VIRTIO_CRYPTO_INVSESS
    assert linux.create(mk, 16)[0] not in (a, b)


def test_session_cap_answers_err_without_revision_1(dev):
    linux = Linux(dev)
    mk = D.cipher_create_session(C.VIRTIO_CRYPTO_CIPHER_AES_CBC, bytes(16), C.VIRTIO_CRYPTO_OP_ENCRYPT)
    ids = [linux.create(mk, 16) for _ in range(8)]
    assert all(st == C.VIRTIO_CRYPTO_OK for _, st, _, _ in ids)
    sid, st, used, outcome = linux.create(mk, 16)
    assert (sid, st, used) == (0, C.VIRTIO_CRYPTO_ERR, 16) and outcome == struct.pack("<QII", 0, 1, 0)
    linux.destroy(C.VIRTIO_CRYPTO_CIPHER_DESTROY_SESSION, ids[0][0])
    assert linux.create(mk, 16)[1] == C.VIRTIO_CRYPTO_OK


# ---- malformed controlq requests: always a status ---------------------------------------------------------
def _ctrl(dev, readable: list[bytes], writable: int = 16) -> tuple[int, bytes]:
    ch, outs = chain(readable, [writable])
    used = dev.handle(dev.max_dataqueues, ch)
    return used, bytes(outs[0])


def _cbc_create(key=bytes(16), op=C.VIRTIO_CRYPTO_OP_ENCRYPT, algo=C.VIRTIO_CRYPTO_CIPHER_AES_CBC):
    return D.cipher_create_session(algo, key, op).readable


@pytest.mark.parametrize("readable, status", [
    ([b""], C.VIRTIO_CRYPTO_ERR),                                      # no header
    ([_cbc_create()[:15]], C.VIRTIO_CRYPTO_ERR),                       # truncated header
    ([_cbc_create()[:71]], C.VIRTIO_CRYPTO_ERR),                       # truncated op_flf
    ([_cbc_create()[:72 + 15]], C.VIRTIO_CRYPTO_ERR),                  # key shorter than key_len
    ([_cbc_create(key=bytes(65))], C.VIRTIO_CRYPTO_ERR),               # key over max_cipher_key_len (64)
    ([_cbc_create(key=bytes(17))], C.VIRTIO_CRYPTO_ERR),               # illegal AES key size
    ([_cbc_create(key=b"")], C.VIRTIO_CRYPTO_ERR),                     # no key
    ([_cbc_create(op=3)], C.VIRTIO_CRYPTO_ERR),                        # op neither ENCRYPT nor DECRYPT
    ([_cbc_create(algo=C.VIRTIO_CRYPTO_CIPHER_KASUMI_F8)], C.VIRTIO_CRYPTO_NOTSUPP),
    ([_cbc_create(algo=99)], C.VIRTIO_CRYPTO_NOTSUPP),
    ([_cbc_create(algo=C.VIRTIO_CRYPTO_CIPHER_3DES_CTR, key=bytes(24))], C.VIRTIO_CRYPTO_NOTSUPP),
    ([struct.pack("<IIII", 0x0777, 0, 0, 0) + bytes(56)], C.VIRTIO_CRYPTO_NOTSUPP),  # unknown opcode
    ([struct.pack("<IIII", C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, 0, 0, 0) + bytes(56)], C.VIRTIO_CRYPTO_NOTSUPP),
    ([_cbc_create()[:64] + struct.pack("<II", C.VIRTIO_CRYPTO_SYM_OP_NONE, 0)], C.VIRTIO_CRYPTO_NOTSUPP),
    ([_cbc_create()[:64] + struct.pack("<II", 7, 0)], C.VIRTIO_CRYPTO_NOTSUPP),
])
def test_malformed_create_session(dev, readable, status):
    used, out = _ctrl(dev, readable)
    assert (used, out) == (16, struct.pack("<QII", 0, status, 0))
    assert len(dev.sessions) == 0


def test_create_with_short_outcome_buffer_answers_one_byte(dev):
    used, out = _ctrl(dev, [_cbc_create()], writable=4)
    assert (used, out) == (1, bytes([C.VIRTIO_CRYPTO_ERR]) + b"\xee" * 3)
    assert len(dev.sessions) == 0


def test_malformed_destroy(dev):
    destroy = D.destroy_session(C.VIRTIO_CRYPTO_CIPHER_DESTROY_SESSION, 1).readable
    assert _ctrl(dev, [destroy[:20]], writable=1) == (1, bytes([C.VIRTIO_CRYPTO_ERR]))
    assert _ctrl(dev, [destroy[:71]], writable=1) == (1, bytes([C.VIRTIO_CRYPTO_ERR]))


def test_no_writable_byte_is_completed_silently(dev):
    ch, _ = chain([_cbc_create()], [])
    assert dev.handle(dev.max_dataqueues, ch) == 0
    assert len(dev.sessions) == 0
    ch, _ = chain([D.cipher_data(C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, 1, bytes(16), bytes(16)).readable], [])
    assert dev.handle(0, ch) == 0


# ---- malformed dataq requests -----------------------------------------------------------------------------
@pytest.fixture
def enc_sid(linux):
    key = bytes.fromhex(SP800_38A_CBC["F.2.1-2"][0])
    return linux.create(D.cipher_create_session(C.VIRTIO_CRYPTO_CIPHER_AES_CBC, key, C.VIRTIO_CRYPTO_OP_ENCRYPT), 16)[0]


def _data(dev, readable: bytes, writable: int) -> tuple[int, bytes]:
    ch, outs = chain([readable], [writable])
    return dev.handle(0, ch), bytes(outs[0])


def test_malformed_data_requests(dev, enc_sid):
    enc = C.VIRTIO_CRYPTO_CIPHER_ENCRYPT
    good = D.cipher_data(enc, enc_sid, SP800_38A_IV, SP800_38A_PLAIN).readable

    def status(readable, writable=65):
        used, out = _data(dev, readable, writable)
        assert used == writable and out[:-1] == bytes(writable - 1)  # outputs zeroed on failure
        return out[-1]

    assert _data(dev, good, 65)[1][-1] == C.VIRTIO_CRYPTO_OK
    assert status(good[:23]) == C.VIRTIO_CRYPTO_ERR                       # truncated header
    assert status(good[:71]) == C.VIRTIO_CRYPTO_ERR                       # truncated op_flf
    assert status(good[:72 + 15]) == C.VIRTIO_CRYPTO_ERR                  # truncated IV
    assert status(good[:-1]) == C.VIRTIO_CRYPTO_ERR                       # truncated src
    assert status(good, writable=64) == C.VIRTIO_CRYPTO_ERR               # dst + status do not fit
    assert status(D.cipher_data(enc, enc_sid, bytes(8), SP800_38A_PLAIN).readable) == C.VIRTIO_CRYPTO_ERR  # iv_len
    assert status(D.cipher_data(enc, enc_sid, SP800_38A_IV, bytes(15)).readable, 16) == C.VIRTIO_CRYPTO_ERR
    assert status(D.cipher_data(enc, enc_sid, SP800_38A_IV, bytes(32), dst_len=16).readable) == C.VIRTIO_CRYPTO_ERR
    assert status(D.cipher_data(C.VIRTIO_CRYPTO_CIPHER_DECRYPT, enc_sid, SP800_38A_IV, bytes(16)).readable,
                  17) == C.VIRTIO_CRYPTO_ERR                              # direction differs from the session
    assert status(struct.pack("<IIQII", 0x0999, 0, enc_sid, 0, 0) + bytes(48)) == C.VIRTIO_CRYPTO_NOTSUPP
    ctrl_opcode = struct.pack("<IIQII", C.VIRTIO_CRYPTO_CIPHER_CREATE_SESSION, 0, enc_sid, 0, 0) + bytes(48)
    assert status(ctrl_opcode) == C.VIRTIO_CRYPTO_NOTSUPP
    wrong_op_type = good[:64] + struct.pack("<I", C.VIRTIO_CRYPTO_SYM_OP_ALGORITHM_CHAINING) + good[68:]
    assert status(wrong_op_type) == C.VIRTIO_CRYPTO_ERR                   # session is plain CIPHER
    none_op_type = good[:64] + struct.pack("<I", C.VIRTIO_CRYPTO_SYM_OP_NONE) + good[68:]
    assert status(none_op_type) == C.VIRTIO_CRYPTO_ERR


def test_max_size_limits_variable_length_fields(dev, enc_sid):
    """max_size 4096: iv + src + dst of 16 + 2032 + 2032 fits, one block more does not (AMB-13)."""
    ok = D.cipher_data(C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, enc_sid, SP800_38A_IV, bytes(2032)).readable
    assert _data(dev, ok, 2033)[1][-1] == C.VIRTIO_CRYPTO_OK
    big = D.cipher_data(C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, enc_sid, SP800_38A_IV, bytes(2048)).readable
    assert _data(dev, big, 2049)[1][-1] == C.VIRTIO_CRYPTO_ERR


def test_empty_source_is_ok(dev, enc_sid):
    req = D.cipher_data(C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, enc_sid, SP800_38A_IV, b"")
    assert _data(dev, req.readable, 1) == (1, b"\x00")
