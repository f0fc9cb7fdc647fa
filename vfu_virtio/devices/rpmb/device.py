"""The virtio-rpmb device personality (virtio device id 28, one requestq, no feature bits).

Behaviour: virtio v1.4 "RPMB Device" as merged (multi-block reads: ``1 <= block_count <= max_rd_cnt``,
"Device Operation: Data Read"), with the project's check order and decisions
(``docs/decisions.md``: RAMB-21 and the other RAMB-*). First failing check wins:

* PROGRAM_KEY (6.1): ``block_count`` not 0/1 -> GENERAL_FAILURE (0x0001); key already programmed ->
  WRITE_FAILURE (0x0005, RAMB-9); store fails -> WRITE_FAILURE; else OK, key durable before
  completion. Answered only through RESULT_READ (RPMB-9).
* GET_WRITE_COUNTER (6.2): no key -> NO_AUTH_KEY (0x0007, counter 0); ``block_count`` not 0/1 ->
  GENERAL_FAILURE; else OK. Response: RESP_GET_COUNTER, counter, echoed nonce (RPMB-12).
* DATA_WRITE (6.3), N/A/C from the first frame (RAMB-19): no key -> NO_AUTH_KEY; N = 0, N > max_wr_cnt
  (when not 0) or N != number of DATA_WRITE frames -> GENERAL_FAILURE; counter = 0xFFFFFFFF ->
  WRITE_COUNTER_EXPIRED (0x0080, RAMB-10); A + N > capacity * 512 -> ADDR_FAILURE (0x0004, RAMB-11);
  MAC over the N frames differs (constant-time compare) -> AUTH_FAILURE (0x0002); C != counter ->
  COUNT_FAILURE (0x0003); store fails -> WRITE_FAILURE; else OK: blocks and counter + 1 staged together
  and committed by :meth:`RpmbDevice.commit` before the used element is published. Only OK changes state
  (RAMB-13). Answered through RESULT_READ: RESP_DATA_WRITE, counter after the request, address A
  (RPMB-22, RAMB-25).
* DATA_READ (6.4): no key -> NO_AUTH_KEY; N = 0, N > max_rd_cnt (when not 0) or N > writable frames ->
  GENERAL_FAILURE; A + N > capacity * 512 -> ADDR_FAILURE; store read fails -> READ_FAILURE; else OK.
  Response: N frames RESP_DATA_READ, block_count N, address A, echoed nonce, data of block A + i (zero on
  error), MAC over all N in the last. On error min(writable frames, max(N, 1)) frames.
* RESULT_READ (6.5), alone or after PROGRAM_KEY/DATA_WRITE in the same chain: ``block_count`` not 0/1 ->
  GENERAL_FAILURE (RPMB-30); nothing to report since the last reset -> GENERAL_FAILURE, req_resp 0
  (RAMB-14); else the last operation's frame. The record is volatile: a device reset clears it.
* Malformed chains (6.6, RAMB-15): one GENERAL_FAILURE frame (req_resp of the recognised request or 0)
  if there is room, else used length 0; nothing changes.

eMMC-style clients (PD-3, ``docs/decisions.md``): OP-TEE and mmc-utils leave
``block_count`` = 0 in PROGRAM_KEY, GET_WRITE_COUNTER, DATA_READ and RESULT_READ request frames (on eMMC
the count travels in CMD23). Like QEMU's eMMC RPMB, the device then takes the count from the chain: one
frame for the single-frame requests, the number of whole writable frames for DATA_READ (which is also the
``block_count`` its response frames carry). RAMB-6's strict "must be 1" would refuse them. DATA_WRITE
stays strict (N = 0 -> GENERAL_FAILURE, RPMB-14): those clients set it.

Every response frame set carries the MAC once a key is programmed, errors included (RPMB-31, RAMB-23);
before that ``key_mac`` is zero (RAMB-8). The key itself is never written into any frame (RPMB-33).
Used length: 512 x the number of response frames written (0 when the chain has no writable frame or
asked for no result).

Accounting: a request whose result is not OK (or that is malformed) is marked ``chain.failed`` (the transport
counts it per queue); at debug level each request gets one log line (request type, block count and address, bytes
read and written, result); :meth:`RpmbDevice.stats` gives the write counter and the operation counts to the status
endpoint (never the key).

Driver audit: a write to the (read-only) configuration and a request that is not whole frames are reported through
``note``. Fault injection: :meth:`RpmbDevice.request_type` names a request by its first frame's ``req_resp``,
:meth:`RpmbDevice.answer_error` answers it with a result code and changes nothing.
"""
from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass

