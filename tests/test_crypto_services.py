"""virtio-crypto services beyond the Linux path, in-process: algorithm chaining, HASH/MAC/AEAD/AKCIPHER
rules and statuses, REVISION_1 (unpadded heads, NOSPC) and stateless mode, and a property test that the
descriptor split never changes a result.

Expected values are computed independently with ``cryptography`` in the test; known-answer vectors live in
``test_crypto_vectors.py``.
"""
from __future__ import annotations

import struct

import pytest
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305
from hypothesis import given, settings
from hypothesis import strategies as st

from vfu_virtio.devices.crypto import CryptoDevice
from vfu_virtio.abi import crypto as C
from vfu_virtio.client import crypto as D
from vfu_virtio.devices.crypto.profiles.standard import PROFILE
from vfu_virtio.devices.crypto.values import Service
from vfu_virtio.virtio.chain import DescriptorChain

from crypto_harness import Completion, InProcess

OK, ERR, BADMSG, NOTSUPP, INVSESS, NOSPC, KEY_REJECTED = 0, 1, 2, 3, 4, 5, 6
#: the standard's cipher numbers the device advertises (3DES-CTR is missing where OpenSSL lacks it)
CIPHERS = PROFILE.advertised[Service.CIPHER]
ENC, DEC = C.VIRTIO_CRYPTO_OP_ENCRYPT, C.VIRTIO_CRYPTO_OP_DECRYPT
REV1 = 1 << C.VIRTIO_CRYPTO_F_REVISION_1
ALL_STATELESS = REV1 | sum(1 << b for b in range(1, 6))
KEY16, IV16 = bytes(range(16)), bytes(range(100, 116))


def aes_cbc(key, iv, data, encrypt=True):
    c = Cipher(algorithms.AES(key), modes.CBC(iv))
    ctx = c.encryptor() if encrypt else c.decryptor()
    return ctx.update(data) + ctx.finalize()


def hmac_sha256(key, data):
    m = hmac.HMAC(key, hashes.SHA256())
    m.update(data)
    return m.finalize()


def sha1(data):
    d = hashes.Hash(hashes.SHA1())
    d.update(data)
    return d.finalize()


@pytest.fixture
def drv():
    return InProcess(CryptoDevice(max_dataqueues=2, max_sessions=16, max_size=1 << 16))


@pytest.fixture
def rev1():
    return InProcess(CryptoDevice(max_dataqueues=1, max_sessions=4, max_size=1 << 16), features=REV1)


@pytest.fixture
def stateless():
    return InProcess(CryptoDevice(max_dataqueues=1, max_sessions=4, max_size=1 << 16), features=ALL_STATELESS)


# ---- algorithm chaining ------------------------------------------------------------------------------------
SRC = bytes(range(64))
AAD = b"associated"


def test_chain_cipher_then_mac(drv):
    """CIPHER_THEN_HASH, AUTH: dst = src with [16, 48) encrypted; MAC over aad || dst[0, 64)."""
    sid, st = drv.create(D.chain_create_session(
        C.VIRTIO_CRYPTO_SYM_ALG_CHAIN_ORDER_CIPHER_THEN_HASH, C.VIRTIO_CRYPTO_SYM_HASH_MODE_AUTH,
        C.VIRTIO_CRYPTO_CIPHER_AES_CBC, KEY16, ENC, C.VIRTIO_CRYPTO_MAC_HMAC_SHA_256, 16, auth_key=b"k" * 20,
        aad_len=len(AAD)))
    assert st == OK
    done = drv.data(D.chain_data(C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, sid, IV16, SRC, AAD, 16, 32, 0, 64, 16))
    dst = SRC[:16] + aes_cbc(KEY16, IV16, SRC[16:48]) + SRC[48:]
    assert (done.status, done.out, done.used) == (OK, dst + hmac_sha256(b"k" * 20, AAD + dst)[:16], 64 + 16 + 1)


def test_chain_hash_then_cipher_plain(drv):
    """HASH_THEN_CIPHER, PLAIN SHA-1: the digest covers aad || the source region; decrypt direction."""
    sid, st = drv.create(D.chain_create_session(
        C.VIRTIO_CRYPTO_SYM_ALG_CHAIN_ORDER_HASH_THEN_CIPHER, C.VIRTIO_CRYPTO_SYM_HASH_MODE_PLAIN,
        C.VIRTIO_CRYPTO_CIPHER_AES_CBC, KEY16, DEC, C.VIRTIO_CRYPTO_HASH_SHA1, 20))
    assert st == OK
    done = drv.data(D.chain_data(C.VIRTIO_CRYPTO_CIPHER_DECRYPT, sid, IV16, SRC, AAD, 0, 64, 8, 40, 20,
                                 dst_len=70))
    dst = aes_cbc(KEY16, IV16, SRC, encrypt=False)
    assert done.status == OK
    assert done.out == dst + bytes(6) + sha1(AAD + SRC[8:48])


def test_chain_without_aad(drv):
    sid, _ = drv.create(D.chain_create_session(
        C.VIRTIO_CRYPTO_SYM_ALG_CHAIN_ORDER_CIPHER_THEN_HASH, C.VIRTIO_CRYPTO_SYM_HASH_MODE_PLAIN,
        C.VIRTIO_CRYPTO_CIPHER_AES_CTR, KEY16, ENC, C.VIRTIO_CRYPTO_HASH_SHA1, 20))
    done = drv.data(D.chain_data(C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, sid, IV16, SRC[:10], b"", 0, 10, 0, 10, 20))
    ctx = Cipher(algorithms.AES(KEY16), modes.CTR(IV16)).encryptor()
    ct = ctx.update(SRC[:10])
    assert (done.status, done.out) == (OK, ct + sha1(ct))


