"""Host-side RPMB client: builds request chains as a driver does and checks every response.

:class:`RpmbClient` speaks to any ``request(out_bufs, in_sizes) -> (used_len, in_bufs)`` callable: the
project's virtio-pci driver (:meth:`RpmbClient.connect`, :class:`~vfu_virtio.client.virtio_pci.VirtioPciDriver`
queue 0) for ``vfu-virtio rpmb-client``, the end-to-end tests and the benchmark, or a device in-process for unit
tests. Each frame travels in its own buffer (RAMB-4, RPMB-D1: frames are never packed);
PROGRAM_KEY and DATA_WRITE put RESULT_READ in the same chain. Responses are checked as a TEE would:
response type, echoed nonce (fresh 16 random bytes per read and counter read) and the MAC over all
response frames (:func:`vfu_virtio.abi.rpmb.verify`, constant time); a mismatch raises
:class:`RpmbResponseError` (:class:`RpmbMacError` for the MAC, carrying the result the unverified response
claims, so a tool can still say what the device answered). Result codes are returned, not raised: callers decide.
"""
from __future__ import annotations

import secrets
from typing import Callable, Sequence

from vfu_virtio.abi import rpmb as F
from vfu_virtio.abi.rpmb import FRAME_SIZE, Frame

from .virtio_pci import VirtioPciDriver

Transport = Callable[[Sequence[bytes], Sequence[int]], "tuple[int, list[bytes]]"]


class RpmbResponseError(Exception):
    """A response failed a driver-side check (length, type, nonce or MAC): the device is not trusted."""


class RpmbMacError(RpmbResponseError):
    """The response MAC does not verify with the client's key. ``frames``: the response frames as received
    (unverified); ``result``: the result code the last of them claims (None without a frame). A device without a
    key answers with a zero MAC (RAMB-8), one with another key with a MAC under that key: both land here."""

    def __init__(self, frames: Sequence[Frame], what: str = "response"):
        self.frames = list(frames)
        self.result = self.frames[-1].result if self.frames else None
        claimed = F.RESULT_NAMES.get(self.result, f"{self.result:#06x}") if self.result is not None else "nothing"
        super().__init__(f"{what} MAC does not verify (the unverified response says {claimed})")


