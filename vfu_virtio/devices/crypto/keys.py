"""AKCIPHER keys as a driver hands them over: the device's one reader of key bytes (AMB-KEYS, docs/decisions.md).

Formats ("Session operation: AKCIPHER session"):

* RSA private key: one DER ``RSAPrivateKey`` (PKCS#1 A.1.2), two-prime (version 0);
* RSA public key: one DER ``RSAPublicKey`` (PKCS#1 A.1.1);
* ECDSA private key: one DER ``ECPrivateKey`` (RFC 5915, version 1) whose ``privateKey`` has exactly the session
  curve's size in octets (``ceiling(log2(n)/8)``); ``parameters`` [0] and ``publicKey`` [1] may be left out, and
  where present they must be the session curve's ``namedCurve`` and the key's own public point;
* ECDSA public key: the octets of one SEC 1 ``ECPoint`` on the session's curve, uncompressed (04 || X || Y) or
  compressed (02 or 03 || X).

Strict: the bytes are that structure and nothing else -- no byte after it, DER's shortest lengths and integers, no
PKCS#8 or SubjectPublicKeyInfo wrapper around it. ``cryptography`` parses and validates (its strict DER loaders;
a private key is checked for consistency: prime factors, CRT values, the public point), and an RSA key must
re-encode to exactly the bytes it came from. This module adds what the loaders let through: an RSA modulus must be
odd, the public exponent odd with ``3 <= e < 2**33`` (:data:`RSA_MAX_EXPONENT_BITS`, BoringSSL's bound; Linux's
test keys use 17 and 65537).

The one relaxation, the exact line to what Linux sends: a top-level INTEGER of an RSA key whose first content octet
has its top bit set is read as the unsigned number of its octets. DER reads it as negative, which no field of an RSA
key can be; the Linux kernel reads every RSA INTEGER unsigned, and its own self-test public key (``rsa_tv_template``
in ``crypto/testmgr.h``, 2048 bits, which the kernel sends to the device when it tests ``virtio-crypto-rsa``)
encodes its modulus so. Such an INTEGER gets its leading 0x00 octet before the loader sees the key; everything else
stays strict.

Errors: :class:`~.errors.CryptoStatus` KEY_REJECTED for bytes that are not such a key; NOTSUPP for an RSA modulus
outside :data:`RSA_MIN_BITS` .. :data:`RSA_MAX_BITS` bits (judged from the encoded modulus before any arithmetic).
"""
from __future__ import annotations

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from .errors import CryptoStatus
from .values import Status

#: Smallest RSA modulus in bits: the Linux kernel's smallest self-test key (and OpenSSL's RSA_MIN_MODULUS_BITS).
RSA_MIN_BITS = 512
#: Largest RSA modulus in bits: one request must not stall the device's queues for seconds.
RSA_MAX_BITS = 8192
#: Largest RSA public exponent in bits (BoringSSL's ``kMaxExponentBits``: Windows CryptoAPI takes 32).
RSA_MAX_EXPONENT_BITS = 33

_INTEGER, _OCTET_STRING, _BIT_STRING, _SEQUENCE = 0x02, 0x04, 0x03, 0x30
_PARAMETERS, _PUBLIC_KEY = 0xA0, 0xA1  # ECPrivateKey's [0] and [1], constructed context-specific tags
_DER = serialization.Encoding.DER


class _Element:
    """One DER element inside ``der``: ``tag``, ``start`` (its first octet), ``body`` (first content octet),
    ``end`` (one past its last octet)."""

    __slots__ = ("tag", "start", "body", "end")

    def __init__(self, tag: int, start: int, body: int, end: int):
        self.tag, self.start, self.body, self.end = tag, start, body, end


def _element(der: bytes, pos: int, limit: int) -> _Element:
    """The DER element at ``pos``, which must end by ``limit``: a one-octet tag and a definite length in its
    shortest form (X.690 10.1). Raises ValueError."""
    if pos + 2 > limit:
        raise ValueError("truncated element")
    tag, n, body = der[pos], der[pos + 1], pos + 2
    if tag & 0x1F == 0x1F:
        raise ValueError("multi-octet tag")
    if n & 0x80:
        k = n & 0x7F
        if not 1 <= k <= 4 or body + k > limit:
            raise ValueError("indefinite or oversized length")
        n = int.from_bytes(der[body:body + k], "big")
        if n < 0x80 or not n >> 8 * (k - 1):
            raise ValueError("length not in its shortest form")
        body += k
    if body + n > limit:
        raise ValueError("element runs past its container")
    return _Element(tag, pos, body, body + n)


