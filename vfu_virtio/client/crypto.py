"""The crypto device from the driver side: requests laid out as a driver lays them out, outcomes decoded.

The published standard's request builders ("Control Virtqueue", "Data Virtqueue"), used by the tests, the demo, the
benchmarks and tools: they play the Linux ``virtio_crypto`` driver (72-byte heads without REVISION_1, key/IV/src after
the head, status last) or a REVISION_1 driver (unpadded ``op_flf``, ``*_flf_stateless`` layouts). Each builder returns
the device-readable bytes of one request (``readable``) and the number of device-writable bytes the request needs
(``writable``, status byte included); how they are split into descriptors is the caller's choice. Layouts are the
``struct`` constants of :mod:`vfu_virtio.abi.crypto`. Another profile's builders belong in a module of their own beside
this one.

Imports only the side-neutral :mod:`vfu_virtio.abi`.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..abi import crypto as C
from ..abi.crypto import (VIRTIO_CRYPTO_AEAD_CREATE_SESSION_FLF, VIRTIO_CRYPTO_AEAD_DATA_FLF,
                          VIRTIO_CRYPTO_AEAD_DATA_FLF_STATELESS, VIRTIO_CRYPTO_AKCIPHER_CREATE_SESSION_FLF,
                          VIRTIO_CRYPTO_AKCIPHER_DATA_FLF, VIRTIO_CRYPTO_AKCIPHER_DATA_FLF_STATELESS,
                          VIRTIO_CRYPTO_ALG_CHAIN_DATA_FLF, VIRTIO_CRYPTO_ALG_CHAIN_DATA_FLF_STATELESS,
                          VIRTIO_CRYPTO_ALG_CHAIN_SESSION_FLF, VIRTIO_CRYPTO_CIPHER_DATA_FLF,
                          VIRTIO_CRYPTO_CIPHER_DATA_FLF_STATELESS, VIRTIO_CRYPTO_CIPHER_SESSION_FLF,
                          VIRTIO_CRYPTO_CREATE_SESSION_INPUT, VIRTIO_CRYPTO_CTRL_HEADER,
                          VIRTIO_CRYPTO_DESTROY_SESSION_FLF, VIRTIO_CRYPTO_ECDSA_SESSION_PARA,
                          VIRTIO_CRYPTO_HASH_CREATE_SESSION_FLF, VIRTIO_CRYPTO_HASH_DATA_FLF,
                          VIRTIO_CRYPTO_HASH_DATA_FLF_STATELESS, VIRTIO_CRYPTO_MAC_CREATE_SESSION_FLF,
                          VIRTIO_CRYPTO_MAC_DATA_FLF_STATELESS, VIRTIO_CRYPTO_OP_HEADER, VIRTIO_CRYPTO_RSA_SESSION_PARA,
                          VIRTIO_CRYPTO_SYM_CREATE_SESSION_FLF, VIRTIO_CRYPTO_SYM_DATA_FLF,
                          VIRTIO_CRYPTO_SYM_DATA_FLF_STATELESS)


@dataclass(frozen=True)
class Request:
    """One request: ``readable`` bytes (head + variable-length fields) and ``writable`` bytes needed."""

    readable: bytes
    writable: int


def _pad(flf: bytes, size: int, revision_1: bool) -> bytes:
    return flf if revision_1 else flf.ljust(size, b"\0")


def _ctrl(opcode: int, algo: int, flf: bytes, revision_1: bool, tail: bytes = b"", writable: int = 16) -> Request:
    head = VIRTIO_CRYPTO_CTRL_HEADER.pack(opcode, algo, 0, 0)
    return Request(head + _pad(flf, C.VIRTIO_CRYPTO_CTRLQ_OP_SPEC_HDR_LEGACY, revision_1) + tail, writable)


# ---- controlq ----------------------------------------------------------------------------------------------
def cipher_create_session(algo: int, key: bytes, op: int, revision_1: bool = False) -> Request:
    """VIRTIO_CRYPTO_CIPHER_CREATE_SESSION, op_type CIPHER; outcome virtio_crypto_create_session_input."""
    flf = VIRTIO_CRYPTO_CIPHER_SESSION_FLF.pack(algo, len(key), op, 0)
    sym = VIRTIO_CRYPTO_SYM_CREATE_SESSION_FLF.pack(flf, C.VIRTIO_CRYPTO_SYM_OP_CIPHER, 0)
    return _ctrl(C.VIRTIO_CRYPTO_CIPHER_CREATE_SESSION, algo, sym, revision_1, key)


def chain_create_session(order: int, hash_mode: int, cipher_algo: int, cipher_key: bytes, op: int,
                         auth_algo: int, result_len: int, auth_key: bytes = b"", aad_len: int = 0,
                         revision_1: bool = False) -> Request:
    """VIRTIO_CRYPTO_CIPHER_CREATE_SESSION, op_type ALGORITHM_CHAINING (auth key only in AUTH mode)."""
    cipher_hdr = VIRTIO_CRYPTO_CIPHER_SESSION_FLF.pack(cipher_algo, len(cipher_key), op, 0)
    if hash_mode == C.VIRTIO_CRYPTO_SYM_HASH_MODE_AUTH:
        algo_flf = VIRTIO_CRYPTO_MAC_CREATE_SESSION_FLF.pack(auth_algo, result_len, len(auth_key), 0)
    else:
        algo_flf = VIRTIO_CRYPTO_HASH_CREATE_SESSION_FLF.pack(auth_algo, result_len)
    chain = VIRTIO_CRYPTO_ALG_CHAIN_SESSION_FLF.pack(order, hash_mode, cipher_hdr, algo_flf, aad_len, 0)
    sym = VIRTIO_CRYPTO_SYM_CREATE_SESSION_FLF.pack(chain, C.VIRTIO_CRYPTO_SYM_OP_ALGORITHM_CHAINING, 0)
    tail = cipher_key + (auth_key if hash_mode == C.VIRTIO_CRYPTO_SYM_HASH_MODE_AUTH else b"")
    return _ctrl(C.VIRTIO_CRYPTO_CIPHER_CREATE_SESSION, cipher_algo, sym, revision_1, tail)


def hash_create_session(algo: int, result_len: int, revision_1: bool = False) -> Request:
    """VIRTIO_CRYPTO_HASH_CREATE_SESSION (no variable-length fields)."""
    return _ctrl(C.VIRTIO_CRYPTO_HASH_CREATE_SESSION, algo,
                 VIRTIO_CRYPTO_HASH_CREATE_SESSION_FLF.pack(algo, result_len), revision_1)


def mac_create_session(algo: int, result_len: int, key: bytes, revision_1: bool = False) -> Request:
    """VIRTIO_CRYPTO_MAC_CREATE_SESSION; the auth key follows the head."""
    return _ctrl(C.VIRTIO_CRYPTO_MAC_CREATE_SESSION, algo,
                 VIRTIO_CRYPTO_MAC_CREATE_SESSION_FLF.pack(algo, result_len, len(key), 0), revision_1, key)


def aead_create_session(algo: int, key: bytes, tag_len: int, aad_len: int, op: int,
                        revision_1: bool = False) -> Request:
    """VIRTIO_CRYPTO_AEAD_CREATE_SESSION; the key follows the head."""
    flf = VIRTIO_CRYPTO_AEAD_CREATE_SESSION_FLF.pack(algo, len(key), tag_len, aad_len, op, 0)
    return _ctrl(C.VIRTIO_CRYPTO_AEAD_CREATE_SESSION, algo, flf, revision_1, key)


def _akcipher_para(algo: int, padding: int, hash_algo: int, curve: int) -> bytes:
    if algo == C.VIRTIO_CRYPTO_AKCIPHER_ECDSA:
        return VIRTIO_CRYPTO_ECDSA_SESSION_PARA.pack(curve)
    return VIRTIO_CRYPTO_RSA_SESSION_PARA.pack(padding, hash_algo)


def akcipher_create_session(algo: int, key_type: int, key: bytes, padding: int = 0, hash_algo: int = 0,
                            curve: int = 0, revision_1: bool = False) -> Request:
    """VIRTIO_CRYPTO_AKCIPHER_CREATE_SESSION with RSA (padding, hash_algo) or ECDSA (curve) parameters."""
    para = _akcipher_para(algo, padding, hash_algo, curve).ljust(C.VIRTIO_CRYPTO_AKCIPHER_SESS_ALGO_SPEC_HDR_SIZE,
                                                                 b"\0")
    flf = VIRTIO_CRYPTO_AKCIPHER_CREATE_SESSION_FLF.pack(algo, key_type, len(key), para)
    return _ctrl(C.VIRTIO_CRYPTO_AKCIPHER_CREATE_SESSION, algo, flf, revision_1, key)


def destroy_session(opcode: int, session_id: int, revision_1: bool = False) -> Request:
    """A ``*_DESTROY_SESSION`` request; outcome one status byte."""
    return _ctrl(opcode, 0, VIRTIO_CRYPTO_DESTROY_SESSION_FLF.pack(session_id), revision_1, writable=1)


def session_input(outcome: bytes) -> tuple[int, int]:
    """Decode ``struct virtio_crypto_create_session_input`` -> (session_id, status)."""
    session_id, status, _pad = VIRTIO_CRYPTO_CREATE_SESSION_INPUT.unpack_from(outcome)
    return session_id, status


# ---- dataq -------------------------------------------------------------------------------------------------
def _data(opcode: int, session_id: int, flf: bytes, size: int, revision_1: bool, flag: int, tail: bytes,
          writable: int) -> Request:
    head = VIRTIO_CRYPTO_OP_HEADER.pack(opcode, 0, session_id, flag, 0)
    return Request(head + _pad(flf, size, revision_1) + tail, writable + 1)


_SESSION = C.VIRTIO_CRYPTO_FLAG_SESSION_MODE


def cipher_data(opcode: int, session_id: int, iv: bytes, src: bytes, dst_len: int | None = None,
                revision_1: bool = False, stateless_layout: bool = False) -> Request:
    """Session-mode VIRTIO_CRYPTO_CIPHER_ENCRYPT/DECRYPT (op_type CIPHER): iv, src -> dst, status."""
    dst_len = len(src) if dst_len is None else dst_len
    if stateless_layout:
        op_flf = VIRTIO_CRYPTO_CIPHER_DATA_FLF_STATELESS.pack(0, 0, 0, len(iv), len(src), dst_len)
        flf = VIRTIO_CRYPTO_SYM_DATA_FLF_STATELESS.pack(op_flf, C.VIRTIO_CRYPTO_SYM_OP_CIPHER)
    else:
        op_flf = VIRTIO_CRYPTO_CIPHER_DATA_FLF.pack(len(iv), len(src), dst_len, 0)
        flf = VIRTIO_CRYPTO_SYM_DATA_FLF.pack(op_flf, C.VIRTIO_CRYPTO_SYM_OP_CIPHER, 0)
    return _data(opcode, session_id, flf, C.VIRTIO_CRYPTO_DATAQ_OP_SPEC_HDR_LEGACY, revision_1, _SESSION,
                 iv + src, dst_len)


def cipher_data_stateless(opcode: int, algo: int, key: bytes, op: int, iv: bytes, src: bytes,
                          dst_len: int | None = None) -> Request:
    """Stateless VIRTIO_CRYPTO_CIPHER_ENCRYPT/DECRYPT (REVISION_1 + CIPHER_STATELESS_MODE): key, iv, src."""
    dst_len = len(src) if dst_len is None else dst_len
    op_flf = VIRTIO_CRYPTO_CIPHER_DATA_FLF_STATELESS.pack(algo, len(key), op, len(iv), len(src), dst_len)
    flf = VIRTIO_CRYPTO_SYM_DATA_FLF_STATELESS.pack(op_flf, C.VIRTIO_CRYPTO_SYM_OP_CIPHER)
    return _data(opcode, 0, flf, 0, True, 0, key + iv + src, dst_len)


def chain_data(opcode: int, session_id: int, iv: bytes, src: bytes, aad: bytes, cipher_start: int,
               cipher_len: int, hash_start: int, hash_len: int, result_len: int, dst_len: int | None = None,
               revision_1: bool = False) -> Request:
    """Session-mode chaining request: iv, src, aad -> dst, hash_result, status."""
    dst_len = len(src) if dst_len is None else dst_len
    op_flf = VIRTIO_CRYPTO_ALG_CHAIN_DATA_FLF.pack(len(iv), len(src), dst_len, cipher_start, cipher_len,
                                                   hash_start, hash_len, len(aad), result_len, 0)
    flf = VIRTIO_CRYPTO_SYM_DATA_FLF.pack(op_flf, C.VIRTIO_CRYPTO_SYM_OP_ALGORITHM_CHAINING, 0)
    return _data(opcode, session_id, flf, C.VIRTIO_CRYPTO_DATAQ_OP_SPEC_HDR_LEGACY, revision_1, _SESSION,
                 iv + src + aad, dst_len + result_len)


def chain_data_stateless(opcode: int, order: int, hash_mode: int, cipher_algo: int, cipher_key: bytes, op: int,
                         auth_algo: int, auth_key: bytes, iv: bytes, src: bytes, aad: bytes, cipher_start: int,
                         cipher_len: int, hash_start: int, hash_len: int, result_len: int) -> Request:
    """Stateless chaining request: cipher_key, auth_key, iv, aad, src -> dst, hash_result, status."""
    op_flf = VIRTIO_CRYPTO_ALG_CHAIN_DATA_FLF_STATELESS.pack(
        order, len(aad), cipher_algo, len(cipher_key), op, auth_algo, len(auth_key), hash_mode, len(iv),
        len(src), len(src), cipher_start, cipher_len, hash_start, hash_len, len(aad), result_len, 0)
    flf = VIRTIO_CRYPTO_SYM_DATA_FLF_STATELESS.pack(op_flf, C.VIRTIO_CRYPTO_SYM_OP_ALGORITHM_CHAINING)
    return _data(opcode, 0, flf, 0, True, 0, cipher_key + auth_key + iv + aad + src, len(src) + result_len)


def digest_data(opcode: int, session_id: int, src: bytes, result_len: int, revision_1: bool = False) -> Request:
    """Session-mode VIRTIO_CRYPTO_HASH or VIRTIO_CRYPTO_MAC: src -> hash_result, status."""
    flf = VIRTIO_CRYPTO_HASH_DATA_FLF.pack(len(src), result_len)
    return _data(opcode, session_id, flf, C.VIRTIO_CRYPTO_DATAQ_OP_SPEC_HDR_LEGACY, revision_1, _SESSION,
                 src, result_len)


def hash_data_stateless(algo: int, src: bytes, result_len: int) -> Request:
    """Stateless VIRTIO_CRYPTO_HASH."""
    flf = VIRTIO_CRYPTO_HASH_DATA_FLF_STATELESS.pack(algo, len(src), result_len, 0)
    return _data(C.VIRTIO_CRYPTO_HASH, 0, flf, 0, True, 0, src, result_len)


def mac_data_stateless(algo: int, key: bytes, src: bytes, result_len: int) -> Request:
    """Stateless VIRTIO_CRYPTO_MAC: auth_key, src."""
    flf = VIRTIO_CRYPTO_MAC_DATA_FLF_STATELESS.pack(algo, len(key), len(src), result_len)
    return _data(C.VIRTIO_CRYPTO_MAC, 0, flf, 0, True, 0, key + src, result_len)


def aead_data(opcode: int, session_id: int, iv: bytes, src: bytes, aad: bytes, tag_len: int,
              dst_len: int, revision_1: bool = False) -> Request:
    """Session-mode VIRTIO_CRYPTO_AEAD_ENCRYPT/DECRYPT: iv, src, aad -> dst, status."""
    flf = VIRTIO_CRYPTO_AEAD_DATA_FLF.pack(len(iv), len(aad), len(src), dst_len, tag_len, 0)
    return _data(opcode, session_id, flf, C.VIRTIO_CRYPTO_DATAQ_OP_SPEC_HDR_LEGACY, revision_1, _SESSION,
                 iv + src + aad, dst_len)


def aead_data_stateless(opcode: int, algo: int, key: bytes, op: int, iv: bytes, src: bytes, aad: bytes,
                        tag_len: int, dst_len: int) -> Request:
    """Stateless AEAD: key, iv, src, aad -> dst, status."""
    flf = VIRTIO_CRYPTO_AEAD_DATA_FLF_STATELESS.pack(algo, len(key), op, len(iv), tag_len, len(aad), len(src),
                                                     dst_len)
    return _data(opcode, 0, flf, 0, True, 0, key + iv + src + aad, dst_len)


def akcipher_data(opcode: int, session_id: int, src: bytes, dst_len: int, message: bytes = b"",
                  revision_1: bool = False) -> Request:
    """Session-mode AKCIPHER request. VERIFY: ``src`` = signature, ``message`` = signed data, no dst."""
    if opcode == C.VIRTIO_CRYPTO_AKCIPHER_VERIFY:
        flf = VIRTIO_CRYPTO_AKCIPHER_DATA_FLF.pack(len(src), len(message))
        return _data(opcode, session_id, flf, C.VIRTIO_CRYPTO_DATAQ_OP_SPEC_HDR_LEGACY, revision_1, _SESSION,
                     src + message, 0)
    flf = VIRTIO_CRYPTO_AKCIPHER_DATA_FLF.pack(len(src), dst_len)
    return _data(opcode, session_id, flf, C.VIRTIO_CRYPTO_DATAQ_OP_SPEC_HDR_LEGACY, revision_1, _SESSION,
                 src, dst_len)


def akcipher_data_stateless(opcode: int, algo: int, key_type: int, key: bytes, src: bytes, dst_len: int,
                            message: bytes = b"", padding: int = 0, hash_algo: int = 0,
                            curve: int = 0) -> Request:
    """Stateless AKCIPHER request: key, src (+ signed data for VERIFY)."""
    para = _akcipher_para(algo, padding, hash_algo, curve).ljust(8, b"\0")
    verify = opcode == C.VIRTIO_CRYPTO_AKCIPHER_VERIFY
    flf = VIRTIO_CRYPTO_AKCIPHER_DATA_FLF_STATELESS.pack(algo, key_type, len(key), para, len(src),
                                                         len(message) if verify else dst_len)
    return _data(opcode, 0, flf, 0, True, 0, key + src + message, 0 if verify else dst_len)
