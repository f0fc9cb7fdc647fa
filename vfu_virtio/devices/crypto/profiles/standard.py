"""The published virtio standard's crypto device ("Crypto Device", v1.4) as a profile: what the Linux driver speaks.

Everything wire-specific of the standard lives here: its algorithm numbers (:data:`ALGORITHMS`), its parameter
encodings, the codec (:class:`StandardCodec`: descriptor-chain streams in, :mod:`..values` out, outcomes written
back), the configuration layout (``struct virtio_crypto_config``), the offered feature bits and their dependency
rule. Numbers and ``struct.Struct`` layouts come from :mod:`vfu_virtio.abi.crypto`.

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
* Algorithm numbers the profile does not advertise, and parameter values it does not name, reach the services as
  the wire ``int`` (see :mod:`..values`), which answer NOTSUPP or ERR.

Faults found while parsing: fewer readable bytes than the head or than the declared variable-length
fields -> ERR; unknown opcode -> NOTSUPP; a key longer than ``max_cipher_key_len``/``max_auth_key_len``
(AMB-14) or variable-length fields summing to more than ``max_size`` (AMB-13) -> ERR, checked before the
bytes are read; declared outputs + 1 status byte larger than the writable stream -> ERR; a create-session
request whose writable stream cannot hold ``virtio_crypto_create_session_input`` (16 bytes) -> ERR.

Outcome of a controlq request (what is written, and the used length):

* create session: ``struct virtio_crypto_create_session_input`` (16 bytes: le64 session_id, le32 status,
  le32 padding; session_id 0 unless status is OK), used length 16 -- as QEMU writes it and the Linux driver
  reads it. A writable stream shorter than 16 bytes gets the status as a single byte at offset 0 (used
  length 1) and no session is created (AMB-33 would complete it silently with used length 0; the project
  wants a status for every malformed request).
* destroy session: ``struct virtio_crypto_destroy_session_input`` (1 byte, u8 status at offset 0), used
  length 1 (the published standard's layout, which settles AMB-4; QEMU and Linux agree).
* a header too short to name the opcode, or an unknown opcode: the create-session shape when at least 16
  bytes are writable (as QEMU answers unknown opcodes), else one status byte.

Outcome of a dataq request: outputs from offset 0 of the writable stream and ``struct virtio_crypto_inhdr``
(1 byte status) at ``capacity - 1`` (AMB-3). On success the bytes between the outputs and the status are
not written: Linux hands over its whole dst scatterlist, whose slack may map the result's page again (a
kernel self-test does exactly that), so padding would clobber the result. On any status other than OK
every byte before the status is zeroed (no partial plaintext; AMB-3). Used length: the whole
writable stream (``capacity``), as QEMU reports it (AMB-3) -- except a successful AKCIPHER operation,
whose used length is ``result length + 1`` so the driver learns the result size ("the driver needs to
check how many bytes the device has written"; QEMU reports ``dst_len + sizeof(inhdr)`` too); VERIFY
therefore reports 1.

Status bytes ("Operation Status"): OK 0, ERR 1, BADMSG 2, NOTSUPP 3, INVSESS 4, NOSPC 5 (only with REVISION_1:
"no free session ID (only when the VIRTIO_CRYPTO_F_REVISION_1 feature bit is negotiated)"; ERR without),
KEY_REJECTED 6 (a failed signature verification; a refused key at session creation, which is ERR without
REVISION_1: AMB-KEYS).
"""
from __future__ import annotations

from typing import Mapping

from vfu_virtio.abi import crypto as C
from vfu_virtio.abi.crypto import (VIRTIO_CRYPTO_AEAD_CREATE_SESSION_FLF, VIRTIO_CRYPTO_AEAD_DATA_FLF,
                                   VIRTIO_CRYPTO_AEAD_DATA_FLF_STATELESS, VIRTIO_CRYPTO_AKCIPHER_CREATE_SESSION_FLF,
                                   VIRTIO_CRYPTO_AKCIPHER_DATA_FLF, VIRTIO_CRYPTO_AKCIPHER_DATA_FLF_STATELESS,
                                   VIRTIO_CRYPTO_ALG_CHAIN_DATA_FLF, VIRTIO_CRYPTO_ALG_CHAIN_DATA_FLF_STATELESS,
                                   VIRTIO_CRYPTO_ALG_CHAIN_SESSION_FLF, VIRTIO_CRYPTO_CIPHER_DATA_FLF,
                                   VIRTIO_CRYPTO_CIPHER_DATA_FLF_STATELESS, VIRTIO_CRYPTO_CIPHER_SESSION_FLF,
                                   VIRTIO_CRYPTO_CONFIG, VIRTIO_CRYPTO_CREATE_SESSION_INPUT, VIRTIO_CRYPTO_CTRL_HEADER,
                                   VIRTIO_CRYPTO_DESTROY_SESSION_FLF, VIRTIO_CRYPTO_DESTROY_SESSION_INPUT,
                                   VIRTIO_CRYPTO_ECDSA_SESSION_PARA, VIRTIO_CRYPTO_HASH_CREATE_SESSION_FLF,
                                   VIRTIO_CRYPTO_HASH_DATA_FLF, VIRTIO_CRYPTO_HASH_DATA_FLF_STATELESS,
                                   VIRTIO_CRYPTO_INHDR, VIRTIO_CRYPTO_MAC_CREATE_SESSION_FLF,
                                   VIRTIO_CRYPTO_MAC_DATA_FLF, VIRTIO_CRYPTO_MAC_DATA_FLF_STATELESS,
                                   VIRTIO_CRYPTO_OP_HEADER, VIRTIO_CRYPTO_RSA_SESSION_PARA,
                                   VIRTIO_CRYPTO_SYM_CREATE_SESSION_FLF, VIRTIO_CRYPTO_SYM_DATA_FLF,
                                   VIRTIO_CRYPTO_SYM_DATA_FLF_STATELESS)