@pytest.mark.parametrize("order, hash_mode, status", [
    (C.VIRTIO_CRYPTO_SYM_ALG_CHAIN_ORDER_CIPHER_THEN_HASH, C.VIRTIO_CRYPTO_SYM_HASH_MODE_NESTED, NOTSUPP),
    (C.VIRTIO_CRYPTO_SYM_ALG_CHAIN_ORDER_CIPHER_THEN_HASH, 9, ERR),
    (3, C.VIRTIO_CRYPTO_SYM_HASH_MODE_PLAIN, ERR),
])
def test_chain_session_rejections(drv, order, hash_mode, status):
    assert drv.create(D.chain_create_session(order, hash_mode, C.VIRTIO_CRYPTO_CIPHER_AES_CBC, KEY16, ENC,
                                             C.VIRTIO_CRYPTO_HASH_SHA1, 20)) == (0, status)


def test_chain_data_rejections(drv):
    sid, _ = drv.create(D.chain_create_session(
        C.VIRTIO_CRYPTO_SYM_ALG_CHAIN_ORDER_CIPHER_THEN_HASH, C.VIRTIO_CRYPTO_SYM_HASH_MODE_PLAIN,
        C.VIRTIO_CRYPTO_CIPHER_AES_CBC, KEY16, ENC, C.VIRTIO_CRYPTO_HASH_SHA1, 20))
    enc = C.VIRTIO_CRYPTO_CIPHER_ENCRYPT
    assert drv.data(D.chain_data(enc, sid, IV16, SRC, b"", 48, 32, 0, 64, 20)).status == ERR   # cipher region
    assert drv.data(D.chain_data(enc, sid, IV16, SRC, b"", 0, 64, 60, 8, 20)).status == ERR    # hash region
    assert drv.data(D.chain_data(enc, sid, IV16, SRC, b"", 0, 64, 0, 64, 16)).status == ERR    # result length
    assert drv.data(D.cipher_data(enc, sid, IV16, SRC)).status == ERR                          # op_type differs


# ---- HASH / MAC ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("algo, result_len, status", [
    (C.VIRTIO_CRYPTO_HASH_SHA_256, 0, ERR),
    (C.VIRTIO_CRYPTO_HASH_SHA_256, 33, ERR),
    (C.VIRTIO_CRYPTO_HASH_SHA3_SHAKE128, 4097, ERR),
    (C.VIRTIO_CRYPTO_NO_HASH, 16, NOTSUPP),
    (99, 16, NOTSUPP),
    (C.VIRTIO_CRYPTO_HASH_SHA3_SHAKE256, 4096, OK),
    (C.VIRTIO_CRYPTO_HASH_MD5, 1, OK),
])
def test_hash_session_rules(drv, algo, result_len, status):
    assert drv.create(D.hash_create_session(algo, result_len))[1] == status


def test_hash_result_len_must_match_session(drv):
    sid, _ = drv.create(D.hash_create_session(C.VIRTIO_CRYPTO_HASH_SHA1, 8))
    assert drv.data(D.digest_data(C.VIRTIO_CRYPTO_HASH, sid, b"abc", 8)).out == sha1(b"abc")[:8]
    done = drv.data(D.digest_data(C.VIRTIO_CRYPTO_HASH, sid, b"abc", 20))
    assert (done.status, done.out) == (ERR, bytes(20))
    assert drv.data(D.digest_data(C.VIRTIO_CRYPTO_MAC, sid, b"abc", 8)).status == INVSESS


@pytest.mark.parametrize("algo, key, status", [
    (C.VIRTIO_CRYPTO_MAC_GMAC_AES, KEY16, NOTSUPP),
    (C.VIRTIO_CRYPTO_MAC_XCBC_AES, KEY16, NOTSUPP),
    (C.VIRTIO_CRYPTO_MAC_SNOW3G_UIA2, KEY16, NOTSUPP),
    (C.VIRTIO_CRYPTO_MAC_HMAC_SHA_256, b"", ERR),
    (C.VIRTIO_CRYPTO_MAC_HMAC_SHA_256, bytes(513), ERR),   # over max_auth_key_len
    (C.VIRTIO_CRYPTO_MAC_HMAC_SHA_256, bytes(512), OK),
    (C.VIRTIO_CRYPTO_MAC_CMAC_AES, bytes(15), ERR),
    (C.VIRTIO_CRYPTO_MAC_CMAC_3DES, bytes(8), ERR),
])
def test_mac_session_rules(drv, algo, key, status):
    assert drv.create(D.mac_create_session(algo, 8, key))[1] == status


def test_mac_empty_message(drv):
    sid, _ = drv.create(D.mac_create_session(C.VIRTIO_CRYPTO_MAC_HMAC_SHA_256, 32, b"key"))
    assert drv.data(D.digest_data(C.VIRTIO_CRYPTO_MAC, sid, b"", 32)).out == hmac_sha256(b"key", b"")


# ---- CIPHER rules ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("algo, key, status", [
    (C.VIRTIO_CRYPTO_CIPHER_AES_XTS, KEY16 * 2, ERR),        # equal halves
    (C.VIRTIO_CRYPTO_CIPHER_AES_XTS, bytes(range(48)), ERR),
    (C.VIRTIO_CRYPTO_CIPHER_AES_XTS, bytes(range(64)), OK),
    (C.VIRTIO_CRYPTO_CIPHER_ARC4, bytes(6), ERR),
    (C.VIRTIO_CRYPTO_CIPHER_3DES_CBC, bytes(8), ERR),
    (C.VIRTIO_CRYPTO_CIPHER_DES_CBC, bytes(16), ERR),
    (C.VIRTIO_CRYPTO_CIPHER_AES_ECB, bytes(32), OK),
    (C.VIRTIO_CRYPTO_CIPHER_AES_ECB, bytes(64), ERR),
    (C.VIRTIO_CRYPTO_CIPHER_AES_F8, KEY16, NOTSUPP),
    (C.VIRTIO_CRYPTO_CIPHER_ZUC_EEA3, KEY16, NOTSUPP),
])
def test_cipher_session_rules(drv, algo, key, status):
    assert drv.create(D.cipher_create_session(algo, key, ENC))[1] == status


