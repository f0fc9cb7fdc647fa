"""The device types the conformance checks recognise -- crypto (virtio id 20) and RPMB (28) -- and the request each
is probed with.

The virtqueue checks need a request that any device of the type answers, legitimately, and whose answer can be
judged without knowing the device's state: a :class:`Probe`. Crypto: a create-session request on the controlq for
the first of SHA-256, SHA-1 (HASH) or AES-128-CBC (CIPHER) the configuration advertises, answered with
``struct virtio_crypto_create_session_input`` (16 bytes: le64 session_id, le32 status, le32 padding; "Session
operation: create session"). RPMB: GET_WRITE_COUNTER with a nonce, answered with one 512-byte frame of req_resp
RESP_GET_COUNTER echoing the nonce ("Device Operation: Get Write Counter"). A device of another type has no probe:
the checks that need one are skipped.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..abi import crypto as C
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


def crypto_config(facts: Facts) -> tuple:
    """``struct virtio_crypto_config`` (56 bytes, "Crypto Device / Device configuration layout") as a tuple of its
    13 fields; Skipped if the device is no crypto device or its configuration is shorter."""
    if facts.virtio_id != C.VIRTIO_ID_CRYPTO:
        raise Skipped(f"virtio device {facts.virtio_id} is not a crypto device")
    if len(facts.device_config) < C.VIRTIO_CRYPTO_CONFIG.size:
        raise Skipped(f"the crypto device configuration has {len(facts.device_config)} bytes, fewer than the "
                      f"{C.VIRTIO_CRYPTO_CONFIG.size} of struct virtio_crypto_config")
    return C.VIRTIO_CRYPTO_CONFIG.unpack_from(facts.device_config)


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

