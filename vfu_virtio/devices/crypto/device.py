"""The virtio-crypto device personality (virtio device id 20): queues, sessions, the request flow, bulk work.

Everything wire-specific comes from the profile the device is made with (``profile``, a name from
:mod:`.profiles`; the published standard by default): configuration space, feature bits and their dependency rule,
the codec that parses requests and writes their outcomes (status placement, used lengths), the service table. The
device looks nothing else up by name.

Queues ("Virtqueues"): data queues ``0 .. max_dataqueues-1``, the controlq last (index ``max_dataqueues``).
Sessions are device-wide: any data queue may use any session (AMB-10).

Request flow: the codec parses every request on the event-loop thread, which also looks up (or, stateless, builds)
the session and answers parse and lookup faults at once. A chain without any writable byte cannot carry a status:
it completes with used length 0 and changes nothing (AMB-33).

Bulk requests (decision TD-ASYNC): a dataq request whose source (``src``) is at least ``bulk_threshold`` bytes (0:
never), and every request whose session says ``offload`` (the asymmetric service: key generation takes seconds),
is executed -- the ``cryptography`` call, the outputs, the status byte, the used length -- on its data
queue's worker thread (one per data queue, a daemon thread named ``crypto-dataq<N>``, made on first use);
``handle`` returns None and the worker completes the chain. The bytes written and the used length are the same as
on the loop thread, but a small request may now complete before a bulk one queued ahead of it on the same queue
(out-of-order completion is allowed: used elements carry the chain's id). A worker completes its finished chains in
runs (when nothing more is queued to it, or every :data:`COMPLETION_RUN`), so the event loop publishes them together
as it does its own; completing each one at once (a ``ThreadPoolExecutor`` job per request) cost a used-element
publication and an interrupt per request and measured 0.44-0.92 of the loop-only throughput at 4-64 KiB where runs
gave 0.68-1.82. An exception escaping the session on a worker is answered in-band with ERR and logged in one line.
The transport waits for in-flight requests before a reset, a DMA unmap or a disconnect, so a worker never touches
memory the driver took back; :meth:`CryptoDevice.close` drains and stops the workers.

Accounting: a request answered with a status other than OK is marked ``chain.failed`` (the transport counts it per
queue); at debug level each request gets one log line (queue, request type, session, bytes read and written, status
and the reason of an error); :meth:`CryptoDevice.stats` gives the session counts to the status endpoint.

Driver audit: a request that breaks a crypto driver requirement (a key over the limit, fields over ``max_size``, an
unknown session, any request while VIRTIO_CRYPTO_S_HW_READY is clear) is reported through ``note`` and answered as
before. Fault injection: :meth:`CryptoDevice.request_type` names requests by opcode, :meth:`CryptoDevice.answer_error`
answers one with a status, :meth:`CryptoDevice.set_ready` clears or sets HW_READY.
"""
from __future__ import annotations

import contextlib
import logging
import queue
import threading
from typing import Callable

from vfu_virtio.abi import crypto as C
from vfu_virtio.abi.crypto import VIRTIO_ID_CRYPTO
from vfu_virtio.virtio.chain import DescriptorChain
from vfu_virtio.virtio.device import VirtioDevice

from . import profiles
from .errors import CryptoStatus
from .profile import Codec
from .services import Session
from .sessions import SessionTable
from .values import DataRequest, DestroySession, Limits, Status

MAX_DATAQUEUES = 64
#: Default ``bulk_threshold`` in bytes: the smallest request size at which a worker thread paid in paired runs of
#: ``benchmarks/crypto_throughput.py`` on a 2-core host (median 1.2x: AES-GCM 1.3-2.0x, AES-CBC 0.8-1.2x,
#: SHA-256 0.9-1.3x); at 4 KiB it cost 10-30%, at 16-128 KiB it did not pay beyond the noise (crypto README,
#: "Bulk requests").
BULK_THRESHOLD = 256 << 10
#: Largest ``bulk_threshold`` in bytes (a threshold above ``max_size`` never offloads).
MAX_BULK_THRESHOLD = (1 << 32) - 1
#: Default bounds of the asymmetric service's key generation, in bits; each request runs on a data queue's worker.
#: Through the device on a shared 2-core host (``benchmarks/crypto_keygen.py``, 40 runs each; crypto README, "Key
#: generation") the largest default one of each kind took 1.6-1.9 s in the median and at most 6.8 s (RSA 4096),
#: 0.8-1.2 s and 3.8 s (DSA 2048), 3.0-3.7 s and 10.5 s (DH parameters, 1024).
MAX_RSA_KEYGEN_BITS, MAX_DSA_KEYGEN_BITS, MAX_DH_PARAM_BITS = (Limits._field_defaults[name] for name in (
    "max_rsa_keygen_bits", "max_dsa_keygen_bits", "max_dh_param_bits"))
