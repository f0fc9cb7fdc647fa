"""The device types the conformance checks recognise -- crypto (virtio id 20) and RPMB (28) -- and the request each
is probed with.

The virtqueue checks need a request that any device of the type answers, legitimately, and whose answer can be
judged without knowing the device's state: a :class:`Probe`. Crypto: a create-session request on the controlq for
the first of SHA-256, SHA-1 (HASH) or AES-128-CBC (CIPHER) the configuration advertises, answered with
``struct virtio_crypto_create_session_input`` (16 bytes: le64 session_id, le32 status, le32 padding; "Session
operation: create session"). RPMB: GET_WRITE_COUNTER with a nonce, answered with one 512-byte frame of req_resp
RESP_GET_COUNTER echoing the nonce ("Device Operation: Get Write Counter"). A device of another type has no probe:
the checks that need one are skipped.

A crypto device's configuration is read in one of :data:`CRYPTO_LAYOUTS`, as the user says (``--crypto-layout``):
the published standard's (the default), the v16 patch's (``reserved`` where the standard has ``akcipher_algo``) or
the asymmetric-service RFC v3's (64 bytes, ``asym_algo`` and ``rsa_padding`` at 36 and 40, the key lengths moved
to 44 and 48, ``max_size`` to 56). Every layout is handed to the checks as the standard's 13 fields
(:class:`CryptoConfig`), with the RFC's ``asym_algo`` in the place of ``akcipher_algo``.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from ..abi import crypto as C
from ..abi import crypto_asym as A
from ..abi import crypto_v16 as V
from ..abi import rpmb as R
from ..client import crypto as requests
from .catalogue import Skipped
from .target import Facts

#: crypto status values the standard defines ("Operation Status")
CRYPTO_STATUSES = frozenset(C.STATUS_NAMES)


@dataclass(frozen=True)
class Probe:
    """One request: ``queue`` index, device-readable ``readable`` bytes, ``writable`` bytes of room."""

    type: str
    queue: int
    readable: bytes
    writable: int

    def answer(self, used_len: int, data: bytes) -> tuple:
        """The answer in a form that two answers to the same probe share (a session id differs, its status does
        not); :class:`~.catalogue.Failed` is the caller's to raise on :meth:`problem`."""
        if self.type == "crypto":
            return (used_len, *C.VIRTIO_CRYPTO_CREATE_SESSION_INPUT.unpack_from(data.ljust(16, b"\0"))[1:2])
        frame = R.Frame.unpack(data.ljust(R.FRAME_SIZE, b"\0"))
        return used_len, frame.req_resp, frame.result, frame.write_counter, frame.nonce

    def problem(self, used_len: int, data: bytes) -> str | None:
        """Why ``(used_len, data)`` is not a valid answer to this probe, or None."""
        if used_len > self.writable:
            return f"used length {used_len} exceeds the {self.writable} writable bytes"
        if self.type == "crypto":
            _session, status, _pad = C.VIRTIO_CRYPTO_CREATE_SESSION_INPUT.unpack_from(data.ljust(16, b"\0"))
            if used_len < 12 or status not in CRYPTO_STATUSES:
                return f"create-session answer of used length {used_len} with status {status}"
            return None
        frame = R.Frame.unpack(data.ljust(R.FRAME_SIZE, b"\0"))
        nonce = R.Frame.unpack(self.readable).nonce
        if used_len != R.FRAME_SIZE or frame.req_resp != R.VIRTIO_RPMB_RESP_GET_COUNTER or frame.nonce != nonce:
            return (f"GET_WRITE_COUNTER answered with used length {used_len}, req_resp {frame.req_resp:#06x}, nonce "
                    f"{'echoed' if frame.nonce == nonce else 'not echoed'}")
        return None


@dataclass(frozen=True)
class CryptoLayout:
    """One crypto configuration layout: its ``struct``, the index in it of each of the standard's 13 fields (in the
    standard's order: status, max_dataqueues, crypto_services, cipher_algo_l, cipher_algo_h, hash_algo, mac_algo_l,
    mac_algo_h, aead_algo, max_cipher_key_len, max_auth_key_len, akcipher_algo, max_size) and the bit numbers defined
    in the akcipher (or asym) mask."""

    struct: struct.Struct
    order: tuple[int, ...]
    akcipher_defined: frozenset[int]

    def offset(self, field: int) -> tuple[int, int]:
        """(byte offset, size) of the standard's field number ``field`` in this layout: every field is a le32 at
        4 x its index but ``max_size`` (field 12, last in every layout), a le64."""
        return 4 * self.order[field], 8 if field == _MAX_SIZE else 4


_MAX_SIZE = 12  # the standard's field number of max_size