from vfu_virtio.virtio.chain import ChainReader, ChainWriter, Scattered, ShortRead

from ..errors import CryptoStatus
from ..profile import AlgorithmTables, ConfigValues, Profile
from ..services import SESSIONS
from ..values import (AeadOp, AeadParams, AkcipherOp, AkcipherOperation, AkcipherParams, Buffer, ChainOp, ChainOrder,
                      ChainParams, CipherOp, CipherParams, CreateSession, CtrlRequest, DataRequest, DestroySession,
                      DigestOp, Direction, HashParams, KeyType, Limits, MacParams, RsaPadding, Service, Status)

# ---- Numbers of the standard -> profile-neutral names -----------------------------------------------------------
#: Algorithm numbers per service ("CIPHER services", "HASH services", ...); advertised where the services implement
#: the name (3DES-CTR is probed and not offered: OpenSSL has no such mode). Never the NO_* value 0 (AMB-5).
ALGORITHMS: AlgorithmTables = {
    Service.CIPHER: {
        C.VIRTIO_CRYPTO_CIPHER_ARC4: "ARC4", C.VIRTIO_CRYPTO_CIPHER_AES_ECB: "AES-ECB",
        C.VIRTIO_CRYPTO_CIPHER_AES_CBC: "AES-CBC", C.VIRTIO_CRYPTO_CIPHER_AES_CTR: "AES-CTR",
        C.VIRTIO_CRYPTO_CIPHER_DES_ECB: "DES-ECB", C.VIRTIO_CRYPTO_CIPHER_DES_CBC: "DES-CBC",
        C.VIRTIO_CRYPTO_CIPHER_3DES_ECB: "3DES-ECB", C.VIRTIO_CRYPTO_CIPHER_3DES_CBC: "3DES-CBC",
        C.VIRTIO_CRYPTO_CIPHER_3DES_CTR: "3DES-CTR", C.VIRTIO_CRYPTO_CIPHER_AES_XTS: "AES-XTS",
    },
    Service.HASH: {
        C.VIRTIO_CRYPTO_HASH_MD5: "MD5", C.VIRTIO_CRYPTO_HASH_SHA1: "SHA-1", C.VIRTIO_CRYPTO_HASH_SHA_224: "SHA-224",
        C.VIRTIO_CRYPTO_HASH_SHA_256: "SHA-256", C.VIRTIO_CRYPTO_HASH_SHA_384: "SHA-384",
        C.VIRTIO_CRYPTO_HASH_SHA_512: "SHA-512", C.VIRTIO_CRYPTO_HASH_SHA3_224: "SHA3-224",
        C.VIRTIO_CRYPTO_HASH_SHA3_256: "SHA3-256", C.VIRTIO_CRYPTO_HASH_SHA3_384: "SHA3-384",
        C.VIRTIO_CRYPTO_HASH_SHA3_512: "SHA3-512", C.VIRTIO_CRYPTO_HASH_SHA3_SHAKE128: "SHAKE128",
        C.VIRTIO_CRYPTO_HASH_SHA3_SHAKE256: "SHAKE256",
    },
    Service.MAC: {
        C.VIRTIO_CRYPTO_MAC_HMAC_MD5: "HMAC-MD5", C.VIRTIO_CRYPTO_MAC_HMAC_SHA1: "HMAC-SHA-1",
        C.VIRTIO_CRYPTO_MAC_HMAC_SHA_224: "HMAC-SHA-224", C.VIRTIO_CRYPTO_MAC_HMAC_SHA_256: "HMAC-SHA-256",
        C.VIRTIO_CRYPTO_MAC_HMAC_SHA_384: "HMAC-SHA-384", C.VIRTIO_CRYPTO_MAC_HMAC_SHA_512: "HMAC-SHA-512",
        C.VIRTIO_CRYPTO_MAC_CMAC_3DES: "CMAC-3DES", C.VIRTIO_CRYPTO_MAC_CMAC_AES: "CMAC-AES",
    },
    Service.AEAD: {
        C.VIRTIO_CRYPTO_AEAD_GCM: "AES-GCM", C.VIRTIO_CRYPTO_AEAD_CCM: "AES-CCM",
        C.VIRTIO_CRYPTO_AEAD_CHACHA20_POLY1305: "ChaCha20-Poly1305",
    },
    Service.AKCIPHER: {C.VIRTIO_CRYPTO_AKCIPHER_RSA: "RSA", C.VIRTIO_CRYPTO_AKCIPHER_ECDSA: "ECDSA"},
}
_SERVICES = {C.VIRTIO_CRYPTO_SERVICE_CIPHER: Service.CIPHER, C.VIRTIO_CRYPTO_SERVICE_HASH: Service.HASH,
             C.VIRTIO_CRYPTO_SERVICE_MAC: Service.MAC, C.VIRTIO_CRYPTO_SERVICE_AEAD: Service.AEAD,
             C.VIRTIO_CRYPTO_SERVICE_AKCIPHER: Service.AKCIPHER}