#: The accepted range of each key-generation bound, in bits (what ``cryptography`` generates).
KEYGEN_LIMITS = {"max_rsa_keygen_bits": (1024, 8192), "max_dsa_keygen_bits": (1024, 4096),
                 "max_dh_param_bits": (512, 8192)}


class CryptoDevice(VirtioDevice):
    """A virtio-crypto device backed by ``cryptography``.

    ``max_dataqueues`` 1..64 data queues; ``max_sessions`` live sessions at most (create-session answers
    NOSPC, which the standard answers ERR without REVISION_1, when reached); ``max_size`` bytes of variable-length
    fields per request (AMB-13); ``max_cipher_key_len``/``max_auth_key_len`` in bytes (AMB-14); ``profile`` the
    profile name; ``bulk_threshold`` in bytes, 0..2^32-1, 0 = every request on the event-loop thread (but those
    whose session offloads); ``max_rsa_keygen_bits``, ``max_dsa_keygen_bits``, ``max_dh_param_bits``: the largest
    key (DH: prime) the asymmetric service generates, in bits (:data:`KEYGEN_LIMITS` gives the ranges).
    Raises ValueError for a value out of range or an unknown profile.
    """

    device_id = VIRTIO_ID_CRYPTO
    name = "crypto"
    error_statuses = tuple(s.name for s in Status if s is not Status.OK)

    def __init__(self, max_dataqueues: int = 4, max_sessions: int = 1024, max_size: int = 1 << 20,
                 max_cipher_key_len: int = 64, max_auth_key_len: int = 512, profile: str = profiles.DEFAULT,
                 bulk_threshold: int = BULK_THRESHOLD, max_rsa_keygen_bits: int = MAX_RSA_KEYGEN_BITS,
                 max_dsa_keygen_bits: int = MAX_DSA_KEYGEN_BITS, max_dh_param_bits: int = MAX_DH_PARAM_BITS):
        super().__init__()
        if not 1 <= max_dataqueues <= MAX_DATAQUEUES:
            raise ValueError(f"max_dataqueues must be 1..{MAX_DATAQUEUES}, not {max_dataqueues}")
        for name, value in (("max_size", max_size), ("max_cipher_key_len", max_cipher_key_len),
                            ("max_auth_key_len", max_auth_key_len)):
            if not 1 <= value < 1 << 32:
                raise ValueError(f"{name} must be 1..{(1 << 32) - 1} bytes, not {value}")
        for name, value in (("max_rsa_keygen_bits", max_rsa_keygen_bits),
                            ("max_dsa_keygen_bits", max_dsa_keygen_bits), ("max_dh_param_bits", max_dh_param_bits)):
            low, high = KEYGEN_LIMITS[name]
            if not low <= value <= high:
                raise ValueError(f"{name} must be {low}..{high} bits, not {value}")
        if not 0 <= bulk_threshold <= MAX_BULK_THRESHOLD:
            raise ValueError(f"bulk_threshold must be 0..{MAX_BULK_THRESHOLD} bytes, not {bulk_threshold}")
        self.profile = profiles.get(profile)
        self._services = self.profile.services
        self.max_dataqueues = max_dataqueues
        self.num_queues = max_dataqueues + 1
        self.controlq = max_dataqueues
        self.limits = Limits(max_size, max_cipher_key_len, max_auth_key_len, max_rsa_keygen_bits,
                             max_dsa_keygen_bits, max_dh_param_bits)
        self.bulk_threshold = bulk_threshold
        self.sessions = SessionTable(max_sessions)
        self.codec: Codec = self.profile.new_codec(0, self.limits)
        self.request_types = self.profile.codec.REQUEST_TYPES
        self.ready = True
        self._workers: dict[int, _Worker] = {}

    # ---- VirtioDevice contract ----------------------------------------------------------------------------
    def device_features(self) -> int:
        """The profile's feature bits (the standard: REVISION_1 and the five *_STATELESS_MODE bits, 0..5)."""
        return self.profile.features

    def config_space(self) -> bytes:
        """The profile's configuration layout (the standard: ``struct virtio_crypto_config``, 56 bytes)."""
        return self.profile.config_space(self.max_dataqueues, self.limits, self.ready)

    def set_ready(self, ready: bool) -> None:
        """Set or clear VIRTIO_CRYPTO_S_HW_READY and announce the configuration change (a fault to inject: the device
        keeps answering requests; the driver must stop sending them)."""
        self.ready = ready
        self.log.info("HW_READY %s", "set" if ready else "cleared")
        self.notify_config_change()

    def request_type(self, queue_index: int, chain: DescriptorChain) -> str | None:
        """The request's opcode name (``CIPHER_ENCRYPT``, ``HASH_CREATE_SESSION``, ...), from the codec."""
        return self.codec.request_type(chain.peek(4))

    def answer_error(self, queue_index: int, chain: DescriptorChain, status: str) -> int:
        """Write ``status`` (a :class:`~.values.Status` name) as the outcome of ``chain`` without executing it, laid
        out as the codec lays out any failed request; returns the used length (0 without a writable byte)."""
        writer = chain.writer
        if writer.capacity == 0:
            return 0
        if queue_index == self.controlq:
            opcode = int.from_bytes(chain.peek(4), "little") if chain.reader.remaining >= 4 else None
            return self.codec.ctrl_outcome(writer, opcode, Status[status], 0)
        return self.codec.data_outcome(writer, None, Status[status], 0)

    def refuse_features(self, features: int) -> str | None:
        """The profile's dependency rule (the standard: each *_STATELESS_MODE bit requires REVISION_1)."""
        return self.profile.refuse_features(features)

    def activate(self, features: int) -> None:
        """Pick the wire layout for the negotiated bits (FEATURES_OK already refused illegal sets)."""
        super().activate(features)
        self.codec = self.profile.new_codec(features, self.limits)

    def reset(self) -> None:
        """Destroy every session and forget the negotiated layout (AMB-29)."""
        super().reset()
        self.sessions.clear()
        self.codec = self.profile.new_codec(0, self.limits)

    def handle(self, queue_index: int, chain: DescriptorChain) -> int | None:
        """Process one request; returns the used length, or None when a data queue's worker completes it (see the
        module docstring)."""
        if not self.ready:
            self.note("crypto-not-ready", f"a request on queue {queue_index} while HW_READY is clear")
        if queue_index == self.controlq:
            return self._handle_ctrl(chain)
        return self._handle_data(queue_index, chain)

    def stats(self) -> dict[str, int | str]:
        """``profile``, ``sessions_live``, ``sessions_created`` (since the process started), ``max_sessions``."""
        return {"profile": self.profile.name, "sessions_live": len(self.sessions),
                "sessions_created": self.sessions.created, "max_sessions": self.sessions.max_sessions}

    def feature_names(self) -> dict[int, str]:
        """The crypto feature bits by name ("Feature bits")."""
        return dict(FEATURE_NAMES)

    def close(self) -> None:
        """Let the data queues' workers finish what they hold, then stop them."""
        workers, self._workers = self._workers, {}
        for worker in workers.values():
            worker.close()

    # ---- controlq -----------------------------------------------------------------------------------------
    def _handle_ctrl(self, chain: DescriptorChain) -> int:
        writer = chain.writer
        if writer.capacity == 0:
            self.log.warning("controlq request without a writable byte: completed with used length 0")
            chain.failed = True
            return 0
        codec = self.codec
        opcode = None
        session_id = 0
        try:
            opcode = codec.parse_ctrl_header(chain.reader)
            request = codec.parse_ctrl(opcode, chain.reader, writer.capacity)
            if request.service not in self.profile.services:
                raise CryptoStatus(Status.NOTSUPP, f"service {request.service.name} is not offered")
            if isinstance(request, DestroySession):
                self.sessions.remove(request.session_id, request.service)
                session_id = request.session_id
            else:
                session_id = self.sessions.add(self.profile.make_session(request.params))
        except CryptoStatus as e:
            chain.failed = True
            if e.driver_check:
                self.note(e.driver_check, f"controlq: {e.why}")
            used = codec.ctrl_outcome(writer, opcode, e.status, 0)
            if self.log.isEnabledFor(logging.DEBUG):
                self._log_request(self.controlq, _opcode_name(opcode), chain, used, e.status, e.why)
            return used
        used = codec.ctrl_outcome(writer, opcode, Status.OK, session_id)
        if self.log.isEnabledFor(logging.DEBUG):
            self._log_request(self.controlq, f"{_opcode_name(opcode)} session {session_id}", chain, used, Status.OK)
        return used

    def _log_request(self, queue_index: int, what: str, chain: DescriptorChain, used: int, status: Status,
                     reason: object = None) -> None:
        """The one debug line of a request: queue, request type, bytes read and written, status (and why)."""
        read = sum(map(len, chain.readable))
        self.log.debug("queue %d: %s: %d bytes read, %d written: %s%s", queue_index, what, read, used, status.name,
                       f" ({reason})" if reason is not None else "")

    # ---- dataq --------------------------------------------------------------------------------------------
    def _handle_data(self, queue_index: int, chain: DescriptorChain) -> int | None:
        writer = chain.writer
        capacity = writer.capacity
        if capacity == 0:
            self.log.warning("dataq request without a writable byte (no room for the status): "
                             "completed with used length 0")
            chain.failed = True
            return 0
        codec = self.codec
        request = None
        try:
            request = codec.parse_data(chain.reader, capacity)
            service = request.service
            if service not in self._services:
                raise CryptoStatus(Status.NOTSUPP, f"service {service.name} is not offered")
            if request.session_id is None:  # stateless: the request carries the session's parameters
                session = self.profile.make_session(request.params)
            else:
                session = self.sessions.get(request.session_id, service)
                if not isinstance(request.op, session.op_class):
                    raise CryptoStatus(Status.ERR, f"a {type(request.op).__name__} request on a "
                                       f"{type(session).__name__} (sym op_type differs from the session's, AMB-31)")
            threshold = self.bulk_threshold
            if threshold and len(request.op.src) >= threshold or getattr(session, "offload", False):
                self._worker(queue_index).submit(lambda: self._run_bulk(queue_index, chain, codec, session, request))
                return None
            # only the result bytes and the status are written: the Linux driver's scatterlists may map the same
            # guest page twice, so padding written "in between" would clobber the result
            end = session.run(request.op, writer)
        except CryptoStatus as e:
            chain.failed = True
            if e.driver_check:
                self.note(e.driver_check, f"dataq {queue_index}: {e.why}")
            request = request or e.request
            used = codec.data_outcome(writer, request, e.status, 0)
            if self.log.isEnabledFor(logging.DEBUG):
                self._log_request(queue_index, _data_name(request), chain, used, e.status, e.why)
            return used
        used = codec.data_outcome(writer, request, Status.OK, end)
        if self.log.isEnabledFor(logging.DEBUG):
            self._log_request(queue_index, _data_name(request), chain, used, Status.OK)
        return used

    def _worker(self, queue_index: int) -> _Worker:
        worker = self._workers.get(queue_index)
        if worker is None:
            worker = self._workers[queue_index] = _Worker(f"crypto-dataq{queue_index}")
        return worker

    def _run_bulk(self, queue_index: int, chain: DescriptorChain, codec: Codec, session: Session,
                  request: DataRequest) -> tuple[DescriptorChain, int]:
        """The end of :meth:`_handle_data` on data queue ``queue_index``'s worker thread: run the session, write the
        outcome; returns (chain, used length). Nothing escapes."""
        writer = chain.writer
        used = 0
        status, reason = Status.OK, None
        try:
            try:
                end = session.run(request.op, writer)
            except CryptoStatus as e:
                status, reason = e.status, e.why
                used = codec.data_outcome(writer, request, e.status, 0)
            else:
                used = codec.data_outcome(writer, request, Status.OK, end)
        except Exception as e:  # noqa: BLE001 - a session bug must not lose the request or the worker
            self.log.error("dataq %d: %s failed on its worker thread (%r); the request is answered ERR",
                           queue_index, type(session).__name__, e)
            status, reason = Status.ERR, repr(e)
            with contextlib.suppress(Exception):
                used = codec.data_outcome(writer, request, Status.ERR, 0)
        chain.failed = status is not Status.OK
        if self.log.isEnabledFor(logging.DEBUG):
            self._log_request(queue_index, f"{_data_name(request)} (worker)", chain, used, status, reason)
        return chain, used


