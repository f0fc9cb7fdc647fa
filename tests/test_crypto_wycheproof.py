"""The Wycheproof vectors (``tests/data/wycheproof``, see its README) through the crypto device, every test case.

Each case goes over the standard's wire format to a device object (``crypto_harness.InProcess``, the Linux layout):
create a session on the controlq, send the data request, compare the status byte and the output bytes. Valid cases
must give the vector's bytes; invalid ones the status the standard profile answers for the reason the vector names:

* AEAD (AES-GCM, AES-CCM, ChaCha20-Poly1305): a modified tag -> BADMSG with no plaintext; an IV, nonce or tag
  size the algorithm does not take -> ERR. GCM IVs of other sizes than 96 bits travel as their J0 (a 16-byte iv,
  AMB-GCM-J0), computed here with a GHASH of this module's own (:func:`gcm_j0`).
* AES-CBC-PKCS5: the device's AES-CBC has no padding (the driver pads): valid cases are padded here and must give
  the vector's ciphertext; for invalid ones the device decrypts and the PKCS#7 unpadding here must fail.
* AES-XTS: the tweak is the vector's IV zero-padded to 16 bytes; 384-bit keys (AES-192, not in IEEE 1619) -> ERR.
* HMAC, AES-CMAC: the device computes the MAC (truncated to the vector's tag size); a modified tag must differ from
  it; an AES key size CMAC does not take -> ERR.
* RSASSA-PKCS1-v1_5 verify: invalid -> KEY_REJECTED; "acceptable" -> OK or KEY_REJECTED. Sign: the vector's
  signature. RSAES-PKCS1-v1_5 decrypt: bad padding -> BADMSG (AMB-RSA-DECRYPT), a malformed ciphertext -> ERR.
* ECDSA verify: invalid -> KEY_REJECTED.

Every file's ``numberOfTests`` cases are run; :func:`test_checkers_fail_on_a_wrong_vector` is the negative control.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from vfu_virtio.abi import crypto as C
from vfu_virtio.client import crypto as D
from vfu_virtio.devices.crypto import CryptoDevice

from crypto_harness import Completion, InProcess

DATA = Path(__file__).resolve().parent / "data" / "wycheproof"
OK, ERR, BADMSG, KEY_REJECTED = C.VIRTIO_CRYPTO_OK, C.VIRTIO_CRYPTO_ERR, C.VIRTIO_CRYPTO_BADMSG, \
    C.VIRTIO_CRYPTO_KEY_REJECTED
ENC, DEC = C.VIRTIO_CRYPTO_OP_ENCRYPT, C.VIRTIO_CRYPTO_OP_DECRYPT
_HASHES = {"SHA-1": hashes.SHA1, "SHA-224": hashes.SHA224, "SHA-256": hashes.SHA256, "SHA-384": hashes.SHA384,
           "SHA-512": hashes.SHA512}
_RSA_HASHES = {"SHA-1": C.VIRTIO_CRYPTO_RSA_SHA1, "SHA-224": C.VIRTIO_CRYPTO_RSA_SHA224,
               "SHA-256": C.VIRTIO_CRYPTO_RSA_SHA256, "SHA-384": C.VIRTIO_CRYPTO_RSA_SHA384,
               "SHA-512": C.VIRTIO_CRYPTO_RSA_SHA512}
_CURVES = {"secp256r1": C.VIRTIO_CRYPTO_CURVE_NIST_P256, "secp384r1": C.VIRTIO_CRYPTO_CURVE_NIST_P384}


def cases(name: str):
    """(group, test) for every test of ``<name>_test.json``, after checking the file holds ``numberOfTests``."""
    doc = json.loads((DATA / f"{name}_test.json").read_text())
    out = [(g, t) for g in doc["testGroups"] for t in g["tests"]]
    assert len(out) == doc["numberOfTests"]
    return out


def h(s: str) -> bytes:
    return bytes.fromhex(s)


def digest(name: str, msg: bytes) -> bytes:
    d = hashes.Hash(_HASHES[name]())
    d.update(msg)
    return d.finalize()


@pytest.fixture(scope="module")
def drv():
    return InProcess(CryptoDevice(max_dataqueues=1, max_sessions=1024, max_size=1 << 22))


# ---- GHASH of this module's own, for the J0 of an IV that is not 96 bits (NIST SP 800-38D 6.3, 7.1 step 2) --------
_R = 0xE1 << 120


def _gf_mul(x: int, y: int) -> int:
    """The product of two blocks in GF(2^128) (SP 800-38D 6.3, bit-reflected as GCM defines it)."""
    z, v = 0, y
    for i in range(127, -1, -1):
        if x >> i & 1:
            z ^= v
        v = v >> 1 ^ _R if v & 1 else v >> 1
    return z


def gcm_j0(key: bytes, iv: bytes) -> bytes:
    """J0 = GHASH_H(IV || 0^(s+64) || [len(IV)]_64), H = E_K(0^128), for an IV that is not 96 bits."""
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    hkey = int.from_bytes(enc.update(bytes(16)) + enc.finalize(), "big")
    blocks = iv + bytes(-len(iv) % 16) + bytes(8) + (8 * len(iv)).to_bytes(8, "big")
    y = 0
    for i in range(0, len(blocks), 16):
        y = _gf_mul(y ^ int.from_bytes(blocks[i:i + 16], "big"), hkey)
    return y.to_bytes(16, "big")


def test_gcm_j0_helper_against_sp800_38d_test_case_6():
    """The helper's J0 gives the published GCM Test Case 6 (60-byte IV, "The Galois/Counter Mode of Operation",
    McGrew and Viega) through the library: its ciphertext starts with the AES-CTR keystream from inc32(J0)."""
    key = h("feffe9928665731c6d6a8f9467308308")
    iv = h("9313225df88406e555909c5aff5269aa6a7a9538534f7da1e4c303d2a318a728c3c0c95156809539fcf0e2429a6b5254"
           "16aedbf5a0de6a57a637b39b")
    pt = h("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525"
           "b16aedf5aa0de657ba637b39")
    j0 = gcm_j0(key, iv)
    ctr = Cipher(algorithms.AES(key), modes.CTR(j0[:12] + (int.from_bytes(j0[12:], "big") + 1).to_bytes(4, "big")))
    ct = ctr.encryptor().update(pt)
    assert ct == h("8ce24998625615b603a033aca13fb894be9112a5c3a211a8ba262a3cca7e2ca701e4a9a4fba43c90ccdcb281d48c7c6f"
                   "d62875d2aca417034c34aee5")


# ---- checkers: each raises AssertionError when the device's answer is not the vector's -----------------------------
_AEAD = {"aes_gcm": C.VIRTIO_CRYPTO_AEAD_GCM, "aes_ccm": C.VIRTIO_CRYPTO_AEAD_CCM,
         "chacha20_poly1305": C.VIRTIO_CRYPTO_AEAD_CHACHA20_POLY1305}


def check_aead(drv, name: str, group: dict, t: dict) -> None:
    algo = _AEAD[name]
    key, iv, aad, msg, ct, tag = (h(t[k]) for k in ("key", "iv", "aad", "msg", "ct", "tag"))
    if algo == C.VIRTIO_CRYPTO_AEAD_GCM and len(iv) not in (0, 12):
        iv = gcm_j0(key, iv)
    t_len = group["tagSize"] // 8
    enc, st_enc = drv.create(D.aead_create_session(algo, key, t_len, len(aad), ENC))
    dec, st_dec = drv.create(D.aead_create_session(algo, key, t_len, len(aad), DEC))
    try:
        if t["result"] == "invalid" and {"InvalidTagSize", "InsecureTagSize"} & set(t["flags"]):
            assert (st_enc, st_dec) == (ERR, ERR)  # CCM tags are 4..16 even bytes (AMB-17)
            return
        assert (st_enc, st_dec) == (OK, OK)
        opened = drv.data(D.aead_data(C.VIRTIO_CRYPTO_AEAD_DECRYPT, dec, iv, ct + tag, aad, t_len, len(ct)))
        if t["result"] == "valid":
            sealed = drv.data(D.aead_data(C.VIRTIO_CRYPTO_AEAD_ENCRYPT, enc, iv, msg, aad, t_len, len(msg) + t_len))
            assert (sealed.status, sealed.out) == (OK, ct + tag)
            assert (opened.status, opened.out) == (OK, msg)
        else:
            bad_iv = {"InvalidNonceSize", "ZeroLengthIv"} & set(t["flags"])
            assert (opened.status, opened.out) == (ERR if bad_iv else BADMSG, bytes(len(ct)))
    finally:
        for sid in (enc, dec):
            if sid:
                drv.destroy(C.VIRTIO_CRYPTO_AEAD_DESTROY_SESSION, sid)


def _cipher(drv, algo: int, key: bytes, iv: bytes, data: bytes, encrypt: bool) -> Completion | int:
    """One cipher request in a fresh session: its completion, or the create-session status if that failed."""
    sid, st = drv.create(D.cipher_create_session(algo, key, ENC if encrypt else DEC))
    if st != OK:
        return st
    opcode = C.VIRTIO_CRYPTO_CIPHER_ENCRYPT if encrypt else C.VIRTIO_CRYPTO_CIPHER_DECRYPT
    done = drv.data(D.cipher_data(opcode, sid, iv, data))
    drv.destroy(C.VIRTIO_CRYPTO_CIPHER_DESTROY_SESSION, sid)
    return done


def check_cbc(drv, name: str, group: dict, t: dict) -> None:
    key, iv, msg, ct = (h(t[k]) for k in ("key", "iv", "msg", "ct"))
    back = _cipher(drv, C.VIRTIO_CRYPTO_CIPHER_AES_CBC, key, iv, ct, False)
    unpadder = padding.PKCS7(128).unpadder()
    if t["result"] == "valid":
        padder = padding.PKCS7(128).padder()
        sealed = _cipher(drv, C.VIRTIO_CRYPTO_CIPHER_AES_CBC, key, iv, padder.update(msg) + padder.finalize(), True)
        assert (sealed.status, sealed.out) == (OK, ct)
        assert back.status == OK and unpadder.update(back.out) + unpadder.finalize() == msg
        return
    assert back.status == OK  # the raw decryption; its padding is the driver's to check
    with pytest.raises(ValueError):
        unpadder.update(back.out) + unpadder.finalize()


def check_xts(drv, name: str, group: dict, t: dict) -> None:
    key, iv, msg, ct = (h(t[k]) for k in ("key", "iv", "msg", "ct"))
    tweak = iv.ljust(16, b"\0")
    sealed = _cipher(drv, C.VIRTIO_CRYPTO_CIPHER_AES_XTS, key, tweak, msg, True)
    if group["keySize"] == 384:
        assert sealed == ERR
        return
    opened = _cipher(drv, C.VIRTIO_CRYPTO_CIPHER_AES_XTS, key, tweak, ct, False)
    assert (sealed.status, sealed.out, opened.status, opened.out) == (OK, ct, OK, msg)


_MACS = {"hmac_sha1": C.VIRTIO_CRYPTO_MAC_HMAC_SHA1, "hmac_sha224": C.VIRTIO_CRYPTO_MAC_HMAC_SHA_224,
         "hmac_sha256": C.VIRTIO_CRYPTO_MAC_HMAC_SHA_256, "hmac_sha384": C.VIRTIO_CRYPTO_MAC_HMAC_SHA_384,
         "hmac_sha512": C.VIRTIO_CRYPTO_MAC_HMAC_SHA_512, "aes_cmac": C.VIRTIO_CRYPTO_MAC_CMAC_AES}


def check_mac(drv, name: str, group: dict, t: dict) -> None:
    key, msg, tag = h(t["key"]), h(t["msg"]), h(t["tag"])
    n = group["tagSize"] // 8
    sid, st = drv.create(D.mac_create_session(_MACS[name], n, key))
    if "InvalidKeySize" in t["flags"]:
        assert st == ERR
        return
    assert st == OK
    done = drv.data(D.digest_data(C.VIRTIO_CRYPTO_MAC, sid, msg, n))
    drv.destroy(C.VIRTIO_CRYPTO_MAC_DESTROY_SESSION, sid)
    assert done.status == OK and (done.out == tag) == (t["result"] == "valid")


def _akcipher_session(drv, key_type: int, der: bytes, hash_algo: int = 0, curve: int = 0) -> int:
    """An AKCIPHER session for the key, created once per test group's key (a private key costs its validation)."""
    algo = C.VIRTIO_CRYPTO_AKCIPHER_ECDSA if curve else C.VIRTIO_CRYPTO_AKCIPHER_RSA
    cache = drv.__dict__.setdefault("akcipher_sessions", {})
    if (key_type, der, hash_algo, curve) not in cache:
        sid, st = drv.create(D.akcipher_create_session(algo, key_type, der, C.VIRTIO_CRYPTO_RSA_PKCS1_PADDING,
                                                       hash_algo, curve))
        assert st == OK
        cache[key_type, der, hash_algo, curve] = sid
    return cache[key_type, der, hash_algo, curve]


