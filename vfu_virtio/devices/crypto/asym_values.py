"""Profile-neutral values of the asymmetric service (``Service.ASYM``): what a codec makes of an ASYM request, what
the ASYM sessions (:mod:`.asym_services`) execute, and the results they return.

The service is sessionless: every request carries its key material, so a codec builds one parameter value (a
"session" for one request: :data:`ASYM_PARAMS`, one type per family) and one operation, in a
:class:`~.values.DataRequest` with ``session_id`` None. Numbers are Python ints (the codec decodes the wire's
octet strings), algorithms and hashes are names as in :mod:`.values` ("SHA-256"; None for "the message is already
a digest"), and a wire value the profile does not name travels as the plain int, answered NOTSUPP or ERR.

A session's ``run(op, out)`` writes nothing: it returns the result value (:class:`Signature`, a key pair, bytes, or
the verdict ``bool``) and the profile's codec lays it out in the request's device-writable part; ``widths`` of an
operation are the output field lengths (bytes) the request declared, which only the codec reads.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple, Union

from .values import Named


class AsymPadding(Enum):
    """An RSA padding (``padding_mode``)."""

    NONE = "none"  # raw RSA
    PKCS1 = "PKCS#1 v1.5"
    SSLV23 = "SSLv23"
    OAEP = "OAEP"
    X931 = "X9.31"
    PSS = "PSS"


class RsaKeyForm(Enum):
    """How an RSA private key travels (``priv_key_rep_type``)."""

    EXPONENT = "(n, d)"  # rep1
    CRT = "(p, q, dp, dq, qinv)"  # rep2


class EcField(Enum):
    """The field of an elliptic curve (``field_type``)."""

    PRIME = "prime"
    BINARY = "binary"


class EcGroup(NamedTuple):
    """Explicit elliptic-curve domain parameters: ``field``, the field prime ``p`` (the RFC's ``q``), the curve
    coefficients ``a`` and ``b``, the generator (``gx``, ``gy``), its order ``n`` and the cofactor ``h``."""

    field: EcField | int
    p: int
    a: int
    b: int
    gx: int
    gy: int
    n: int
    h: int


class DsaGroup(NamedTuple):
    """DSA domain parameters (FIPS 186): primes ``p`` and ``q``, generator ``g``."""

    p: int
    q: int
    g: int


@dataclass(frozen=True)
class RsaPublicKey:
    """An RSA public key: modulus ``n``, public exponent ``e``."""

    n: int
    e: int


@dataclass(frozen=True)
class RsaPrivateKey:
    """An RSA private key as the request carries it: ``form`` :class:`RsaKeyForm`, ``primes`` (the RFC's
    ``prime_number``), ``numbers``: (n, d) for EXPONENT, (p, q, dp, dq, qinv) for CRT."""

    form: RsaKeyForm | int
    primes: int
    numbers: tuple[int, ...]


# ---- Parameters: one type per request family --------------------------------------------------------------------
@dataclass(frozen=True)
class RsaParams:
    """RSA sign, verify, encrypt or decrypt: the ``key`` (public for verify/encrypt, private for sign/decrypt),
    ``padding`` :class:`AsymPadding`, ``hash_algo`` applied to the message before signing (None: the message is a
    digest; encryption has none)."""

    key: RsaPublicKey | RsaPrivateKey
    padding: AsymPadding | int
    hash_algo: Named | None = None


@dataclass(frozen=True)
class RsaKeyGenParams:
    """RSA key generation: modulus ``bits``, ``primes`` (rsa_prime_number), public exponent ``e``, the private
    key's ``form``."""

    bits: int
    primes: int
    e: int
    form: RsaKeyForm | int


@dataclass(frozen=True)
class DsaParams:
    """DSA sign (private ``x``) or verify (public ``y``) in ``group``; ``hash_algo`` as :class:`RsaParams`."""

    group: DsaGroup
    hash_algo: Named | None
    x: int | None = None
    y: int | None = None


@dataclass(frozen=True)
class DsaKeyGenParams:
    """DSA domain parameter and key generation with a ``bits``-bit prime p."""

    bits: int


@dataclass(frozen=True)
class EcParams:
    """ECDSA sign (private ``d``) or verify (public ``point``), or ECDH shared-secret computation (own ``d``; the
    peer's point is the operation's) on the curve ``group``; ``algo`` "ECDSA" or "ECDH"."""

    algo: Named
    group: EcGroup
    hash_algo: Named | None = None
    d: int | None = None
    point: tuple[int, int] | None = None


@dataclass(frozen=True)
class EcKeyGenParams:
    """EC key-pair generation on the curve ``group`` (for ECDSA or ECDH: the same key pair)."""

    group: EcGroup


@dataclass(frozen=True)
class DhParams:
    """DH key generation, or shared-secret computation with the own private value ``x``, in the group
    (``p``, ``g``)."""

    p: int
    g: int
    x: int | None = None


@dataclass(frozen=True)
class DhParamGenParams:
    """DH domain parameter generation: a safe prime p of ``bits`` bits and generator g."""

    bits: int


ASYM_PARAMS = (RsaParams, RsaKeyGenParams, DsaParams, DsaKeyGenParams, EcParams, EcKeyGenParams, DhParams,
               DhParamGenParams)
AsymParams = Union[RsaParams, RsaKeyGenParams, DsaParams, DsaKeyGenParams, EcParams, EcKeyGenParams, DhParams,
                   DhParamGenParams]


# ---- Operations (each has the ``src`` every data operation has) -------------------------------------------------
class AsymSign(NamedTuple):
    """Sign ``src`` (the message). ``widths``: (signature_len,) for RSA, (r_len, s_len) for DSA and ECDSA."""

    src: bytes
    widths: tuple[int, ...]


class AsymVerify(NamedTuple):
    """Verify ``signature`` over ``src``: (signature bytes,) for RSA, (r, s) ints for DSA and ECDSA."""

    src: bytes
    signature: tuple
    widths: tuple[int, ...] = ()


class AsymEncrypt(NamedTuple):
    """Encrypt ``src``; ``widths`` (cmsg length,)."""

    src: bytes
    widths: tuple[int, ...]


class AsymDecrypt(NamedTuple):
    """Decrypt ``src``; ``widths`` (msg room,)."""

    src: bytes
    widths: tuple[int, ...]


class AsymKeyGen(NamedTuple):
    """Generate what the parameters describe (a key pair, or DH domain parameters); ``src`` is empty."""

    widths: tuple[int, ...] = ()
    src: bytes = b""


class KeyAgreement(NamedTuple):
    """Compute the shared secret with the peer's public value ``peer`` (DH: y; ECDH: the point (x, y));
    ``widths`` (shared_secret_len,)."""

    peer: int | tuple[int, int]
    widths: tuple[int, ...]
    src: bytes = b""


AsymOp = Union[AsymSign, AsymVerify, AsymEncrypt, AsymDecrypt, AsymKeyGen, KeyAgreement]


# ---- Results -----------------------------------------------------------------------------------------------------
class Signature(NamedTuple):
    """A DSA or ECDSA signature (r, s)."""

    r: int
    s: int


class RsaKeyPair(NamedTuple):
    """A generated RSA key: public (``n``, ``e``), private exponent ``d`` and CRT numbers."""

    n: int
    e: int
    d: int
    p: int
    q: int
    dp: int
    dq: int
    qinv: int


class DsaKeyPair(NamedTuple):
    """A generated DSA key: the ``group``, private ``x``, public ``y``."""

    group: DsaGroup
    x: int
    y: int


class EcKeyPair(NamedTuple):
    """A generated EC key: private ``d``, public point (``x``, ``y``)."""

    d: int
    x: int
    y: int


class DhKeyPair(NamedTuple):
    """A generated DH key: private ``x``, public ``y``."""

    x: int
    y: int


class DhGroup(NamedTuple):
    """Generated DH domain parameters: prime ``p``, generator ``g``."""

    p: int
    g: int


AsymResult = Union[bytes, bool, Signature, RsaKeyPair, DsaKeyPair, EcKeyPair, DhKeyPair, DhGroup]
