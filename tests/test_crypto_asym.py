"""The asym-rfc3 profile: the ASYM RFC v3's configuration and feature bit, its sixteen requests as AMB-32 places
them, their idata, and what a hostile or unlucky request gets.

Layouts are pinned against literal bytes written field by field from the RFC's structs (the digest's offsets,
relative to ``parameter`` at request offset 24), and the literal requests are what the device is fed. Known
answers from published vectors in ``cryptography-vectors``: FIPS 186-3 ECDSA and DSA SigVer and SigGen, RSA PKCS#1
v1.5 signature and encryption examples, FIPS 186 PKCS#1 v1.5 SigVer, PKCS #1 v2.1 OAEP and PSS examples, RFC 5114
DH, NIST KAS ECC CDH (P-192..P-521) and RFC 7027 (brainpool) ECDH. SigGen cannot be replayed (the device never uses
the request's k): the device signs and the host's ``cryptography`` verifies. Key generation is checked by round
trips. In process (the device object) and through a real server on split and packed virtqueues.
"""
from __future__ import annotations

import math

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dh, dsa, ec, padding, rsa, utils
from hypothesis import given, settings
from hypothesis import strategies as st

from vfu_virtio.abi import crypto as C
from vfu_virtio.abi import crypto_asym as A
from vfu_virtio.abi.virtio import VIRTIO_F_VERSION_1, bit
from vfu_virtio.client import crypto as D
from vfu_virtio.client import crypto_asym as AS
from vfu_virtio.client import crypto_v16 as V16
from vfu_virtio.client.virtio_pci import PACKED, VirtioPciDriver
from vfu_virtio.devices.crypto import CryptoDevice
from vfu_virtio.devices.crypto.profiles import asym_rfc3, standard
from vfu_virtio.devices.crypto.values import Service
from vfu_virtio.virtio.chain import DescriptorChain

from crypto_harness import InProcess, handle
from test_crypto_vectors import VECTORS, h, load, load_pkcs1

OK, ERR, BADMSG, NOTSUPP = 0, 1, 2, 3
FEATURES = 0x3F  # v16's bits 0..4 and VIRTIO_CRYPTO_F_ASYM (5)
SHA = {"SHA-1": (C.VIRTIO_CRYPTO_HASH_SHA1, hashes.SHA1), "SHA-224": (C.VIRTIO_CRYPTO_HASH_SHA_224, hashes.SHA224),
       "SHA-256": (C.VIRTIO_CRYPTO_HASH_SHA_256, hashes.SHA256),
       "SHA-384": (C.VIRTIO_CRYPTO_HASH_SHA_384, hashes.SHA384),
       "SHA-512": (C.VIRTIO_CRYPTO_HASH_SHA_512, hashes.SHA512)}
CURVES = {"P-192": ec.SECP192R1, "P-224": ec.SECP224R1, "P-256": ec.SECP256R1, "P-384": ec.SECP384R1,
          "P-521": ec.SECP521R1, "brainpoolP256r1": ec.BrainpoolP256R1, "brainpoolP384r1": ec.BrainpoolP384R1,
          "brainpoolP512r1": ec.BrainpoolP512R1}
PKCS1, OAEP, PSS, RAW = (A.VIRTIO_CRYPTO_RSA_PKCS1_PADDING, A.VIRTIO_CRYPTO_RSA_PKCS1_OAEP_PADDING,
                         A.VIRTIO_CRYPTO_RSA_PKCS1_PSS_PADDING, A.VIRTIO_CRYPTO_RSA_NO_PADDING)


def le32(*values: int) -> bytes:
    return b"".join(v.to_bytes(4, "little") for v in values)


def header(opcode: int, algo: int) -> bytes:
    """virtio_crypto_op_header: opcode @0, algo @4, session_id @8 (0), flag @16 (0), padding @20."""
    return le32(opcode, algo) + bytes(8) + le32(0, 0)


def be(value: int, width: int) -> bytes:
    return value.to_bytes(width, "big")


@pytest.fixture(scope="module")
def drv():
    dev = CryptoDevice(max_dataqueues=1, max_size=1 << 16, profile="asym-rfc3", max_rsa_keygen_bits=2048,
                       max_dsa_keygen_bits=1024, max_dh_param_bits=512)
    yield InProcess(dev, FEATURES)
    dev.close()


def asym(drv, req: D.Request, writable: int | None = None) -> tuple[int, int, bytes]:
    """Send an ASYM request -> (status, the second idata word, the whole writable part); the used length is the
    whole writable part."""
    out, used = drv.raw(req, writable=writable)
    assert used == len(out)
    status, word = AS.idata_head(out)
    if status != OK:
        assert out[4:] == bytes(len(out) - 4)  # a failed request leaves no output
    return status, word, out


def verdict(drv, req: D.Request) -> int:
    status, result, out = asym(drv, req)
    assert (status, len(out)) == (OK, 8)
    return result


# ---- configuration, features, structs --------------------------------------------------------------------------
def test_configuration_64_bytes_and_features():
    dev = CryptoDevice(max_dataqueues=3, max_size=12345, profile="asym-rfc3")
    arc4 = C.VIRTIO_CRYPTO_CIPHER_ARC4 in standard.PROFILE.advertised[Service.CIPHER]
    assert dev.config_space() == le32(
        1, 3, 0x1F,  # status HW_READY, max_dataqueues, crypto_services CIPHER..ASYM (bits 0-4)
        0x21FC | (0x2 if arc4 else 0), 0, 0x1FFE, 0x0600007E, 0, 0xE,  # cipher_l/_h, hash, mac_l/_h, aead @12..32
        0x3E,  # asym_algo @36: RSA, DSA, DH, ECDSA, ECDH (bits 1-5)
        0x2B,  # rsa_padding @40: NO_PADDING, PKCS1, OAEP, PSS (bits 0, 1, 3, 5)
        64, 512, 0) + (12345).to_bytes(8, "little")  # max_cipher_key_len @44, max_auth_key_len @48, reserved @52
    assert dev.device_features() == FEATURES
    refuse = asym_rfc3.refuse_features
    assert [refuse(f) is None for f in (0, 0x01, 0x21, 0x3F, 0x20, 0x22)] == [True, True, True, True, False, False]


