"""The asymmetric service's requests from the driver side (profile ``asym-rfc3`` of the device): the sixteen requests
of the ASYM RFC v3 laid out as AMB-32 places them, and their ``idata`` decoded.

A request is ``virtio_crypto_op_header`` (opcode, ``algo`` the algorithm; session_id and flag 0) + the fixed part of
``parameter`` zero-padded to the 80-byte mux union + the variable part of ``parameter`` + ``odata``; the writable
part is ``idata`` (``le32 status``, a second le32, the outputs). The driver must have negotiated
``VIRTIO_CRYPTO_F_NON_SESSION_MODE`` and ``VIRTIO_CRYPTO_F_ASYM``. Numbers are ints here and unsigned big-endian on
the wire, each as long as the builder's width (default: the fewest bytes; field elements of a curve as long as its
prime). Curves are the names of :data:`vfu_virtio.abi.crypto_asym.EC_CURVES` or explicit (p, a, b, gx, gy, n, h)
tuples. Each builder returns a :class:`~.crypto.Request`: readable bytes and the writable bytes ``idata`` needs
(for key generation the most it can take). Layouts: :mod:`vfu_virtio.abi.crypto_asym`.

Imports only the side-neutral :mod:`vfu_virtio.abi`.
"""
from __future__ import annotations

import struct
from typing import NamedTuple, Sequence

from ..abi import crypto as C
from ..abi import crypto_asym as A
from ..abi import crypto_v16 as V
from .crypto import Request

_IDATA = A.VIRTIO_CRYPTO_ASYM_INPUT.size
#: Largest DSA q in bytes, the room DSA key generation asks for q and x.
DSA_Q_MAX = 32