_SERVICE_BITS = {service: bit for bit, service in _SERVICES.items()}
_CREATE_SESSION = {opcode: _SERVICES[s] for opcode, s in C.CREATE_SESSION_OPCODES.items()}
#: opcode -> its name without VIRTIO_CRYPTO_ ("Control Virtqueue", "Data Virtqueue")
_OPCODE_NAMES = {getattr(C, f"VIRTIO_CRYPTO_{name}"): name for name in (
    "CIPHER_CREATE_SESSION", "CIPHER_DESTROY_SESSION", "HASH_CREATE_SESSION", "HASH_DESTROY_SESSION",
    "MAC_CREATE_SESSION", "MAC_DESTROY_SESSION", "AEAD_CREATE_SESSION", "AEAD_DESTROY_SESSION",
    "AKCIPHER_CREATE_SESSION", "AKCIPHER_DESTROY_SESSION", "CIPHER_ENCRYPT", "CIPHER_DECRYPT", "HASH", "MAC",
    "AEAD_ENCRYPT", "AEAD_DECRYPT", "AKCIPHER_ENCRYPT", "AKCIPHER_DECRYPT", "AKCIPHER_SIGN", "AKCIPHER_VERIFY")}
_DESTROY_SESSION = {opcode: _SERVICES[s] for opcode, s in C.DESTROY_SESSION_OPCODES.items()}
_DATA = {opcode: _SERVICES[s] for opcode, s in C.DATA_OPCODES.items()}
_STATELESS_BITS = {_SERVICES[s]: bit for s, bit in C.STATELESS_FEATURE.items()}
_DIRECTIONS = {C.VIRTIO_CRYPTO_OP_ENCRYPT: Direction.ENCRYPT, C.VIRTIO_CRYPTO_OP_DECRYPT: Direction.DECRYPT}
_CHAIN_ORDERS = {C.VIRTIO_CRYPTO_SYM_ALG_CHAIN_ORDER_HASH_THEN_CIPHER: ChainOrder.HASH_THEN_CIPHER,
                 C.VIRTIO_CRYPTO_SYM_ALG_CHAIN_ORDER_CIPHER_THEN_HASH: ChainOrder.CIPHER_THEN_HASH}
_KEY_TYPES = {C.VIRTIO_CRYPTO_AKCIPHER_KEY_TYPE_PUBLIC: KeyType.PUBLIC,
              C.VIRTIO_CRYPTO_AKCIPHER_KEY_TYPE_PRIVATE: KeyType.PRIVATE}
_PADDINGS = {C.VIRTIO_CRYPTO_RSA_RAW_PADDING: RsaPadding.RAW, C.VIRTIO_CRYPTO_RSA_PKCS1_PADDING: RsaPadding.PKCS1}
#: The RSA DigestInfo hash of a PKCS#1 session; NO_HASH is None (no DigestInfo).
_RSA_HASHES = {C.VIRTIO_CRYPTO_RSA_NO_HASH: None, C.VIRTIO_CRYPTO_RSA_MD2: "MD2", C.VIRTIO_CRYPTO_RSA_MD3: "MD3",
               C.VIRTIO_CRYPTO_RSA_MD4: "MD4", C.VIRTIO_CRYPTO_RSA_MD5: "MD5", C.VIRTIO_CRYPTO_RSA_SHA1: "SHA-1",
               C.VIRTIO_CRYPTO_RSA_SHA224: "SHA-224", C.VIRTIO_CRYPTO_RSA_SHA256: "SHA-256",
               C.VIRTIO_CRYPTO_RSA_SHA384: "SHA-384", C.VIRTIO_CRYPTO_RSA_SHA512: "SHA-512"}
_CURVES = {C.VIRTIO_CRYPTO_CURVE_NIST_P192: "P-192", C.VIRTIO_CRYPTO_CURVE_NIST_P224: "P-224",
           C.VIRTIO_CRYPTO_CURVE_NIST_P256: "P-256", C.VIRTIO_CRYPTO_CURVE_NIST_P384: "P-384",
           C.VIRTIO_CRYPTO_CURVE_NIST_P521: "P-521"}
_AKCIPHER_OPERATIONS = {C.VIRTIO_CRYPTO_AKCIPHER_ENCRYPT: AkcipherOperation.ENCRYPT,
                        C.VIRTIO_CRYPTO_AKCIPHER_DECRYPT: AkcipherOperation.DECRYPT,
                        C.VIRTIO_CRYPTO_AKCIPHER_SIGN: AkcipherOperation.SIGN,
                        C.VIRTIO_CRYPTO_AKCIPHER_VERIFY: AkcipherOperation.VERIFY}
_STATUS = {Status.OK: C.VIRTIO_CRYPTO_OK, Status.ERR: C.VIRTIO_CRYPTO_ERR, Status.BADMSG: C.VIRTIO_CRYPTO_BADMSG,
           Status.NOTSUPP: C.VIRTIO_CRYPTO_NOTSUPP, Status.INVSESS: C.VIRTIO_CRYPTO_INVSESS,
           Status.NOSPC: C.VIRTIO_CRYPTO_NOSPC, Status.KEY_REJECTED: C.VIRTIO_CRYPTO_KEY_REJECTED}
_STATUS_OK = VIRTIO_CRYPTO_INHDR.pack(C.VIRTIO_CRYPTO_OK)  # struct virtio_crypto_inhdr of a successful request