_STANDARD_ORDER = tuple(range(13))
#: --crypto-layout name -> layout ("Crypto Device / Device configuration layout"; the v16 patch; the ASYM RFC v3)
CRYPTO_LAYOUTS = {
    "standard": CryptoLayout(C.VIRTIO_CRYPTO_CONFIG, _STANDARD_ORDER, frozenset({C.VIRTIO_CRYPTO_AKCIPHER_RSA,
                                                                                   C.VIRTIO_CRYPTO_AKCIPHER_ECDSA})),
    "v16": CryptoLayout(V.VIRTIO_CRYPTO_CONFIG, _STANDARD_ORDER, frozenset()),
    "asym-rfc3": CryptoLayout(A.VIRTIO_CRYPTO_CONFIG, (0, 1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 9, 14),
                              frozenset(range(A.VIRTIO_CRYPTO_ASYM_RSA, A.VIRTIO_CRYPTO_ASYM_ECDH + 1))),
}


def crypto_layout(facts: Facts) -> CryptoLayout:
    return CRYPTO_LAYOUTS[facts.crypto_layout]


def crypto_config(facts: Facts) -> tuple:
    """The crypto configuration as the standard's 13 fields (``struct virtio_crypto_config``, "Crypto Device /
    Device configuration layout"), read in the layout of ``facts.crypto_layout``; Skipped if the device is no
    crypto device or its configuration is shorter than the layout."""
    if facts.virtio_id != C.VIRTIO_ID_CRYPTO:
        raise Skipped(f"virtio device {facts.virtio_id} is not a crypto device")
    layout = crypto_layout(facts)
    if len(facts.device_config) < layout.struct.size:
        raise Skipped(f"the crypto device configuration has {len(facts.device_config)} bytes, fewer than the "
                      f"{layout.struct.size} of struct virtio_crypto_config ({facts.crypto_layout} layout)")
    fields = layout.struct.unpack_from(facts.device_config)
    return tuple(fields[i] for i in layout.order)


def crypto_field_bytes(facts: Facts, field: int) -> bytes:
    """The configuration bytes of the standard's field number ``field`` (see :class:`CryptoLayout`) as the device
    has them, for a FAIL's observed bytes."""
    start, size = crypto_layout(facts).offset(field)
    return facts.device_config[start:start + size]


def crypto_controlq(facts: Facts) -> int:
    """The controlq's index: ``max_dataqueues`` ("Crypto Device / Virtqueues": data queues first)."""
    return crypto_config(facts)[1]


def crypto_probe(facts: Facts) -> Probe:
    """The crypto probe (see the module docstring); Skipped when none of its algorithms is advertised."""
    config = crypto_config(facts)
    services, cipher_l, hash_algo = config[2], config[3], config[5]
    queue = crypto_controlq(facts)
    if services >> C.VIRTIO_CRYPTO_SERVICE_HASH & 1:
        for algo, size in ((C.VIRTIO_CRYPTO_HASH_SHA_256, 32), (C.VIRTIO_CRYPTO_HASH_SHA1, 20)):
            if hash_algo >> algo & 1:
                req = requests.hash_create_session(algo, size)
                return Probe("crypto", queue, req.readable, req.writable)
    if services >> C.VIRTIO_CRYPTO_SERVICE_CIPHER & 1 and cipher_l >> C.VIRTIO_CRYPTO_CIPHER_AES_CBC & 1:
        req = requests.cipher_create_session(C.VIRTIO_CRYPTO_CIPHER_AES_CBC, bytes(16), C.VIRTIO_CRYPTO_OP_ENCRYPT)
        return Probe("crypto", queue, req.readable, req.writable)
    raise Skipped("the crypto device advertises none of SHA-256, SHA-1 and AES-128-CBC (the probe requests)")


def rpmb_config(facts: Facts) -> tuple[int, int, int]:
    """``struct virtio_rpmb_config``: (capacity, max_wr_cnt, max_rd_cnt); Skipped for another device type."""
    if facts.virtio_id != R.VIRTIO_ID_RPMB:
        raise Skipped(f"virtio device {facts.virtio_id} is not an RPMB device")
    if len(facts.device_config) < R.VIRTIO_RPMB_CONFIG.size:
        raise Skipped(f"the RPMB configuration has {len(facts.device_config)} bytes, fewer than 3")
    return R.VIRTIO_RPMB_CONFIG.unpack_from(facts.device_config)


def rpmb_frame(req: int, nonce: bytes = b"conformance-nonc", **fields) -> bytes:
    """One 512-byte RPMB request frame of type ``req`` (block_count 1 unless given)."""
    fields.setdefault("block_count", 1)
    return R.Frame(req_resp=req, nonce=nonce, **fields).pack()


def probe(facts: Facts) -> Probe:
    """The probe of the device's type; Skipped for a type this tool does not know."""
    if facts.virtio_id == C.VIRTIO_ID_CRYPTO:
        return crypto_probe(facts)
    if facts.virtio_id == R.VIRTIO_ID_RPMB:
        rpmb_config(facts)
        return Probe("rpmb", 0, rpmb_frame(R.VIRTIO_RPMB_REQ_GET_WRITE_COUNTER), R.FRAME_SIZE)
    raise Skipped(f"virtio device type {facts.virtio_id} is not one this tool can send requests to (crypto 20, "
                  "RPMB 28)")