@pytest.mark.parametrize("struct_, size", [
    (A.VIRTIO_CRYPTO_EC_GROUP, 32), (A.VIRTIO_CRYPTO_DSA_GROUP, 16), (A.VIRTIO_CRYPTO_RSA_PUB_KEY, 8),
    (A.VIRTIO_CRYPTO_RSA_PRIV_KEY_REP1, 8), (A.VIRTIO_CRYPTO_RSA_PRIV_KEY_REP2, 32), (A.VIRTIO_CRYPTO_RSA_PRIV_KEY, 40),
    (A.VIRTIO_CRYPTO_ECDSA_SIGN_PARA, 64), (A.VIRTIO_CRYPTO_DSA_SIGN_PARA, 48), (A.VIRTIO_CRYPTO_RSA_SIGN_PARA, 56),
    (A.VIRTIO_CRYPTO_ECDSA_VERIFY_PARA, 64), (A.VIRTIO_CRYPTO_DSA_VERIFY_PARA, 40),
    (A.VIRTIO_CRYPTO_RSA_VERIFY_PARA, 24), (A.VIRTIO_CRYPTO_RSA_ENC_PARA, 16), (A.VIRTIO_CRYPTO_RSA_DEC_PARA, 48),
    (A.VIRTIO_CRYPTO_RSA_KEYGEN_PARA, 16), (A.VIRTIO_CRYPTO_DSA_KEYGEN_PARA, 8), (A.VIRTIO_CRYPTO_EC_KEYGEN_PARA, 52),
    (A.VIRTIO_CRYPTO_DH_PARAMETER, 16), (A.VIRTIO_CRYPTO_DH_KEYEXCHG_PARA, 24),
    (A.VIRTIO_CRYPTO_ECDH_KEYEXCHG_KEYGEN_PARA, 60), (A.VIRTIO_CRYPTO_ECDH_KEYEXCHG_COMPUTE_KEY_PARA, 76),
    (A.VIRTIO_CRYPTO_DH_KEYEXCHG_COMPUTE_KEY_OUTPUT, 16), (A.VIRTIO_CRYPTO_ASYM_INPUT, 8),
    (A.VIRTIO_CRYPTO_RSA_KEYGEN_INPUT, 56), (A.VIRTIO_CRYPTO_DSA_KEYGEN_INPUT, 32),
    (A.VIRTIO_CRYPTO_DH_KEYEXCHG_KEYGEN_INPUT, 16), (A.VIRTIO_CRYPTO_CONFIG, 64),
])
def test_struct_sizes(struct_, size):
    assert struct_.size == size


def test_the_curve_table_is_checked_against_cryptography(monkeypatch):
    """Every named curve of EC_CURVES is offered, and a wrong coefficient fails the start-up check (the negative
    control of the check that matches the table with cryptography's curves)."""
    from vfu_virtio.devices.crypto import asym_services
    assert set(asym_services.CURVES) == set(A.EC_CURVES)
    p, a, b, *rest = A.EC_CURVES["P-256"]
    monkeypatch.setattr(asym_services, "EC_CURVES", {**A.EC_CURVES, "P-256": (p, a, b + 1, *rest)})
    with pytest.raises(ValueError, match="curve P-256"):
        asym_services._named_curves()


# ---- literal requests --------------------------------------------------------------------------------------------
def p256_group_bytes() -> tuple[bytes, bytes]:
    """virtio_crypto_ec_group (lengths of xg, yg, n, q, a, b, h, reserved) and its data, P-256 written out."""
    p, a, b, gx, gy, n, cofactor = A.EC_CURVES["P-256"]
    data = be(gx, 32) + be(gy, 32) + be(n, 32) + be(p, 32) + be(a, 32) + be(b, 32) + b"\x01"
    return le32(32, 32, 32, 32, 32, 32, 1, 0), data


def ecdsa_p256_sigver() -> list[dict]:
    return [v for v in load("asymmetric/ECDSA/FIPS_186-3/SigVer.rsp", new_on="msg") if v["section"] == "P-256,SHA-256"]


def test_ecdsa_verify_literal_bytes(drv):
    group, group_data = p256_group_bytes()
    for v in ecdsa_p256_sigver()[:4]:
        msg, qx, qy, r, s = h(v["msg"]), *(int(v[k], 16) for k in ("qx", "qy", "r", "s"))
        literal = (header(A.VIRTIO_CRYPTO_ASYM_VERIFY, A.VIRTIO_CRYPTO_ASYM_ECDSA)
                   + le32(C.VIRTIO_CRYPTO_HASH_SHA_256, A.VIRTIO_CRYPTO_EC_FIELD_TYPE_PRIME) + group  # @0, @4, ec @8
                   + le32(32, 32, 32, 32, len(msg), 0) + bytes(16)  # x_len @40 .. msg_len @56, reserved @60; pad
                   + group_data + be(qx, 32) + be(qy, 32) + be(r, 32) + be(s, 32) + msg)  # ec_data, x, y | r, s, msg
        req = AS.ecdsa_verify("P-256", (qx, qy), msg, r, s, C.VIRTIO_CRYPTO_HASH_SHA_256)
        assert req.readable == literal and req.writable == 8
        # an off-curve point ("Q changed") is refused outright: ERR, not a verdict
        status, result, out = asym(drv, D.Request(literal, 8))
        assert (status, result) in ((OK, OK if v["result"].startswith("P") else BADMSG), (ERR, 0)), v