#: The stateless-mode feature bits (1..5), each of which requires VIRTIO_CRYPTO_F_REVISION_1.
_STATELESS_MASK = sum(1 << bit for bit in C.STATELESS_FEATURE.values())
#: Size of a dataq head without REVISION_1: virtio_crypto_op_header + the padded op_flf (72 bytes).
_DATA_HEAD_LEGACY = C.DATA_HEAD_LEGACY
#: op_flf size per controlq service with REVISION_1 (unpadded structs).
_CTRL_FLF_REV1 = {
    Service.CIPHER: VIRTIO_CRYPTO_SYM_CREATE_SESSION_FLF.size,
    Service.HASH: VIRTIO_CRYPTO_HASH_CREATE_SESSION_FLF.size,
    Service.MAC: VIRTIO_CRYPTO_MAC_CREATE_SESSION_FLF.size,
    Service.AEAD: VIRTIO_CRYPTO_AEAD_CREATE_SESSION_FLF.size,
    Service.AKCIPHER: VIRTIO_CRYPTO_AKCIPHER_CREATE_SESSION_FLF.size,
}
#: op_flf size per dataq service with REVISION_1, session-mode layout.
_DATA_FLF_REV1 = {
    Service.CIPHER: VIRTIO_CRYPTO_SYM_DATA_FLF.size,
    Service.HASH: VIRTIO_CRYPTO_HASH_DATA_FLF.size,
    Service.MAC: VIRTIO_CRYPTO_MAC_DATA_FLF.size,
    Service.AEAD: VIRTIO_CRYPTO_AEAD_DATA_FLF.size,
    Service.AKCIPHER: VIRTIO_CRYPTO_AKCIPHER_DATA_FLF.size,
}
#: op_flf size per dataq service with REVISION_1 + the service's stateless bit.
_DATA_FLF_STATELESS = {
    Service.CIPHER: VIRTIO_CRYPTO_SYM_DATA_FLF_STATELESS.size,
    Service.HASH: VIRTIO_CRYPTO_HASH_DATA_FLF_STATELESS.size,
    Service.MAC: VIRTIO_CRYPTO_MAC_DATA_FLF_STATELESS.size,
    Service.AEAD: VIRTIO_CRYPTO_AEAD_DATA_FLF_STATELESS.size,
    Service.AKCIPHER: VIRTIO_CRYPTO_AKCIPHER_DATA_FLF_STATELESS.size,
}


def _read(reader: ChainReader, n: int, what: str) -> bytes:
    return bytes(_take(reader, n, what))


def _take(reader: ChainReader, n: int, what: str) -> Buffer:
    try:
        return reader.take(n)
    except ShortRead as e:
        raise CryptoStatus(Status.ERR, f"truncated {what}: {e}") from None


def _take_parts(reader: ChainReader, n: int, what: str) -> Buffer | Scattered:
    """:func:`_take` for a source a primitive takes in updates: several guest buffers stay apart (no join)."""
    try:
        return reader.take_parts(n)
    except ShortRead as e:
        raise CryptoStatus(Status.ERR, f"truncated {what}: {e}") from None


def _check_key(key_len: int, limit: int, what: str, driver_check: str = "crypto-key-too-long") -> None:
    if key_len > limit:
        raise CryptoStatus(Status.ERR, f"{what} of {key_len} bytes exceeds the device limit {limit}",
                           driver_check=driver_check)


