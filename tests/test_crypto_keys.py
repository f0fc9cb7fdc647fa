"""AKCIPHER keys on both sides of the line (AMB-KEYS): what Linux sends is accepted, malformed keys are refused.

Every key is a literal, written from the structures (PKCS#1 A.1, RFC 5915, SEC 1, X.690) byte by byte, never
produced by the code under test. The Linux side uses the kernel's own self-test keys from ``crypto/testmgr.h``
(``rsa_tv_template``; found byte for byte in the kit's 6.1 and 7.3 kernel images), with the plaintext and ciphertext
the kernel checks. Requests go through a device object (``crypto_harness.InProcess``) without and with
``VIRTIO_CRYPTO_F_REVISION_1``: a refused key is ERR without it and KEY_REJECTED with it; ``test_crypto_e2e.py``
checks the same bytes over a real server.
"""
from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

from vfu_virtio.abi import crypto as C
from vfu_virtio.client import crypto as D
from vfu_virtio.devices.crypto import CryptoDevice
from vfu_virtio.devices.crypto.keys import RSA_MAX_BITS

from crypto_harness import InProcess

OK, ERR, NOTSUPP, KEY_REJECTED = 0, 1, 3, 6
REV1 = 1 << C.VIRTIO_CRYPTO_F_REVISION_1
RSA, ECDSA = C.VIRTIO_CRYPTO_AKCIPHER_RSA, C.VIRTIO_CRYPTO_AKCIPHER_ECDSA
PUBLIC, PRIVATE = C.VIRTIO_CRYPTO_AKCIPHER_KEY_TYPE_PUBLIC, C.VIRTIO_CRYPTO_AKCIPHER_KEY_TYPE_PRIVATE
P256, P384, P521 = C.VIRTIO_CRYPTO_CURVE_NIST_P256, C.VIRTIO_CRYPTO_CURVE_NIST_P384, C.VIRTIO_CRYPTO_CURVE_NIST_P521

# ---- the Linux kernel's rsa self-test (crypto/testmgr.h, rsa_tv_template) -------------------------------------
#: The 2048-bit public key (public_key_vec): SEQUENCE { INTEGER n (256 octets, the top bit set, no 0x00 in front:
#: negative in DER), INTEGER 65537 }.
LINUX_PUBLIC_2048 = bytes.fromhex(
    "30820109" "02820100"
    "db101ac2a3f1dcff136bed44dff0026d13c788da706b54f1e827dcc30f996afac667ff1d1e3c1dc1b55f6cc0b2073a6d"
    "41e42599acfcd20f02d3d154061a5177bdb6bfeaa75c06a95d698445d7f505ba47f01bd72b24eccb9b1b108d81a0beb1"
    "8c33e436b843eb192a818dde810a9948b6f6bccd49343a8f2694e328821a7c8f599f45e85d1a4576045605a1d01b8c77"
    "6daf53fa71e267e09afe03a985d2c9aaba2abcf4a008f51398135df0d933342a61c38955f0ae1a9c22ee19058d32feec"
    "9c84bab7f96c3a4f07fc45eb12e57bfd55e62969d1c2e8b97859f67910c64eeb6a5eb99ac7c45b63daa33f5e927a815e"
    "d6b0e2628f7426c20cd39a1747e68eab"
    "0203010001")
#: The same key as DER writes it: the modulus INTEGER with its 0x00 octet.
DER_PUBLIC_2048 = bytes.fromhex("3082010a" "0282010100") + LINUX_PUBLIC_2048[8:]
LINUX_M = bytes.fromhex("54859b342c49ea2a")
LINUX_C_2048 = bytes.fromhex(
    "b29776b4ae3e383c7e641fcca27ff6becf49bc48d36c8f0a0ec173bd7b5579360ea18788b92c90a6535ee9efc4e24ddd"
    "f7a669823f56a47bfb62e0aeb8d304b3ac5a152ae3199b039a0b41da64ec0a69fcf21092f3c1bf847ffd2caec8b5f641"
    "70c547038af8ff6f3fd26f09b422f330bea985cb9c8df98feb3291a225848ff5dcc7069c2de5112c09098709a9f63373"
    "90f160f265dd30a566ce627bd0f82d3d198277e30a5f752f8eb1e5e891351b3b33b76692d1f28e6fe5750cad36fb4ed0"
    "6661bd49fef41aa22b49fe034c74478d9a66b249464d77ea334d6b3cb4494ac67d3db5b9564115670f943c936527e021"
    "5d59c362d5a6da3826225e341c94af98")