def test_rsa_verify_decrypt_literals_and_idata(drv):
    """AMB-32: RSA verify's signature follows msg (n_len bytes); RSA decrypt reports the recovered length in the
    second idata word, the message at offset 8, zeros after it."""
    ex = load_pkcs1("asymmetric/RSA/pkcs1v15sign-vectors.txt")[0]
    n, e = int(ex["key"]["modulus"].replace(" ", ""), 16), int(ex["key"]["exponent"].replace(" ", ""), 16)
    msg, sig = h(ex["message to be signed"]), h(ex["signature"])
    literal = (header(A.VIRTIO_CRYPTO_ASYM_VERIFY, A.VIRTIO_CRYPTO_ASYM_RSA)
               + le32(C.VIRTIO_CRYPTO_HASH_SHA1, PKCS1, 128, 3, len(msg), 0)  # hash @0, padding @4, pubkey @8,
               + bytes(80 - 24) + be(n, 128) + be(e, 3) + msg + sig)          # msg_len @16, reserved @20
    assert AS.rsa_verify((n, e), msg, sig, PKCS1, C.VIRTIO_CRYPTO_HASH_SHA1).readable == literal
    assert verdict(drv, D.Request(literal, 8)) == OK
    assert verdict(drv, D.Request(literal[:-1] + bytes([sig[-1] ^ 1]), 8)) == BADMSG
    enc = load_pkcs1("asymmetric/RSA/pkcs1v15crypt-vectors.txt")[0]
    k = enc["key"]
    p, q, dp, dq, qinv = (int(k[f"private {x}"].replace(" ", ""), 16) for x in (
        "prime 1", "prime 2", "prime exponent 1", "prime exponent 2", "coefficient"))
    cmsg, plain = h(enc["encryption"]), h(enc["message"])
    key_data = b"".join(be(x, 64) for x in (p, q, dp, dq, qinv))
    literal = (header(A.VIRTIO_CRYPTO_ASYM_DECRYPT, A.VIRTIO_CRYPTO_ASYM_RSA)
               + le32(PKCS1, 2, A.VIRTIO_CRYPTO_RSA_PRIV_KEY_REPTYPE2)  # padding_mode @0, prime_number @4, rep @8
               + le32(64, 64, 64, 64, 64, 0, 0, 0)  # p_len @12, q_len, dp_len, dq_len, qinv_len, r, d, t lengths
               + le32(len(cmsg)) + bytes(80 - 48) + key_data + cmsg)  # cmsg_len @44
    assert AS.rsa_decrypt((p, q, dp, dq, qinv), cmsg, PKCS1).readable == literal
    status, length, out = asym(drv, D.Request(literal, 8 + len(cmsg)))
    assert out == le32(OK, len(plain)) + plain + bytes(len(cmsg) - len(plain)) and status == OK


def test_dh_and_ecdh_compute_literals(drv):
    """DH compute: dh_param {modules_len, reserved, p_len, g_len} after keyexchg_op, then p, g, the 16-byte odata
    head and x, y. ECDH compute (AMB-32): keyexchg_op COMPUTE_KEY; the inner parameter's d_len, x_len, y_len are
    ignored; keyexchg_op GEN_KEY (the RFC's driver rule) reads another struct and gives no secret."""
    v = load("asymmetric/DH/RFC5114.txt")[0]
    p, g, x, y, z = (int(v[k], 16) for k in ("p", "g", "xstatiut", "ystatcavs", "z"))
    pb, gb, xb, yb = be(p, 128), be(g, 128), AS.be(x), be(y, 128)
    literal = (header(A.VIRTIO_CRYPTO_ASYM_KEY_EXCHG, A.VIRTIO_CRYPTO_ASYM_DH)
               + le32(A.VIRTIO_CRYPTO_KEY_EXCHANGE_COMPUTE_KEY, 0, 128, 0, 128, 128) + bytes(80 - 24)
               + pb + gb + le32(len(xb), 128, 128, 0) + xb + yb)  # odata: x_len, y_len, shared_secret_len, reserved
    assert AS.dh_compute(p, g, x, y).readable == literal
    assert asym(drv, D.Request(literal, 136)) == (OK, 0, le32(OK, 0) + be(z, 128))
    rec = next(r for r in load("asymmetric/ECDH/KASValidityTest_ECCStaticUnified_NOKC_ZZOnly_init.fax")
               if r.get("section") == "EC - SHA256" and r["result"].startswith("P"))
    d, qx, qy, z = (int(rec[k], 16) for k in ("dsiut", "qscavsx", "qscavsy", "z"))
    group, group_data = p256_group_bytes()

    def ecdh(keyexchg_op: int, inner: tuple[int, int, int]) -> bytes:
        para = le32(keyexchg_op, 0, 32, 32, 32, 32)  # keyexchg_op @0, reserved, d_len @8, x_len, y_len, secret @20
        inner_para = le32(A.VIRTIO_CRYPTO_EC_FIELD_TYPE_PRIME, 0) + group + le32(*inner)  # parameter @24..75
        return (header(A.VIRTIO_CRYPTO_ASYM_KEY_EXCHG, A.VIRTIO_CRYPTO_ASYM_ECDH) + para + inner_para + bytes(4)
                + group_data + be(d, 32) + be(qx, 32) + be(qy, 32))
    assert AS.ecdh_compute("P-256", d, (qx, qy)).readable == ecdh(A.VIRTIO_CRYPTO_KEY_EXCHANGE_COMPUTE_KEY,
                                                                  (32, 32, 32))
    want = le32(OK, 0) + be(z, 32)
    assert asym(drv, D.Request(ecdh(A.VIRTIO_CRYPTO_KEY_EXCHANGE_COMPUTE_KEY, (7, 7, 7)), 40))[2] == want
    assert asym(drv, D.Request(ecdh(A.VIRTIO_CRYPTO_KEY_EXCHANGE_GEN_KEY, (32, 32, 32)), 40))[2] != want