def check_rsa_verify(drv, name: str, group: dict, t: dict) -> None:
    sid = _akcipher_session(drv, C.VIRTIO_CRYPTO_AKCIPHER_KEY_TYPE_PUBLIC, h(group["publicKeyAsn"]),
                            _RSA_HASHES[group["sha"]])
    done = drv.data(D.akcipher_data(C.VIRTIO_CRYPTO_AKCIPHER_VERIFY, sid, h(t["sig"]), 0,
                                    digest(group["sha"], h(t["msg"]))))
    allowed = {"valid": {OK}, "invalid": {KEY_REJECTED}, "acceptable": {OK, KEY_REJECTED}}[t["result"]]
    assert done.status in allowed


@functools.cache
def _rsa_der(n: str, e: str, d: str, p: str | None = None, q: str | None = None) -> bytes:
    """DER RSAPrivateKey of the numbers (hex); the prime factors are recovered when the vector leaves them out."""
    n_, e_, d_ = int(n, 16), int(e, 16), int(d, 16)
    p_, q_ = (int(p, 16), int(q, 16)) if p else rsa.rsa_recover_prime_factors(n_, e_, d_)
    key = rsa.RSAPrivateNumbers(p_, q_, d_, rsa.rsa_crt_dmp1(d_, p_), rsa.rsa_crt_dmq1(d_, q_),
                                rsa.rsa_crt_iqmp(p_, q_), rsa.RSAPublicNumbers(e_, n_)).private_key(
        unsafe_skip_rsa_key_validation=True)  # serialized only: the device validates it
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def _rsa_private_der(numbers: dict) -> bytes:
    return _rsa_der(*(numbers.get(k) for k in ("modulus", "publicExponent", "privateExponent", "prime1", "prime2")))


