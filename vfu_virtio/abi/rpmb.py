"""The virtio-rpmb wire format: constants, ``struct virtio_rpmb_config``, ``struct virtio_rpmb_frame``, MACs.

Source: virtio v1.4 "RPMB Device" ("Device configuration layout", "Device Operation", "Device Operation:
Request Queue") and ``docs/decisions.md`` (RAMB-3, RAMB-24). Frame fields are big-endian
(RAMB-24); the configuration is three bytes.

MAC ("Device Operation: Request Queue", field ``key_mac``; RAMB-3): HMAC-SHA256 with the 32-byte
authentication key over bytes 228..511 (``data``, ``nonce``, ``write_counter``, ``address``,
``block_count``, ``result``, ``req_resp``: 284 bytes) of **every** frame of the request or response,
concatenated in order; the MAC travels in the ``key_mac`` of the last frame; earlier frames carry zeros
there (ignored on input).

Side-neutral: the device (``vfu_virtio.devices.rpmb``) and the host-side client (``vfu_virtio.client.rpmb``)
both build and check frames with this module; it imports nothing of vfu_virtio.
"""
from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass
from typing import Sequence

VIRTIO_ID_RPMB = 28

# ---- Request types ("Device Operation") ------------------------------------------------------------------
VIRTIO_RPMB_REQ_PROGRAM_KEY = 0x0001
VIRTIO_RPMB_REQ_GET_WRITE_COUNTER = 0x0002
VIRTIO_RPMB_REQ_DATA_WRITE = 0x0003
VIRTIO_RPMB_REQ_DATA_READ = 0x0004
VIRTIO_RPMB_REQ_RESULT_READ = 0x0005

# ---- Response types (request << 8; RESULT_READ answers with the type of the operation it reports) --------
VIRTIO_RPMB_RESP_PROGRAM_KEY = 0x0100
VIRTIO_RPMB_RESP_GET_COUNTER = 0x0200
VIRTIO_RPMB_RESP_DATA_WRITE = 0x0300
VIRTIO_RPMB_RESP_DATA_READ = 0x0400

# ---- Operation results ("Device Operation: Request Queue") -----------------------------------------------
VIRTIO_RPMB_RES_OK = 0x0000
VIRTIO_RPMB_RES_GENERAL_FAILURE = 0x0001
VIRTIO_RPMB_RES_AUTH_FAILURE = 0x0002
VIRTIO_RPMB_RES_COUNT_FAILURE = 0x0003
VIRTIO_RPMB_RES_ADDR_FAILURE = 0x0004
VIRTIO_RPMB_RES_WRITE_FAILURE = 0x0005
VIRTIO_RPMB_RES_READ_FAILURE = 0x0006
VIRTIO_RPMB_RES_NO_AUTH_KEY = 0x0007
VIRTIO_RPMB_RES_WRITE_COUNTER_EXPIRED = 0x0080

RESULT_NAMES = {
    VIRTIO_RPMB_RES_OK: "OK", VIRTIO_RPMB_RES_GENERAL_FAILURE: "GENERAL_FAILURE",
    VIRTIO_RPMB_RES_AUTH_FAILURE: "AUTH_FAILURE", VIRTIO_RPMB_RES_COUNT_FAILURE: "COUNT_FAILURE",
    VIRTIO_RPMB_RES_ADDR_FAILURE: "ADDR_FAILURE", VIRTIO_RPMB_RES_WRITE_FAILURE: "WRITE_FAILURE",
    VIRTIO_RPMB_RES_READ_FAILURE: "READ_FAILURE", VIRTIO_RPMB_RES_NO_AUTH_KEY: "NO_AUTH_KEY",
    VIRTIO_RPMB_RES_WRITE_COUNTER_EXPIRED: "WRITE_COUNTER_EXPIRED",
}

#: struct virtio_rpmb_config, 3 bytes: u8 capacity @0 (128 KiB units, 0x00..0x80), u8 max_wr_cnt @1 and
#: u8 max_rd_cnt @2 (256-byte blocks per request; 0 = no limit).
VIRTIO_RPMB_CONFIG = struct.Struct("BBB")