def test_keygen_idata_layouts(drv):
    status, _res, out = asym(drv, AS.rsa_keygen(128))  # rep2
    assert status == OK and len(out) == 56 + 5 * 64 + 128 + 3
    assert out[8:56] == le32(2, A.VIRTIO_CRYPTO_RSA_PRIV_KEY_REPTYPE2, 64, 64, 64, 64, 64, 0, 0, 0, 128, 3)
    p, q, dp, dq, qinv, n, e = AS.numbers_at(out, 56, (64, 64, 64, 64, 64, 128, 3))
    assert (p * q, e, dp, dq, qinv) == (n, 65537, rsa.rsa_crt_dmp1(rsa.rsa_recover_private_exponent(e, p, q), p),
                                        rsa.rsa_crt_dmq1(rsa.rsa_recover_private_exponent(e, p, q), q),
                                        rsa.rsa_crt_iqmp(p, q))
    status, _res, out = asym(drv, AS.rsa_keygen(128, A.VIRTIO_CRYPTO_RSA_PRIV_KEY_REPTYPE1, e=3))
    assert out[8:56] == le32(2, A.VIRTIO_CRYPTO_RSA_PRIV_KEY_REPTYPE1, 128, 128, 0, 0, 0, 0, 0, 0, 128, 1)
    n, d, n2, e = AS.numbers_at(out, 56, (128, 128, 128, 1))
    assert (n, e, pow(pow(5, 3, n), d, n)) == (n2, 3, 5)
    status, _res, out = asym(drv, AS.dsa_keygen(128))
    assert status == OK and out[8:32] == le32(128, 20, 128, 0, 20, 128)  # dsa group lengths, x_len, y_len
    p, q, g, x, y = AS.dsa_key_pair(out)
    assert pow(g, x, p) == y and (p - 1) % q == 0 and out[32 + 128 * 3 + 40:] == bytes(24)  # q room left zero
    status, _res, out = asym(drv, AS.dh_param_gen(64))
    assert status == OK and out[8:16] == le32(64, 64)
    p, g = AS.dh_pair(out)
    assert (p.bit_length(), g) == (512, 2)


# ---- known answers -------------------------------------------------------------------------------------------------
def test_ecdsa_sigver_fips_186_3(drv):
    """P-192..P-521, SHA-1..SHA-512: P -> verdict OK, F -> BADMSG (or ERR when the changed key is off the curve)."""
    n = 0
    for v in load("asymmetric/ECDSA/FIPS_186-3/SigVer.rsp", new_on="msg", limit=160):
        curve, sha = v["section"].split(",")
        if curve not in CURVES:
            continue
        req = AS.ecdsa_verify(curve, (int(v["qx"], 16), int(v["qy"], 16)), h(v["msg"]), int(v["r"], 16),
                              int(v["s"], 16), SHA[sha][0])
        status, result, _out = asym(drv, req)
        assert (status, result) in ((OK, OK if v["result"].startswith("P") else BADMSG), (ERR, 0)), v
        assert status == OK or not v["result"].startswith("P")
        n += 1
    assert n >= 50


def test_ecdsa_siggen_the_device_signs_the_host_verifies(drv):
    n = 0
    for v in load("asymmetric/ECDSA/FIPS_186-3/SigGen.txt", new_on="msg", limit=120):
        curve, sha = v["section"].split(",")
        if curve not in CURVES:
            continue
        msg, d = h(v["msg"]), int(v["d"], 16)
        status, _res, out = asym(drv, AS.ecdsa_sign(curve, d, msg, SHA[sha][0], k=AS.be(int(v["k"], 16))))
        size = AS.order_size(curve)
        r, s = AS.numbers(out, size, size)
        public = ec.EllipticCurvePublicNumbers(int(v["qx"], 16), int(v["qy"], 16), CURVES[curve]()).public_key()
        public.verify(utils.encode_dss_signature(r, s), msg, ec.ECDSA(SHA[sha][1]()))
        n += 1
    assert n > 30