def check_rsa_sign(drv, name: str, group: dict, t: dict) -> None:
    sid = _akcipher_session(drv, C.VIRTIO_CRYPTO_AKCIPHER_KEY_TYPE_PRIVATE, _rsa_private_der(group["privateKey"]),
                            _RSA_HASHES[group["sha"]])
    sig = h(t["sig"])
    done = drv.data(D.akcipher_data(C.VIRTIO_CRYPTO_AKCIPHER_SIGN, sid, digest(group["sha"], h(t["msg"])), len(sig)))
    assert (done.status, done.out) == (OK, sig)


def check_rsa_decrypt(drv, name: str, group: dict, t: dict) -> None:
    sid = _akcipher_session(drv, C.VIRTIO_CRYPTO_AKCIPHER_KEY_TYPE_PRIVATE, _rsa_private_der(group["privateKey"]))
    k = group["keySize"] // 8
    done = drv.data(D.akcipher_data(C.VIRTIO_CRYPTO_AKCIPHER_DECRYPT, sid, h(t["ct"]), k))
    msg = h(t["msg"])
    if t["result"] == "valid":
        assert (done.status, done.out[:len(msg)], done.used) == (OK, msg, len(msg) + 1)
    else:
        expected = ERR if "InvalidCiphertextFormat" in t["flags"] else BADMSG
        assert (done.status, done.out) == (expected, bytes(k))