def _sequence(der: bytes) -> list[_Element]:
    """The elements of the one SEQUENCE that ``der`` is, with nothing after it. Raises ValueError."""
    outer = _element(der, 0, len(der))
    if outer.tag != _SEQUENCE or outer.end != len(der):
        raise ValueError("not one SEQUENCE with nothing after it")
    items, pos = [], outer.body
    while pos < outer.end:
        items.append(_element(der, pos, outer.end))
        pos = items[-1].end
    return items


def _encode(tag: int, body: bytes) -> bytes:
    n = len(body)
    length = bytes([n]) if n < 0x80 else bytes([0x80 | (n.bit_length() + 7) // 8]) + n.to_bytes(
        (n.bit_length() + 7) // 8, "big")
    return bytes([tag]) + length + body


def _rejected(why: str) -> CryptoStatus:
    return CryptoStatus(Status.KEY_REJECTED, why)


def _unsigned_integers(der: bytes) -> bytes:
    """``der`` with each top-level INTEGER whose first content octet has its top bit set given a leading 0x00
    octet (Linux's unsigned reading, see the module docstring); ``der`` itself when there is none or it is not one
    DER SEQUENCE (the loader then judges it as it is)."""
    try:
        items = _sequence(der)
    except ValueError:
        return der
    def negative(e: _Element) -> bool:
        return e.tag == _INTEGER and e.end > e.body and der[e.body] & 0x80
    if not any(negative(e) for e in items):
        return der
    return _encode(_SEQUENCE, b"".join(
        _encode(_INTEGER, b"\0" + der[e.body:e.end]) if negative(e) else der[e.start:e.end] for e in items))


def _rsa_modulus_size(der: bytes, private: bool) -> None:
    """KEY_REJECTED unless ``der`` is one SEQUENCE of the INTEGERs of a two-prime RSAPrivateKey (9) or of an
    RSAPublicKey (2); then NOTSUPP unless the modulus has RSA_MIN_BITS..RSA_MAX_BITS bits."""
    try:
        items = _sequence(der)
    except ValueError as e:
        raise _rejected(f"not one DER SEQUENCE: {e}") from None
    count = 9 if private else 2
    if len(items) != count or any(e.tag != _INTEGER for e in items):
        raise _rejected(f"not the {count} INTEGERs of an {'RSAPrivateKey' if private else 'RSAPublicKey'}")
    modulus = items[1 if private else 0]
    bits = int.from_bytes(der[modulus.body:modulus.end], "big").bit_length()
    if not RSA_MIN_BITS <= bits <= RSA_MAX_BITS:
        raise CryptoStatus(Status.NOTSUPP, f"{bits}-bit RSA modulus (the device takes {RSA_MIN_BITS}.."
                           f"{RSA_MAX_BITS} bits)")


def _check_rsa_numbers(numbers: rsa.RSAPublicNumbers) -> None:
    """What the loaders let through: an even modulus, an even or oversized public exponent -> KEY_REJECTED."""
    if not numbers.n & 1:
        raise _rejected("even RSA modulus")
    if not numbers.e & 1 or numbers.e.bit_length() > RSA_MAX_EXPONENT_BITS:
        raise _rejected(f"RSA public exponent {numbers.e:#x} is not odd or above {RSA_MAX_EXPONENT_BITS} bits")


def rsa_private_key(der: bytes) -> rsa.RSAPrivateKey:
    """The RSA private key in ``der`` (one DER RSAPrivateKey, see the module docstring). Raises
    :class:`~.errors.CryptoStatus` KEY_REJECTED or NOTSUPP."""
    data = _unsigned_integers(der)
    _rsa_modulus_size(data, private=True)
    try:
        key = serialization.load_der_private_key(data, None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise _rejected(f"not a valid DER RSAPrivateKey: {e}") from None
    if not isinstance(key, rsa.RSAPrivateKey) or key.private_bytes(
            _DER, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()) != data:
        raise _rejected("not a DER RSAPrivateKey (two-prime, version 0) and nothing else")
    _check_rsa_numbers(key.private_numbers().public_numbers)
    return key


def rsa_public_key(der: bytes) -> rsa.RSAPublicKey:
    """The RSA public key in ``der`` (one DER RSAPublicKey, see the module docstring). Raises
    :class:`~.errors.CryptoStatus` KEY_REJECTED or NOTSUPP."""
    data = _unsigned_integers(der)
    _rsa_modulus_size(data, private=False)
    try:
        key = serialization.load_der_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise _rejected(f"not a valid DER RSAPublicKey: {e}") from None
    if not isinstance(key, rsa.RSAPublicKey) or key.public_bytes(_DER, serialization.PublicFormat.PKCS1) != data:
        raise _rejected("not a DER RSAPublicKey and nothing else")
    _check_rsa_numbers(key.public_numbers())
    return key


def ec_private_key(der: bytes, curve: ec.EllipticCurve) -> ec.EllipticCurvePrivateKey:
    """The ECDSA private key on ``curve`` in ``der`` (one DER ECPrivateKey, see the module docstring). Raises
    :class:`~.errors.CryptoStatus` KEY_REJECTED."""
    try:
        items = _sequence(der)
    except ValueError as e:
        raise _rejected(f"not one DER ECPrivateKey: {e}") from None
    tags = [e.tag for e in items]
    if tags[:2] != [_INTEGER, _OCTET_STRING] or der[items[0].body:items[0].end] != b"\x01" or \
            tags[2:] not in ([], [_PARAMETERS], [_PUBLIC_KEY], [_PARAMETERS, _PUBLIC_KEY]):
        raise _rejected("not an ECPrivateKey {version 1, privateKey, [0] parameters, [1] publicKey}")
    scalar = der[items[1].body:items[1].end]
    size = (curve.key_size + 7) // 8
    if len(scalar) != size:
        raise _rejected(f"a {len(scalar)}-octet privateKey; {curve.name} private keys have {size} (RFC 5915)")
    try:
        key = ec.derive_private_key(int.from_bytes(scalar, "big"), curve)
    except ValueError as e:
        raise _rejected(f"private value out of range for {curve.name}: {e}") from None
    canonical = key.private_bytes(_DER, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption())
    named = next(e for e in _sequence(canonical) if e.tag == _PARAMETERS)
    for e in items[2:]:
        if e.tag == _PARAMETERS and der[e.start:e.end] != canonical[named.start:named.end]:
            raise _rejected(f"ECPrivateKey parameters do not name the session's curve {curve.name}")
        if e.tag == _PUBLIC_KEY and not _is_public_point(der, e, key.public_key()):
            raise _rejected("ECPrivateKey publicKey is not the private key's public point")
    return key


def _is_public_point(der: bytes, tagged: _Element, public: ec.EllipticCurvePublicKey) -> bool:
    """Whether the [1] element ``tagged`` holds exactly one BIT STRING (no unused bits) whose ECPoint is
    ``public``."""
    try:
        bits = _element(der, tagged.body, tagged.end)
        if bits.tag != _BIT_STRING or bits.end != tagged.end or der[bits.body:bits.body + 1] != b"\0":
            return False
        point = ec.EllipticCurvePublicKey.from_encoded_point(public.curve, der[bits.body + 1:bits.end])
    except ValueError:
        return False
    return point == public


def ec_public_key(point: bytes, curve: ec.EllipticCurve) -> ec.EllipticCurvePublicKey:
    """The ECDSA public key on ``curve`` whose SEC 1 ECPoint octets are ``point`` (the point must lie on the curve;
    the point at infinity and hybrid encodings are refused). Raises :class:`~.errors.CryptoStatus` KEY_REJECTED."""
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(curve, bytes(point))
    except ValueError as e:
        raise _rejected(f"not an ECPoint on {curve.name}: {e}") from None