def load_fips(rel: str, start: str, keys: tuple[str, ...], limit: int) -> list[dict]:
    """FIPS 186 files whose ``keys`` (the domain parameters or the modulus) are given once for the records after them:
    ``[...]`` headers as "section", records from a ``start`` line on, sampled down to about ``limit``."""
    records: list[dict] = []
    shared: dict = {}
    for raw in (VECTORS / rel).read_text().splitlines():
        line = raw.strip()
        if line.startswith("["):
            shared = {"section": line.strip("[]")}
        elif "=" in line and not line.startswith("#"):
            key, value = (x.strip() for x in line.split("=", 1))
            key = key.lower()
            if key in keys:
                shared = {**shared, key: value}
                continue
            if key == start:
                records.append(dict(shared))
            if records:
                records[-1][key] = value
    return records[::max(1, len(records) // limit)]


def load_dsa(rel: str, limit: int) -> list[dict]:
    """FIPS 186 DSA files: ``[mod = L=.., N=.., SHA-x]`` sections ("sha"), P, Q, G, records from ``Msg``."""
    records = load_fips(rel, "msg", ("p", "q", "g"), limit)
    for v in records:
        v["sha"] = v["section"].split(",")[-1].strip()
    return records


def test_dsa_sigver_fips_186_3(drv):
    n = 0
    for v in load_dsa("asymmetric/DSA/FIPS_186-3/SigVer.rsp", limit=60):
        group = tuple(int(v[k], 16) for k in ("p", "q", "g"))
        req = AS.dsa_verify(group, int(v["y"], 16), h(v["msg"]), int(v["r"], 16), int(v["s"], 16), SHA[v["sha"]][0])
        assert verdict(drv, req) == (OK if v["result"].startswith("P") else BADMSG), v
        n += 1
    assert n >= 50


def test_dsa_siggen_the_device_signs_the_host_verifies(drv):
    for v in load_dsa("asymmetric/DSA/FIPS_186-3/SigGen.txt", limit=20):
        group = tuple(int(v[k], 16) for k in ("p", "q", "g"))
        msg, q_size = h(v["msg"]), AS.nbytes(group[1])
        status, _res, out = asym(drv, AS.dsa_sign(group, int(v["x"], 16), msg, SHA[v["sha"]][0]))
        r, s = AS.numbers(out, q_size, q_size)
        public = dsa.DSAPublicNumbers(int(v["y"], 16), dsa.DSAParameterNumbers(*group)).public_key()
        public.verify(utils.encode_dss_signature(r, s), msg, SHA[v["sha"]][1]())


def pkcs1_numbers(key: dict) -> tuple[int, ...]:
    """(n, e, d, p, q, dp, dq, qinv) of a PKCS#1 example key."""
    labels = ("modulus", "exponent", "private exponent", "private prime 1", "private prime 2",
              "private prime exponent 1", "private prime exponent 2", "private coefficient")
    return tuple(int(key[x].replace(" ", ""), 16) for x in labels)


def test_rsa_pkcs1v15_signatures_both_key_forms_and_raw(drv):
    """PKCS#1 v1.5 SHA-1 signatures are deterministic: the device's equal the published ones with the private key as
    (n, d) and as (p, q, dp, dq, qinv); verify gives OK, a flipped bit BADMSG; raw RSA of a signature is its
    EMSA-PKCS1-v1_5 block, and raw RSA of that block the signature again."""
    examples = load_pkcs1("asymmetric/RSA/pkcs1v15sign-vectors.txt")
    for ex in examples[::12]:
        n, e, d, p, q, dp, dq, qinv = pkcs1_numbers(ex["key"])
        k = AS.nbytes(n)
        msg, sig = h(ex["message to be signed"]), h(ex["signature"])
        for private in ((n, d), (p, q, dp, dq, qinv)):
            status, _res, out = asym(drv, AS.rsa_sign(private, msg, PKCS1, C.VIRTIO_CRYPTO_HASH_SHA1, k))
            assert (status, AS.output(out, k)[0]) == (OK, sig)
        assert verdict(drv, AS.rsa_verify((n, e), msg, sig, PKCS1, C.VIRTIO_CRYPTO_HASH_SHA1)) == OK
        bad = bytes([sig[0] ^ 1]) + sig[1:]
        assert verdict(drv, AS.rsa_verify((n, e), msg, bad, PKCS1, C.VIRTIO_CRYPTO_HASH_SHA1)) == BADMSG
        digest = hashes.Hash(hashes.SHA1())
        digest.update(msg)
        info = bytes.fromhex("3021300906052b0e03021a05000414") + digest.finalize()
        em = b"\x00\x01" + b"\xff" * (k - 3 - len(info)) + b"\x00" + info
        status, _res, out = asym(drv, AS.rsa_encrypt((n, e), sig, RAW))
        assert (status, AS.output(out, k)[0]) == (OK, em)
        status, _res, out = asym(drv, AS.rsa_decrypt((p, q, dp, dq, qinv), em, RAW))
        assert (status, AS.output(out, k)[0]) == (OK, sig)


def test_rsa_pkcs1v15_sigver_fips_186(drv):
    n = 0
    for v in load_fips("asymmetric/RSA/FIPS_186-2/SigVer15_186-3.rsp", "shaalg", ("n", "p", "q"), limit=60):
        sha = v["shaalg"].replace("SHA", "SHA-")
        req = AS.rsa_verify((int(v["n"], 16), int(v["e"], 16)), h(v["msg"]), h(v["s"]), PKCS1, SHA[sha][0])
        assert verdict(drv, req) == (OK if v["result"].startswith("P") else BADMSG), v
        n += 1
    assert n >= 50


def test_rsa_decryption_pkcs1v15_and_oaep_examples(drv):
    for rel, marker, pad in (("asymmetric/RSA/pkcs1v15crypt-vectors.txt", "# PKCS#1 v1.5", PKCS1),
                             ("asymmetric/RSA/pkcs-1v2-1d2-vec/oaep-vect.txt", "# OAEP", OAEP)):
        examples = load_pkcs1(rel, marker)
        assert len(examples) >= 50
        for ex in examples[::7]:
            n, e, d, p, q, dp, dq, qinv = pkcs1_numbers(ex["key"])
            cmsg, plain = h(ex["encryption"]), h(ex["message"])
            status, length, out = asym(drv, AS.rsa_decrypt((n, d) if len(plain) % 2 else (p, q, dp, dq, qinv), cmsg,
                                                           pad))
            assert (status, length, AS.output(out, length)[0]) == (OK, len(plain), plain), rel


def test_rsa_pss_examples_verify_and_the_device_signs(drv):
    examples = load_pkcs1("asymmetric/RSA/pkcs-1v2-1d2-vec/pss-vect.txt", "# PSS")
    assert len(examples) >= 50
    for ex in examples[::5]:
        n, e, d, p, q, dp, dq, qinv = pkcs1_numbers(ex["key"])
        msg, sig = h(ex["message to be signed"]), h(ex["signature"])
        assert verdict(drv, AS.rsa_verify((n, e), msg, sig, PSS, C.VIRTIO_CRYPTO_HASH_SHA1)) == OK
        assert verdict(drv, AS.rsa_verify((n, e), msg + b"!", sig, PSS, C.VIRTIO_CRYPTO_HASH_SHA1)) == BADMSG
        status, _res, out = asym(drv, AS.rsa_sign((p, q, dp, dq, qinv), msg, PSS, C.VIRTIO_CRYPTO_HASH_SHA1,
                                                  AS.nbytes(n)))
        rsa.RSAPublicNumbers(e, n).public_key().verify(
            AS.output(out, AS.nbytes(n))[0], msg, padding.PSS(padding.MGF1(hashes.SHA1()), padding.PSS.DIGEST_LENGTH),
            hashes.SHA1())


def test_dh_rfc_5114(drv):
    for v in load("asymmetric/DH/RFC5114.txt"):
        p, g, z = int(v["p"], 16), int(v["g"], 16), int(v["z"], 16)
        width = AS.nbytes(p)
        for own, peer in (("xstatiut", "ystatcavs"), ("xstatcavs", "ystatiut")):
            status, _res, out = asym(drv, AS.dh_compute(p, g, int(v[own], 16), int(v[peer], 16)))
            assert (status, AS.numbers(out, width)) == (OK, [z]), v["count"]


def test_ecdh_nist_kas_and_rfc_7027(drv):
    """NIST KAS ECC CDH (P-192..P-521): P -> Z; an IUT key that fails validation or a changed Z gives no Z. RFC 7027:
    both directions on the brainpool curves."""
    curves = {"EA": "P-192", "EB": "P-224", "EC": "P-256", "ED": "P-384", "EE": "P-521"}
    n = 0
    for v in load("asymmetric/ECDH/KASValidityTest_ECCStaticUnified_NOKC_ZZOnly_init.fax"):
        curve = curves[v["section"].split()[0]]
        d, x, y, z = (int(v[k], 16) for k in ("dsiut", "qscavsx", "qscavsy", "z"))
        status, _res, out = asym(drv, AS.ecdh_compute(curve, d, (x, y)))
        if v["result"].startswith("P"):
            assert (status, AS.numbers(out, AS.field_size(curve))) == (OK, [z]), v
            n += 1
        else:
            assert status == ERR or AS.numbers(out, AS.field_size(curve)) != [z], v
    assert n >= 25
    for v in load("asymmetric/ECDH/brainpool.txt"):
        curve = v["curve"]
        for own, peer in (("da", "qb"), ("db", "qa")):
            req = AS.ecdh_compute(curve, int(v[own], 16), (int(v[f"x_{peer}"], 16), int(v[f"y_{peer}"], 16)))
            status, _res, out = asym(drv, req)
            assert (status, AS.numbers(out, AS.field_size(curve))) == (OK, [int(v["x_z"], 16)]), curve


# ---- key generation round trips -------------------------------------------------------------------------------------
@pytest.mark.parametrize("rep_type", [A.VIRTIO_CRYPTO_RSA_PRIV_KEY_REPTYPE1, A.VIRTIO_CRYPTO_RSA_PRIV_KEY_REPTYPE2])
def test_rsa_keygen_round_trip(drv, rep_type):
    status, _res, out = asym(drv, AS.rsa_keygen(128, rep_type))
    key = AS.rsa_key_pair(out)
    assert (status, key.rep_type, key.e, key.n.bit_length()) == (OK, rep_type, 65537, 1024)
    status, _res, out = asym(drv, AS.rsa_sign(key.private, b"message", PKCS1, C.VIRTIO_CRYPTO_HASH_SHA_256, 128))
    public = rsa.RSAPublicNumbers(key.e, key.n).public_key()
    public.verify(AS.output(out, 128)[0], b"message", padding.PKCS1v15(), hashes.SHA256())
    cmsg = public.encrypt(b"for the device", padding.OAEP(padding.MGF1(hashes.SHA1()), hashes.SHA1(), None))
    status, length, out = asym(drv, AS.rsa_decrypt(key.private, cmsg, OAEP))
    assert AS.output(out, length) == [b"for the device"]


def test_dsa_keygen_round_trip(drv):
    status, _res, out = asym(drv, AS.dsa_keygen(128))
    p, q, g, x, y = AS.dsa_key_pair(out)
    status, _res, out = asym(drv, AS.dsa_sign((p, q, g), x, b"message", C.VIRTIO_CRYPTO_HASH_SHA_256))
    r, s = AS.numbers(out, 20, 20)
    public = dsa.DSAPublicNumbers(y, dsa.DSAParameterNumbers(p, q, g)).public_key()
    public.verify(utils.encode_dss_signature(r, s), b"message", hashes.SHA256())


@pytest.mark.parametrize("curve", ["P-256", "P-521", "secp256k1", "brainpoolP384r1"])
def test_ec_keygen_round_trips(drv, curve):
    width, size = AS.field_size(curve), AS.order_size(curve)
    status, _res, out = asym(drv, AS.ec_keygen(curve))
    d, x, y = AS.numbers(out, size, width, width)
    status, _res, out = asym(drv, AS.ecdsa_sign(curve, d, b"message", C.VIRTIO_CRYPTO_HASH_SHA_384))
    r, s = AS.numbers(out, size, size)
    curve_class = CURVES.get(curve, ec.SECP256K1)
    public = ec.EllipticCurvePublicNumbers(x, y, curve_class()).public_key()
    public.verify(utils.encode_dss_signature(r, s), b"message", ec.ECDSA(hashes.SHA384()))
    pairs = [AS.numbers(asym(drv, AS.ecdh_keygen(curve))[2], size, width, width) for _ in range(2)]
    secrets = [asym(drv, AS.ecdh_compute(curve, mine[0], theirs[1:]))[2] for mine, theirs in (pairs, pairs[::-1])]
    host = ec.derive_private_key(pairs[0][0], curve_class()).exchange(
        ec.ECDH(), ec.EllipticCurvePublicNumbers(*pairs[1][1:], curve_class()).public_key())
    assert secrets[0] == secrets[1] == le32(OK, 0) + host


def test_dh_paramgen_keygen_agreement(drv):
    status, _res, out = asym(drv, AS.dh_param_gen(64))
    p, g = AS.dh_pair(out)
    pairs = [AS.dh_pair(asym(drv, AS.dh_keygen(p, g))[2]) for _ in range(2)]
    secrets = [asym(drv, AS.dh_compute(p, g, mine[0], theirs[1]))[2] for mine, theirs in (pairs, pairs[::-1])]
    numbers = dh.DHParameterNumbers(p, g)
    host = dh.DHPrivateNumbers(pairs[0][0], dh.DHPublicNumbers(pairs[0][1], numbers)).private_key().exchange(
        dh.DHPublicNumbers(pairs[1][1], numbers).public_key())
    assert secrets[0] == secrets[1] == le32(OK, 0) + host


# ---- what is refused -------------------------------------------------------------------------------------------------
def p256_key() -> tuple[int, int, int]:
    numbers = ec.derive_private_key(0x1234567, ec.SECP256R1()).private_numbers()
    return numbers.private_value, numbers.public_numbers.x, numbers.public_numbers.y


def test_off_curve_points_are_err(drv):
    d, x, y = p256_key()
    assert asym(drv, AS.ecdh_compute("P-256", d, (x, y + 1)))[:2] == (ERR, 0)
    assert asym(drv, AS.ecdsa_verify("P-256", (x, y + 1), b"m", 1, 1, C.VIRTIO_CRYPTO_HASH_SHA_256))[:2] == (ERR, 0)
    assert asym(drv, AS.ecdsa_sign("P-256", 0, b"m", C.VIRTIO_CRYPTO_HASH_SHA_256))[0] == ERR  # d = 0
    group = (*A.EC_CURVES["P-256"][:2], A.EC_CURVES["P-256"][2] + 1, *A.EC_CURVES["P-256"][3:])  # another b
    assert asym(drv, AS.ecdh_compute(group, d, (x, y)))[0] == NOTSUPP  # not a curve the device has


def test_lengths_out_of_range_are_err(drv):
    d, x, y = p256_key()
    req = AS.ecdsa_sign("P-256", d, b"message", C.VIRTIO_CRYPTO_HASH_SHA_256)
    assert asym(drv, D.Request(req.readable[:-1], req.writable))[0] == ERR  # msg_len beyond what is readable
    assert asym(drv, req, writable=req.writable - 1)[0] == ERR  # idata does not fit the writable part
    assert drv.raw(req, writable=3) == (b"\x01\x00\x00", 3)  # not even the le32 status fits: its first bytes
    assert asym(drv, AS.ecdsa_sign("P-256", d, b"m", C.VIRTIO_CRYPTO_HASH_SHA_256, r_len=31))[0] == ERR
    huge = bytes(70000)  # over max_size (64 KiB): refused before a byte of it is read
    assert asym(drv, AS.ecdsa_sign("P-256", d, huge, C.VIRTIO_CRYPTO_HASH_SHA_256))[0] == ERR
    assert asym(drv, AS.rsa_keygen(512))[0] == NOTSUPP  # 4096 bits, over the bound of 2048
    assert asym(drv, AS.dsa_keygen(256))[0] == NOTSUPP
    assert asym(drv, AS.dh_param_gen(128))[0] == NOTSUPP


def test_what_is_not_offered_is_notsupp(drv):
    d, x, y = p256_key()
    sign = AS.ecdsa_sign("P-256", d, b"m", C.VIRTIO_CRYPTO_HASH_SHA_256)
    for algo in (A.VIRTIO_CRYPTO_ASYM_NONE, 6, A.VIRTIO_CRYPTO_ASYM_DH):  # unknown, and DH cannot sign
        readable = sign.readable[:4] + le32(algo) + sign.readable[8:]
        assert asym(drv, D.Request(readable, sign.writable))[0] == NOTSUPP
    ex = load_pkcs1("asymmetric/RSA/pkcs1v15sign-vectors.txt")[0]
    n, e, dd, p, q, dp, dq, qinv = pkcs1_numbers(ex["key"])
    for pad in (A.VIRTIO_CRYPTO_RSA_SSLV23_PADDING, A.VIRTIO_CRYPTO_RSA_X931_PADDING, 9, OAEP):  # OAEP cannot sign
        assert asym(drv, AS.rsa_sign((p, q, dp, dq, qinv), b"m", pad, C.VIRTIO_CRYPTO_HASH_SHA1, 128))[0] == NOTSUPP
    assert asym(drv, AS.rsa_encrypt((n, e), b"m", PSS))[0] == NOTSUPP
    three_primes = AS.rsa_sign((p, q, dp, dq, qinv), b"m", PKCS1, C.VIRTIO_CRYPTO_HASH_SHA1, 128)
    readable = three_primes.readable[:32] + le32(3) + three_primes.readable[36:]  # priv_key.prime_number @32
    assert asym(drv, D.Request(readable, three_primes.writable))[0] == NOTSUPP
    rep_type = three_primes.readable[:36] + le32(7) + three_primes.readable[40:]  # priv_key_rep_type @36: 7
    assert asym(drv, D.Request(rep_type, three_primes.writable))[0] == ERR
    lam = (p - 1) * (q - 1) // math.gcd(p - 1, q - 1)
    e7 = next(e for e in (7, 11, 13, 19, 23) if math.gcd(e, lam) == 1)  # no Fermat prime: (n, d) gives no e
    assert asym(drv, AS.rsa_sign((n, pow(e7, -1, lam)), b"m", PKCS1, C.VIRTIO_CRYPTO_HASH_SHA1, 128))[0] == NOTSUPP
    assert asym(drv, AS.rsa_sign((n, dd), b"m", PKCS1, C.VIRTIO_CRYPTO_HASH_SHA1, 128))[0] == OK  # e 65537
    assert asym(drv, AS.ecdh_compute("P-256", d, (x, y),
                                     field_type=A.VIRTIO_CRYPTO_EC_FIELD_TYPE_BINARY))[0] == NOTSUPP
    assert asym(drv, AS.ecdh_compute("P-256", d, (x, y), field_type=9))[0] == ERR
    assert asym(drv, AS.ecdh_compute("P-256", d, (x, y), keyexchg_op=A.VIRTIO_CRYPTO_KEY_EXCHANGE_GEN_DH_PARAM))[0] \
        == ERR
    assert asym(drv, AS.rsa_keygen(128, primes=3))[0] == NOTSUPP
    assert asym(drv, AS.rsa_keygen(128, e=17))[0] == NOTSUPP


def test_asym_needs_its_feature_bit_and_faults_change_nothing():
    """Without VIRTIO_CRYPTO_F_ASYM an ASYM request is NOTSUPP, in idata's place (le32 at offset 0); v16's
    requests go on; a device that answered every fault above still serves (no session was made, none lost)."""
    dev = CryptoDevice(max_dataqueues=1, profile="asym-rfc3")
    drv = InProcess(dev, 0x1F)
    d, x, y = p256_key()
    assert asym(drv, AS.ecdh_compute("P-256", d, (x, y))) == (NOTSUPP, 0, le32(NOTSUPP, 0) + bytes(32))
    assert drv.data(V16.hash_data_non_sess(C.VIRTIO_CRYPTO_HASH_SHA_256, b"abc", 32)).status == OK
    assert len(dev.sessions) == 0
    dev.close()


# ---- hostile input ---------------------------------------------------------------------------------------------------
@settings(max_examples=250, deadline=None)
@given(opcode=st.sampled_from(A.OPCODES), algo=st.integers(0, 6), body=st.binary(max_size=300),
       capacity=st.integers(0, 300))
def test_fuzz_asym_requests_always_complete(opcode, algo, body, capacity):
    dev = CryptoDevice(max_dataqueues=1, max_size=512, profile="asym-rfc3", max_rsa_keygen_bits=1024,
                       max_dsa_keygen_bits=1024, max_dh_param_bits=512)
    dev.activate(FEATURES)
    readable = header(opcode, algo) + bytes(b % 40 for b in body[:80]) + body[80:]
    out = bytearray(b"\xee" * capacity)
    used = handle(dev, 0, DescriptorChain(0, [memoryview(bytearray(readable))], [memoryview(out)]))
    dev.close()
    assert used == capacity
    if capacity:
        assert out[0] in (OK, ERR, BADMSG, NOTSUPP) and b"\xee" not in out


# ---- a real server, split and packed virtqueues ---------------------------------------------------------------------
def test_asym_served_end_to_end(serve, ring):
    server = serve("crypto", "--queues", "2", "--profile", "asym-rfc3", "--max-dh-param-bits", "512")
    packed = PACKED if ring == "packed" else 0
    with VirtioPciDriver.connect(server.socket) as drv:
        assert drv.device_features() & 0xFFFFFF == FEATURES
        drv.begin_init()
        drv.set_features_raw(bit(VIRTIO_F_VERSION_1) | packed | 1 << A.VIRTIO_CRYPTO_F_ASYM)
        assert drv.features_ok() is False
    with VirtioPciDriver.connect(server.socket) as drv:
        drv.init(features_wanted=bit(VIRTIO_F_VERSION_1) | packed | FEATURES)
        assert drv.device_config() == CryptoDevice(max_dataqueues=2, profile="asym-rfc3").config_space()
        q = drv.queue(1)
        keys = []
        for _ in range(2):  # ECDH on P-256: two key pairs, then each side's secret, split over descriptors
            req = AS.ecdh_keygen("P-256")
            used, (idata,) = q.request([req.readable[:104], req.readable[104:]], [req.writable])
            assert (used, AS.idata_head(idata)) == (req.writable, (OK, 0))
            keys.append(AS.numbers(idata, 32, 32, 32))
        secrets = []
        for mine, theirs in ((keys[0], keys[1]), (keys[1], keys[0])):
            req = AS.ecdh_compute("P-256", mine[0], theirs[1:])
            used, (status, secret) = q.request([req.readable[:50], req.readable[50:]], [8, 32])
            assert (used, status) == (40, le32(OK, 0))
            secrets.append(secret)
        host = ec.derive_private_key(keys[0][0], ec.SECP256R1()).exchange(
            ec.ECDH(), ec.EllipticCurvePublicNumbers(*keys[1][1:], ec.SECP256R1()).public_key())
        assert secrets == [host, host]
        # key generation runs on the queue's worker: a hash request kicked after it completes first (a round in
        # which the worker won the race is tried again; five in a row would mean it ran on the event loop)
        orders = []
        for _ in range(5):
            q.submit([AS.dh_param_gen(64).readable], [AS.dh_param_gen(64).writable], token="keygen")
            q.submit([V16.hash_data_non_sess(C.VIRTIO_CRYPTO_HASH_SHA_256, b"abc", 32).readable], [33], token="hash")
            q.kick(force=True)
            done = q.wait(timeout=60, min_completions=2)
            assert {c.token: AS.idata_head(c.data[0])[0] if c.token == "keygen" else c.data[0][32]
                    for c in done} == {"keygen": OK, "hash": OK}
            orders.append([c.token for c in done])
            if orders[-1][0] == "hash":
                break
        assert orders[-1] == ["hash", "keygen"], orders