#: The 512-bit key pair (e = 17), strict DER: its parts, then the RSAPrivateKey the kernel sends.
N512 = ("aa36abce88acfdff55523c7fc4523f90efa00df3774a259f2e62b4c5d99cb5adb300a0285e5301930e0c70fb6876939c"
        "e616ce624a11e0086d341ebcaca0a1f5")
D512 = ("0a033748626487695f5f30bc38b98b44c2cd2dff434098cd20d8a138d090bf64797c3fa7a2cdcb3cd1e0bdba2654b4f9"
        "df8e8ae59d733d9f33b301624afd1d51")
CRT512 = ("022100d840b41666b42e92ea0da3b43204b5cfce3352524d0416a5a441e700af46120d"        # prime1
          "022100c97fb1f027f453f6341233eaaad1d9353f6c42d08866b1d05a0f2035028b9d89"        # prime2
          "0220590b9572a2c2a9c406059dc2ab2f1dafeb7e8b4f10a7549e8eedf5b4fce09e05"          # exponent1
          "0221008e3c0521fe15e0ea06a36ff0f10c9952c35b7a7514fd3238b80aad5298628d51"        # exponent2
          "0220363ff7189da8e90b1d341f71d09b76a8a943e11d10b24d249f2deafef80c1826")         # coefficient
LINUX_PRIVATE_512 = bytes.fromhex("30820138" "020100" "024100" + N512 + "020111" "0240" + D512 + CRT512)
LINUX_C_512 = bytes.fromhex(
    "631ccd7be17ee4dec9a889a174cb3c637d24ec83c315e47f730534d1ec22bb8a5e32396dc11d7d503b9f7aadf02e2553"
    "9f6ebd4c55840c9bcf1a4b511e9e0c06")

# ---- ECDSA: RFC 6979 A.2.5 (P-256) --------------------------------------------------------------------------
D_P256 = "c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721"
Q_P256 = ("60fed4ba255a9d31c961eb74c6356d68c049b8923b61fa6ce669622e60f29fb6"
          "7903fe1008b8bc99a41ae9e95628bc64f2f1b20c2d7e9f5177a3c294d4462299")
G_P256 = ("6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"      # the base point: another key's point
          "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5")
ORDER_P256 = "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551"
OID_P256, OID_P384 = "06082a8648ce3d030107", "06052b81040022"
EC_MINIMAL = bytes.fromhex("3025" "020101" "0420" + D_P256)                       # no parameters, no publicKey
EC_NAMED = bytes.fromhex("3031" "020101" "0420" + D_P256 + "a00a" + OID_P256)
EC_FULL = bytes.fromhex("3077" "020101" "0420" + D_P256 + "a00a" + OID_P256 + "a144034200" "04" + Q_P256)
EC_COMPRESSED_PUBLIC = bytes.fromhex("3057" "020101" "0420" + D_P256 + "a00a" + OID_P256 + "a1240322000360fed4ba255a"
                                     "9d31c961eb74c6356d68c049b8923b61fa6ce669622e60f29fb6")

ACCEPTED = [
    ("Linux's 2048-bit public key (unsigned modulus)", RSA, PUBLIC, LINUX_PUBLIC_2048, 0),
    ("the same key in DER", RSA, PUBLIC, DER_PUBLIC_2048, 0),
    ("Linux's 512-bit private key", RSA, PRIVATE, LINUX_PRIVATE_512, 0),
    ("512-bit public key, e = 17", RSA, PUBLIC, bytes.fromhex("3046" "024100" + N512 + "020111"), 0),
    ("exponent 2^33 - 1: 33 bits", RSA, PUBLIC, bytes.fromhex("304a" "024100" + N512 + "020501ffffffff"), 0),
    ("unsigned exponent 0x91", RSA, PUBLIC, bytes.fromhex("3046" "024100" + N512 + "020191"), 0),
    ("ECPrivateKey, neither parameters nor publicKey", ECDSA, PRIVATE, EC_MINIMAL, P256),
    ("ECPrivateKey with parameters", ECDSA, PRIVATE, EC_NAMED, P256),
    ("ECPrivateKey with parameters and publicKey", ECDSA, PRIVATE, EC_FULL, P256),
    ("ECPrivateKey with a compressed publicKey", ECDSA, PRIVATE, EC_COMPRESSED_PUBLIC, P256),
    ("uncompressed ECPoint", ECDSA, PUBLIC, bytes.fromhex("04" + Q_P256), P256),
    ("compressed ECPoint", ECDSA, PUBLIC, bytes.fromhex("03" + Q_P256[:64]), P256),
]

