"""The v16 crypto patch's requests from the driver side (profile ``v16`` of the device; also the symmetric requests of
``asym-rfc3``).

Without ``VIRTIO_CRYPTO_F_NON_SESSION_MODE`` a v16 request is byte for byte the standard's request without
REVISION_1, so :mod:`.crypto` builds it (create and destroy session, session-mode data requests). With that bit every
dataq request is ``struct virtio_crypto_op_data_req_mux``: :func:`mux` turns a 72-byte-head session-mode request
into its 104-byte form, and the ``*_non_sess`` builders lay out non-session requests (flag
``VIRTIO_CRYPTO_FLAG_NON_SESSION_MODE``, the key material in the request, v16's field orders). :func:`destroy_status`
reads v16's 8-byte destroy-session result. Layouts: :mod:`vfu_virtio.abi.crypto_v16`. Like :mod:`.crypto`, a builder
returns the readable bytes and the number of writable bytes (status included); the descriptor split is the caller's.

Imports only the side-neutral :mod:`vfu_virtio.abi` (and the standard's builders beside it).
"""
from __future__ import annotations

from ..abi import crypto as C
from ..abi import crypto_v16 as V
from .crypto import Request

_LEGACY_HEAD = C.DATA_HEAD_LEGACY


def mux(req: Request) -> Request:
    """A session-mode dataq request of :mod:`.crypto` (72-byte head, flag VIRTIO_CRYPTO_FLAG_SESSION_MODE) in the
    mux layout: its 48-byte union padded to 80 bytes (a 104-byte head), the variable part unchanged."""
    pad = bytes(V.VIRTIO_CRYPTO_OP_DATA_REQ_MUX_UNION - C.VIRTIO_CRYPTO_DATAQ_OP_SPEC_HDR_LEGACY)
    return Request(req.readable[:_LEGACY_HEAD] + pad + req.readable[_LEGACY_HEAD:], req.writable)


def _non_sess(opcode: int, algo: int, union: bytes, tail: bytes, writable: int) -> Request:
    head = C.VIRTIO_CRYPTO_OP_HEADER.pack(opcode, algo, 0, V.VIRTIO_CRYPTO_FLAG_NON_SESSION_MODE, 0)
    return Request(head + union.ljust(V.VIRTIO_CRYPTO_OP_DATA_REQ_MUX_UNION, b"\0") + tail, writable + 1)


def _sym_non_sess(opcode: int, algo: int, para: bytes, op_type: int, tail: bytes, writable: int) -> Request:
    union = V.VIRTIO_CRYPTO_SYM_DATA_REQ_NON_SESS.pack(para, op_type, 0)
    return _non_sess(opcode, algo, union, tail, writable)


def cipher_data_non_sess(opcode: int, algo: int, key: bytes, op: int, iv: bytes, src: bytes,
                         dst_len: int | None = None) -> Request:
    """Non-session VIRTIO_CRYPTO_CIPHER_ENCRYPT/DECRYPT: cipher_key, iv, src_data -> dst_data, status."""
    dst_len = len(src) if dst_len is None else dst_len
    para = V.VIRTIO_CRYPTO_CIPHER_PARA_NON_SESS.pack(algo, len(key), op, len(iv), len(src), dst_len)
    return _sym_non_sess(opcode, algo, para, C.VIRTIO_CRYPTO_SYM_OP_CIPHER, key + iv + src, dst_len)


def chain_data_non_sess(opcode: int, order: int, hash_mode: int, cipher_algo: int, cipher_key: bytes, op: int,
                        auth_algo: int, auth_key: bytes, iv: bytes, src: bytes, aad: bytes, cipher_start: int,
                        cipher_len: int, hash_start: int, hash_len: int, result_len: int,
                        dst_len: int | None = None) -> Request:
    """Non-session algorithm chaining: cipher_key, auth_key, iv, src_data, aad (v16's order) -> dst_data,
    hash_result, status. ``auth_key`` only in VIRTIO_CRYPTO_SYM_HASH_MODE_AUTH."""
    dst_len = len(src) if dst_len is None else dst_len
    para = V.VIRTIO_CRYPTO_ALG_CHAIN_DATA_PARA_NON_SESS.pack(
        order, len(aad), cipher_algo, len(cipher_key), op, auth_algo, len(auth_key), hash_mode, len(iv), len(src),
        dst_len, cipher_start, cipher_len, hash_start, hash_len, len(aad), result_len, 0)
    return _sym_non_sess(opcode, cipher_algo, para, C.VIRTIO_CRYPTO_SYM_OP_ALGORITHM_CHAINING,
                         cipher_key + auth_key + iv + src + aad, dst_len + result_len)


def hash_data_non_sess(algo: int, src: bytes, result_len: int) -> Request:
    """Non-session VIRTIO_CRYPTO_HASH: src_data -> hash_result, status."""
    para = V.VIRTIO_CRYPTO_HASH_PARA_NON_SESS.pack(algo, len(src), result_len, 0)
    return _non_sess(C.VIRTIO_CRYPTO_HASH, algo, para, src, result_len)


def mac_data_non_sess(algo: int, key: bytes, src: bytes, result_len: int) -> Request:
    """Non-session VIRTIO_CRYPTO_MAC: auth_key, src_data -> hash_result, status."""
    para = V.VIRTIO_CRYPTO_MAC_PARA_NON_SESS.pack(algo, len(key), len(src), result_len)
    return _non_sess(C.VIRTIO_CRYPTO_MAC, algo, para, key + src, result_len)


def aead_data_non_sess(opcode: int, algo: int, key: bytes, op: int, iv: bytes, src: bytes, aad: bytes, tag_len: int,
                       dst_len: int) -> Request:
    """Non-session VIRTIO_CRYPTO_AEAD_ENCRYPT/DECRYPT: key, iv, src_data, aad -> dst_data, status."""
    para = V.VIRTIO_CRYPTO_AEAD_PARA_NON_SESS.pack(algo, len(key), op, len(iv), tag_len, len(aad), len(src), dst_len)
    return _non_sess(opcode, algo, para, key + iv + src + aad, dst_len)


def destroy_status(outcome: bytes) -> int:
    """The status of a destroy-session outcome: v16's ``le32 status`` (8 bytes written), or the one status byte a
    writable part shorter than 8 bytes gets."""
    if len(outcome) >= V.VIRTIO_CRYPTO_DESTROY_SESSION_REQ_INPUT.size:
        return V.VIRTIO_CRYPTO_DESTROY_SESSION_REQ_INPUT.unpack_from(outcome)[0]
    return outcome[0]