class StandardCodec:
    """The published standard's request format for the negotiated crypto feature bits ``features``.

    ``limits`` are checked while parsing; ``algorithms`` are the advertised algorithm numbers per service (what the
    profile offers: other numbers reach the services unnamed). ``revision_1``: VIRTIO_CRYPTO_F_REVISION_1
    negotiated; ``stateless``: services whose ``*_STATELESS_MODE`` bit is negotiated (only honoured together with
    REVISION_1, "Feature bit requirements").
    """

    def __init__(self, features: int, limits: Limits, algorithms: AlgorithmTables):
        self.limits = limits
        self.revision_1 = bool(features >> C.VIRTIO_CRYPTO_F_REVISION_1 & 1)
        self.stateless = frozenset(s for s, bit in _STATELESS_BITS.items() if self.revision_1 and features >> bit & 1)
        self._names = {service: algorithms.get(service, {}) for service in Service}
        self._data_parsers = {Service.CIPHER: self._parse_sym_data, Service.HASH: self._parse_hash_data,
                              Service.MAC: self._parse_mac_data, Service.AEAD: self._parse_aead_data,
                              Service.AKCIPHER: self._parse_akcipher_data}

    def _name(self, service: Service, algo: int) -> str | int:
        return self._names[service].get(algo, algo)

    #: The request types :meth:`request_type` names (fault injection's ``op=``): the opcodes without VIRTIO_CRYPTO_.
    REQUEST_TYPES = tuple(_OPCODE_NAMES.values())

    @staticmethod
    def request_type(head: bytes) -> str | None:
        """The opcode's name (``CIPHER_ENCRYPT``, ``HASH_CREATE_SESSION``, ...) from the first 4 bytes of a controlq
        or dataq request (both headers start with le32 opcode); None if unknown."""
        return _OPCODE_NAMES.get(int.from_bytes(head[:4], "little")) if len(head) >= 4 else None

    def wire_status(self, status: Status, controlq: bool = False) -> int:
        """The status byte of ``status`` (``controlq``: the outcome of a controlq request). Without REVISION_1,
        NOSPC is answered ERR, and so is KEY_REJECTED on the controlq: there it is a key the device refuses
        (AMB-KEYS), an answer the standard's drivers know only with REVISION_1; on the dataq KEY_REJECTED is the
        failed signature verification the standard names it for, with or without REVISION_1."""
        if not self.revision_1 and (status is Status.NOSPC or controlq and status is Status.KEY_REJECTED):
            return C.VIRTIO_CRYPTO_ERR
        return _STATUS[status]

    # ---- controlq ------------------------------------------------------------------------------------
    def parse_ctrl_header(self, reader: ChainReader) -> int:
        """Read ``struct virtio_crypto_ctrl_header`` (16 bytes) and return its ``opcode``.

        ``algo`` is informational (the op_flf ``algo`` governs, AMB-9), ``flag`` and ``reserved`` are
        ignored (AMB-8). Raises :class:`CryptoStatus` ERR when fewer than 16 bytes are readable.
        """
        opcode, _algo, _flag, _reserved = VIRTIO_CRYPTO_CTRL_HEADER.unpack(
            _read(reader, VIRTIO_CRYPTO_CTRL_HEADER.size, "virtio_crypto_ctrl_header"))
        return opcode

    def parse_ctrl(self, opcode: int, reader: ChainReader, out_capacity: int) -> CtrlRequest:
        """Parse the ``op_flf`` + ``op_vlf`` of a controlq request whose header carried ``opcode``;
        ``out_capacity`` is the size in bytes of the chain's writable stream.

        Raises :class:`CryptoStatus`: ERR (truncated, key over limit, malformed parameters, a create-session
        outcome that does not fit ``out_capacity``), NOTSUPP (unknown opcode, SYM op_type NONE/unknown,
        HASH_MODE_NESTED).
        """
        if opcode in _DESTROY_SESSION:
            size = C.VIRTIO_CRYPTO_CTRLQ_OP_SPEC_HDR_LEGACY if not self.revision_1 else \
                VIRTIO_CRYPTO_DESTROY_SESSION_FLF.size
            flf = _read(reader, size, "virtio_crypto_destroy_session_flf")
            (session_id,) = VIRTIO_CRYPTO_DESTROY_SESSION_FLF.unpack_from(flf)
            return DestroySession(_DESTROY_SESSION[opcode], session_id)
        service = _CREATE_SESSION.get(opcode)
        if service is None:
            raise CryptoStatus(Status.NOTSUPP, f"unknown controlq opcode {opcode:#x}")
        size = C.VIRTIO_CRYPTO_CTRLQ_OP_SPEC_HDR_LEGACY if not self.revision_1 else _CTRL_FLF_REV1[service]
        flf = _read(reader, size, "create-session op_flf")
        if service is Service.CIPHER:
            params = self._parse_sym_create(flf, reader)
        elif service is Service.HASH:
            algo, result_len = VIRTIO_CRYPTO_HASH_CREATE_SESSION_FLF.unpack_from(flf)
            params = HashParams(self._name(service, algo), result_len)
        elif service is Service.MAC:
            params = self._mac_params(flf, reader)
        elif service is Service.AEAD:
            algo, key_len, tag_len, aad_len, op, _pad = VIRTIO_CRYPTO_AEAD_CREATE_SESSION_FLF.unpack_from(flf)
            _check_key(key_len, self.limits.max_cipher_key_len, "AEAD key")
            key = _read(reader, key_len, "AEAD key")
            params = AeadParams(self._name(service, algo), key, tag_len, aad_len, _DIRECTIONS.get(op, op))
        else:
            algo, key_type, key_len, algo_flf = VIRTIO_CRYPTO_AKCIPHER_CREATE_SESSION_FLF.unpack_from(flf)
            params = self._akcipher_params(algo, key_type, key_len, algo_flf, reader)
        if out_capacity < VIRTIO_CRYPTO_CREATE_SESSION_INPUT.size:
            raise CryptoStatus(Status.ERR, f"{out_capacity} writable bytes cannot hold "
                               "virtio_crypto_create_session_input")
        return CreateSession(service, params)

    def _mac_params(self, flf: bytes, reader: ChainReader) -> MacParams:
        algo, result_len, key_len, _pad = VIRTIO_CRYPTO_MAC_CREATE_SESSION_FLF.unpack_from(flf)
        _check_key(key_len, self.limits.max_auth_key_len, "MAC key")
        return MacParams(self._name(Service.MAC, algo), result_len, _read(reader, key_len, "MAC key"))

    def _cipher_params(self, flf: bytes, reader: ChainReader) -> CipherParams:
        algo, key_len, op, _pad = VIRTIO_CRYPTO_CIPHER_SESSION_FLF.unpack_from(flf)
        _check_key(key_len, self.limits.max_cipher_key_len, "cipher key")
        return CipherParams(self._name(Service.CIPHER, algo), _read(reader, key_len, "cipher key"),
                            _DIRECTIONS.get(op, op))

    def _parse_sym_create(self, flf: bytes, reader: ChainReader) -> CipherParams | ChainParams:
        op_flf, op_type, _pad = VIRTIO_CRYPTO_SYM_CREATE_SESSION_FLF.unpack_from(flf)
        if op_type == C.VIRTIO_CRYPTO_SYM_OP_CIPHER:
            return self._cipher_params(op_flf, reader)
        if op_type != C.VIRTIO_CRYPTO_SYM_OP_ALGORITHM_CHAINING:
            raise CryptoStatus(Status.NOTSUPP, f"sym op_type {op_type} (AMB-31)")
        order, hash_mode, cipher_hdr, algo_flf, aad_len, _pad = VIRTIO_CRYPTO_ALG_CHAIN_SESSION_FLF.unpack(op_flf)
        self._check_hash_mode(hash_mode)
        cipher = self._cipher_params(cipher_hdr, reader)
        if hash_mode == C.VIRTIO_CRYPTO_SYM_HASH_MODE_PLAIN:
            algo, result_len = VIRTIO_CRYPTO_HASH_CREATE_SESSION_FLF.unpack_from(algo_flf)
            auth: HashParams | MacParams = HashParams(self._name(Service.HASH, algo), result_len)
        else:
            auth = self._mac_params(algo_flf, reader)
        return ChainParams(_CHAIN_ORDERS.get(order, order), cipher, auth, aad_len)

    @staticmethod
    def _check_hash_mode(hash_mode: int) -> None:
        if hash_mode == C.VIRTIO_CRYPTO_SYM_HASH_MODE_NESTED:
            raise CryptoStatus(Status.NOTSUPP, "HASH_MODE_NESTED has no wire fields (AMB-19)")
        if hash_mode not in (C.VIRTIO_CRYPTO_SYM_HASH_MODE_PLAIN, C.VIRTIO_CRYPTO_SYM_HASH_MODE_AUTH):
            raise CryptoStatus(Status.ERR, f"unknown hash_mode {hash_mode}")

    def _akcipher_params(self, algo: int, key_type: int, key_len: int, algo_flf: bytes,
                         reader: ChainReader) -> AkcipherParams:
        _check_key(key_len, self.limits.max_size, "AKCIPHER key", "crypto-over-max-size")
        key = _read(reader, key_len, "AKCIPHER key")
        name, kind = self._name(Service.AKCIPHER, algo), _KEY_TYPES.get(key_type, key_type)
        if algo == C.VIRTIO_CRYPTO_AKCIPHER_RSA:
            padding, hash_algo = VIRTIO_CRYPTO_RSA_SESSION_PARA.unpack_from(algo_flf)
            return AkcipherParams(name, kind, key, padding=_PADDINGS.get(padding, padding),
                                  hash_algo=_RSA_HASHES.get(hash_algo, hash_algo))
        if algo == C.VIRTIO_CRYPTO_AKCIPHER_ECDSA:
            (curve,) = VIRTIO_CRYPTO_ECDSA_SESSION_PARA.unpack_from(algo_flf)
            return AkcipherParams(name, kind, key, curve=_CURVES.get(curve, curve))
        return AkcipherParams(name, kind, key)

    def ctrl_outcome(self, writer: ChainWriter, opcode: int | None, status: Status, session_id: int) -> int:
        """Write the outcome of a controlq request (``opcode`` None: the header was truncated) and return its used
        length: ``virtio_crypto_create_session_input`` (16) or one status byte (1), see the module docstring."""
        wire = self.wire_status(status, controlq=True)
        if opcode in _DESTROY_SESSION or writer.capacity < VIRTIO_CRYPTO_CREATE_SESSION_INPUT.size:
            writer.write_at(0, VIRTIO_CRYPTO_DESTROY_SESSION_INPUT.pack(wire))
            return VIRTIO_CRYPTO_DESTROY_SESSION_INPUT.size
        writer.write_at(0, VIRTIO_CRYPTO_CREATE_SESSION_INPUT.pack(session_id if status is Status.OK else 0, wire, 0))
        return VIRTIO_CRYPTO_CREATE_SESSION_INPUT.size

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
        service = _DATA.get(opcode)
        if service is None:
            raise CryptoStatus(Status.NOTSUPP, f"unknown dataq opcode {opcode:#x}")
        stateless_layout = service in self.stateless
        stateless = False
        if legacy:
            if flf is None:
                flf = _take(reader, C.VIRTIO_CRYPTO_DATAQ_OP_SPEC_HDR_LEGACY, "dataq op_flf")
        elif stateless_layout:
            if flag not in (0, C.VIRTIO_CRYPTO_FLAG_SESSION_MODE):
                raise CryptoStatus(Status.ERR, f"flag {flag} is neither 0 (stateless) nor SESSION_MODE")
            stateless = flag == 0
            flf = _take(reader, _DATA_FLF_STATELESS[service], "stateless dataq op_flf")
        else:
            if flag != C.VIRTIO_CRYPTO_FLAG_SESSION_MODE:
                raise CryptoStatus(Status.NOTSUPP, "stateless request without the service's STATELESS_MODE "
                                   "feature bit")
            flf = _take(reader, _DATA_FLF_REV1[service], "dataq op_flf")
        params, op, out_len = self._data_parsers[service](opcode, flf, stateless_layout, stateless, reader)
        if out_len + VIRTIO_CRYPTO_INHDR.size > out_capacity:
            raise CryptoStatus(Status.ERR, f"declared outputs of {out_len} bytes + status do not fit "
                               f"the {out_capacity}-byte writable stream")
        return DataRequest(service, None if stateless else session_id, params, op)

    def _check_size(self, *lengths: int) -> None:
        total = sum(lengths)
        if total > self.limits.max_size:
            raise CryptoStatus(Status.ERR, f"variable-length fields of {total} bytes exceed "
                               f"max_size {self.limits.max_size} (AMB-13)", driver_check="crypto-over-max-size")

    def _parse_sym_data(self, opcode, flf, stateless_layout, stateless, reader):
        encrypt = opcode == C.VIRTIO_CRYPTO_CIPHER_ENCRYPT
        if stateless_layout:
            op_flf, op_type = VIRTIO_CRYPTO_SYM_DATA_FLF_STATELESS.unpack_from(flf)
        else:
            op_flf, op_type, _pad = VIRTIO_CRYPTO_SYM_DATA_FLF.unpack_from(flf)
        if op_type == C.VIRTIO_CRYPTO_SYM_OP_CIPHER:
            if stateless_layout:
                algo, key_len, dir_op, iv_len, src_len, dst_len = \
                    VIRTIO_CRYPTO_CIPHER_DATA_FLF_STATELESS.unpack_from(op_flf)
            else:
                iv_len, src_len, dst_len, _pad = VIRTIO_CRYPTO_CIPHER_DATA_FLF.unpack_from(op_flf)
            params = None
            if stateless:
                _check_key(key_len, self.limits.max_cipher_key_len, "cipher key")
                self._check_size(key_len, iv_len, src_len, dst_len)
                params = CipherParams(self._name(Service.CIPHER, algo), _read(reader, key_len, "cipher key"),
                                      _DIRECTIONS.get(dir_op, dir_op))
            else:
                self._check_size(iv_len, src_len, dst_len)
            iv = _read(reader, iv_len, "iv")
            src = _take(reader, src_len, "src_data")
            return params, CipherOp(encrypt, iv, src, dst_len), dst_len
        if op_type != C.VIRTIO_CRYPTO_SYM_OP_ALGORITHM_CHAINING:
            raise CryptoStatus(Status.ERR, f"sym op_type {op_type} in a data request (AMB-31)")
        if not stateless_layout:
            (iv_len, src_len, dst_len, c_start, c_len, h_start, h_len, aad_len, result_len,
             _res) = VIRTIO_CRYPTO_ALG_CHAIN_DATA_FLF.unpack_from(op_flf)
            self._check_size(iv_len, src_len, aad_len, dst_len, result_len)
            iv = _read(reader, iv_len, "iv")
            src = _take(reader, src_len, "src_data")
            aad = _read(reader, aad_len, "aad") if aad_len > 0 else b""  # CRY-28
            op = ChainOp(encrypt, iv, src, aad, dst_len, c_start, c_len, h_start, h_len, result_len)
            return None, op, dst_len + result_len
        (order, sess_aad_len, c_algo, key_len, dir_op, h_algo, auth_key_len, hash_mode, iv_len, src_len, dst_len,
         c_start, c_len, h_start, h_len, aad_len, result_len, _res) = \
            VIRTIO_CRYPTO_ALG_CHAIN_DATA_FLF_STATELESS.unpack_from(op_flf)
        params = None
        if stateless:
            if sess_aad_len != aad_len:
                raise CryptoStatus(Status.ERR, f"sess_para.aad_len {sess_aad_len} != aad_len {aad_len} (AMB-22)")
            self._check_hash_mode(hash_mode)
            if hash_mode == C.VIRTIO_CRYPTO_SYM_HASH_MODE_PLAIN:
                auth_key_len = 0  # the auth key exists only in AUTH mode
            _check_key(key_len, self.limits.max_cipher_key_len, "cipher key")
            _check_key(auth_key_len, self.limits.max_auth_key_len, "auth key")
            self._check_size(key_len, auth_key_len, iv_len, aad_len, src_len, dst_len, result_len)
            cipher = CipherParams(self._name(Service.CIPHER, c_algo), _read(reader, key_len, "cipher key"),
                                  _DIRECTIONS.get(dir_op, dir_op))
            if hash_mode == C.VIRTIO_CRYPTO_SYM_HASH_MODE_AUTH:
                auth: HashParams | MacParams = MacParams(self._name(Service.MAC, h_algo), result_len,
                                                         _read(reader, auth_key_len, "auth key"))
            else:
                auth = HashParams(self._name(Service.HASH, h_algo), result_len)
            params = ChainParams(_CHAIN_ORDERS.get(order, order), cipher, auth, aad_len)
        else:
            self._check_size(iv_len, aad_len, src_len, dst_len, result_len)
        iv, aad, src = self._chain_stateless_vlf(reader, iv_len, aad_len, src_len)
        op = ChainOp(encrypt, iv, src, aad, dst_len, c_start, c_len, h_start, h_len, result_len)
        return params, op, dst_len + result_len

    @staticmethod
    def _chain_stateless_vlf(reader: ChainReader, iv_len: int, aad_len: int, src_len: int) -> tuple:
        """(iv, aad, src) of a stateless chain request, read in its struct's order: iv, aad, src_data (AMB-19)."""
        iv = _read(reader, iv_len, "iv")
        aad = _read(reader, aad_len, "aad") if aad_len > 0 else b""  # CRY-28
        return iv, aad, _take(reader, src_len, "src_data")

    def _parse_hash_data(self, opcode, flf, stateless_layout, stateless, reader):
        if stateless_layout:
            algo, src_len, result_len, _res = VIRTIO_CRYPTO_HASH_DATA_FLF_STATELESS.unpack_from(flf)
        else:
            src_len, result_len = VIRTIO_CRYPTO_HASH_DATA_FLF.unpack_from(flf)
        self._check_size(src_len, result_len)
        params = HashParams(self._name(Service.HASH, algo), result_len) if stateless else None
        return params, DigestOp(_take_parts(reader, src_len, "src_data"), result_len), result_len

    def _parse_mac_data(self, opcode, flf, stateless_layout, stateless, reader):
        params = None
        if stateless_layout:
            algo, key_len, src_len, result_len = VIRTIO_CRYPTO_MAC_DATA_FLF_STATELESS.unpack_from(flf)
            if stateless:
                _check_key(key_len, self.limits.max_auth_key_len, "MAC key")
                self._check_size(key_len, src_len, result_len)
                params = MacParams(self._name(Service.MAC, algo), result_len, _read(reader, key_len, "MAC key"))
        else:
            src_len, result_len = VIRTIO_CRYPTO_MAC_DATA_FLF.unpack_from(flf)
        if params is None:
            self._check_size(src_len, result_len)
        return params, DigestOp(_take_parts(reader, src_len, "src_data"), result_len), result_len

    def _parse_aead_data(self, opcode, flf, stateless_layout, stateless, reader):
        params = None
        if stateless_layout:
            algo, key_len, dir_op, iv_len, tag_len, aad_len, src_len, dst_len = \
                VIRTIO_CRYPTO_AEAD_DATA_FLF_STATELESS.unpack_from(flf)
            if stateless:
                _check_key(key_len, self.limits.max_cipher_key_len, "AEAD key")
                self._check_size(key_len, iv_len, aad_len, src_len, dst_len)
                params = AeadParams(self._name(Service.AEAD, algo), _read(reader, key_len, "AEAD key"), tag_len,
                                    aad_len, _DIRECTIONS.get(dir_op, dir_op))
        else:
            iv_len, aad_len, src_len, dst_len, tag_len, _res = VIRTIO_CRYPTO_AEAD_DATA_FLF.unpack_from(flf)
        if params is None:
            self._check_size(iv_len, aad_len, src_len, dst_len)
        iv = _read(reader, iv_len, "iv")
        src = _read(reader, src_len, "src_data")
        aad = _read(reader, aad_len, "aad")
        op = AeadOp(opcode == C.VIRTIO_CRYPTO_AEAD_ENCRYPT, iv, aad, src, dst_len, tag_len)
        return params, op, dst_len

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
        operation = _AKCIPHER_OPERATIONS[opcode]
        if operation is AkcipherOperation.VERIFY:
            # "src_data is spliced by the signature and the signed data": both readable, no dst_data.
            return params, AkcipherOp(operation, src, 0, _read(reader, dst_len, "signed data")), 0
        return params, AkcipherOp(operation, src, dst_len), dst_len

    def data_outcome(self, writer: ChainWriter, request: DataRequest | None, status: Status, end: int) -> int:
        """Write the status of a dataq request (``request`` None: it did not parse; ``end``: the stream offset past
        the outputs the session wrote) and return its used length, see the module docstring."""
        capacity = writer.capacity
        if status is Status.OK:
            writer.write_at(capacity - 1, _STATUS_OK)
            return end + 1 if request.service is Service.AKCIPHER else capacity
        out = bytearray(capacity)  # a failed request's outputs read as zeros (AMB-3)
        out[-1] = self.wire_status(status)
        writer.write_at(0, out)
        return capacity


