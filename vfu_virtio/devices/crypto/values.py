"""Profile-neutral request values: what a profile's codec makes of wire bytes and what the services execute.

No wire number appears here. A profile's codec (:mod:`.profiles`) translates its opcodes, algorithm numbers and
parameter encodings into these values and the outcome :class:`Status` back into its status bytes, so the services
(``services.py``) and the session table serve every profile alike.

Vocabulary:

* :class:`Service`, :class:`Status`, and the small enumerations (:class:`Direction`, :class:`ChainOrder`,
  :class:`KeyType`, :class:`RsaPadding`, :class:`AkcipherOperation`) are plain ``Enum`` members, never equal to an
  int.
* Algorithms, RSA DigestInfo hashes and curves are named by strings ("AES-CBC", "SHA-256", "HMAC-SHA-256",
  "AES-GCM", "RSA", "P-256"; the services' tables list the names they implement).
* A wire value the profile does not name travels as the plain ``int`` it was on the wire: the service answers it
  exactly as it answers an unsupported or illegal value (NOTSUPP or ERR), and the number shows in the log line.

Sizes are in bytes. Bulk data (``src``) may be a ``memoryview`` of guest memory, valid only while the device handles
the request (the driver may change it meanwhile).
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple, Union


class Service(Enum):
    """A crypto service ("Supported crypto services"; ASYM: the asymmetric service of the ASYM RFC v3, whose values
    are in :mod:`.asym_values`); IPSEC is not served by any profile."""

    # members are singletons: hash by identity (Enum hashes the name in Python code, a cost on every request)
    __hash__ = object.__hash__

    CIPHER = "CIPHER"
    HASH = "HASH"
    MAC = "MAC"
    AEAD = "AEAD"
    AKCIPHER = "AKCIPHER"
    ASYM = "ASYM"


class Status(Enum):
    """The outcome of a request ("Operation Status"); the profile's codec writes it as its status byte."""

    __hash__ = object.__hash__  # as Service

    OK = "OK"
    ERR = "ERR"
    BADMSG = "BADMSG"
    NOTSUPP = "NOTSUPP"
    INVSESS = "INVSESS"
    NOSPC = "NOSPC"
    KEY_REJECTED = "KEY_REJECTED"


class Direction(Enum):
    """The ``op`` of a cipher or AEAD session."""

    ENCRYPT = "encrypt"
    DECRYPT = "decrypt"


class ChainOrder(Enum):
    """``alg_chain_order`` of an algorithm-chaining session."""

    HASH_THEN_CIPHER = "hash-then-cipher"
    CIPHER_THEN_HASH = "cipher-then-hash"


class KeyType(Enum):
    """``key_type`` of an AKCIPHER session."""

    PUBLIC = "public"
    PRIVATE = "private"


class RsaPadding(Enum):
    """``padding_algo`` of an RSA session."""

    RAW = "raw"
    PKCS1 = "PKCS#1 v1.5"


class AkcipherOperation(Enum):
    """What an AKCIPHER data request asks for ("AKCIPHER Service Operation")."""

    ENCRYPT = "encrypt"
    DECRYPT = "decrypt"
    SIGN = "sign"
    VERIFY = "verify"


class Limits(NamedTuple):
    """Device limits a codec enforces before reading variable-length bytes (all in bytes).

    ``max_size``: sum of a data request's variable-length fields (keys, iv, src, aad, dst, hash_result;
    AMB-13); also the largest AKCIPHER key. ``max_cipher_key_len``: cipher and AEAD keys;
    ``max_auth_key_len``: MAC keys (AMB-14). Key generation of the asymmetric service, in bits (AMB-32):
    ``max_rsa_keygen_bits`` (RSA modulus), ``max_dsa_keygen_bits`` (DSA prime p), ``max_dh_param_bits`` (the DH
    prime p that parameter generation searches for).
    """

    max_size: int
    max_cipher_key_len: int
    max_auth_key_len: int
    max_rsa_keygen_bits: int = 4096
    max_dsa_keygen_bits: int = 2048
    max_dh_param_bits: int = 1024


#: An algorithm or parameter the profile names (str or Enum member), or the unnamed wire value (int).
Named = Union[str, int]


# ---- Session parameters (what a session holds; also the sess_para of a stateless request) ---------------
@dataclass(frozen=True)
class CipherParams:
    """Cipher part of a session: ``algo`` name (e.g. "AES-CBC"), ``key`` bytes, ``op`` :class:`Direction`."""

    algo: Named
    key: bytes
    op: Direction | int


@dataclass(frozen=True)
class HashParams:
    """HASH session: ``algo`` name (e.g. "SHA-256"), ``result_len`` bytes (0 in stateless: per request)."""

    algo: Named
    result_len: int


@dataclass(frozen=True)
class MacParams:
    """MAC session: ``algo`` name (e.g. "HMAC-SHA-256"), ``result_len`` bytes (0 in stateless), ``key`` bytes."""

    algo: Named
    result_len: int
    key: bytes