def nbytes(value: int) -> int:
    """Bytes of ``value`` unsigned big-endian (at least 1)."""
    return max(1, (value.bit_length() + 7) // 8)


def be(value: int, width: int | None = None) -> bytes:
    """``value`` unsigned big-endian in ``width`` bytes (default :func:`nbytes`)."""
    return value.to_bytes(nbytes(value) if width is None else width, "big")


def _request(opcode: int, algo: int, fixed: bytes, tail: bytes, writable: int) -> Request:
    head = C.VIRTIO_CRYPTO_OP_HEADER.pack(opcode, algo, 0, 0, 0)
    return Request(head + fixed.ljust(V.VIRTIO_CRYPTO_OP_DATA_REQ_MUX_UNION, b"\0") + tail, writable)


# ---- shared sub-structures -----------------------------------------------------------------------------------------
def curve_numbers(curve) -> tuple[int, ...]:
    """(p, a, b, gx, gy, n, h) of a curve name or tuple."""
    return A.EC_CURVES[curve] if isinstance(curve, str) else tuple(curve)


def field_size(curve) -> int:
    """Bytes of the curve's field elements (coordinates, ECDH secrets)."""
    return nbytes(curve_numbers(curve)[0])


def order_size(curve) -> int:
    """Bytes of the curve's order (private keys, ECDSA r and s)."""
    return nbytes(curve_numbers(curve)[5])


def ec_group(curve) -> tuple[bytes, bytes]:
    """(virtio_crypto_ec_group, virtio_crypto_ec_group_data: xg, yg, n, q, a, b, h) of a curve."""
    p, a, b, gx, gy, n, h = curve_numbers(curve)
    w = nbytes(p)
    fields = [be(gx, w), be(gy, w), be(n), be(p, w), be(a, w), be(b, w), be(h)]
    return A.VIRTIO_CRYPTO_EC_GROUP.pack(*(len(f) for f in fields), 0), b"".join(fields)


def dsa_group(p: int, q: int, g: int) -> tuple[bytes, bytes]:
    """(virtio_crypto_dsa_group, its data p, q, g)."""
    fields = [be(p), be(q), be(g, nbytes(p))]
    return A.VIRTIO_CRYPTO_DSA_GROUP.pack(*(len(f) for f in fields), 0), b"".join(fields)


def rsa_pub_key(n: int, e: int) -> tuple[bytes, bytes]:
    """(virtio_crypto_rsa_pub_key, its data n, e)."""
    fields = [be(n), be(e)]
    return A.VIRTIO_CRYPTO_RSA_PUB_KEY.pack(*(len(f) for f in fields)), b"".join(fields)


def rsa_priv_key(*numbers: int, primes: int = 2) -> tuple[bytes, bytes]:
    """(virtio_crypto_rsa_priv_key, its key data) of (n, d) -> rep1, or (p, q, dp, dq, qinv) -> rep2."""
    if len(numbers) == 2:
        n, d = numbers
        fields = [be(n), be(d, nbytes(n))]
        key = A.VIRTIO_CRYPTO_RSA_PRIV_KEY_REP1.pack(*(len(f) for f in fields))
        rep_type = A.VIRTIO_CRYPTO_RSA_PRIV_KEY_REPTYPE1
    else:
        fields = [be(x) for x in numbers]
        key = A.VIRTIO_CRYPTO_RSA_PRIV_KEY_REP2.pack(*(len(f) for f in fields), 0, 0, 0)
        rep_type = A.VIRTIO_CRYPTO_RSA_PRIV_KEY_REPTYPE2
    return A.VIRTIO_CRYPTO_RSA_PRIV_KEY.pack(primes, rep_type, key), b"".join(fields)


# ---- signatures ----------------------------------------------------------------------------------------------------
def rsa_sign(private: Sequence[int], msg: bytes, padding: int, hash_algo: int, signature_len: int) -> Request:
    """RSA sign with the private key (n, d) or (p, q, dp, dq, qinv): idata status, reserved, signature."""
    priv, data = rsa_priv_key(*private)
    fixed = A.VIRTIO_CRYPTO_RSA_SIGN_PARA.pack(hash_algo, padding, priv, len(msg), signature_len)
    return _request(A.VIRTIO_CRYPTO_ASYM_SIGN, A.VIRTIO_CRYPTO_ASYM_RSA, fixed, data + msg, _IDATA + signature_len)


def dsa_sign(group: Sequence[int], x: int, msg: bytes, hash_algo: int, r_len: int | None = None,
             s_len: int | None = None, k: bytes = b"") -> Request:
    """DSA sign with the private ``x`` in ``group`` (p, q, g); r and s default to q's length."""
    fixed_group, data = dsa_group(*group)
    r_len = nbytes(group[1]) if r_len is None else r_len
    s_len = nbytes(group[1]) if s_len is None else s_len
    xb = be(x, nbytes(group[1]))
    fixed = A.VIRTIO_CRYPTO_DSA_SIGN_PARA.pack(hash_algo, 0, fixed_group, len(k), len(xb), len(msg), r_len, s_len, 0)
    return _request(A.VIRTIO_CRYPTO_ASYM_SIGN, A.VIRTIO_CRYPTO_ASYM_DSA, fixed, data + k + xb + msg,
                    _IDATA + r_len + s_len)


def ecdsa_sign(curve, d: int, msg: bytes, hash_algo: int, r_len: int | None = None, s_len: int | None = None,
               k: bytes = b"", field_type: int = A.VIRTIO_CRYPTO_EC_FIELD_TYPE_PRIME) -> Request:
    """ECDSA sign with the private ``d``; r and s default to the order's length."""
    fixed_group, data = ec_group(curve)
    r_len = order_size(curve) if r_len is None else r_len
    s_len = order_size(curve) if s_len is None else s_len
    db = be(d, order_size(curve))
    fixed = A.VIRTIO_CRYPTO_ECDSA_SIGN_PARA.pack(hash_algo, field_type, fixed_group, len(k), len(db), len(msg), r_len,
                                                 s_len, 0)
    return _request(A.VIRTIO_CRYPTO_ASYM_SIGN, A.VIRTIO_CRYPTO_ASYM_ECDSA, fixed, data + k + db + msg,
                    _IDATA + r_len + s_len)


def rsa_verify(public: Sequence[int], msg: bytes, signature: bytes, padding: int, hash_algo: int) -> Request:
    """RSA verify ``signature`` over ``msg`` with (n, e); the signature follows msg, n_len bytes (AMB-32)."""
    pub, data = rsa_pub_key(*public)
    n_len = nbytes(public[0])
    fixed = A.VIRTIO_CRYPTO_RSA_VERIFY_PARA.pack(hash_algo, padding, pub, len(msg), 0)
    tail = data + msg + be(int.from_bytes(signature, "big"), n_len)
    return _request(A.VIRTIO_CRYPTO_ASYM_VERIFY, A.VIRTIO_CRYPTO_ASYM_RSA, fixed, tail, _IDATA)


def dsa_verify(group: Sequence[int], y: int, msg: bytes, r: int, s: int, hash_algo: int) -> Request:
    """DSA verify (r, s) over ``msg`` with the public ``y``."""
    fixed_group, data = dsa_group(*group)
    yb, rb, sb = be(y, nbytes(group[0])), be(r, nbytes(group[1])), be(s, nbytes(group[1]))
    fixed = A.VIRTIO_CRYPTO_DSA_VERIFY_PARA.pack(hash_algo, 0, fixed_group, len(yb), len(rb), len(sb), len(msg))
    return _request(A.VIRTIO_CRYPTO_ASYM_VERIFY, A.VIRTIO_CRYPTO_ASYM_DSA, fixed, data + yb + rb + sb + msg, _IDATA)


def ecdsa_verify(curve, point: Sequence[int], msg: bytes, r: int, s: int, hash_algo: int,
                 field_type: int = A.VIRTIO_CRYPTO_EC_FIELD_TYPE_PRIME) -> Request:
    """ECDSA verify (r, s) over ``msg`` with the public point (x, y)."""
    fixed_group, data = ec_group(curve)
    w, nw = field_size(curve), order_size(curve)
    xb, yb, rb, sb = be(point[0], w), be(point[1], w), be(r, nw), be(s, nw)
    fixed = A.VIRTIO_CRYPTO_ECDSA_VERIFY_PARA.pack(hash_algo, field_type, fixed_group, len(xb), len(yb), len(rb),
                                                   len(sb), len(msg), 0)
    return _request(A.VIRTIO_CRYPTO_ASYM_VERIFY, A.VIRTIO_CRYPTO_ASYM_ECDSA, fixed, data + xb + yb + rb + sb + msg,
                    _IDATA)


# ---- RSA encryption ------------------------------------------------------------------------------------------------
def rsa_encrypt(public: Sequence[int], msg: bytes, padding: int) -> Request:
    """RSA encrypt ``msg`` with (n, e): idata status, reserved, cmsg[n_len] (AMB-32)."""
    pub, data = rsa_pub_key(*public)
    fixed = A.VIRTIO_CRYPTO_RSA_ENC_PARA.pack(padding, pub, len(msg))
    return _request(A.VIRTIO_CRYPTO_ASYM_ENCRYPT, A.VIRTIO_CRYPTO_ASYM_RSA, fixed, data + msg,
                    _IDATA + nbytes(public[0]))


def rsa_decrypt(private: Sequence[int], cmsg: bytes, padding: int) -> Request:
    """RSA decrypt ``cmsg``: idata status, the recovered length (AMB-32), msg[cmsg_len]."""
    priv, data = rsa_priv_key(*private)
    fixed = A.VIRTIO_CRYPTO_RSA_DEC_PARA.pack(padding, priv, len(cmsg))
    return _request(A.VIRTIO_CRYPTO_ASYM_DECRYPT, A.VIRTIO_CRYPTO_ASYM_RSA, fixed, data + cmsg, _IDATA + len(cmsg))


# ---- key generation ------------------------------------------------------------------------------------------------
def rsa_keygen(modulus_len: int, rep_type: int = A.VIRTIO_CRYPTO_RSA_PRIV_KEY_REPTYPE2, e: int = 65537,
               primes: int = 2) -> Request:
    """RSA key generation, a ``modulus_len``-byte modulus: idata virtio_crypto_rsa_keygen_input."""
    eb = be(e)
    private = 2 * modulus_len if rep_type == A.VIRTIO_CRYPTO_RSA_PRIV_KEY_REPTYPE1 else 5 * ((modulus_len + 1) // 2)
    fixed = A.VIRTIO_CRYPTO_RSA_KEYGEN_PARA.pack(modulus_len, primes, rep_type, len(eb))
    return _request(A.VIRTIO_CRYPTO_ASYM_KEY_GEN, A.VIRTIO_CRYPTO_ASYM_RSA, fixed, eb,
                    A.VIRTIO_CRYPTO_RSA_KEYGEN_INPUT.size + private + modulus_len + len(eb))


def dsa_keygen(modulus_len: int) -> Request:
    """DSA domain parameters and key pair, a ``modulus_len``-byte p: idata virtio_crypto_dsa_keygen_input."""
    fixed = A.VIRTIO_CRYPTO_DSA_KEYGEN_PARA.pack(modulus_len, 0)
    return _request(A.VIRTIO_CRYPTO_ASYM_KEY_GEN, A.VIRTIO_CRYPTO_ASYM_DSA, fixed, b"",
                    A.VIRTIO_CRYPTO_DSA_KEYGEN_INPUT.size + 3 * modulus_len + 2 * DSA_Q_MAX)


def _ec_keygen_para(curve, d_len: int | None, x_len: int | None, y_len: int | None,
                    field_type: int) -> tuple[bytes, bytes, int]:
    fixed_group, data = ec_group(curve)
    d_len = order_size(curve) if d_len is None else d_len
    x_len = field_size(curve) if x_len is None else x_len
    y_len = field_size(curve) if y_len is None else y_len
    para = A.VIRTIO_CRYPTO_EC_KEYGEN_PARA.pack(field_type, 0, fixed_group, d_len, x_len, y_len)
    return para, data, d_len + x_len + y_len


def ec_keygen(curve, algo: int = A.VIRTIO_CRYPTO_ASYM_ECDSA, d_len: int | None = None, x_len: int | None = None,
              y_len: int | None = None, field_type: int = A.VIRTIO_CRYPTO_EC_FIELD_TYPE_PRIME) -> Request:
    """EC key generation (``algo`` ECDSA or ECDH): idata status, reserved, d, x, y."""
    para, data, out = _ec_keygen_para(curve, d_len, x_len, y_len, field_type)
    return _request(A.VIRTIO_CRYPTO_ASYM_KEY_GEN, algo, para, data, _IDATA + out)


# ---- key exchange --------------------------------------------------------------------------------------------------
def _dh(op: int, modules_len: int, p: int, g: int) -> tuple[bytes, bytes]:
    pb, gb = (be(p), be(g, nbytes(p))) if p else (b"", b"")
    para = A.VIRTIO_CRYPTO_DH_KEYEXCHG_PARA.pack(op, 0, A.VIRTIO_CRYPTO_DH_PARAMETER.pack(modules_len, 0, len(pb),
                                                                                          len(gb)))
    return para, pb + gb


def dh_param_gen(modules_len: int) -> Request:
    """DH parameter generation, a ``modules_len``-byte prime: idata status, reserved, p_len, g_len, p, g (AMB-32)."""
    para, data = _dh(A.VIRTIO_CRYPTO_KEY_EXCHANGE_GEN_DH_PARAM, modules_len, 0, 0)
    return _request(A.VIRTIO_CRYPTO_ASYM_KEY_EXCHG, A.VIRTIO_CRYPTO_ASYM_DH, para, data,
                    A.VIRTIO_CRYPTO_DH_KEYEXCHG_PARAM_GEN_INPUT.size + 2 * modules_len)


def dh_keygen(p: int, g: int) -> Request:
    """DH key generation in (p, g): idata status, reserved, x_len, y_len, x, y."""
    para, data = _dh(A.VIRTIO_CRYPTO_KEY_EXCHANGE_GEN_KEY, nbytes(p), p, g)
    return _request(A.VIRTIO_CRYPTO_ASYM_KEY_EXCHG, A.VIRTIO_CRYPTO_ASYM_DH, para, data,
                    A.VIRTIO_CRYPTO_DH_KEYEXCHG_KEYGEN_INPUT.size + 2 * nbytes(p))


def dh_compute(p: int, g: int, x: int, y: int, secret_len: int | None = None) -> Request:
    """DH shared secret of the own private ``x`` and the peer's public ``y``: idata status, reserved, secret."""
    para, data = _dh(A.VIRTIO_CRYPTO_KEY_EXCHANGE_COMPUTE_KEY, nbytes(p), p, g)
    secret_len = nbytes(p) if secret_len is None else secret_len
    xb, yb = be(x), be(y, nbytes(p))
    odata = A.VIRTIO_CRYPTO_DH_KEYEXCHG_COMPUTE_KEY_OUTPUT.pack(len(xb), len(yb), secret_len, 0) + xb + yb
    return _request(A.VIRTIO_CRYPTO_ASYM_KEY_EXCHG, A.VIRTIO_CRYPTO_ASYM_DH, para, data + odata, _IDATA + secret_len)


def ecdh_keygen(curve, field_type: int = A.VIRTIO_CRYPTO_EC_FIELD_TYPE_PRIME) -> Request:
    """ECDH key generation (keyexchg_op GEN_KEY): idata status, reserved, d, x, y."""
    para, data, out = _ec_keygen_para(curve, None, None, None, field_type)
    fixed = A.VIRTIO_CRYPTO_ECDH_KEYEXCHG_KEYGEN_PARA.pack(A.VIRTIO_CRYPTO_KEY_EXCHANGE_GEN_KEY, 0, para)
    return _request(A.VIRTIO_CRYPTO_ASYM_KEY_EXCHG, A.VIRTIO_CRYPTO_ASYM_ECDH, fixed, data, _IDATA + out)


def ecdh_compute(curve, d: int, peer: Sequence[int], secret_len: int | None = None,
                 keyexchg_op: int = A.VIRTIO_CRYPTO_KEY_EXCHANGE_COMPUTE_KEY,
                 field_type: int = A.VIRTIO_CRYPTO_EC_FIELD_TYPE_PRIME) -> Request:
    """ECDH shared secret of the own ``d`` and the peer's point (x, y) (keyexchg_op COMPUTE_KEY, AMB-32): idata
    status, reserved, secret (the shared x-coordinate)."""
    para, data, _out = _ec_keygen_para(curve, None, None, None, field_type)
    w = field_size(curve)
    db, xb, yb = be(d, order_size(curve)), be(peer[0], w), be(peer[1], w)
    secret_len = w if secret_len is None else secret_len
    fixed = A.VIRTIO_CRYPTO_ECDH_KEYEXCHG_COMPUTE_KEY_PARA.pack(keyexchg_op, 0, len(db), len(xb), len(yb), secret_len,
                                                                para)
    return _request(A.VIRTIO_CRYPTO_ASYM_KEY_EXCHG, A.VIRTIO_CRYPTO_ASYM_ECDH, fixed, data + db + xb + yb,
                    _IDATA + secret_len)


# ---- idata ---------------------------------------------------------------------------------------------------------
def idata_head(idata: bytes) -> tuple[int, int]:
    """(status, the second word: reserved, verify_result or RSA decrypt's recovered length)."""
    return A.VIRTIO_CRYPTO_ASYM_INPUT.unpack_from(idata)


def output(idata: bytes, *widths: int) -> list[bytes]:
    """The output fields after the 8-byte head, ``widths`` bytes each."""
    fields, pos = [], _IDATA
    for width in widths:
        fields.append(bytes(idata[pos:pos + width]))
        pos += width
    return fields


def numbers(idata: bytes, *widths: int) -> list[int]:
    """:func:`output` as unsigned big-endian numbers."""
    return [int.from_bytes(f, "big") for f in output(idata, *widths)]


def numbers_at(idata: bytes, pos: int, widths) -> list[int]:
    """Unsigned big-endian numbers of ``widths`` bytes each, back to back from offset ``pos`` of ``idata``."""
    found = []
    for width in widths:
        found.append(int.from_bytes(idata[pos:pos + width], "big"))
        pos += width
    return found


class RsaKeyPair(NamedTuple):
    """A generated RSA key as idata reports it: (n, d) or (p, q, dp, dq, qinv) in ``private``, and n, e."""

    rep_type: int
    private: tuple[int, ...]
    n: int
    e: int


def rsa_key_pair(idata: bytes) -> RsaKeyPair:
    """Decode virtio_crypto_rsa_keygen_input (after a status of OK)."""
    _status, _res, priv_key, pub_key = A.VIRTIO_CRYPTO_RSA_KEYGEN_INPUT.unpack_from(idata)
    _primes, rep_type, key = A.VIRTIO_CRYPTO_RSA_PRIV_KEY.unpack(priv_key)
    if rep_type == A.VIRTIO_CRYPTO_RSA_PRIV_KEY_REPTYPE1:
        widths = A.VIRTIO_CRYPTO_RSA_PRIV_KEY_REP1.unpack_from(key)
    else:
        widths = A.VIRTIO_CRYPTO_RSA_PRIV_KEY_REP2.unpack(key)[:5]
    pub_widths = A.VIRTIO_CRYPTO_RSA_PUB_KEY.unpack(pub_key)
    found = numbers_at(idata, A.VIRTIO_CRYPTO_RSA_KEYGEN_INPUT.size, (*widths, *pub_widths))
    return RsaKeyPair(rep_type, tuple(found[:len(widths)]), *found[len(widths):])


def dsa_key_pair(idata: bytes) -> tuple[int, int, int, int, int]:
    """Decode virtio_crypto_dsa_keygen_input -> (p, q, g, x, y)."""
    _status, _res, group, x_len, y_len = A.VIRTIO_CRYPTO_DSA_KEYGEN_INPUT.unpack_from(idata)
    p_len, q_len, g_len, _r = A.VIRTIO_CRYPTO_DSA_GROUP.unpack(group)
    return tuple(numbers_at(idata, A.VIRTIO_CRYPTO_DSA_KEYGEN_INPUT.size, (p_len, q_len, g_len, x_len, y_len)))


def dh_pair(idata: bytes) -> tuple[int, int]:
    """Decode a DH key pair (x, y) or generated parameters (p, g): status, reserved, two lengths, two numbers."""
    _status, _res, first, second = struct.unpack_from("<4I", idata)
    return tuple(numbers_at(idata, A.VIRTIO_CRYPTO_DH_KEYEXCHG_KEYGEN_INPUT.size, (first, second)))