def test_cipher_iv_and_length_rules(drv):
    ecb, _ = drv.create(D.cipher_create_session(C.VIRTIO_CRYPTO_CIPHER_AES_ECB, KEY16, ENC))
    ctr, _ = drv.create(D.cipher_create_session(C.VIRTIO_CRYPTO_CIPHER_AES_CTR, KEY16, ENC))
    xts, _ = drv.create(D.cipher_create_session(C.VIRTIO_CRYPTO_CIPHER_AES_XTS, bytes(range(32)), ENC))
    e = C.VIRTIO_CRYPTO_CIPHER_ENCRYPT
    assert drv.data(D.cipher_data(e, ecb, b"", bytes(32))).status == OK
    assert drv.data(D.cipher_data(e, ecb, IV16, bytes(32))).status == ERR     # ECB takes no IV
    assert drv.data(D.cipher_data(e, ctr, IV16, bytes(5))).status == OK       # CTR: any length
    assert drv.data(D.cipher_data(e, xts, IV16, bytes(15))).status == ERR     # XTS: at least one block
    assert drv.data(D.cipher_data(e, xts, IV16, bytes(17))).status == OK      # ciphertext stealing


# ---- AEAD ------------------------------------------------------------------------------------------------
def test_gcm_truncated_tag_and_rules(drv):
    key, iv, aad, pt = KEY16, bytes(12), b"hdr", b"plaintext!"
    full = AESGCM(key).encrypt(iv, pt, aad)
    enc, st = drv.create(D.aead_create_session(C.VIRTIO_CRYPTO_AEAD_GCM, key, 12, len(aad), ENC))
    dec, _ = drv.create(D.aead_create_session(C.VIRTIO_CRYPTO_AEAD_GCM, key, 12, len(aad), DEC))
    assert st == OK
    E, Dc = C.VIRTIO_CRYPTO_AEAD_ENCRYPT, C.VIRTIO_CRYPTO_AEAD_DECRYPT
    done = drv.data(D.aead_data(E, enc, iv, pt, aad, 12, len(pt) + 12))
    assert (done.status, done.out) == (OK, full[:len(pt) + 12])
    assert drv.data(D.aead_data(Dc, dec, iv, done.out, aad, 12, len(pt))).out == pt
    bad = done.out[:-1] + bytes([done.out[-1] ^ 1])
    assert drv.data(D.aead_data(Dc, dec, iv, bad, aad, 12, len(pt))) == Completion(BADMSG, bytes(len(pt)),
                                                                                      len(pt) + 1)
    assert drv.data(D.aead_data(E, enc, iv, pt, aad, 16, len(pt) + 16)).status == ERR   # tag_len != session
    for n in (0, 8, 11, 13, 15, 17, 32):  # GCM iv_len is 12 or 16 (AMB-GCM-J0)
        assert drv.data(D.aead_data(E, enc, bytes(n), pt, aad, 12, len(pt) + 12)).status == ERR, n
    assert drv.data(D.aead_data(E, enc, iv, pt, aad, 12, len(pt) + 11)).status == ERR   # no room for the tag
    assert drv.data(D.aead_data(Dc, enc, iv, pt, aad, 12, len(pt))).status == ERR       # direction
    assert drv.data(D.aead_data(Dc, dec, iv, b"short", aad, 12, 0)).status == ERR       # src < tag


@pytest.mark.parametrize("iv", [bytes(12), bytes(range(12)), b"\xff" * 12])
def test_gcm_16_byte_iv_is_j0(drv, iv):
    """A 16-byte GCM iv is the pre-counter block J0 itself (AMB-GCM-J0). A 96-bit IV's J0 is IV || 00000001
    (NIST SP 800-38D 7.1 step 2), so J0 requests must give the library's bytes for that IV, in both directions,
    and a tag that does not verify is BADMSG. Long runs of J0 (and the wrap of its 32-bit counter) are pinned by
    the Wycheproof vectors (test_crypto_wycheproof.py)."""
    key, aad, pt = bytes(range(32)), b"header", bytes(range(200))
    j0 = iv + b"\x00\x00\x00\x01"
    sealed = AESGCM(key).encrypt(iv, pt, aad)
    enc, _ = drv.create(D.aead_create_session(C.VIRTIO_CRYPTO_AEAD_GCM, key, 16, len(aad), ENC))
    dec, _ = drv.create(D.aead_create_session(C.VIRTIO_CRYPTO_AEAD_GCM, key, 16, len(aad), DEC))
    done = drv.data(D.aead_data(C.VIRTIO_CRYPTO_AEAD_ENCRYPT, enc, j0, pt, aad, 16, len(pt) + 16))
    assert (done.status, done.out) == (OK, sealed)
    done = drv.data(D.aead_data(C.VIRTIO_CRYPTO_AEAD_DECRYPT, dec, j0, sealed, aad, 16, len(pt)))
    assert (done.status, done.out) == (OK, pt)
    forged = sealed[:-1] + bytes([sealed[-1] ^ 0x80])
    done = drv.data(D.aead_data(C.VIRTIO_CRYPTO_AEAD_DECRYPT, dec, j0, forged, aad, 16, len(pt)))
    assert (done.status, done.out) == (BADMSG, bytes(len(pt)))


@pytest.mark.parametrize("algo, key, tag_len, status", [
    (C.VIRTIO_CRYPTO_AEAD_GCM, KEY16, 5, ERR),
    (C.VIRTIO_CRYPTO_AEAD_GCM, KEY16, 0, ERR),
    (C.VIRTIO_CRYPTO_AEAD_CCM, KEY16, 5, ERR),
    (C.VIRTIO_CRYPTO_AEAD_CCM, KEY16, 4, OK),
    (C.VIRTIO_CRYPTO_AEAD_CHACHA20_POLY1305, KEY16, 16, ERR),
    (C.VIRTIO_CRYPTO_AEAD_CHACHA20_POLY1305, KEY16 * 2, 12, ERR),
    (C.VIRTIO_CRYPTO_AEAD_CHACHA20_POLY1305, KEY16 * 2, 16, OK),
    (9, KEY16, 16, NOTSUPP),
])
def test_aead_session_rules(drv, algo, key, tag_len, status):
    assert drv.create(D.aead_create_session(algo, key, tag_len, 0, ENC))[1] == status


# ---- AKCIPHER --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(65537, 2048)


