"""Wire codec of the published virtio crypto standard: descriptor-chain streams in, plain request values out.

Parse, then execute: :meth:`StandardCodec.parse_ctrl` and :meth:`StandardCodec.parse_data` read the
device-readable stream of a chain (a :class:`~vfu_virtio.virtio.chain.ChainReader`) and return an
immutable request value (bulk data sources may be views of guest memory, see "Dataq operations"); they
change no device state and never touch the writable stream (they only learn its ``capacity`` to check the
declared output lengths). Faults raise :class:`CryptoStatus` carrying the
status byte to answer. The services (``services.py``) never see wire bytes, so a later profile (the v16
NON_SESSION mux, the ASYM RFC) is another codec class producing the same request values.

Wire rules ("Control Virtqueue", "Data Virtqueue"; PD-1 in ``docs/decisions.md``):

* Every integer is little-endian; lengths are in bytes; descriptor boundaries carry no meaning.
* A request is ``header`` + ``op_flf`` (fixed-length fields) + ``op_vlf`` (variable-length fields,
  concatenated in struct order). Without ``VIRTIO_CRYPTO_F_REVISION_1`` the ``op_flf`` is the opcode's
  struct padded to 56 bytes (controlq, VIRTIO_CRYPTO_CTRLQ_OP_SPEC_HDR_LEGACY) or 48 bytes (dataq,
  VIRTIO_CRYPTO_DATAQ_OP_SPEC_HDR_LEGACY), so both heads are 72 bytes, as the Linux driver sends them
  (AMB-1). With REVISION_1 it is the struct itself, unpadded.
* With REVISION_1 and a service's ``*_STATELESS_MODE`` bit negotiated, that service's dataq ``op_flf`` is
  its ``*_flf_stateless`` struct for every request ("If VIRTIO_CRYPTO_F_<S>_STATELESS_MODE is negotiated,
  op_flf is struct ..._stateless"); the header ``flag`` then picks the mode: 1 (VIRTIO_CRYPTO_FLAG_SESSION_MODE)
  uses ``session_id`` and ignores ``sess_para`` (no key bytes follow), 0 is stateless (``sess_para`` and the
  keys in ``op_vlf`` describe the operation), any other value -> ERR. Without the stateless bit a request
  whose ``flag`` lacks SESSION_MODE is rejected with NOTSUPP (the standard's "SHOULD reject").
  Without REVISION_1 ``flag`` is ignored.
* Device-writable stream of a dataq request: the outputs in struct order from offset 0, then
  ``struct virtio_crypto_inhdr`` (1 byte, status) as the LAST byte of the stream (AMB-3), i.e. at
  ``capacity - 1``, whatever the driver's descriptor split.

Faults found while parsing: fewer readable bytes than the head or than the declared variable-length
fields -> ERR; unknown opcode -> NOTSUPP; a key longer than ``max_cipher_key_len``/``max_auth_key_len``
(AMB-14) or variable-length fields summing to more than ``max_size`` (AMB-13) -> ERR, checked before the
bytes are read; declared outputs + 1 status byte larger than the writable stream -> ERR.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import NamedTuple, Union

from vfu_virtio.virtio.chain import ChainReader, ShortRead

from .constants import (CREATE_SESSION_OPCODES, DATA_OPCODES, DESTROY_SESSION_OPCODES, STATELESS_FEATURE,
                        VIRTIO_CRYPTO_AKCIPHER_ECDSA, VIRTIO_CRYPTO_AKCIPHER_RSA, VIRTIO_CRYPTO_AKCIPHER_VERIFY,
                        VIRTIO_CRYPTO_CIPHER_ENCRYPT, VIRTIO_CRYPTO_AEAD_ENCRYPT,
                        VIRTIO_CRYPTO_CTRLQ_OP_SPEC_HDR_LEGACY, VIRTIO_CRYPTO_DATAQ_OP_SPEC_HDR_LEGACY,
                        VIRTIO_CRYPTO_ERR, VIRTIO_CRYPTO_F_REVISION_1, VIRTIO_CRYPTO_FLAG_SESSION_MODE,
                        VIRTIO_CRYPTO_NOTSUPP, VIRTIO_CRYPTO_SERVICE_AEAD, VIRTIO_CRYPTO_SERVICE_AKCIPHER,
                        VIRTIO_CRYPTO_SERVICE_CIPHER, VIRTIO_CRYPTO_SERVICE_HASH, VIRTIO_CRYPTO_SERVICE_MAC,
                        VIRTIO_CRYPTO_SYM_HASH_MODE_AUTH, VIRTIO_CRYPTO_SYM_HASH_MODE_NESTED,
                        VIRTIO_CRYPTO_SYM_HASH_MODE_PLAIN, VIRTIO_CRYPTO_SYM_OP_ALGORITHM_CHAINING,
                        VIRTIO_CRYPTO_SYM_OP_CIPHER)
from .errors import CryptoStatus

# ---- Controlq wire structs ("Control Virtqueue", "Session operation") -----------------------------------
#: struct virtio_crypto_ctrl_header, 16 bytes: le32 opcode @0, le32 algo @4, le32 flag @8, le32 reserved @12.
VIRTIO_CRYPTO_CTRL_HEADER = struct.Struct("<IIII")
#: struct virtio_crypto_cipher_session_flf, 16 bytes: le32 algo @0, key_len @4, op @8, padding @12.
VIRTIO_CRYPTO_CIPHER_SESSION_FLF = struct.Struct("<IIII")
#: struct virtio_crypto_hash_create_session_flf, 8 bytes: le32 algo @0, le32 hash_result_len @4.
VIRTIO_CRYPTO_HASH_CREATE_SESSION_FLF = struct.Struct("<II")
#: struct virtio_crypto_mac_create_session_flf, 16 bytes: algo @0, hash_result_len @4, auth_key_len @8, padding.
VIRTIO_CRYPTO_MAC_CREATE_SESSION_FLF = struct.Struct("<IIII")
#: struct virtio_crypto_alg_chain_session_flf, 48 bytes: le32 alg_chain_order @0, le32 hash_mode @4,
#: cipher_hdr (virtio_crypto_cipher_session_flf) @8..23, algo_flf[16] (hash or mac session flf) @24..39,
#: le32 aad_len @40, le32 padding @44.
VIRTIO_CRYPTO_ALG_CHAIN_SESSION_FLF = struct.Struct("<II16s16sII")
#: struct virtio_crypto_sym_create_session_flf, 56 bytes: op_flf[48] (cipher or chain session flf) @0,
#: le32 op_type @48, le32 padding @52.
VIRTIO_CRYPTO_SYM_CREATE_SESSION_FLF = struct.Struct("<48sII")
#: struct virtio_crypto_aead_create_session_flf, 24 bytes: algo @0, key_len @4, tag_len @8, aad_len @12,
#: op @16, padding @20.
VIRTIO_CRYPTO_AEAD_CREATE_SESSION_FLF = struct.Struct("<IIIIII")
#: struct virtio_crypto_akcipher_create_session_flf, 56 bytes: le32 algo @0, le32 key_type @4,
#: le32 key_len @8, algo_flf[44] @12 (virtio_crypto_rsa_session_para or virtio_crypto_ecdsa_session_para).
VIRTIO_CRYPTO_AKCIPHER_CREATE_SESSION_FLF = struct.Struct("<III44s")
#: struct virtio_crypto_rsa_session_para, 8 bytes: le32 padding_algo @0, le32 hash_algo @4.
VIRTIO_CRYPTO_RSA_SESSION_PARA = struct.Struct("<II")
#: struct virtio_crypto_ecdsa_session_para, 4 bytes: le32 curve_id @0.
VIRTIO_CRYPTO_ECDSA_SESSION_PARA = struct.Struct("<I")
#: struct virtio_crypto_destroy_session_flf, 8 bytes: le64 session_id @0.
VIRTIO_CRYPTO_DESTROY_SESSION_FLF = struct.Struct("<Q")
#: struct virtio_crypto_create_session_input (device-writable), 16 bytes: le64 session_id @0,
#: le32 status @8, le32 padding @12.
VIRTIO_CRYPTO_CREATE_SESSION_INPUT = struct.Struct("<QII")
#: struct virtio_crypto_destroy_session_input (device-writable), 1 byte: u8 status.
VIRTIO_CRYPTO_DESTROY_SESSION_INPUT = struct.Struct("<B")

# ---- Dataq wire structs ("Data Virtqueue" and the per-service "... Operation" sections) -------------------
#: struct virtio_crypto_op_header, 24 bytes: le32 opcode @0, le32 algo @4, le64 session_id @8,
#: le32 flag @16, le32 padding @20.
VIRTIO_CRYPTO_OP_HEADER = struct.Struct("<IIQII")
#: struct virtio_crypto_cipher_data_flf, 16 bytes: iv_len @0, src_data_len @4, dst_data_len @8, padding @12.
VIRTIO_CRYPTO_CIPHER_DATA_FLF = struct.Struct("<IIII")
#: struct virtio_crypto_alg_chain_data_flf, 40 bytes: iv_len @0, src_data_len @4, dst_data_len @8,
#: cipher_start_src_offset @12, len_to_cipher @16, hash_start_src_offset @20, len_to_hash @24,
#: aad_len @28, hash_result_len @32, reserved @36.
VIRTIO_CRYPTO_ALG_CHAIN_DATA_FLF = struct.Struct("<10I")
#: struct virtio_crypto_sym_data_flf, 48 bytes: op_type_flf[40] @0, le32 op_type @40, le32 padding @44.
VIRTIO_CRYPTO_SYM_DATA_FLF = struct.Struct("<40sII")
#: struct virtio_crypto_hash_data_flf (and virtio_crypto_mac_data_flf), 8 bytes: src_data_len @0,
#: hash_result_len @4.
VIRTIO_CRYPTO_HASH_DATA_FLF = struct.Struct("<II")
VIRTIO_CRYPTO_MAC_DATA_FLF = VIRTIO_CRYPTO_HASH_DATA_FLF
#: struct virtio_crypto_aead_data_flf, 24 bytes: iv_len @0, aad_len @4, src_data_len @8, dst_data_len @12,
#: tag_len @16, reserved @20.
VIRTIO_CRYPTO_AEAD_DATA_FLF = struct.Struct("<6I")
#: struct virtio_crypto_akcipher_data_flf, 8 bytes: src_data_len @0, dst_data_len @4.
VIRTIO_CRYPTO_AKCIPHER_DATA_FLF = struct.Struct("<II")
#: struct virtio_crypto_cipher_data_flf_stateless, 24 bytes: sess_para {algo @0, key_len @4, op @8},
#: iv_len @12, src_data_len @16, dst_data_len @20.
VIRTIO_CRYPTO_CIPHER_DATA_FLF_STATELESS = struct.Struct("<6I")
#: struct virtio_crypto_alg_chain_data_flf_stateless, 72 bytes: sess_para {alg_chain_order @0, aad_len @4,
#: cipher {algo @8, key_len @12, op @16}, hash {algo @20, auth_key_len @24, hash_mode @28}}, iv_len @32,
#: src_data_len @36, dst_data_len @40, cipher_start_src_offset @44, len_to_cipher @48,
#: hash_start_src_offset @52, len_to_hash @56, aad_len @60, hash_result_len @64, reserved @68.
VIRTIO_CRYPTO_ALG_CHAIN_DATA_FLF_STATELESS = struct.Struct("<18I")
#: struct virtio_crypto_sym_data_flf_stateless, 76 bytes: op_type_flf[72] @0, le32 op_type @72.
VIRTIO_CRYPTO_SYM_DATA_FLF_STATELESS = struct.Struct("<72sI")
#: struct virtio_crypto_hash_data_flf_stateless, 16 bytes: sess_para.algo @0, src_data_len @4,
#: hash_result_len @8, reserved @12.
VIRTIO_CRYPTO_HASH_DATA_FLF_STATELESS = struct.Struct("<4I")
#: struct virtio_crypto_mac_data_flf_stateless, 16 bytes: sess_para {algo @0, auth_key_len @4},
#: src_data_len @8, hash_result_len @12.
VIRTIO_CRYPTO_MAC_DATA_FLF_STATELESS = struct.Struct("<4I")
#: struct virtio_crypto_aead_data_flf_stateless, 32 bytes: sess_para {algo @0, key_len @4, op @8},
#: iv_len @12, tag_len @16, aad_len @20, src_data_len @24, dst_data_len @28.
VIRTIO_CRYPTO_AEAD_DATA_FLF_STATELESS = struct.Struct("<8I")
#: struct virtio_crypto_akcipher_data_flf_stateless, 28 bytes: sess_para {algo @0, key_type @4, key_len @8,
#: u (rsa {padding_algo, hash_algo} or ecdsa {curve_id}, 8 bytes) @12}, src_data_len @20, dst_data_len @24.
VIRTIO_CRYPTO_AKCIPHER_DATA_FLF_STATELESS = struct.Struct("<III8sII")
#: struct virtio_crypto_inhdr (device-writable), 1 byte: u8 status; the last byte of the writable stream.
VIRTIO_CRYPTO_INHDR = struct.Struct("<B")

#: Size of a dataq head without REVISION_1: virtio_crypto_op_header + the padded op_flf (72 bytes).
_DATA_HEAD_LEGACY = VIRTIO_CRYPTO_OP_HEADER.size + VIRTIO_CRYPTO_DATAQ_OP_SPEC_HDR_LEGACY
#: op_flf size per controlq opcode with REVISION_1 (unpadded structs).
_CTRL_FLF_REV1 = {
    VIRTIO_CRYPTO_SERVICE_CIPHER: VIRTIO_CRYPTO_SYM_CREATE_SESSION_FLF.size,
    VIRTIO_CRYPTO_SERVICE_HASH: VIRTIO_CRYPTO_HASH_CREATE_SESSION_FLF.size,
    VIRTIO_CRYPTO_SERVICE_MAC: VIRTIO_CRYPTO_MAC_CREATE_SESSION_FLF.size,
    VIRTIO_CRYPTO_SERVICE_AEAD: VIRTIO_CRYPTO_AEAD_CREATE_SESSION_FLF.size,
    VIRTIO_CRYPTO_SERVICE_AKCIPHER: VIRTIO_CRYPTO_AKCIPHER_CREATE_SESSION_FLF.size,
}
#: op_flf size per dataq service with REVISION_1, session-mode layout.
_DATA_FLF_REV1 = {
    VIRTIO_CRYPTO_SERVICE_CIPHER: VIRTIO_CRYPTO_SYM_DATA_FLF.size,
    VIRTIO_CRYPTO_SERVICE_HASH: VIRTIO_CRYPTO_HASH_DATA_FLF.size,
    VIRTIO_CRYPTO_SERVICE_MAC: VIRTIO_CRYPTO_MAC_DATA_FLF.size,
    VIRTIO_CRYPTO_SERVICE_AEAD: VIRTIO_CRYPTO_AEAD_DATA_FLF.size,
    VIRTIO_CRYPTO_SERVICE_AKCIPHER: VIRTIO_CRYPTO_AKCIPHER_DATA_FLF.size,
}
#: op_flf size per dataq service with REVISION_1 + the service's stateless bit.
_DATA_FLF_STATELESS = {
    VIRTIO_CRYPTO_SERVICE_CIPHER: VIRTIO_CRYPTO_SYM_DATA_FLF_STATELESS.size,
    VIRTIO_CRYPTO_SERVICE_HASH: VIRTIO_CRYPTO_HASH_DATA_FLF_STATELESS.size,
    VIRTIO_CRYPTO_SERVICE_MAC: VIRTIO_CRYPTO_MAC_DATA_FLF_STATELESS.size,
    VIRTIO_CRYPTO_SERVICE_AEAD: VIRTIO_CRYPTO_AEAD_DATA_FLF_STATELESS.size,
    VIRTIO_CRYPTO_SERVICE_AKCIPHER: VIRTIO_CRYPTO_AKCIPHER_DATA_FLF_STATELESS.size,
}


class Limits(NamedTuple):
    """Device limits the codec enforces before reading variable-length bytes (all in bytes).

    ``max_size``: sum of a data request's variable-length fields (keys, iv, src, aad, dst, hash_result;
    AMB-13); also the largest AKCIPHER key. ``max_cipher_key_len``: cipher and AEAD keys;
    ``max_auth_key_len``: MAC keys (AMB-14).
    """

    max_size: int
    max_cipher_key_len: int
    max_auth_key_len: int


# ---- Session parameters (what a session holds; also the sess_para of a stateless request) ---------------
@dataclass(frozen=True)
class CipherParams:
    """Cipher part of a session: ``algo`` VIRTIO_CRYPTO_CIPHER_*, ``key`` bytes, ``op`` VIRTIO_CRYPTO_OP_*."""

    algo: int
    key: bytes
    op: int


@dataclass(frozen=True)
class HashParams:
    """HASH session: ``algo`` VIRTIO_CRYPTO_HASH_*, ``result_len`` bytes (0 in stateless: per request)."""

    algo: int
    result_len: int


@dataclass(frozen=True)
class MacParams:
    """MAC session: ``algo`` VIRTIO_CRYPTO_MAC_*, ``result_len`` bytes (0 in stateless), ``key`` bytes."""

    algo: int
    result_len: int
    key: bytes


@dataclass(frozen=True)
class ChainParams:
    """Algorithm-chaining session ("Session operation: Symmetric algorithms session").

    ``order`` VIRTIO_CRYPTO_SYM_ALG_CHAIN_ORDER_*, ``hash_mode`` VIRTIO_CRYPTO_SYM_HASH_MODE_PLAIN/AUTH,
    ``auth`` :class:`HashParams` (PLAIN) or :class:`MacParams` (AUTH), ``aad_len`` informational
    (the data request's ``aad_len`` governs).
    """

    order: int
    hash_mode: int
    cipher: CipherParams
    auth: Union[HashParams, MacParams]
    aad_len: int


@dataclass(frozen=True)
class AeadParams:
    """AEAD session: ``algo`` VIRTIO_CRYPTO_AEAD_*, ``key``, ``tag_len`` bytes, ``aad_len`` (informational),
    ``op`` VIRTIO_CRYPTO_OP_* (AMB-17)."""

    algo: int
    key: bytes
    tag_len: int
    aad_len: int
    op: int


@dataclass(frozen=True)
class AkcipherParams:
    """AKCIPHER session: ``algo`` VIRTIO_CRYPTO_AKCIPHER_*, ``key_type`` VIRTIO_CRYPTO_AKCIPHER_KEY_TYPE_*,
    ``key`` (DER, see "Session operation: AKCIPHER session"), RSA ``padding``/``hash_algo``
    (VIRTIO_CRYPTO_RSA_*), ECDSA ``curve`` (VIRTIO_CRYPTO_CURVE_*); unused fields are 0."""

    algo: int
    key_type: int
    key: bytes
    padding: int = 0
    hash_algo: int = 0
    curve: int = 0


SessionParams = Union[CipherParams, ChainParams, HashParams, MacParams, AeadParams, AkcipherParams]
#: Bytes-like request data: ``bytes`` or a ``memoryview`` of guest memory (see :meth:`ChainReader.take`).
Buffer = Union[bytes, memoryview]


# ---- Controlq requests --------------------------------------------------------------------------------
@dataclass(frozen=True)
class CreateSession:
    """A ``*_CREATE_SESSION`` request for ``service`` (VIRTIO_CRYPTO_SERVICE_*); for CIPHER, ``op_type`` is
    VIRTIO_CRYPTO_SYM_OP_CIPHER (``params`` :class:`CipherParams`) or _ALGORITHM_CHAINING (:class:`ChainParams`)."""

    service: int
    op_type: int
    params: SessionParams


@dataclass(frozen=True)
class DestroySession:
    """A ``*_DESTROY_SESSION`` request: free ``session_id`` of ``service``."""

    service: int
    session_id: int


CtrlRequest = Union[CreateSession, DestroySession]


# ---- Dataq operations ----------------------------------------------------------------------------------
# One of these is built per data request, so they are NamedTuples (immutable, cheap to build). The ``src``
# of CipherOp, ChainOp and DigestOp is a Buffer: a memoryview of guest memory when the bytes lie in one
# descriptor, valid only while the device handles the request (the driver may change it meanwhile).
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
    """AKCIPHER ("AKCIPHER Service Operation"): ``opcode`` VIRTIO_CRYPTO_AKCIPHER_ENCRYPT/DECRYPT/SIGN/VERIFY.

    ENCRYPT/DECRYPT/SIGN: ``src`` in, up to ``dst_len`` bytes out. VERIFY: ``src`` is the signature,
    ``message`` the signed data (both device-readable), ``dst_len`` 0.
    """

    opcode: int
    src: bytes
    dst_len: int
    message: bytes = b""


DataOp = Union[CipherOp, ChainOp, DigestOp, AeadOp, AkcipherOp]


class DataRequest(NamedTuple):
    """One dataq request: ``opcode`` of ``service``; session mode names ``session_id`` (``params`` None),
    stateless mode carries ``params`` (``session_id`` None). ``op_type`` is the sym op type (CIPHER service;
    0 otherwise). ``out_len`` is the declared device-writable length before the status byte."""

    service: int
    opcode: int
    session_id: int | None
    params: SessionParams | None
    op_type: int
    op: DataOp
    out_len: int


def _read(reader: ChainReader, n: int, what: str) -> bytes:
    return bytes(_take(reader, n, what))


def _take(reader: ChainReader, n: int, what: str) -> Buffer:
    try:
        return reader.take(n)
    except ShortRead as e:
        raise CryptoStatus(VIRTIO_CRYPTO_ERR, f"truncated {what}: {e}") from None


def _check_key(key_len: int, limit: int, what: str) -> None:
    if key_len > limit:
        raise CryptoStatus(VIRTIO_CRYPTO_ERR, f"{what} of {key_len} bytes exceeds the device limit {limit}")


class StandardCodec:
    """The published standard's request format for the negotiated crypto feature bits ``features``.

    ``revision_1``: VIRTIO_CRYPTO_F_REVISION_1 negotiated; ``stateless``: services whose
    ``*_STATELESS_MODE`` bit is negotiated (only honoured together with REVISION_1, "Feature bit
    requirements").
    """

    def __init__(self, features: int, limits: Limits):
        self.limits = limits
        self.revision_1 = bool(features >> VIRTIO_CRYPTO_F_REVISION_1 & 1)
        self.stateless = frozenset(s for s, bit in STATELESS_FEATURE.items()
                                   if self.revision_1 and features >> bit & 1)
        self._data_parsers = {VIRTIO_CRYPTO_SERVICE_CIPHER: self._parse_sym_data,
                              VIRTIO_CRYPTO_SERVICE_HASH: self._parse_hash_data,
                              VIRTIO_CRYPTO_SERVICE_MAC: self._parse_mac_data,
                              VIRTIO_CRYPTO_SERVICE_AEAD: self._parse_aead_data,
                              VIRTIO_CRYPTO_SERVICE_AKCIPHER: self._parse_akcipher_data}

    # ---- controlq ------------------------------------------------------------------------------------
    def parse_ctrl_header(self, reader: ChainReader) -> int:
        """Read ``struct virtio_crypto_ctrl_header`` (16 bytes) and return its ``opcode``.

        ``algo`` is informational (the op_flf ``algo`` governs, AMB-9), ``flag`` and ``reserved`` are
        ignored (AMB-8). Raises :class:`CryptoStatus` ERR when fewer than 16 bytes are readable.
        """
        opcode, _algo, _flag, _reserved = VIRTIO_CRYPTO_CTRL_HEADER.unpack(
            _read(reader, VIRTIO_CRYPTO_CTRL_HEADER.size, "virtio_crypto_ctrl_header"))
        return opcode

    def parse_ctrl(self, opcode: int, reader: ChainReader) -> CtrlRequest:
        """Parse the ``op_flf`` + ``op_vlf`` of a controlq request whose header carried ``opcode``.

        Raises :class:`CryptoStatus`: ERR (truncated, key over limit, malformed parameters), NOTSUPP
        (unknown opcode, SYM op_type NONE/unknown, HASH_MODE_NESTED).
        """
        if opcode in DESTROY_SESSION_OPCODES:
            size = VIRTIO_CRYPTO_CTRLQ_OP_SPEC_HDR_LEGACY if not self.revision_1 else \
                VIRTIO_CRYPTO_DESTROY_SESSION_FLF.size
            flf = _read(reader, size, "virtio_crypto_destroy_session_flf")
            (session_id,) = VIRTIO_CRYPTO_DESTROY_SESSION_FLF.unpack_from(flf)
            return DestroySession(DESTROY_SESSION_OPCODES[opcode], session_id)
        service = CREATE_SESSION_OPCODES.get(opcode)
        if service is None:
            raise CryptoStatus(VIRTIO_CRYPTO_NOTSUPP, f"unknown controlq opcode {opcode:#x}")
        size = VIRTIO_CRYPTO_CTRLQ_OP_SPEC_HDR_LEGACY if not self.revision_1 else _CTRL_FLF_REV1[service]
        flf = _read(reader, size, "create-session op_flf")
        if service == VIRTIO_CRYPTO_SERVICE_CIPHER:
            return self._parse_sym_create(flf, reader)
        if service == VIRTIO_CRYPTO_SERVICE_HASH:
            algo, result_len = VIRTIO_CRYPTO_HASH_CREATE_SESSION_FLF.unpack_from(flf)
            return CreateSession(service, 0, HashParams(algo, result_len))
        if service == VIRTIO_CRYPTO_SERVICE_MAC:
            return CreateSession(service, 0, self._mac_params(flf, reader))
        if service == VIRTIO_CRYPTO_SERVICE_AEAD:
            algo, key_len, tag_len, aad_len, op, _pad = VIRTIO_CRYPTO_AEAD_CREATE_SESSION_FLF.unpack_from(flf)
            _check_key(key_len, self.limits.max_cipher_key_len, "AEAD key")
            key = _read(reader, key_len, "AEAD key")
            return CreateSession(service, 0, AeadParams(algo, key, tag_len, aad_len, op))
        algo, key_type, key_len, algo_flf = VIRTIO_CRYPTO_AKCIPHER_CREATE_SESSION_FLF.unpack_from(flf)
        return CreateSession(service, 0, self._akcipher_params(algo, key_type, key_len, algo_flf, reader))

    def _mac_params(self, flf: bytes, reader: ChainReader) -> MacParams:
        algo, result_len, key_len, _pad = VIRTIO_CRYPTO_MAC_CREATE_SESSION_FLF.unpack_from(flf)
        _check_key(key_len, self.limits.max_auth_key_len, "MAC key")
        return MacParams(algo, result_len, _read(reader, key_len, "MAC key"))

    def _cipher_params(self, flf: bytes, reader: ChainReader) -> CipherParams:
        algo, key_len, op, _pad = VIRTIO_CRYPTO_CIPHER_SESSION_FLF.unpack_from(flf)
        _check_key(key_len, self.limits.max_cipher_key_len, "cipher key")
        return CipherParams(algo, _read(reader, key_len, "cipher key"), op)

    def _parse_sym_create(self, flf: bytes, reader: ChainReader) -> CreateSession:
        op_flf, op_type, _pad = VIRTIO_CRYPTO_SYM_CREATE_SESSION_FLF.unpack_from(flf)
        if op_type == VIRTIO_CRYPTO_SYM_OP_CIPHER:
            return CreateSession(VIRTIO_CRYPTO_SERVICE_CIPHER, op_type, self._cipher_params(op_flf, reader))
        if op_type != VIRTIO_CRYPTO_SYM_OP_ALGORITHM_CHAINING:
            raise CryptoStatus(VIRTIO_CRYPTO_NOTSUPP, f"sym op_type {op_type} (AMB-31)")
        order, hash_mode, cipher_hdr, algo_flf, aad_len, _pad = VIRTIO_CRYPTO_ALG_CHAIN_SESSION_FLF.unpack(op_flf)
        if hash_mode == VIRTIO_CRYPTO_SYM_HASH_MODE_NESTED:
            raise CryptoStatus(VIRTIO_CRYPTO_NOTSUPP, "HASH_MODE_NESTED has no wire fields (AMB-19)")
        if hash_mode not in (VIRTIO_CRYPTO_SYM_HASH_MODE_PLAIN, VIRTIO_CRYPTO_SYM_HASH_MODE_AUTH):
            raise CryptoStatus(VIRTIO_CRYPTO_ERR, f"unknown hash_mode {hash_mode}")
        cipher = self._cipher_params(cipher_hdr, reader)
        if hash_mode == VIRTIO_CRYPTO_SYM_HASH_MODE_PLAIN:
            auth: HashParams | MacParams = HashParams(*VIRTIO_CRYPTO_HASH_CREATE_SESSION_FLF.unpack_from(algo_flf))
        else:
            auth = self._mac_params(algo_flf, reader)
        return CreateSession(VIRTIO_CRYPTO_SERVICE_CIPHER, op_type,
                             ChainParams(order, hash_mode, cipher, auth, aad_len))

    def _akcipher_params(self, algo: int, key_type: int, key_len: int, algo_flf: bytes,
                         reader: ChainReader) -> AkcipherParams:
        _check_key(key_len, self.limits.max_size, "AKCIPHER key")
        key = _read(reader, key_len, "AKCIPHER key")
        if algo == VIRTIO_CRYPTO_AKCIPHER_RSA:
            padding, hash_algo = VIRTIO_CRYPTO_RSA_SESSION_PARA.unpack_from(algo_flf)
            return AkcipherParams(algo, key_type, key, padding=padding, hash_algo=hash_algo)
        if algo == VIRTIO_CRYPTO_AKCIPHER_ECDSA:
            (curve,) = VIRTIO_CRYPTO_ECDSA_SESSION_PARA.unpack_from(algo_flf)
            return AkcipherParams(algo, key_type, key, curve=curve)
        return AkcipherParams(algo, key_type, key)

    # ---- dataq ---------------------------------------------------------------------------------------
    def parse_data(self, reader: ChainReader, out_capacity: int) -> DataRequest:
        """Parse one dataq request: ``virtio_crypto_op_header`` (24 bytes) + ``op_flf`` + ``op_vlf``.

        ``out_capacity`` is the size in bytes of the chain's writable stream; the declared outputs plus the
        1-byte ``virtio_crypto_inhdr`` must fit in it. Raises :class:`CryptoStatus` (ERR, NOTSUPP).
        """
        legacy = not self.revision_1
        if legacy and reader.remaining >= _DATA_HEAD_LEGACY:  # the whole fixed-size head in one step
            head = reader.take(_DATA_HEAD_LEGACY)
            flf = head[VIRTIO_CRYPTO_OP_HEADER.size:]
        else:
            head = _take(reader, VIRTIO_CRYPTO_OP_HEADER.size, "virtio_crypto_op_header")
            flf = None
        opcode, _algo, session_id, flag, _pad = VIRTIO_CRYPTO_OP_HEADER.unpack_from(head)
        service = DATA_OPCODES.get(opcode)
        if service is None:
            raise CryptoStatus(VIRTIO_CRYPTO_NOTSUPP, f"unknown dataq opcode {opcode:#x}")
        stateless_layout = service in self.stateless
        stateless = False
        if legacy:
            if flf is None:
                flf = _take(reader, VIRTIO_CRYPTO_DATAQ_OP_SPEC_HDR_LEGACY, "dataq op_flf")
        elif stateless_layout:
            if flag not in (0, VIRTIO_CRYPTO_FLAG_SESSION_MODE):
                raise CryptoStatus(VIRTIO_CRYPTO_ERR, f"flag {flag} is neither 0 (stateless) nor SESSION_MODE")
            stateless = flag == 0
            flf = _take(reader, _DATA_FLF_STATELESS[service], "stateless dataq op_flf")
        else:
            if flag != VIRTIO_CRYPTO_FLAG_SESSION_MODE:
                raise CryptoStatus(VIRTIO_CRYPTO_NOTSUPP, "stateless request without the service's "
                                   "STATELESS_MODE feature bit")
            flf = _take(reader, _DATA_FLF_REV1[service], "dataq op_flf")
        params, op_type, op, out_len = self._data_parsers[service](opcode, flf, stateless_layout, stateless,
                                                                   reader)
        if out_len + VIRTIO_CRYPTO_INHDR.size > out_capacity:
            raise CryptoStatus(VIRTIO_CRYPTO_ERR, f"declared outputs of {out_len} bytes + status do not fit "
                               f"the {out_capacity}-byte writable stream")
        return DataRequest(service, opcode, None if stateless else session_id, params, op_type, op, out_len)

    def _check_size(self, *lengths: int) -> None:
        total = sum(lengths)
        if total > self.limits.max_size:
            raise CryptoStatus(VIRTIO_CRYPTO_ERR, f"variable-length fields of {total} bytes exceed "
                               f"max_size {self.limits.max_size} (AMB-13)")

    def _parse_sym_data(self, opcode, flf, stateless_layout, stateless, reader):
        encrypt = opcode == VIRTIO_CRYPTO_CIPHER_ENCRYPT
        if stateless_layout:
            op_flf, op_type = VIRTIO_CRYPTO_SYM_DATA_FLF_STATELESS.unpack_from(flf)
        else:
            op_flf, op_type, _pad = VIRTIO_CRYPTO_SYM_DATA_FLF.unpack_from(flf)
        if op_type == VIRTIO_CRYPTO_SYM_OP_CIPHER:
            if stateless_layout:
                algo, key_len, dir_op, iv_len, src_len, dst_len = \
                    VIRTIO_CRYPTO_CIPHER_DATA_FLF_STATELESS.unpack_from(op_flf)
            else:
                iv_len, src_len, dst_len, _pad = VIRTIO_CRYPTO_CIPHER_DATA_FLF.unpack_from(op_flf)
            params = None
            if stateless:
                _check_key(key_len, self.limits.max_cipher_key_len, "cipher key")
                self._check_size(key_len, iv_len, src_len, dst_len)
                params = CipherParams(algo, _read(reader, key_len, "cipher key"), dir_op)
            else:
                self._check_size(iv_len, src_len, dst_len)
            iv = _read(reader, iv_len, "iv")
            src = _take(reader, src_len, "src_data")
            return params, op_type, CipherOp(encrypt, iv, src, dst_len), dst_len
        if op_type != VIRTIO_CRYPTO_SYM_OP_ALGORITHM_CHAINING:
            raise CryptoStatus(VIRTIO_CRYPTO_ERR, f"sym op_type {op_type} in a data request (AMB-31)")
        if not stateless_layout:
            (iv_len, src_len, dst_len, c_start, c_len, h_start, h_len, aad_len, result_len,
             _res) = VIRTIO_CRYPTO_ALG_CHAIN_DATA_FLF.unpack_from(op_flf)
            self._check_size(iv_len, src_len, aad_len, dst_len, result_len)
            iv = _read(reader, iv_len, "iv")
            src = _take(reader, src_len, "src_data")
            aad = _read(reader, aad_len, "aad") if aad_len > 0 else b""  # CRY-28
            op = ChainOp(encrypt, iv, src, aad, dst_len, c_start, c_len, h_start, h_len, result_len)
            return None, op_type, op, dst_len + result_len
        (order, sess_aad_len, c_algo, key_len, dir_op, h_algo, auth_key_len, hash_mode, iv_len, src_len, dst_len,
         c_start, c_len, h_start, h_len, aad_len, result_len, _res) = \
            VIRTIO_CRYPTO_ALG_CHAIN_DATA_FLF_STATELESS.unpack_from(op_flf)
        params = None
        if stateless:
            if sess_aad_len != aad_len:
                raise CryptoStatus(VIRTIO_CRYPTO_ERR, f"sess_para.aad_len {sess_aad_len} != aad_len {aad_len} "
                                   "(AMB-22)")
            if hash_mode == VIRTIO_CRYPTO_SYM_HASH_MODE_NESTED:
                raise CryptoStatus(VIRTIO_CRYPTO_NOTSUPP, "HASH_MODE_NESTED has no wire fields (AMB-19)")
            if hash_mode not in (VIRTIO_CRYPTO_SYM_HASH_MODE_PLAIN, VIRTIO_CRYPTO_SYM_HASH_MODE_AUTH):
                raise CryptoStatus(VIRTIO_CRYPTO_ERR, f"unknown hash_mode {hash_mode}")
            if hash_mode == VIRTIO_CRYPTO_SYM_HASH_MODE_PLAIN:
                auth_key_len = 0  # the auth key exists only in AUTH mode
            _check_key(key_len, self.limits.max_cipher_key_len, "cipher key")
            _check_key(auth_key_len, self.limits.max_auth_key_len, "auth key")
            self._check_size(key_len, auth_key_len, iv_len, aad_len, src_len, dst_len, result_len)
            cipher = CipherParams(c_algo, _read(reader, key_len, "cipher key"), dir_op)
            if hash_mode == VIRTIO_CRYPTO_SYM_HASH_MODE_AUTH:
                auth: HashParams | MacParams = MacParams(h_algo, result_len,
                                                         _read(reader, auth_key_len, "auth key"))
            else:
                auth = HashParams(h_algo, result_len)
            params = ChainParams(order, hash_mode, cipher, auth, aad_len)
        else:
            self._check_size(iv_len, aad_len, src_len, dst_len, result_len)
        iv = _read(reader, iv_len, "iv")
        aad = _read(reader, aad_len, "aad") if aad_len > 0 else b""  # stateless vlf: iv, aad, src
        src = _take(reader, src_len, "src_data")
        op = ChainOp(encrypt, iv, src, aad, dst_len, c_start, c_len, h_start, h_len, result_len)
        return params, op_type, op, dst_len + result_len

    def _parse_hash_data(self, opcode, flf, stateless_layout, stateless, reader):
        if stateless_layout:
            algo, src_len, result_len, _res = VIRTIO_CRYPTO_HASH_DATA_FLF_STATELESS.unpack_from(flf)
        else:
            src_len, result_len = VIRTIO_CRYPTO_HASH_DATA_FLF.unpack_from(flf)
        self._check_size(src_len, result_len)
        params = HashParams(algo, result_len) if stateless else None
        return params, 0, DigestOp(_take(reader, src_len, "src_data"), result_len), result_len

    def _parse_mac_data(self, opcode, flf, stateless_layout, stateless, reader):
        params = None
        if stateless_layout:
            algo, key_len, src_len, result_len = VIRTIO_CRYPTO_MAC_DATA_FLF_STATELESS.unpack_from(flf)
            if stateless:
                _check_key(key_len, self.limits.max_auth_key_len, "MAC key")
                self._check_size(key_len, src_len, result_len)
                params = MacParams(algo, result_len, _read(reader, key_len, "MAC key"))
        else:
            src_len, result_len = VIRTIO_CRYPTO_MAC_DATA_FLF.unpack_from(flf)
        if params is None:
            self._check_size(src_len, result_len)
        return params, 0, DigestOp(_take(reader, src_len, "src_data"), result_len), result_len

    def _parse_aead_data(self, opcode, flf, stateless_layout, stateless, reader):
        params = None
        if stateless_layout:
            algo, key_len, dir_op, iv_len, tag_len, aad_len, src_len, dst_len = \
                VIRTIO_CRYPTO_AEAD_DATA_FLF_STATELESS.unpack_from(flf)
            if stateless:
                _check_key(key_len, self.limits.max_cipher_key_len, "AEAD key")
                self._check_size(key_len, iv_len, aad_len, src_len, dst_len)
                params = AeadParams(algo, _read(reader, key_len, "AEAD key"), tag_len, aad_len, dir_op)
        else:
            iv_len, aad_len, src_len, dst_len, tag_len, _res = VIRTIO_CRYPTO_AEAD_DATA_FLF.unpack_from(flf)
        if params is None:
            self._check_size(iv_len, aad_len, src_len, dst_len)
        iv = _read(reader, iv_len, "iv")
        src = _read(reader, src_len, "src_data")
        aad = _read(reader, aad_len, "aad")
        op = AeadOp(opcode == VIRTIO_CRYPTO_AEAD_ENCRYPT, iv, aad, src, dst_len, tag_len)
        return params, 0, op, dst_len

    def _parse_akcipher_data(self, opcode, flf, stateless_layout, stateless, reader):
        params = None
        if stateless_layout:
            algo, key_type, key_len, algo_para, src_len, dst_len = \
                VIRTIO_CRYPTO_AKCIPHER_DATA_FLF_STATELESS.unpack_from(flf)
            if stateless:
                self._check_size(key_len, src_len, dst_len)
                params = self._akcipher_params(algo, key_type, key_len, algo_para, reader)
        else:
            src_len, dst_len = VIRTIO_CRYPTO_AKCIPHER_DATA_FLF.unpack_from(flf)
        if params is None:
            self._check_size(src_len, dst_len)
        src = _read(reader, src_len, "src_data")
        if opcode == VIRTIO_CRYPTO_AKCIPHER_VERIFY:
            # "src_data is spliced by the signature and the signed data": both readable, no dst_data.
            return params, 0, AkcipherOp(opcode, src, 0, _read(reader, dst_len, "signed data")), 0
        return params, 0, AkcipherOp(opcode, src, dst_len), dst_len