from vfu_virtio.abi import rpmb as F
from vfu_virtio.abi.rpmb import Frame
from vfu_virtio.store import StoreError
from vfu_virtio.virtio.chain import DescriptorChain
from vfu_virtio.virtio.device import VirtioDevice

from .persist import RpmbState
from .request import DataRead, DataWrite, GetWriteCounter, Malformed, ProgramKey, ResultRead, parse

MAX_LIMIT = 0xFF  # max_wr_cnt / max_rd_cnt are u8
#: request type -> name (fault injection's ``op=``)
_REQUEST_NAMES = {F.VIRTIO_RPMB_REQ_PROGRAM_KEY: "PROGRAM_KEY",
                  F.VIRTIO_RPMB_REQ_GET_WRITE_COUNTER: "GET_WRITE_COUNTER", F.VIRTIO_RPMB_REQ_DATA_WRITE: "DATA_WRITE",
                  F.VIRTIO_RPMB_REQ_DATA_READ: "DATA_READ", F.VIRTIO_RPMB_REQ_RESULT_READ: "RESULT_READ"}


@dataclass(frozen=True)
class LastResult:
    """What RESULT_READ reports: response type, result, write counter and address of the last
    PROGRAM_KEY or DATA_WRITE (volatile; "State, persistence and lifecycle")."""

    resp_type: int
    result: int
    write_counter: int = 0
    address: int = 0