#: The crypto feature bits by name, for status listings ("Feature bits").
FEATURE_NAMES = {
    C.VIRTIO_CRYPTO_F_REVISION_1: "REVISION_1", C.VIRTIO_CRYPTO_F_CIPHER_STATELESS_MODE: "CIPHER_STATELESS_MODE",
    C.VIRTIO_CRYPTO_F_HASH_STATELESS_MODE: "HASH_STATELESS_MODE",
    C.VIRTIO_CRYPTO_F_MAC_STATELESS_MODE: "MAC_STATELESS_MODE",
    C.VIRTIO_CRYPTO_F_AEAD_STATELESS_MODE: "AEAD_STATELESS_MODE",
    C.VIRTIO_CRYPTO_F_AKCIPHER_STATELESS_MODE: "AKCIPHER_STATELESS_MODE",
}
_CTRL_OPCODE_NAMES = {op: f"{C.SERVICE_NAMES[svc]}_CREATE_SESSION" for op, svc in C.CREATE_SESSION_OPCODES.items()}
_CTRL_OPCODE_NAMES.update({op: f"{C.SERVICE_NAMES[svc]}_DESTROY_SESSION"
                           for op, svc in C.DESTROY_SESSION_OPCODES.items()})


def _opcode_name(opcode: int | None) -> str:
    """A controlq opcode by the standard's name (``CIPHER_CREATE_SESSION``), or its number."""
    if opcode is None:
        return "controlq request without a header"
    return _CTRL_OPCODE_NAMES.get(opcode, f"controlq opcode {opcode:#x}")