def _priv_der(key):
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def _rsa_session(drv, key, private, pad=C.VIRTIO_CRYPTO_RSA_RAW_PADDING, hash_algo=0):
    der = _priv_der(key) if private else key.public_key().public_bytes(serialization.Encoding.DER,
                                                                         serialization.PublicFormat.PKCS1)
    kt = C.VIRTIO_CRYPTO_AKCIPHER_KEY_TYPE_PRIVATE if private else C.VIRTIO_CRYPTO_AKCIPHER_KEY_TYPE_PUBLIC
    sid, st = drv.create(D.akcipher_create_session(C.VIRTIO_CRYPTO_AKCIPHER_RSA, kt, der, pad, hash_algo))
    assert st == OK
    return sid


def test_rsa_raw_roundtrip_like_linux(drv, rsa_key):
    """Linux's "rsa" akcipher: raw RSA, dst_len = k; results are k bytes with leading zeros."""
    pub, priv = _rsa_session(drv, rsa_key, False), _rsa_session(drv, rsa_key, True)
    msg = b"\x00\x00\x05hello"
    done = drv.data(D.akcipher_data(C.VIRTIO_CRYPTO_AKCIPHER_ENCRYPT, pub, msg, 256))
    n = rsa_key.public_key().public_numbers()
    assert (done.status, done.used) == (OK, 257)
    assert done.out == pow(int.from_bytes(msg, "big"), n.e, n.n).to_bytes(256, "big")
    back = drv.data(D.akcipher_data(C.VIRTIO_CRYPTO_AKCIPHER_DECRYPT, priv, done.out, 256))
    assert (back.status, back.out) == (OK, msg.rjust(256, b"\0"))
    too_big = (n.n + 1).to_bytes(256, "big")
    assert drv.data(D.akcipher_data(C.VIRTIO_CRYPTO_AKCIPHER_ENCRYPT, pub, too_big, 256)).status == ERR
    assert drv.data(D.akcipher_data(C.VIRTIO_CRYPTO_AKCIPHER_ENCRYPT, pub, msg, 255)).status == ERR  # dst small
    assert drv.data(D.akcipher_data(C.VIRTIO_CRYPTO_AKCIPHER_DECRYPT, pub, msg, 256)).status == ERR  # no private
    assert drv.data(D.akcipher_data(C.VIRTIO_CRYPTO_AKCIPHER_SIGN, priv, msg, 256)).status == NOTSUPP
    assert drv.data(D.akcipher_data(C.VIRTIO_CRYPTO_AKCIPHER_VERIFY, pub, done.out, 0, msg)).status == NOTSUPP


