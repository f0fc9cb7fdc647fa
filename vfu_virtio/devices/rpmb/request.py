"""One requestq chain's readable bytes -> one RPMB request value (parsing only; no state is touched).

Buffer mapping (RAMB-4; "Device Operation: Request Queue", field ``block_count``): one
chain is one operation; its device-readable part is whole 512-byte frames back to back (descriptor
boundaries do not matter), its device-writable part room for whole response frames:

=====================  ===========================================  ======================
request                device-readable frames                       device-writable frames
=====================  ===========================================  ======================
program key            PROGRAM_KEY [, RESULT_READ]                  1 (0 without RESULT_READ)
get write counter      GET_WRITE_COUNTER                            1
data write             N x DATA_WRITE [, RESULT_READ]               1 (0 without RESULT_READ)
data read              DATA_READ                                    N
result read            RESULT_READ                                  1
=====================  ===========================================  ======================

Anything else (no frame, a partial frame, an unknown ``req_resp``, frames after GET_WRITE_COUNTER or
DATA_READ, a non-DATA_WRITE frame inside a write) is :class:`Malformed` (RAMB-15, RAMB-19). Counts and
limits are the executor's checks, because the check order puts NO_AUTH_KEY before them.
"""
from __future__ import annotations

from dataclasses import dataclass

from vfu_virtio.abi.rpmb import (FRAME_SIZE, VIRTIO_RPMB_REQ_DATA_READ, VIRTIO_RPMB_REQ_DATA_WRITE,
                                 VIRTIO_RPMB_REQ_GET_WRITE_COUNTER, VIRTIO_RPMB_REQ_PROGRAM_KEY,
                                 VIRTIO_RPMB_REQ_RESULT_READ, VIRTIO_RPMB_RESP_DATA_READ, VIRTIO_RPMB_RESP_DATA_WRITE,
                                 VIRTIO_RPMB_RESP_GET_COUNTER, VIRTIO_RPMB_RESP_PROGRAM_KEY, Frame)


@dataclass(frozen=True)
class ProgramKey:
    """PROGRAM_KEY (key in ``frame.key_mac``), with the RESULT_READ frame that followed it, if any."""

    frame: Frame
    result_read: Frame | None


@dataclass(frozen=True)
class GetWriteCounter:
    """GET_WRITE_COUNTER (``frame.nonce`` is echoed)."""

    frame: Frame


@dataclass(frozen=True)
class DataWrite:
    """DATA_WRITE frames (``raw``: their 512-byte wire form, the MAC input), then RESULT_READ if any."""

    frames: tuple[Frame, ...]
    raw: bytes
    result_read: Frame | None


@dataclass(frozen=True)
class DataRead:
    """DATA_READ (``address``, ``block_count``, ``nonce``)."""

    frame: Frame


@dataclass(frozen=True)
class ResultRead:
    """A RESULT_READ alone in its chain: reports the last PROGRAM_KEY or DATA_WRITE."""

    frame: Frame


@dataclass(frozen=True)
class Malformed:
    """A chain that is no request (RAMB-15): ``reason``, and ``resp_type`` of the recognised primary
    request (0 if none) for the GENERAL_FAILURE frame; ``driver_check``: the driver requirement it breaks, if one
    names it (``vfu_virtio.virtio.audit.DRIVER_CHECKS``)."""

    reason: str
    resp_type: int = 0
    driver_check: str | None = None


Request = ProgramKey | GetWriteCounter | DataWrite | DataRead | ResultRead | Malformed


def _trailing_result_read(frames: list[Frame]) -> tuple[bool, Frame | None]:
    """(ok, RESULT_READ frame or None) for the frames after a PROGRAM_KEY or the DATA_WRITE run."""
    if not frames:
        return True, None
    if len(frames) == 1 and frames[0].req_resp == VIRTIO_RPMB_REQ_RESULT_READ:
        return True, frames[0]
    return False, None


def parse(raw: bytes) -> Request:
    """Classify the readable bytes of one chain (see the module docstring)."""
    if not raw or len(raw) % FRAME_SIZE:
        return Malformed(f"readable part of {len(raw)} bytes is not whole 512-byte frames",
                         driver_check="rpmb-frame-partial")
    frames = [Frame.unpack(raw, off) for off in range(0, len(raw), FRAME_SIZE)]
    first = frames[0]
    kind = first.req_resp
    if kind == VIRTIO_RPMB_REQ_PROGRAM_KEY:
        ok, rr = _trailing_result_read(frames[1:])
        return ProgramKey(first, rr) if ok else Malformed("PROGRAM_KEY followed by frames other than one "
                                                          "RESULT_READ", VIRTIO_RPMB_RESP_PROGRAM_KEY)
    if kind == VIRTIO_RPMB_REQ_DATA_WRITE:
        n = 0
        while n < len(frames) and frames[n].req_resp == VIRTIO_RPMB_REQ_DATA_WRITE:
            n += 1
        ok, rr = _trailing_result_read(frames[n:])
        if not ok:
            return Malformed("DATA_WRITE frames mixed with other request types (RAMB-19)",
                             VIRTIO_RPMB_RESP_DATA_WRITE)
        return DataWrite(tuple(frames[:n]), raw[:n * FRAME_SIZE], rr)
    single = {VIRTIO_RPMB_REQ_GET_WRITE_COUNTER: (GetWriteCounter, VIRTIO_RPMB_RESP_GET_COUNTER),
              VIRTIO_RPMB_REQ_DATA_READ: (DataRead, VIRTIO_RPMB_RESP_DATA_READ),
              VIRTIO_RPMB_REQ_RESULT_READ: (ResultRead, 0)}
    if kind not in single:
        return Malformed(f"unknown req_resp {kind:#06x}")
    cls, resp = single[kind]
    if len(frames) != 1:
        return Malformed(f"{cls.__name__} request followed by {len(frames) - 1} more frame(s)", resp)
    return cls(first)