def _data_name(request: DataRequest | None) -> str:
    """A dataq request in words: service, operation, session (or stateless)."""
    if request is None:
        return "dataq request that did not parse"
    op = request.op
    if hasattr(op, "operation"):
        verb = f" {op.operation.name}"
    elif hasattr(op, "encrypt"):
        verb = " ENCRYPT" if op.encrypt else " DECRYPT"
    else:
        verb = ""
    where = "stateless" if request.session_id is None else f"session {request.session_id}"
    return f"{request.service.name}{verb} {where}"


#: Most finished requests a worker holds before completing them (the event loop publishes up to 32 per run too).
COMPLETION_RUN = 32


class _Worker:
    """One data queue's worker thread: runs jobs in submission order and completes their chains in runs -- when it
    has no more work queued or holds :data:`COMPLETION_RUN` -- so the event loop publishes them together."""

    def __init__(self, name: str):
        self._jobs: queue.SimpleQueue[Callable[[], tuple[DescriptorChain, int]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], tuple[DescriptorChain, int]]) -> None:
        self._jobs.put(job)

    def close(self) -> None:
        """Finish the queued jobs, then stop."""
        self._jobs.put(None)
        self._thread.join()

    def _serve(self) -> None:
        held: list[tuple[DescriptorChain, int]] = []
        while (job := self._jobs.get()) is not None:
            held.append(job())
            if len(held) >= COMPLETION_RUN or self._jobs.empty():
                self._complete(held)
        self._complete(held)

    @staticmethod
    def _complete(held: list[tuple[DescriptorChain, int]]) -> None:
        for chain, used in held:
            chain.complete(used)
        held.clear()