def test_rsa_pkcs1_encrypt_decrypt_and_sign(drv, rsa_key):
    pub = _rsa_session(drv, rsa_key, False, C.VIRTIO_CRYPTO_RSA_PKCS1_PADDING, C.VIRTIO_CRYPTO_RSA_SHA256)
    priv = _rsa_session(drv, rsa_key, True, C.VIRTIO_CRYPTO_RSA_PKCS1_PADDING, C.VIRTIO_CRYPTO_RSA_SHA256)
    done = drv.data(D.akcipher_data(C.VIRTIO_CRYPTO_AKCIPHER_ENCRYPT, pub, b"secret", 256))
    assert (done.status, done.used) == (OK, 257)
    assert rsa_key.decrypt(done.out, padding.PKCS1v15()) == b"secret"
    back = drv.data(D.akcipher_data(C.VIRTIO_CRYPTO_AKCIPHER_DECRYPT, priv, done.out, 256))
    assert (back.status, back.out[:6], back.used) == (OK, b"secret", 7)   # used length = result + status
    digest = bytes(range(32))
    sig = drv.data(D.akcipher_data(C.VIRTIO_CRYPTO_AKCIPHER_SIGN, priv, digest, 256))
    rsa_key.public_key().verify(sig.out, digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
    assert drv.data(D.akcipher_data(C.VIRTIO_CRYPTO_AKCIPHER_VERIFY, pub, sig.out, 0, digest)) == \
        Completion(OK, b"", 1)
    assert drv.data(D.akcipher_data(C.VIRTIO_CRYPTO_AKCIPHER_VERIFY, pub, sig.out, 0, bytes(32))).status == \
        KEY_REJECTED
    assert drv.data(D.akcipher_data(C.VIRTIO_CRYPTO_AKCIPHER_SIGN, priv, digest[:20], 256)).status == ERR


def _raw_rsa_encrypt(key, em: bytes) -> bytes:
    """``em`` as the guest's RSA ciphertext (``em^e mod n``): any encoded message, well-formed or not."""
    n = key.public_key().public_numbers()
    return pow(int.from_bytes(em, "big"), n.e, n.n).to_bytes(256, "big")


@pytest.mark.parametrize("em, what", [
    (b"\x00\x02" + b"\x11" * 8 + b"\x00" + b"M" * 245, "PS of exactly 8 octets (the shortest legal)"),
    (b"\x00\x02" + b"\x11" * 253 + b"\x00", "an empty message"),
], ids=["ps-8", "empty"])
def test_rsa_pkcs1_decryption_of_valid_encodings(drv, rsa_key, em, what):
    priv = _rsa_session(drv, rsa_key, True, C.VIRTIO_CRYPTO_RSA_PKCS1_PADDING)
    done = drv.data(D.akcipher_data(C.VIRTIO_CRYPTO_AKCIPHER_DECRYPT, priv, _raw_rsa_encrypt(rsa_key, em), 256))
    m = em[em.index(b"\x00", 2) + 1:]
    assert (done.status, done.out[:len(m)], done.used) == (OK, m, len(m) + 1), what


@pytest.mark.parametrize("em", [
    b"\x00\x01" + b"\xff" * 8 + b"\x00" + b"M" * 245,      # block type 1 (signature padding)
    b"\x00\x00" + b"\x11" * 8 + b"\x00" + b"M" * 245,      # block type 0
    b"\x01\x02" + b"\x11" * 8 + b"\x00" + b"M" * 245,      # first octet 1
    b"\x00\x02" + b"\x11" * 7 + b"\x00" + b"M" * 246,      # PS of 7 octets
    b"\x00\x02" + b"\x11" * 254,                          # no 0x00 after PS
    b"\x00\x02" + b"\x00" + b"\x11" * 253,                 # PS starts with 0x00
    bytes(256),                                           # c = 0
    b"\x00" * 255 + b"\x01",                              # c = 1
], ids=["type-1", "type-0", "first-octet-1", "short-ps", "no-separator", "empty-ps", "zero", "one"])
def test_rsa_pkcs1_decryption_with_bad_padding_is_badmsg(drv, rsa_key, em):
    """OpenSSL's implicit rejection answered these OK with a synthetic message; the device answers BADMSG and
    writes nothing but the status (AMB-RSA-DECRYPT, AMB-3)."""
    priv = _rsa_session(drv, rsa_key, True, C.VIRTIO_CRYPTO_RSA_PKCS1_PADDING)
    done = drv.data(D.akcipher_data(C.VIRTIO_CRYPTO_AKCIPHER_DECRYPT, priv, _raw_rsa_encrypt(rsa_key, em), 256))
    assert done == Completion(BADMSG, bytes(256), 257)


def test_rsa_pkcs1_decryption_needs_a_ciphertext_of_the_modulus_length(drv, rsa_key):
    priv = _rsa_session(drv, rsa_key, True, C.VIRTIO_CRYPTO_RSA_PKCS1_PADDING)
    c = rsa_key.public_key().encrypt(b"x", padding.PKCS1v15())
    n = rsa_key.public_key().public_numbers().n
    for bad in (c[1:], b"\0" + c, c + b"\0", b"", n.to_bytes(256, "big")):
        assert drv.data(D.akcipher_data(C.VIRTIO_CRYPTO_AKCIPHER_DECRYPT, priv, bad, 257)).status == ERR


@pytest.mark.parametrize("padding_algo, hash_algo, key, status", [
    (C.VIRTIO_CRYPTO_RSA_PKCS1_PADDING, C.VIRTIO_CRYPTO_RSA_MD2, None, NOTSUPP),
    (7, 0, None, NOTSUPP),
    (0, 0, b"\x30\x03\x02\x01\x01", ERR),    # not an RSA key
])
def test_rsa_session_rejections(drv, rsa_key, padding_algo, hash_algo, key, status):
    der = key if key is not None else _priv_der(rsa_key)
    assert drv.create(D.akcipher_create_session(C.VIRTIO_CRYPTO_AKCIPHER_RSA,
                                                C.VIRTIO_CRYPTO_AKCIPHER_KEY_TYPE_PRIVATE, der,
                                                padding_algo, hash_algo))[1] == status


def _ec_private_without_parameters(key) -> bytes:
    """DER ECPrivateKey {version 1, privateKey} with the optional parameters and publicKey omitted."""
    size = (key.curve.key_size + 7) // 8
    d = key.private_numbers().private_value.to_bytes(size, "big")
    body = b"\x02\x01\x01" + b"\x04" + bytes([size]) + d
    return b"\x30" + bytes([len(body)]) + body


@pytest.mark.parametrize("curve, curve_id", [
    (ec.SECP192R1, C.VIRTIO_CRYPTO_CURVE_NIST_P192), (ec.SECP224R1, C.VIRTIO_CRYPTO_CURVE_NIST_P224),
    (ec.SECP256R1, C.VIRTIO_CRYPTO_CURVE_NIST_P256), (ec.SECP384R1, C.VIRTIO_CRYPTO_CURVE_NIST_P384),
    (ec.SECP521R1, C.VIRTIO_CRYPTO_CURVE_NIST_P521)])
def test_ecdsa_sign_verify(drv, curve, curve_id):
    key = ec.generate_private_key(curve())
    point = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    A, PRIV, PUB = C.VIRTIO_CRYPTO_AKCIPHER_ECDSA, C.VIRTIO_CRYPTO_AKCIPHER_KEY_TYPE_PRIVATE, \
        C.VIRTIO_CRYPTO_AKCIPHER_KEY_TYPE_PUBLIC
    priv, st1 = drv.create(D.akcipher_create_session(A, PRIV, _priv_der(key), curve=curve_id))
    bare, st2 = drv.create(D.akcipher_create_session(A, PRIV, _ec_private_without_parameters(key), curve=curve_id))
    pub, st3 = drv.create(D.akcipher_create_session(A, PUB, point, curve=curve_id))
    assert (st1, st2, st3) == (OK, OK, OK)
    digest = bytes(range(32))
    for sid in (priv, bare):
        done = drv.data(D.akcipher_data(C.VIRTIO_CRYPTO_AKCIPHER_SIGN, sid, digest, 200))
        assert done.status == OK and 8 < done.used < 200   # used length = DER signature length + 1
        sig = done.out[:done.used - 1]
        key.public_key().verify(sig, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
        assert drv.data(D.akcipher_data(C.VIRTIO_CRYPTO_AKCIPHER_VERIFY, pub, sig, 0, digest)).status == OK
        assert drv.data(D.akcipher_data(C.VIRTIO_CRYPTO_AKCIPHER_VERIFY, pub, sig, 0, bytes(32))).status == \
            KEY_REJECTED
    assert drv.data(D.akcipher_data(C.VIRTIO_CRYPTO_AKCIPHER_VERIFY, pub, b"\x30\x00", 0, digest)).status == \
        KEY_REJECTED
    assert drv.data(D.akcipher_data(C.VIRTIO_CRYPTO_AKCIPHER_ENCRYPT, pub, digest, 200)).status == NOTSUPP
    assert drv.data(D.akcipher_data(C.VIRTIO_CRYPTO_AKCIPHER_SIGN, pub, digest, 200)).status == ERR
    assert drv.data(D.akcipher_data(C.VIRTIO_CRYPTO_AKCIPHER_SIGN, priv, digest[:17], 200)).status == ERR


def test_ecdsa_session_rejections(drv):
    key = ec.generate_private_key(ec.SECP256R1())
    A, PRIV = C.VIRTIO_CRYPTO_AKCIPHER_ECDSA, C.VIRTIO_CRYPTO_AKCIPHER_KEY_TYPE_PRIVATE
    assert drv.create(D.akcipher_create_session(A, PRIV, _priv_der(key), curve=0))[1] == NOTSUPP
    assert drv.create(D.akcipher_create_session(A, PRIV, _priv_der(key),
                                                curve=C.VIRTIO_CRYPTO_CURVE_NIST_P384))[1] == ERR  # wrong curve
    assert drv.create(D.akcipher_create_session(A, C.VIRTIO_CRYPTO_AKCIPHER_KEY_TYPE_PUBLIC, b"\x04" + bytes(64),
                                                curve=C.VIRTIO_CRYPTO_CURVE_NIST_P256))[1] == ERR   # not on curve
    assert drv.create(D.akcipher_create_session(A, 3, _priv_der(key), curve=3))[1] == ERR           # key_type
    assert drv.create(D.akcipher_create_session(3, PRIV, _priv_der(key), curve=3))[1] == NOTSUPP   # Linux's ECDSA


# ---- REVISION_1: unpadded heads, NOSPC ------------------------------------------------------------------------
def test_revision_1_unpadded_heads(rev1):
    """With REVISION_1 the op_flf is the struct itself: HASH create 16 + 8 bytes, HASH data 24 + 8."""
    req = D.hash_create_session(C.VIRTIO_CRYPTO_HASH_SHA1, 20, revision_1=True)
    assert len(req.readable) == 24
    sid, st = rev1.create(req)
    assert st == OK
    data = D.digest_data(C.VIRTIO_CRYPTO_HASH, sid, b"abc", 20, revision_1=True)
    assert len(data.readable) == 24 + 8 + 3
    assert rev1.data(data).out == sha1(b"abc")
    # a stateless request without the stateless feature bit is refused
    assert rev1.data(D.hash_data_stateless(C.VIRTIO_CRYPTO_HASH_SHA1, b"abc", 20)).status == NOTSUPP
    aes = D.cipher_create_session(C.VIRTIO_CRYPTO_CIPHER_AES_CBC, KEY16, ENC, revision_1=True)
    assert len(aes.readable) == 16 + 56 + 16
    cid, st = rev1.create(aes)
    done = rev1.data(D.cipher_data(C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, cid, IV16, SRC, revision_1=True))
    assert (done.status, done.out) == (OK, aes_cbc(KEY16, IV16, SRC))
    assert rev1.destroy(C.VIRTIO_CRYPTO_HASH_DESTROY_SESSION, sid) == OK


def test_revision_1_session_cap_is_nospc(rev1):
    req = D.hash_create_session(C.VIRTIO_CRYPTO_HASH_SHA1, 20, revision_1=True)
    assert [rev1.create(req)[1] for _ in range(4)] == [OK] * 4
    assert rev1.create(req) == (0, NOSPC)


# ---- stateless mode --------------------------------------------------------------------------------------------
def test_stateless_cipher(stateless):
    done = stateless.data(D.cipher_data_stateless(C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, C.VIRTIO_CRYPTO_CIPHER_AES_CBC,
                                                  KEY16, ENC, IV16, SRC))
    assert (done.status, done.out) == (OK, aes_cbc(KEY16, IV16, SRC))
    done = stateless.data(D.cipher_data_stateless(C.VIRTIO_CRYPTO_CIPHER_DECRYPT, C.VIRTIO_CRYPTO_CIPHER_AES_CBC,
                                                  KEY16, DEC, IV16, done.out))
    assert (done.status, done.out) == (OK, SRC)
    assert len(stateless.device.sessions) == 0
    bad = D.cipher_data_stateless(C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, 77, KEY16, ENC, IV16, SRC)
    assert stateless.data(bad).status == NOTSUPP
    big = D.cipher_data_stateless(C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, C.VIRTIO_CRYPTO_CIPHER_AES_CBC, bytes(65), ENC,
                                  IV16, SRC)
    assert stateless.data(big).status == ERR


def test_stateless_layout_in_session_mode(stateless):
    """With the stateless bit negotiated, session-mode requests use the stateless op_flf with flag = 1."""
    sid, st = stateless.create(D.cipher_create_session(C.VIRTIO_CRYPTO_CIPHER_AES_CBC, KEY16, ENC, revision_1=True))
    assert st == OK
    req = D.cipher_data(C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, sid, IV16, SRC, revision_1=True, stateless_layout=True)
    assert len(req.readable) == 24 + 76 + 16 + 64
    assert stateless.data(req).out == aes_cbc(KEY16, IV16, SRC)
    bad_flag = req.readable[:16] + struct.pack("<I", 2) + req.readable[20:]
    assert stateless.data(D.Request(bad_flag, req.writable)).status == ERR


def test_stateless_hash_mac(stateless):
    assert stateless.data(D.hash_data_stateless(C.VIRTIO_CRYPTO_HASH_SHA1, b"abc", 20)).out == sha1(b"abc")
    assert stateless.data(D.hash_data_stateless(C.VIRTIO_CRYPTO_HASH_SHA1, b"abc", 21)).status == ERR
    done = stateless.data(D.mac_data_stateless(C.VIRTIO_CRYPTO_MAC_HMAC_SHA_256, b"key", b"msg", 32))
    assert (done.status, done.out) == (OK, hmac_sha256(b"key", b"msg"))


def test_stateless_aead(stateless):
    key, iv, aad, pt = KEY16, bytes(12), b"a", b"plain"
    done = stateless.data(D.aead_data_stateless(C.VIRTIO_CRYPTO_AEAD_ENCRYPT, C.VIRTIO_CRYPTO_AEAD_GCM, key, ENC,
                                                iv, pt, aad, 16, 21))
    assert (done.status, done.out) == (OK, AESGCM(key).encrypt(iv, pt, aad))
    back = stateless.data(D.aead_data_stateless(C.VIRTIO_CRYPTO_AEAD_DECRYPT, C.VIRTIO_CRYPTO_AEAD_GCM, key, DEC,
                                                iv, done.out, aad, 16, 5))
    assert (back.status, back.out) == (OK, pt)


def test_stateless_chain(stateless):
    done = stateless.data(D.chain_data_stateless(
        C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, C.VIRTIO_CRYPTO_SYM_ALG_CHAIN_ORDER_CIPHER_THEN_HASH,
        C.VIRTIO_CRYPTO_SYM_HASH_MODE_AUTH, C.VIRTIO_CRYPTO_CIPHER_AES_CBC, KEY16, ENC,
        C.VIRTIO_CRYPTO_MAC_HMAC_SHA_256, b"k" * 20, IV16, SRC, AAD, 0, 64, 0, 64, 32))
    ct = aes_cbc(KEY16, IV16, SRC)
    assert (done.status, done.out) == (OK, ct + hmac_sha256(b"k" * 20, AAD + ct))


def test_stateless_akcipher(stateless, rsa_key):
    der = rsa_key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    done = stateless.data(D.akcipher_data_stateless(
        C.VIRTIO_CRYPTO_AKCIPHER_ENCRYPT, C.VIRTIO_CRYPTO_AKCIPHER_RSA, C.VIRTIO_CRYPTO_AKCIPHER_KEY_TYPE_PUBLIC,
        der, b"hi", 256, padding=C.VIRTIO_CRYPTO_RSA_PKCS1_PADDING))
    assert (done.status, done.used) == (OK, 257)
    assert rsa_key.decrypt(done.out, padding.PKCS1v15()) == b"hi"


# ---- the descriptor split never matters (property) ---------------------------------------------------------------
def _cuts(total: int):
    return st.lists(st.integers(0, total), max_size=6).map(lambda xs: sorted(set(xs)))


@settings(max_examples=60, deadline=None)
@given(data=st.data(), n=st.integers(0, 200))
def test_any_split_gives_the_same_answer(data, n):
    dev = CryptoDevice(max_dataqueues=1)
    drv = InProcess(dev)
    sid, _ = drv.create(D.mac_create_session(C.VIRTIO_CRYPTO_MAC_HMAC_SHA_256, 32, b"key"))
    msg = bytes(range(256))[:n]
    req = D.digest_data(C.VIRTIO_CRYPTO_MAC, sid, msg, 32)
    rcuts = data.draw(_cuts(len(req.readable)))
    wcap = data.draw(st.integers(33, 60))
    wcuts = data.draw(_cuts(wcap))
    edges = [0, *rcuts, len(req.readable)]
    readable = [memoryview(bytearray(req.readable[a:b])) for a, b in zip(edges, edges[1:])]
    wedges = [0, *wcuts, wcap]
    outs = [bytearray(b - a) for a, b in zip(wedges, wedges[1:])]
    used = dev.handle(0, DescriptorChain(0, readable, [memoryview(o) for o in outs]))
    w = b"".join(outs)
    assert used == wcap
    assert w[:32] == hmac_sha256(b"key", msg) and w[32:-1] == bytes(wcap - 33) and w[-1] == OK


# ---- round trips through the device for every advertised cipher and AEAD (property) --------------------------
_CIPHER_CASES = {  # algo: (key length, iv length, block)
    C.VIRTIO_CRYPTO_CIPHER_ARC4: (16, 0, 1), C.VIRTIO_CRYPTO_CIPHER_AES_ECB: (24, 0, 16),
    C.VIRTIO_CRYPTO_CIPHER_AES_CBC: (32, 16, 16), C.VIRTIO_CRYPTO_CIPHER_AES_CTR: (16, 16, 1),
    C.VIRTIO_CRYPTO_CIPHER_AES_XTS: (64, 16, 1), C.VIRTIO_CRYPTO_CIPHER_DES_ECB: (8, 0, 8),
    C.VIRTIO_CRYPTO_CIPHER_DES_CBC: (8, 8, 8), C.VIRTIO_CRYPTO_CIPHER_3DES_ECB: (16, 0, 8),
    C.VIRTIO_CRYPTO_CIPHER_3DES_CBC: (24, 8, 8),
}


def _cipher_inputs(algo: int, seed: bytes, blocks: int, tail: int) -> tuple[bytes, bytes, bytes]:
    """(key, iv, data) for ``algo`` from hypothesis' draws: XTS halves made distinct, ``tail`` bytes past
    the whole blocks only for stream modes (block 1)."""
    key_len, iv_len, block = _CIPHER_CASES[algo]
    key = seed[:key_len]
    if algo == C.VIRTIO_CRYPTO_CIPHER_AES_XTS and key[:32] == key[32:]:
        key = key[:32] + bytes(b ^ 1 for b in key[32:])
    iv = seed[key_len % 48:key_len % 48 + iv_len]
    return key, iv, (seed * 6)[:blocks * 16 + (tail if block == 1 else 0)]


@settings(max_examples=80, deadline=None)
@given(algo=st.sampled_from(sorted(set(_CIPHER_CASES) & set(CIPHERS))), seed=st.binary(min_size=64, max_size=64),
       blocks=st.integers(1, 20), tail=st.integers(0, 15))
def test_cipher_roundtrip_property(algo, seed, blocks, tail):
    key, iv, data = _cipher_inputs(algo, seed, blocks, tail)
    drv = InProcess(CryptoDevice(max_dataqueues=1))
    enc, s1 = drv.create(D.cipher_create_session(algo, key, ENC))
    dec, s2 = drv.create(D.cipher_create_session(algo, key, DEC))
    assert (s1, s2) == (OK, OK)
    ct = drv.data(D.cipher_data(C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, enc, iv, data))
    assert ct.status == OK and len(ct.out) == len(data) and ct.out != data
    pt = drv.data(D.cipher_data(C.VIRTIO_CRYPTO_CIPHER_DECRYPT, dec, iv, ct.out))
    assert (pt.status, pt.out) == (OK, data)


@settings(max_examples=80, deadline=None)
@given(algo=st.sampled_from(sorted(set(_CIPHER_CASES) & set(CIPHERS))), seed=st.binary(min_size=64, max_size=64),
       blocks=st.integers(1, 8), tail=st.integers(0, 15), slack=st.integers(0, 20), cut=st.integers(0, 200))
def test_cipher_output_layouts_agree(algo, seed, blocks, tail, slack, cut):
    """The cipher writes straight into a lone dst descriptor (with or without the slack ``update_into``
    wants), into a dst split over two descriptors, and in place over its own source: the same bytes."""
    key, iv, data = _cipher_inputs(algo, seed, blocks, tail)
    n = len(data)
    dev = CryptoDevice(max_dataqueues=1)
    sid, status = InProcess(dev).create(D.cipher_create_session(algo, key, ENC))
    assert status == OK
    readable = D.cipher_data(C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, sid, iv, data).readable
    head = len(readable) - n

    lone = bytearray(n + slack + 1)  # dst, slack, status in one descriptor
    assert dev.handle(0, DescriptorChain(0, [memoryview(bytearray(readable))], [memoryview(lone)])) == len(lone)
    assert lone[-1] == OK and lone[n:-1] == bytes(slack)

    k = cut % (n + 1)
    parts = [bytearray(k), bytearray(n - k), bytearray(1)]
    dev.handle(0, DescriptorChain(0, [memoryview(bytearray(readable))], [memoryview(p) for p in parts]))
    assert parts[2][0] == OK and bytes(parts[0] + parts[1]) == lone[:n]

    mem = memoryview(bytearray(readable))  # dst descriptor = the src descriptor's memory
    status = bytearray(1)
    dev.handle(0, DescriptorChain(0, [mem[:head], mem[head:]], [mem[head:], memoryview(status)]))
    assert status[0] == OK and bytes(mem[head:]) == lone[:n]


@settings(max_examples=60, deadline=None)
@given(algo=st.sampled_from([C.VIRTIO_CRYPTO_AEAD_GCM, C.VIRTIO_CRYPTO_AEAD_CCM,
                             C.VIRTIO_CRYPTO_AEAD_CHACHA20_POLY1305]),
       data=st.binary(max_size=300), aad=st.binary(max_size=40), flip=st.integers(0, (1 << 16) - 1))
def test_aead_roundtrip_and_tamper_property(algo, data, aad, flip):
    key = bytes(range(32))
    # a 16-byte tag takes the primitives' encrypt_into / decrypt_into (GCM too), 8 the streaming GCM and CCM paths
    tag_len = 16 if algo == C.VIRTIO_CRYPTO_AEAD_CHACHA20_POLY1305 or flip & 1 else 8
    iv = bytes(range(13 if algo == C.VIRTIO_CRYPTO_AEAD_CCM else 12))
    drv = InProcess(CryptoDevice(max_dataqueues=1))
    enc, _ = drv.create(D.aead_create_session(algo, key, tag_len, len(aad), ENC))
    dec, _ = drv.create(D.aead_create_session(algo, key, tag_len, len(aad), DEC))
    sealed = drv.data(D.aead_data(C.VIRTIO_CRYPTO_AEAD_ENCRYPT, enc, iv, data, aad, tag_len, len(data) + tag_len))
    assert sealed.status == OK and len(sealed.out) == len(data) + tag_len
    opened = drv.data(D.aead_data(C.VIRTIO_CRYPTO_AEAD_DECRYPT, dec, iv, sealed.out, aad, tag_len, len(data)))
    assert (opened.status, opened.out) == (OK, data)
    bad = bytearray(sealed.out)
    bad[flip % len(bad)] ^= 1 << (flip >> 13)
    opened = drv.data(D.aead_data(C.VIRTIO_CRYPTO_AEAD_DECRYPT, dec, iv, bytes(bad), aad, tag_len, len(data)))
    assert (opened.status, opened.out) == (BADMSG, bytes(len(data)))


@settings(max_examples=40, deadline=None)
@given(algo=st.sampled_from([C.VIRTIO_CRYPTO_AEAD_GCM, C.VIRTIO_CRYPTO_AEAD_CCM,
                             C.VIRTIO_CRYPTO_AEAD_CHACHA20_POLY1305]),
       data=st.binary(min_size=1, max_size=200), aad=st.binary(max_size=20), cut=st.integers(0, 400))
def test_aead_output_layouts_agree(algo, data, aad, cut):
    """AEAD encryption straight into a lone dst descriptor, and into a dst split over two: the bytes the host's
    ``cryptography`` seals; decryption of them gives the plaintext back in either layout."""
    key, tag_len = bytes(range(32)), 16
    iv = bytes(range(13 if algo == C.VIRTIO_CRYPTO_AEAD_CCM else 12))
    n = len(data)
    host = {C.VIRTIO_CRYPTO_AEAD_GCM: AESGCM, C.VIRTIO_CRYPTO_AEAD_CCM: AESCCM,
            C.VIRTIO_CRYPTO_AEAD_CHACHA20_POLY1305: ChaCha20Poly1305}[algo](key).encrypt(iv, data, aad)
    dev = CryptoDevice(max_dataqueues=1)
    enc, _ = InProcess(dev).create(D.aead_create_session(algo, key, tag_len, len(aad), ENC))
    dec, _ = InProcess(dev).create(D.aead_create_session(algo, key, tag_len, len(aad), DEC))
    for sid, op, src, out_len, want in ((enc, C.VIRTIO_CRYPTO_AEAD_ENCRYPT, data, n + tag_len, host),
                                        (dec, C.VIRTIO_CRYPTO_AEAD_DECRYPT, host, n, data)):
        readable = D.aead_data(op, sid, iv, src, aad, tag_len, out_len).readable
        lone = bytearray(out_len + 1)
        dev.handle(0, DescriptorChain(0, [memoryview(bytearray(readable))], [memoryview(lone)]))
        assert lone[-1] == OK and bytes(lone[:-1]) == want
        k = cut % (out_len + 1)
        parts = [bytearray(k), bytearray(out_len - k), bytearray(1)]
        dev.handle(0, DescriptorChain(0, [memoryview(bytearray(readable))], [memoryview(p) for p in parts]))
        assert parts[2][0] == OK and bytes(parts[0] + parts[1]) == want