REFUSED = [
    ("Linux's public key + 1 byte", RSA, PUBLIC, LINUX_PUBLIC_2048 + b"\0", 0),
    ("DER public key + 1 byte", RSA, PUBLIC, DER_PUBLIC_2048 + b"\0", 0),
    ("private key + 1 byte", RSA, PRIVATE, LINUX_PRIVATE_512 + b"\x05", 0),
    ("even modulus", RSA, PUBLIC, bytes.fromhex("3046" "024100" + N512[:-2] + "f6" "020111"), 0),
    ("exponent 2^64 - 1", RSA, PUBLIC, bytes.fromhex("304e" "024100" + N512 + "020900ffffffffffffffff"), 0),
    ("exponent 2^33 + 1: 34 bits", RSA, PUBLIC, bytes.fromhex("304a" "024100" + N512 + "02050200000001"), 0),
    ("even exponent 65538", RSA, PUBLIC, bytes.fromhex("3048" "024100" + N512 + "0203010002"), 0),
    ("exponent 1", RSA, PUBLIC, bytes.fromhex("3046" "024100" + N512 + "020101"), 0),
    ("outer length in a long form", RSA, PUBLIC, bytes.fromhex("308146" "024100" + N512 + "020111"), 0),
    ("modulus with a superfluous 0x00", RSA, PUBLIC, bytes.fromhex("3047" "02420000" + N512 + "020111"), 0),
    ("SubjectPublicKeyInfo around the key", RSA, PUBLIC, bytes.fromhex(
        "305a" "300d06092a864886f70d0101010500" "034900" "3046" "024100" + N512 + "020111"), 0),
    ("PKCS#8 around the private key", RSA, PRIVATE, bytes.fromhex(
        "30820152" "020100" "300d06092a864886f70d0101010500" "0482013c") + LINUX_PRIVATE_512, 0),
    ("zero CRT fields (the reading the device had before)", RSA, PRIVATE, bytes.fromhex(
        "30819a" "020100" "024100" + N512 + "020111" "0240" + D512 + "020100" * 5), 0),
    ("version 1 (multi-prime) without otherPrimeInfos", RSA, PRIVATE, bytes.fromhex(
        "30820138" "020101" "024100" + N512 + "020111" "0240" + D512 + CRT512), 0),
    ("a wrong CRT coefficient", RSA, PRIVATE, LINUX_PRIVATE_512[:-1] + b"\x27", 0),
    ("a public key where a private key belongs", RSA, PRIVATE, DER_PUBLIC_2048, 0),
    ("P-256 ECPrivateKey without parameters on a P-521 session", ECDSA, PRIVATE, EC_MINIMAL, P521),
    ("P-256 ECPrivateKey with parameters on a P-384 session", ECDSA, PRIVATE, EC_NAMED, P384),
    ("ECPrivateKey with the parameters of another curve", ECDSA, PRIVATE, bytes.fromhex(
        "302e" "020101" "0420" + D_P256 + "a007" + OID_P384), P256),
    ("ECPrivateKey + 1 byte", ECDSA, PRIVATE, EC_FULL + b"\0", P256),
    ("ECPrivateKey with another key's publicKey", ECDSA, PRIVATE, bytes.fromhex(
        "3077" "020101" "0420" + D_P256 + "a00a" + OID_P256 + "a144034200" "04" + G_P256), P256),
    ("ECPrivateKey version 0", ECDSA, PRIVATE, bytes.fromhex("3025" "020100" "0420" + D_P256), P256),
    ("privateKey of 31 octets", ECDSA, PRIVATE, bytes.fromhex("3024" "020101" "041f" + D_P256[2:]), P256),
    ("private value 0", ECDSA, PRIVATE, bytes.fromhex("3025" "020101" "0420" + "00" * 32), P256),
    ("private value n (the curve order)", ECDSA, PRIVATE, bytes.fromhex("3025" "020101" "0420" + ORDER_P256), P256),
    ("P-256 ECPoint on a P-521 session", ECDSA, PUBLIC, bytes.fromhex("04" + Q_P256), P521),
    ("ECPoint not on the curve", ECDSA, PUBLIC, bytes.fromhex("04" + Q_P256[:-2] + "98"), P256),
    ("ECPoint + 1 byte", ECDSA, PUBLIC, bytes.fromhex("04" + Q_P256 + "00"), P256),
    ("hybrid ECPoint", ECDSA, PUBLIC, bytes.fromhex("07" + Q_P256), P256),
    ("the point at infinity", ECDSA, PUBLIC, b"\0", P256),
]


def _create(drv: InProcess, algo: int, key_type: int, key: bytes, curve: int) -> tuple[int, int]:
    return drv.create(D.akcipher_create_session(algo, key_type, key, C.VIRTIO_CRYPTO_RSA_RAW_PADDING,
                                                curve=curve, revision_1=drv.revision_1))