def check_ecdsa_verify(drv, name: str, group: dict, t: dict) -> None:
    key = group["publicKey"]
    sid = _akcipher_session(drv, C.VIRTIO_CRYPTO_AKCIPHER_KEY_TYPE_PUBLIC, h(key["uncompressed"]),
                            curve=_CURVES[key["curve"]])
    done = drv.data(D.akcipher_data(C.VIRTIO_CRYPTO_AKCIPHER_VERIFY, sid, h(t["sig"]), 0,
                                    digest(group["sha"], h(t["msg"]))))
    assert done.status == (OK if t["result"] == "valid" else KEY_REJECTED)


FILES = {
    "aes_gcm": check_aead, "aes_ccm": check_aead, "chacha20_poly1305": check_aead, "aes_cbc_pkcs5": check_cbc,
    "aes_xts": check_xts, **{f"hmac_sha{n}": check_mac for n in (1, 224, 256, 384, 512)}, "aes_cmac": check_mac,
    **{f"rsa_signature_2048_sha{n}": check_rsa_verify for n in (224, 256, 384, 512)},
    "rsa_signature_3072_sha256": check_rsa_verify, "rsa_pkcs1_2048_sig_gen": check_rsa_sign,
    "rsa_pkcs1_2048": check_rsa_decrypt, "ecdsa_secp256r1_sha256": check_ecdsa_verify,
    "ecdsa_secp384r1_sha384": check_ecdsa_verify,
}


def test_every_vector_file_is_run():
    assert sorted(f"{name}_test.json" for name in FILES) == sorted(p.name for p in DATA.glob("*.json"))


@pytest.mark.parametrize("name", sorted(FILES))
def test_vectors(drv, name):
    check = FILES[name]
    failed = []
    for group, t in cases(name):
        try:
            check(drv, name, group, t)
        except AssertionError as e:
            failed.append(f"tcId {t['tcId']} ({t['result']}, {t['comment']}, {t['flags']}): {e}")
    assert failed == []


@pytest.mark.parametrize("name, field", [("aes_gcm", "ct"), ("aes_ccm", "tag"), ("aes_cbc_pkcs5", "ct"),
                                         ("aes_xts", "ct"), ("hmac_sha256", "tag"), ("rsa_pkcs1_2048", "msg"),
                                         ("rsa_pkcs1_2048_sig_gen", "sig")])
def test_checkers_fail_on_a_wrong_vector(drv, name, field):
    """Negative control: a valid case with one bit of its expected bytes flipped is reported by the checker."""
    group, t = next((g, t) for g, t in cases(name) if t["result"] == "valid" and t[field])
    wrong = bytearray(h(t[field]))
    wrong[0] ^= 1
    with pytest.raises(AssertionError):
        FILES[name](drv, name, group, dict(t, **{field: wrong.hex()}))