# ---- Configuration and features --------------------------------------------------------------------------------
def _mask(numbers) -> int:
    """Algorithm bitmap: bit n set for each algorithm number n (never bit 0, the NO_* value; AMB-5)."""
    return sum(1 << n for n in numbers if n)


def config_layout(values: ConfigValues) -> bytes:
    """``struct virtio_crypto_config`` (56 bytes, ``VIRTIO_CRYPTO_CONFIG``): status HW_READY (0 when not ready), the
    advertised services and algorithm bitmaps, the limits."""
    algos: Mapping[Service, Mapping[int, str]] = values.algorithms
    cipher = _mask(algos.get(Service.CIPHER, ()))
    mac = _mask(algos.get(Service.MAC, ()))
    limits = values.limits
    return VIRTIO_CRYPTO_CONFIG.pack(
        C.VIRTIO_CRYPTO_S_HW_READY if values.ready else 0, values.max_dataqueues,
        sum(1 << _SERVICE_BITS[s] for s in values.services),
        cipher & 0xFFFFFFFF, cipher >> 32, _mask(algos.get(Service.HASH, ())), mac & 0xFFFFFFFF, mac >> 32,
        _mask(algos.get(Service.AEAD, ())), limits.max_cipher_key_len, limits.max_auth_key_len,
        _mask(algos.get(Service.AKCIPHER, ())), limits.max_size)


def refuse_features(features: int) -> str | None:
    """Each *_STATELESS_MODE bit requires VIRTIO_CRYPTO_F_REVISION_1 ("Feature bit requirements")."""
    if features & _STATELESS_MASK and not features >> C.VIRTIO_CRYPTO_F_REVISION_1 & 1:
        return f"stateless feature bits {features & _STATELESS_MASK:#x} without VIRTIO_CRYPTO_F_REVISION_1"
    return None


def stateless_features(services) -> int:
    """VIRTIO_CRYPTO_F_REVISION_1 and the ``*_STATELESS_MODE`` bit of each of ``services`` ("Feature bits")."""
    return 1 << C.VIRTIO_CRYPTO_F_REVISION_1 | sum(1 << _STATELESS_BITS[s] for s in services)


PROFILE = Profile(
    name="standard",
    summary="the published virtio standard (v1.4) crypto device, as the Linux virtio_crypto driver speaks it",
    features=stateless_features(_STATELESS_BITS),
    refuse_features=refuse_features,
    config_layout=config_layout,
    codec=StandardCodec,
    sessions=SESSIONS,
    algorithms=ALGORITHMS,
)