@pytest.fixture(params=[0, REV1], ids=["linux", "revision-1"])
def drv(request):
    return InProcess(CryptoDevice(max_dataqueues=1, max_sessions=64, max_size=1 << 16), features=request.param)


@pytest.mark.parametrize("what, algo, key_type, key, curve", ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_accepted(drv, what, algo, key_type, key, curve):
    sid, status = _create(drv, algo, key_type, key, curve)
    assert (status, sid > 0) == (OK, True)


@pytest.mark.parametrize("what, algo, key_type, key, curve", REFUSED, ids=[r[0] for r in REFUSED])
def test_refused(drv, what, algo, key_type, key, curve):
    """KEY_REJECTED with REVISION_1, ERR without (the standard profile's mapping); no session is created."""
    assert _create(drv, algo, key_type, key, curve) == (0, KEY_REJECTED if drv.revision_1 else ERR)


@pytest.mark.parametrize("key", [LINUX_PUBLIC_2048, DER_PUBLIC_2048], ids=["unsigned", "der"])
def test_linux_self_test_public_key(drv, key):
    """The kernel's check of virtio-crypto-rsa: raw RSA of its message with its public key gives its ciphertext."""
    sid, _ = _create(drv, RSA, PUBLIC, key, 0)
    done = drv.data(D.akcipher_data(C.VIRTIO_CRYPTO_AKCIPHER_ENCRYPT, sid, LINUX_M, 256, revision_1=drv.revision_1))
    assert (done.status, done.out) == (OK, LINUX_C_2048)


def test_linux_self_test_private_key(drv):
    sid, _ = _create(drv, RSA, PRIVATE, LINUX_PRIVATE_512, 0)
    done = drv.data(D.akcipher_data(C.VIRTIO_CRYPTO_AKCIPHER_ENCRYPT, sid, LINUX_M, 64, revision_1=drv.revision_1))
    assert (done.status, done.out) == (OK, LINUX_C_512)
    done = drv.data(D.akcipher_data(C.VIRTIO_CRYPTO_AKCIPHER_DECRYPT, sid, LINUX_C_512, 64,
                                    revision_1=drv.revision_1))
    assert (done.status, done.out) == (OK, LINUX_M.rjust(64, b"\0"))


@pytest.mark.parametrize("key", [EC_MINIMAL, EC_NAMED, EC_FULL], ids=["minimal", "named", "full"])
def test_ec_private_key_forms_sign_alike(drv, key):
    """Every accepted ECPrivateKey form is the RFC 6979 key: its signatures verify with the key's public point."""
    sid, _ = _create(drv, ECDSA, PRIVATE, key, P256)
    digest = bytes(range(32))
    done = drv.data(D.akcipher_data(C.VIRTIO_CRYPTO_AKCIPHER_SIGN, sid, digest, 80, revision_1=drv.revision_1))
    assert done.status == OK
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), bytes.fromhex("04" + Q_P256))
    public.verify(done.out[:done.used - 1], digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))


@pytest.mark.parametrize("key", [
    bytes.fromhex("3026" "022100" + "c5" * 32 + "020111"),
    bytes.fromhex("3045" "024000" + "c5" * 62 + "01" "020111"),
], ids=["256-bit", "504-bit"])
def test_rsa_modulus_below_512_bits_is_notsupp(drv, key):
    assert _create(drv, RSA, PUBLIC, key, 0) == (0, NOTSUPP)


def test_rsa_modulus_above_the_cap_is_notsupp(drv):
    n = (1 << (RSA_MAX_BITS + 8)) - 159  # odd, 8200 bits (1025 octets, 0x00 in front): only its size is looked at
    der = bytes.fromhex("3082040b" "02820402") + n.to_bytes(1026, "big") + bytes.fromhex("0203010001")
    assert _create(drv, RSA, PUBLIC, der, 0) == (0, NOTSUPP)


def test_stateless_request_with_a_refused_key_is_key_rejected():
    """With REVISION_1 and the AKCIPHER stateless bit, a key travels in the data request: KEY_REJECTED there."""
    features = REV1 | 1 << C.VIRTIO_CRYPTO_F_AKCIPHER_STATELESS_MODE
    drv = InProcess(CryptoDevice(max_dataqueues=1, max_sessions=4, max_size=1 << 16), features=features)
    for key, status in ((LINUX_PUBLIC_2048, OK), (LINUX_PUBLIC_2048 + b"\0", KEY_REJECTED)):
        done = drv.data(D.akcipher_data_stateless(C.VIRTIO_CRYPTO_AKCIPHER_ENCRYPT, RSA, PUBLIC, key, LINUX_M, 256))
        assert (done.status, done.out) == (status, LINUX_C_2048 if status == OK else bytes(256))