class RpmbClient:
    """RPMB operations over ``request``; ``key`` (32 bytes) signs writes and verifies responses;
    ``driver`` is the :class:`VirtioPciDriver` when made by :meth:`connect`."""

    def __init__(self, request: Transport, key: bytes | None = None):
        self.request = request
        self.key = key
        self.driver = None

    @classmethod
    def connect(cls, socket_path: str, key: bytes | None = None, timeout: float = 5.0) -> "RpmbClient":
        """Connect to a ``vfu-virtio rpmb`` server and initialise the device (requestq = queue 0); each
        request waits ``timeout`` seconds at most for its completion."""
        drv = VirtioPciDriver.connect(socket_path)
        try:
            drv.init()
            if drv.virtio_device_id != F.VIRTIO_ID_RPMB:
                raise RpmbResponseError(f"{socket_path} serves virtio device {drv.virtio_device_id}, "
                                        f"not RPMB ({F.VIRTIO_ID_RPMB})")
        except BaseException:
            drv.close()
            raise
        queue = drv.queue(0)
        client = cls(lambda out_bufs, in_sizes: queue.request(out_bufs, in_sizes, timeout), key)
        client.driver = drv
        return client

    def config(self) -> tuple[int, int, int]:
        """``(capacity in 128 KiB units, max_wr_cnt, max_rd_cnt)`` from the device configuration."""
        return F.VIRTIO_RPMB_CONFIG.unpack(self.driver.device_config(0, F.VIRTIO_RPMB_CONFIG.size))

    def close(self) -> None:
        """Reset the device and disconnect (when made by :meth:`connect`)."""
        if self.driver is not None:
            self.driver.close()
            self.driver = None

    def __enter__(self) -> "RpmbClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- chains -------------------------------------------------------------------------------------------
    def exchange(self, frames: Sequence[bytes], response_frames: int) -> list[Frame]:
        """Send ``frames`` (512 bytes each, one buffer per frame) with room for ``response_frames``;
        returns the response frames the device wrote, their MAC checked when a key is known."""
        used, ins = self.request(list(frames), [FRAME_SIZE] * response_frames)
        if used % FRAME_SIZE or used > response_frames * FRAME_SIZE:
            raise RpmbResponseError(f"used length {used} is not whole frames of the {response_frames} offered")
        raw = b"".join(ins)[:used]
        frames = [Frame.unpack(raw, off) for off in range(0, used, FRAME_SIZE)]
        if raw and self.key is not None and not F.verify(self.key, raw):
            raise RpmbMacError(frames)
        return frames

    def _one(self, frames: Sequence[bytes], resp_type: int, nonce: bytes | None = None) -> Frame:
        out = self.exchange(frames, 1)
        if len(out) != 1:
            raise RpmbResponseError(f"expected 1 response frame, got {len(out)}")
        resp = out[0]
        if resp.req_resp != resp_type:
            raise RpmbResponseError(f"response type {resp.req_resp:#06x}, expected {resp_type:#06x}")
        if nonce is not None and resp.nonce != nonce:
            raise RpmbResponseError("the response does not echo the request nonce")
        return resp

    # ---- operations ---------------------------------------------------------------------------------------
    def program_key(self, key: bytes) -> int:
        """PROGRAM_KEY + RESULT_READ; returns the result code. On OK this client uses ``key`` from now on."""
        if len(key) != 32:
            raise ValueError(f"an RPMB key is 32 bytes, not {len(key)}")
        req = Frame(req_resp=F.VIRTIO_RPMB_REQ_PROGRAM_KEY, block_count=1, key_mac=key).pack()
        rr = Frame(req_resp=F.VIRTIO_RPMB_REQ_RESULT_READ, block_count=1).pack()
        used, ins = self.request([req, rr], [FRAME_SIZE])
        if used != FRAME_SIZE:
            raise RpmbResponseError(f"PROGRAM_KEY result: used length {used}, expected {FRAME_SIZE}")
        resp = Frame.unpack(ins[0])
        if resp.result == F.VIRTIO_RPMB_RES_OK:
            self.key = key
        if self.key is not None and not F.verify(self.key, ins[0]):
            raise RpmbMacError([resp], "PROGRAM_KEY result")
        if resp.req_resp != F.VIRTIO_RPMB_RESP_PROGRAM_KEY:
            raise RpmbResponseError(f"response type {resp.req_resp:#06x} to PROGRAM_KEY")
        return resp.result

    def read_counter(self) -> tuple[int, int]:
        """GET_WRITE_COUNTER with a fresh nonce; returns ``(result, write_counter)``."""
        nonce = secrets.token_bytes(16)
        req = Frame(req_resp=F.VIRTIO_RPMB_REQ_GET_WRITE_COUNTER, block_count=1, nonce=nonce).pack()
        resp = self._one([req], F.VIRTIO_RPMB_RESP_GET_COUNTER, nonce)
        return resp.result, resp.write_counter

    def write(self, address: int, blocks: Sequence[bytes], counter: int | None = None) -> tuple[int, int]:
        """Authenticated DATA_WRITE of ``blocks`` (256 bytes each) at ``address`` (256-byte units), with
        ``counter`` (read from the device first when None) + RESULT_READ; returns ``(result, counter)``
        as the device reports them (the counter after the write)."""
        if counter is None:
            _, counter = self.read_counter()
        resp = self._one(self.write_request(address, blocks, counter), F.VIRTIO_RPMB_RESP_DATA_WRITE)
        return resp.result, resp.write_counter

    def write_request(self, address: int, blocks: Sequence[bytes], counter: int) -> list[bytes]:
        """The readable buffers of one DATA_WRITE chain: ``len(blocks)`` signed frames, then RESULT_READ
        (one writable frame answers it)."""
        if self.key is None:
            raise ValueError("a write needs the authentication key")
        frames = [Frame(req_resp=F.VIRTIO_RPMB_REQ_DATA_WRITE, block_count=len(blocks), address=address,
                        write_counter=counter, data=bytes(b)) for b in blocks]
        raw = F.seal(frames, self.key)
        out = [raw[i:i + FRAME_SIZE] for i in range(0, len(raw), FRAME_SIZE)]
        out.append(Frame(req_resp=F.VIRTIO_RPMB_REQ_RESULT_READ, block_count=1).pack())
        return out

    def read(self, address: int, count: int = 1) -> tuple[int, list[bytes]]:
        """Authenticated DATA_READ of ``count`` blocks at ``address`` with a fresh nonce; returns
        ``(result, blocks)`` (blocks only when the result is OK)."""
        nonce = secrets.token_bytes(16)
        req = Frame(req_resp=F.VIRTIO_RPMB_REQ_DATA_READ, block_count=count, address=address, nonce=nonce).pack()
        out = self.exchange([req], count)
        if not out:
            raise RpmbResponseError("DATA_READ answered with no frame")
        for resp in out:
            if resp.req_resp != F.VIRTIO_RPMB_RESP_DATA_READ or resp.nonce != nonce or resp.address != address:
                raise RpmbResponseError("DATA_READ response frame with the wrong type, nonce or address")
        result = out[-1].result
        if result != F.VIRTIO_RPMB_RES_OK:
            return result, []
        if len(out) != count:
            raise RpmbResponseError(f"DATA_READ of {count} blocks answered with {len(out)} frames")
        return result, [f.data for f in out]