class RpmbDevice(VirtioDevice):
    """A virtio-rpmb device on persistent ``state``.

    ``capacity`` in 128 KiB units, 1..128 (RPMB-3, RAMB-22; the data area is ``capacity * 512`` blocks of
    256 bytes); ``max_wr_cnt``/``max_rd_cnt`` in 256-byte blocks per request, 0..255, 0 = no limit
    (RAMB-16; default 1).
    """

    device_id = F.VIRTIO_ID_RPMB
    name = "rpmb"
    num_queues = 1
    request_types = tuple(_REQUEST_NAMES.values())
    error_statuses = tuple(name for code, name in F.RESULT_NAMES.items() if code != F.VIRTIO_RPMB_RES_OK)

    def __init__(self, state: RpmbState, capacity: int = 1, max_wr_cnt: int = 1, max_rd_cnt: int = 1):
        super().__init__()
        if not 1 <= capacity <= F.MAX_CAPACITY:
            raise ValueError(f"capacity must be 1..{F.MAX_CAPACITY} units of 128 KiB, not {capacity}")
        for name, value in (("max_wr_cnt", max_wr_cnt), ("max_rd_cnt", max_rd_cnt)):
            if not 0 <= value <= MAX_LIMIT:
                raise ValueError(f"{name} must be 0..{MAX_LIMIT} blocks (0 = no limit), not {value}")
        self.state = state
        self.capacity = capacity
        self.blocks = capacity * F.BLOCKS_PER_CAPACITY_UNIT
        self.max_wr_cnt = max_wr_cnt
        self.max_rd_cnt = max_rd_cnt
        self.last: LastResult | None = None
        #: requests per type name and outcome since the process started: ``{"DATA_WRITE": [ok, refused], ...}``
        self.counts: dict[str, list[int]] = {}

    # ---- VirtioDevice contract ----------------------------------------------------------------------------
    def config_space(self) -> bytes:
        """``struct virtio_rpmb_config``: capacity, max_wr_cnt, max_rd_cnt (3 bytes)."""
        return F.VIRTIO_RPMB_CONFIG.pack(self.capacity, self.max_wr_cnt, self.max_rd_cnt)

    def write_config(self, offset: int, data: bytes) -> None:
        """The configuration is read-only for the driver: the write is ignored and reported to the driver audit."""
        self.note("rpmb-config-written", f"{len(data)}-byte write at configuration offset {offset} (ignored)")

    def request_type(self, queue_index: int, chain: DescriptorChain) -> str | None:
        """The first frame's request type (``DATA_WRITE``, ...), None for a chain shorter than a frame or an unknown
        type."""
        head = chain.peek(F.FRAME_SIZE)
        return _REQUEST_NAMES.get(int.from_bytes(head[-2:], "big")) if len(head) == F.FRAME_SIZE else None

    def answer_error(self, queue_index: int, chain: DescriptorChain, status: str) -> int:
        """One response frame with result ``status`` (a result code name) for the request's type, its nonce echoed,
        sealed as every response is; nothing is executed or changed. Used length 512, or 0 without a writable
        frame."""
        if chain.writer.capacity < F.FRAME_SIZE:
            return 0
        head = chain.peek(F.FRAME_SIZE)
        first = Frame.unpack(head) if len(head) == F.FRAME_SIZE else Frame()
        code = next(c for c, name in F.RESULT_NAMES.items() if name == status)
        resp_type = first.req_resp << 8 if first.req_resp in _REQUEST_NAMES and first.req_resp != \
            F.VIRTIO_RPMB_REQ_RESULT_READ else 0
        frame = Frame(req_resp=resp_type, result=code, nonce=first.nonce,
                      block_count=first.block_count, address=first.address)
        chain.writer.write_at(0, F.seal([frame], self.state.key))
        return F.FRAME_SIZE

    def reset(self) -> None:
        """Forget the RESULT_READ record; key, counter and data persist (RPMB-34, RPMB-37)."""
        super().reset()
        self.last = None

    def close(self) -> None:
        """Release the store namespace (and its lock)."""
        self.state.close()

    def commit(self) -> None:
        """Group commit: make the key and writes staged by this run's requests durable in one store
        commit before the transport publishes them; :class:`StoreError` (all rolled back) otherwise."""
        self.state.commit()

    def handle(self, queue_index: int, chain: DescriptorChain) -> int:
        """Parse, execute (staging any state change for :meth:`commit`), write the sealed response frames;
        returns the used length (see the module docstring)."""
        raw = chain.reader.read_all()
        request = parse(raw)
        if isinstance(request, Malformed) and request.driver_check:
            self.note(request.driver_check, request.reason)
        room = chain.writer.capacity // F.FRAME_SIZE
        frames = self.execute(request, room)
        used = 0
        if frames:
            chain.writer.write_at(0, F.seal(frames, self.state.key))
            used = chain.writer.written
        name, result = self._outcome(request, frames)
        count = self.counts.setdefault(name, [0, 0])
        count[result != F.VIRTIO_RPMB_RES_OK] += 1
        if result != F.VIRTIO_RPMB_RES_OK:
            chain.failed = True
        if self.log.isEnabledFor(logging.DEBUG):
            self.log.debug("queue %d: %s: %d bytes read, %d written: %s", queue_index, _describe(name, request),
                           len(raw), used, F.RESULT_NAMES.get(result, f"{result:#06x}"))
        return used

    def _outcome(self, request, frames: list[Frame]) -> tuple[str, int]:
        """The request's type name and result: a write's or PROGRAM_KEY's own (RESULT_READ in the chain or not),
        else the response frame's; a malformed chain is GENERAL_FAILURE."""
        name = _TYPE_NAMES[type(request)]
        if isinstance(request, (ProgramKey, DataWrite)):
            return name, self.last.result
        if isinstance(request, Malformed) or not frames:
            return name, F.VIRTIO_RPMB_RES_GENERAL_FAILURE
        return name, frames[-1].result

    def stats(self) -> dict[str, int | str]:
        """``write_counter``, ``key_programmed`` (0/1; never the key), ``capacity`` (128 KiB units), and per request
        type the OK and refused counts since the process started (``DATA_WRITE_ok``, ``DATA_WRITE_refused``, ...)."""
        state = self.state
        out: dict[str, int | str] = {"write_counter": state.counter, "key_programmed": int(state.key is not None),
                                     "capacity": self.capacity}
        for name, (ok, refused) in list(self.counts.items()):
            out[f"{name}_ok"] = ok
            out[f"{name}_refused"] = refused
        return out

    # ---- execution ----------------------------------------------------------------------------------------
    def execute(self, request, room: int) -> list[Frame]:
        """Perform ``request`` and return its response frames (at most ``room``, unsealed)."""
        match request:
            case ProgramKey():
                self.last = LastResult(F.VIRTIO_RPMB_RESP_PROGRAM_KEY, self._program_key(request.frame))
                return self._result_frame(request.result_read, room)
            case DataWrite():
                result = self._data_write(request)
                self.last = LastResult(F.VIRTIO_RPMB_RESP_DATA_WRITE, result, self.state.counter,
                                       request.frames[0].address)
                return self._result_frame(request.result_read, room)
            case ResultRead():
                return self._result_frame(request.frame, room)
            case GetWriteCounter():
                return self._get_counter(request.frame)[:room]
            case DataRead():
                return self._data_read(request.frame, room)
            case Malformed():
                return [Frame(req_resp=request.resp_type, result=F.VIRTIO_RPMB_RES_GENERAL_FAILURE)][:room]
        raise TypeError(f"not an RPMB request: {request!r}")

    def _program_key(self, frame: Frame) -> int:
        if frame.block_count > 1:
            return F.VIRTIO_RPMB_RES_GENERAL_FAILURE
        if self.state.key is not None:
            return F.VIRTIO_RPMB_RES_WRITE_FAILURE
        try:
            self.state.program_key(frame.key_mac)
        except StoreError as e:
            self.log.error("PROGRAM_KEY: %s", e)
            return F.VIRTIO_RPMB_RES_WRITE_FAILURE
        self.log.info("authentication key programmed")
        return F.VIRTIO_RPMB_RES_OK

    def _data_write(self, request: DataWrite) -> int:
        first = request.frames[0]
        n, address = first.block_count, first.address
        state = self.state
        if state.key is None:
            return F.VIRTIO_RPMB_RES_NO_AUTH_KEY
        if n == 0 or (self.max_wr_cnt and n > self.max_wr_cnt) or n != len(request.frames):
            return F.VIRTIO_RPMB_RES_GENERAL_FAILURE
        if state.counter >= F.COUNTER_MAX:
            return F.VIRTIO_RPMB_RES_WRITE_COUNTER_EXPIRED
        if address + n > self.blocks:
            return F.VIRTIO_RPMB_RES_ADDR_FAILURE
        if not hmac.compare_digest(F.mac(state.key, request.raw), request.frames[-1].key_mac):
            return F.VIRTIO_RPMB_RES_AUTH_FAILURE
        if first.write_counter != state.counter:
            return F.VIRTIO_RPMB_RES_COUNT_FAILURE
        try:
            state.write(address, [f.data for f in request.frames], first.write_counter)
        except StoreError as e:
            self.log.error("DATA_WRITE of %d block(s) at %d: %s", n, address, e)
            return F.VIRTIO_RPMB_RES_WRITE_FAILURE
        return F.VIRTIO_RPMB_RES_OK

    def _result_frame(self, rr: Frame | None, room: int) -> list[Frame]:
        if rr is None or room == 0:
            return []
        last = self.last
        if rr.block_count > 1 or last is None:
            return [Frame(req_resp=last.resp_type if last else 0, result=F.VIRTIO_RPMB_RES_GENERAL_FAILURE)]
        return [Frame(req_resp=last.resp_type, result=last.result, write_counter=last.write_counter,
                      address=last.address)]

    def _get_counter(self, frame: Frame) -> list[Frame]:
        if self.state.key is None:
            result, counter = F.VIRTIO_RPMB_RES_NO_AUTH_KEY, 0
        elif frame.block_count > 1:
            result, counter = F.VIRTIO_RPMB_RES_GENERAL_FAILURE, self.state.counter
        else:
            result, counter = F.VIRTIO_RPMB_RES_OK, self.state.counter
        return [Frame(req_resp=F.VIRTIO_RPMB_RESP_GET_COUNTER, result=result, write_counter=counter,
                      nonce=frame.nonce)]

    def _data_read(self, frame: Frame, room: int) -> list[Frame]:
        if room == 0:
            return []
        n = frame.block_count or room  # 0: eMMC-style, the count is the chain's writable frames
        address = frame.address
        data = None
        if self.state.key is None:
            result = F.VIRTIO_RPMB_RES_NO_AUTH_KEY
        elif (self.max_rd_cnt and n > self.max_rd_cnt) or n > room:
            result = F.VIRTIO_RPMB_RES_GENERAL_FAILURE
        elif address + n > self.blocks:
            result = F.VIRTIO_RPMB_RES_ADDR_FAILURE
        else:
            try:
                data = self.state.read(address, n)
                result = F.VIRTIO_RPMB_RES_OK
            except StoreError as e:
                self.log.error("DATA_READ of %d block(s) at %d: %s", n, address, e)
                result = F.VIRTIO_RPMB_RES_READ_FAILURE
        count = n if data is not None else min(room, n)
        zero = bytes(F.BLOCK_SIZE)
        return [Frame(req_resp=F.VIRTIO_RPMB_RESP_DATA_READ, result=result, block_count=n, address=address,
                      nonce=frame.nonce, data=data[i] if data is not None else zero) for i in range(count)]


#: parsed request class -> name (the status endpoint's counts, the debug line)
_TYPE_NAMES = {ProgramKey: "PROGRAM_KEY", GetWriteCounter: "GET_WRITE_COUNTER", DataWrite: "DATA_WRITE",
               DataRead: "DATA_READ", ResultRead: "RESULT_READ", Malformed: "MALFORMED"}


def _describe(name: str, request) -> str:
    """A request in words for the debug line: type, block count and address where it has them."""
    if isinstance(request, DataWrite):
        first = request.frames[0]
        return f"{name} {first.block_count} block(s) at {first.address}"
    if isinstance(request, DataRead):
        return f"{name} {request.frame.block_count} block(s) at {request.frame.address}"
    if isinstance(request, Malformed):
        return f"{name} ({request.reason})"
    return name