@dataclass(frozen=True)
class ChainParams:
    """Algorithm-chaining session ("Session operation: Symmetric algorithms session").

    ``order`` :class:`ChainOrder`; ``auth`` :class:`HashParams` (hash mode PLAIN) or :class:`MacParams` (AUTH);
    ``aad_len`` informational (the data request's ``aad_len`` governs).
    """

    order: ChainOrder | int
    cipher: CipherParams
    auth: Union[HashParams, MacParams]
    aad_len: int


@dataclass(frozen=True)
class AeadParams:
    """AEAD session: ``algo`` name (e.g. "AES-GCM"), ``key``, ``tag_len`` bytes, ``aad_len`` (informational),
    ``op`` :class:`Direction` (AMB-17)."""

    algo: Named
    key: bytes
    tag_len: int
    aad_len: int
    op: Direction | int


@dataclass(frozen=True)
class AkcipherParams:
    """AKCIPHER session: ``algo`` name ("RSA", "ECDSA"), ``key_type`` :class:`KeyType`, ``key`` (DER, see
    "Session operation: AKCIPHER session"), RSA ``padding`` (:class:`RsaPadding`) and ``hash_algo`` (the DigestInfo
    hash name, None for none), ECDSA ``curve`` name (e.g. "P-256"); None where the algorithm has no such field."""

    algo: Named
    key_type: KeyType | int
    key: bytes
    padding: RsaPadding | int | None = None
    hash_algo: Named | None = None
    curve: Named | None = None


SessionParams = Union[CipherParams, ChainParams, HashParams, MacParams, AeadParams, AkcipherParams]
#: Bytes-like request data: ``bytes`` or a ``memoryview`` of guest memory (see ``ChainReader.take``).
Buffer = Union[bytes, memoryview]


# ---- Controlq requests --------------------------------------------------------------------------------
@dataclass(frozen=True)
class CreateSession:
    """Create a session of ``service`` from ``params`` (their type says which session: for CIPHER,
    :class:`CipherParams` is a plain cipher session and :class:`ChainParams` an algorithm-chaining one)."""

    service: Service
    params: SessionParams


@dataclass(frozen=True)
class DestroySession:
    """Free ``session_id`` of ``service``."""

    service: Service
    session_id: int


CtrlRequest = Union[CreateSession, DestroySession]


# ---- Dataq operations ----------------------------------------------------------------------------------
# One of these is built per data request, so they are NamedTuples (immutable, cheap to build). Every one has a
# ``src``: the request's bulk source, which decides whether the request runs on a data queue's worker thread.
class CipherOp(NamedTuple):
    """Plain cipher ("Symmetric algorithms Operation"): process ``src`` with ``iv``; ``dst_len`` bytes of
    output room (the result is ``len(src)`` bytes at dst offset 0)."""

    encrypt: bool
    iv: bytes
    src: Buffer
    dst_len: int


class ChainOp(NamedTuple):
    """Algorithm chaining: cipher ``src[cipher_start:+cipher_len]`` into a copy of ``src``, hash/MAC
    ``aad || region[hash_start:+hash_len]``; outputs ``dst_data[dst_len]`` then ``hash_result[hash_result_len]``."""

    encrypt: bool
    iv: bytes
    src: Buffer
    aad: bytes
    dst_len: int
    cipher_start: int
    cipher_len: int
    hash_start: int
    hash_len: int
    hash_result_len: int


class DigestOp(NamedTuple):
    """HASH or MAC: digest of ``src``; ``result_len`` bytes go to ``hash_result``."""

    src: Buffer
    result_len: int


class AeadOp(NamedTuple):
    """AEAD: encrypt -> ``dst`` = ciphertext || tag; decrypt: ``src`` = ciphertext || tag -> plaintext
    (AMB-17). ``dst_len`` is the output room in bytes, ``tag_len`` must equal the session's."""

    encrypt: bool
    iv: bytes
    aad: bytes
    src: bytes
    dst_len: int
    tag_len: int


class AkcipherOp(NamedTuple):
    """AKCIPHER ("AKCIPHER Service Operation"): ``operation`` :class:`AkcipherOperation`.

    ENCRYPT/DECRYPT/SIGN: ``src`` in, up to ``dst_len`` bytes out. VERIFY: ``src`` is the signature,
    ``message`` the signed data (both device-readable), ``dst_len`` 0.
    """

    operation: AkcipherOperation
    src: bytes
    dst_len: int
    message: bytes = b""


DataOp = Union[CipherOp, ChainOp, DigestOp, AeadOp, AkcipherOp]


class DataRequest(NamedTuple):
    """One dataq request of ``service``: session mode names ``session_id`` (``params`` None), stateless mode
    carries ``params`` (``session_id`` None); ``op`` is what to do (its type must be the one the session runs)."""

    service: Service
    session_id: int | None
    params: SessionParams | None
    op: DataOp