#: struct virtio_rpmb_frame, 512 bytes, big-endian: u8 stuff[196] @0, u8 key_mac[32] @196, u8 data[256]
#: @228, u8 nonce[16] @484, be32 write_counter @500, be16 address @504 (256-byte units), be16 block_count
#: @506, be16 result @508, be16 req_resp @510.
VIRTIO_RPMB_FRAME = struct.Struct(">196s32s256s16sIHHHH")
FRAME_SIZE = VIRTIO_RPMB_FRAME.size
KEY_MAC_OFFSET = 196
MAC_INPUT_OFFSET = 228  # start of the MAC input: data .. req_resp

BLOCK_SIZE = 256  # bytes of data per frame ("half sector"); ``address`` counts these
BLOCKS_PER_CAPACITY_UNIT = 512  # 128 KiB / 256 B
MAX_CAPACITY = 0x80  # 16 MiB ("Device Initialization", RPMB-3)
COUNTER_MAX = 0xFFFFFFFF  # the write counter stops here (RPMB-36, RAMB-10)

_STUFF = bytes(196)
_ZERO_MAC = bytes(32)


@dataclass(frozen=True)
class Frame:
    """One ``struct virtio_rpmb_frame`` (``stuff`` is not kept: zero on output, ignored on input)."""

    req_resp: int = 0
    result: int = 0
    block_count: int = 0
    address: int = 0
    write_counter: int = 0
    nonce: bytes = bytes(16)
    data: bytes = bytes(BLOCK_SIZE)
    key_mac: bytes = _ZERO_MAC

    def pack(self) -> bytes:
        """The 512 wire bytes."""
        return VIRTIO_RPMB_FRAME.pack(_STUFF, self.key_mac, self.data, self.nonce, self.write_counter,
                                      self.address, self.block_count, self.result, self.req_resp)

    @classmethod
    def unpack(cls, raw: bytes, offset: int = 0) -> "Frame":
        """Decode the 512 bytes at ``offset`` of ``raw``."""
        (_, key_mac, data, nonce, write_counter, address, block_count, result,
         req_resp) = VIRTIO_RPMB_FRAME.unpack_from(raw, offset)
        return cls(req_resp, result, block_count, address, write_counter, nonce, data, key_mac)


def mac(key: bytes, raw) -> bytes:
    """HMAC-SHA256 with ``key`` over bytes 228..511 of each 512-byte frame in ``raw`` (whole frames back to
    back), concatenated (RAMB-3)."""
    h = hmac.new(key, digestmod=hashlib.sha256)
    view = memoryview(raw)
    for off in range(0, len(view), FRAME_SIZE):
        h.update(view[off + MAC_INPUT_OFFSET:off + FRAME_SIZE])
    return h.digest()


def seal(frames: Sequence[Frame], key: bytes | None) -> bytes:
    """Pack ``frames`` back to back, ``key_mac`` zero in all but the last, which carries the MAC over all
    of them (all-zero too when ``key`` is None: RAMB-8, before a key is programmed)."""
    out = bytearray(b"".join(f.pack() for f in frames))
    for off in range(0, len(out), FRAME_SIZE):
        out[off + KEY_MAC_OFFSET:off + MAC_INPUT_OFFSET] = _ZERO_MAC
    if key is not None:
        last = len(out) - FRAME_SIZE
        out[last + KEY_MAC_OFFSET:last + MAC_INPUT_OFFSET] = mac(key, out)
    return bytes(out)


def verify(key: bytes, raw) -> bool:
    """Whether the MAC in the last frame of ``raw`` (whole frames) matches, compared in constant time."""
    last = len(raw) - FRAME_SIZE
    return hmac.compare_digest(mac(key, raw), bytes(raw[last + KEY_MAC_OFFSET:last + MAC_INPUT_OFFSET]))
