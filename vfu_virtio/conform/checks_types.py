"""Checks of the device types this tool recognises: the crypto device's configuration and request basics ("Crypto
Device": "Device configuration layout", "Session operation: create session", "destroy session", "HASH Service
Operation", "Symmetric algorithms Operation") and the RPMB device's ("RPMB Device": "Device configuration layout",
"Device Initialization", "Device Operation").

Requests are laid out as a driver lays them out, with the project's builders (:mod:`vfu_virtio.client.crypto`,
:mod:`vfu_virtio.abi.rpmb`); results are recomputed with ``cryptography`` and ``hashlib``. A check of the other type
is skipped. The RPMB checks never program the authentication key (it is one-time programmable): those that need one
are skipped on a device without it.
"""
from __future__ import annotations

import functools
import hashlib
import secrets

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ..abi import crypto as C
from ..abi import rpmb as R
from ..client import crypto as requests
from ..client.virtio_pci import DriverQueue
from . import devtypes
from .catalogue import Skipped, check, expect
from .devtypes import crypto_config, rpmb_config, rpmb_frame
from .target import Target

_CRYPTO = "Device Types / Crypto Device"
_SESSION = f"{_CRYPTO} / Device Operation / Control Virtqueue / Session operation"
_RPMB = "Device Types / RPMB Device"
#: algorithm numbers the standard defines, per mask ("CIPHER services", ... "AKCIPHER services")
DEFINED = {
    "cipher": set(range(1, 15)), "hash": set(range(1, 13)),
    "mac": {1, 2, 3, 4, 5, 6, 25, 26, 27, 28, 41, 42, 49, 50, 53, 54}, "aead": {1, 2, 3},
}  # akcipher (or the ASYM RFC's asym_algo): the layout's own, devtypes.CRYPTO_LAYOUTS
SERVICES = 6  # CIPHER .. IPSEC: crypto_services bits 0..5
_UNDEFINED_HASH = 0x3F  # no HASH algorithm has this number


def _bits(mask: int) -> set[int]:
    return {b for b in range(64) if mask >> b & 1}


def _masks(config: tuple) -> dict[str, int]:
    return {"cipher": config[3] | config[4] << 32, "hash": config[5], "mac": config[6] | config[7] << 32,
            "aead": config[8], "akcipher": config[11]}


# ---- crypto: configuration --------------------------------------------------------------------------------------
@check("crypto.config-limits", f"{_CRYPTO} / Device configuration layout", "max_dataqueues is 1..65535 (and the "
       "device has that many data queues plus the controlq); max_size is set; max_cipher_key_len and "
       "max_auth_key_len are set when CIPHER and MAC are offered.")
def _config_limits(t: Target) -> str:
    config = crypto_config(t.facts)
    dataqueues, services, cipher_key, auth_key, max_size = config[1], config[2], config[9], config[10], config[12]
    raw = functools.partial(devtypes.crypto_field_bytes, t.facts)
    expect(1 <= dataqueues <= 65535, f"max_dataqueues {dataqueues}", raw(1))
    expect(t.facts.num_queues == dataqueues + 1, f"num_queues {t.facts.num_queues} for max_dataqueues {dataqueues}",
           raw(1))
    expect(max_size > 0, "max_size 0", raw(12))
    expect(not services >> C.VIRTIO_CRYPTO_SERVICE_CIPHER & 1 or cipher_key > 0, "CIPHER offered, "
           "max_cipher_key_len 0", raw(9))
    expect(not services >> C.VIRTIO_CRYPTO_SERVICE_MAC & 1 or auth_key > 0, "MAC offered, max_auth_key_len 0",
           raw(10))
    return f"{dataqueues} data queues, max_size {max_size}, keys {cipher_key}/{auth_key}"


@check("crypto.status-flags", f"{_CRYPTO} / Device configuration layout", "status has only defined flags set "
       "(VIRTIO_CRYPTO_S_HW_READY).")
def _status_flags(t: Target) -> str:
    status = crypto_config(t.facts)[0]
    expect(not status & ~C.VIRTIO_CRYPTO_S_HW_READY, f"status {status:#x} has undefined bits",
           t.facts.device_config[:4])
    return f"status {status:#x}"


@check("crypto.hw-ready", f"{_CRYPTO} / Device configuration layout", "status has VIRTIO_CRYPTO_S_HW_READY, and the "
       "device accepts and handles requests while it does.")
def _hw_ready(t: Target) -> str:
    crypto_config(t.facts)
    drv = t.ready()
    ready = lambda: int.from_bytes(drv.device_config(0, 4), "little")  # noqa: E731
    before = ready()
    expect(before & C.VIRTIO_CRYPTO_S_HW_READY, f"status {before:#x} after DRIVER_OK", before.to_bytes(4, "little"))
    probe = devtypes.crypto_probe(t.facts)
    used_len, data = drv.queue(probe.queue).request([probe.readable], [probe.writable], t.timeout)
    problem = probe.problem(used_len, b"".join(data))
    after = ready()
    expect(problem is None and after & C.VIRTIO_CRYPTO_S_HW_READY, f"after a create-session request: "
           f"{problem or 'answered'}, status {after:#x}", after.to_bytes(4, "little"))
    return f"status {before:#x}, still {after:#x} after a request"


@check("crypto.algorithm-masks", f"{_CRYPTO} / Device configuration layout", "crypto_services and the algorithm "
       "masks have only defined bits set, and each advertised service has a non-empty mask.")
def _algorithm_masks(t: Target) -> str:
    config = crypto_config(t.facts)
    services = config[2]
    layout = devtypes.crypto_layout(t.facts)
    raw = t.facts.device_config[:layout.struct.size]
    defined = {**DEFINED, "akcipher": layout.akcipher_defined}
    expect(not services >> SERVICES, f"crypto_services {services:#x} has undefined bits", raw[8:12])
    for name, mask in _masks(config).items():
        undefined = sorted(_bits(mask) - defined[name])
        expect(not undefined, f"{name} mask {mask:#x} has undefined algorithm bits {undefined}", raw)
    bit_of = {"cipher": 0, "hash": 1, "mac": 2, "aead": 3, "akcipher": 4}
    for name, mask in _masks(config).items():
        expect(not services >> bit_of[name] & 1 or mask, f"{name.upper()} advertised with an empty mask", raw)
    return f"services {services:#x}, " + ", ".join(f"{k} {v:#x}" for k, v in _masks(config).items())


# ---- crypto: sessions and requests ------------------------------------------------------------------------------
def _controlq(t: Target) -> DriverQueue:
    crypto_config(t.facts)
    return t.ready().queue(devtypes.crypto_controlq(t.facts))


def _create(q: DriverQueue, t: Target, req: requests.Request) -> tuple[int, int, bytes]:
    used_len, data = q.request([req.readable], [req.writable], t.timeout)
    outcome = b"".join(data)
    session_id, status = requests.session_input(outcome)
    return session_id, status, outcome


def _session(t: Target, q: DriverQueue) -> tuple[devtypes.Probe, int]:
    probe = devtypes.crypto_probe(t.facts)
    session_id, status, outcome = _create(q, t, requests.Request(probe.readable, probe.writable))
    if status != C.VIRTIO_CRYPTO_OK:
        raise Skipped(f"the probe session was not created (status {C.STATUS_NAMES.get(status, status)})")
    return probe, session_id


@check("crypto.session-ids", f"{_SESSION} / Session operation: create session", "Each created session gets a "
       "unique session_id.")
def _session_ids(t: Target) -> str:
    q = _controlq(t)
    _probe, first = _session(t, q)
    _probe, second = _session(t, q)
    expect(first != second, f"two sessions created with session_id {first}")
    return f"session ids {first} and {second}"


@check("crypto.session-id-only-on-ok", f"{_SESSION} / Session operation: create session", "session_id is set only "
       "when the status is VIRTIO_CRYPTO_OK (the driver's zeroed field stays 0 otherwise).")
def _session_id_only_on_ok(t: Target) -> str:
    q = _controlq(t)
    session_id, status, outcome = _create(q, t, requests.hash_create_session(_UNDEFINED_HASH, 32))
    if status == C.VIRTIO_CRYPTO_OK:
        raise Skipped(f"the device created a session for HASH algorithm {_UNDEFINED_HASH}, which is not defined")
    expect(session_id == 0, f"status {C.STATUS_NAMES.get(status, status)} with session_id {session_id}", outcome)
    return f"status {C.STATUS_NAMES.get(status, status)}, session_id 0"


@check("crypto.unsupported-algorithm", f"{_SESSION} / Session operation: create session", "A session for an "
       "algorithm the device does not support is answered VIRTIO_CRYPTO_NOTSUPP.")
def _unsupported_algorithm(t: Target) -> str:
    q = _controlq(t)
    _sid, status, outcome = _create(q, t, requests.hash_create_session(_UNDEFINED_HASH, 32))
    expect(status == C.VIRTIO_CRYPTO_NOTSUPP, f"HASH algorithm {_UNDEFINED_HASH} answered "
           f"{C.STATUS_NAMES.get(status, status)}", outcome)
    return "NOTSUPP"


@check("crypto.destroy-session", f"{_SESSION} / Session operation: destroy session", "Destroying a session is "
       "answered VIRTIO_CRYPTO_OK, destroying it again VIRTIO_CRYPTO_ERR.")
def _destroy_session(t: Target) -> str:
    q = _controlq(t)
    probe, session_id = _session(t, q)
    opcode = C.CREATE_SESSION_OPCODES[int.from_bytes(probe.readable[:4], "little")]
    destroy = next(op for op, service in C.DESTROY_SESSION_OPCODES.items() if service == opcode)
    statuses = []
    for _ in range(2):
        req = requests.destroy_session(destroy, session_id)
        _used, data = q.request([req.readable], [req.writable], t.timeout)
        statuses.append(data[0][0])
    names = [C.STATUS_NAMES.get(s, s) for s in statuses]
    expect(statuses == [C.VIRTIO_CRYPTO_OK, C.VIRTIO_CRYPTO_ERR], f"destroy, destroy again: {names}",
           bytes(statuses))
    return "OK, then ERR"


def _dataq(t: Target, service: int, mask_index: int, algo: int, what: str):
    config = crypto_config(t.facts)
    if not (config[2] >> service & 1 and config[mask_index] >> algo & 1):
        raise Skipped(f"{what} is not advertised")
    drv = t.ready()
    return drv.queue(config[1]), drv.queue(0)


@check("crypto.hash-result", f"{_CRYPTO} / Device Operation / HASH Service Operation", "A HASH request succeeds "
       "with VIRTIO_CRYPTO_OK and the digest in hash_result (SHA-256).")
def _hash_result(t: Target) -> str:
    ctrl, data_q = _dataq(t, C.VIRTIO_CRYPTO_SERVICE_HASH, 5, C.VIRTIO_CRYPTO_HASH_SHA_256, "SHA-256")
    session_id, status, _ = _create(ctrl, t, requests.hash_create_session(C.VIRTIO_CRYPTO_HASH_SHA_256, 32))
    expect(status == C.VIRTIO_CRYPTO_OK, f"SHA-256 session: {C.STATUS_NAMES.get(status, status)}")
    message = secrets.token_bytes(100)
    req = requests.digest_data(C.VIRTIO_CRYPTO_HASH, session_id, message, 32)
    _used, data = data_q.request([req.readable], [req.writable], t.timeout)
    out = b"".join(data)
    right = out[:32] == hashlib.sha256(message).digest()
    expect(out[-1] == C.VIRTIO_CRYPTO_OK and right, f"status {C.STATUS_NAMES.get(out[-1], out[-1])}, digest "
           f"{'right' if right else 'wrong'}", out)
    return "SHA-256 of 100 bytes = hashlib's"


@check("crypto.cipher-result", f"{_CRYPTO} / Device Operation / Symmetric algorithms Operation", "A CIPHER request "
       "succeeds with VIRTIO_CRYPTO_OK and the result in dst_data (AES-128-CBC encryption).")
def _cipher_result(t: Target) -> str:
    ctrl, data_q = _dataq(t, C.VIRTIO_CRYPTO_SERVICE_CIPHER, 3, C.VIRTIO_CRYPTO_CIPHER_AES_CBC, "AES-CBC")
    key, iv, plain = secrets.token_bytes(16), secrets.token_bytes(16), secrets.token_bytes(64)
    session_id, status, _ = _create(ctrl, t, requests.cipher_create_session(C.VIRTIO_CRYPTO_CIPHER_AES_CBC, key,
                                                                            C.VIRTIO_CRYPTO_OP_ENCRYPT))
    expect(status == C.VIRTIO_CRYPTO_OK, f"AES-128-CBC session: {C.STATUS_NAMES.get(status, status)}")
    req = requests.cipher_data(C.VIRTIO_CRYPTO_CIPHER_ENCRYPT, session_id, iv, plain)
    _used, data = data_q.request([req.readable], [req.writable], t.timeout)
    out = b"".join(data)
    want = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor().update(plain)
    expect(out[-1] == C.VIRTIO_CRYPTO_OK and out[:64] == want, f"status {C.STATUS_NAMES.get(out[-1], out[-1])}, "
           f"ciphertext {'right' if out[:64] == want else 'wrong'}", out)
    return "AES-128-CBC of 64 bytes = cryptography's"


@check("crypto.invalid-session", f"{_CRYPTO} / Device Operation / HASH Service Operation", "A session-mode request "
       "naming a session that does not exist is answered VIRTIO_CRYPTO_INVSESS.")
def _invalid_session(t: Target) -> str:
    crypto_config(t.facts)
    drv = t.ready()
    req = requests.digest_data(C.VIRTIO_CRYPTO_HASH, 0xFFFF_FFFF_FFFF_FF00, b"conformance", 32)
    _used, data = drv.queue(0).request([req.readable], [req.writable], t.timeout)
    status = data[-1][-1]
    expect(status == C.VIRTIO_CRYPTO_INVSESS, f"answered {C.STATUS_NAMES.get(status, status)}", bytes([status]))
    return "INVSESS"


# ---- RPMB -------------------------------------------------------------------------------------------------------
@check("rpmb.capacity", f"{_RPMB} / Device configuration layout; Device Initialization", "capacity is 0x00..0x80 "
       "(in 128 KiB units: up to 16 MiB).")
def _capacity(t: Target) -> str:
    capacity, wr, rd = rpmb_config(t.facts)
    expect(capacity <= R.MAX_CAPACITY, f"capacity {capacity:#x}", t.facts.device_config[:3])
    return f"capacity {capacity} x 128 KiB, max_wr_cnt {wr}, max_rd_cnt {rd}"


def _rpmb_queue(t: Target) -> DriverQueue:
    rpmb_config(t.facts)
    return t.ready().queue(0)


def _rpmb(t: Target, q: DriverQueue, frames: list[bytes], answers: int = 1) -> tuple[int, list[R.Frame]]:
    used, data = q.request(frames, [R.FRAME_SIZE] * answers, t.timeout)
    raw = b"".join(data)
    return used, [R.Frame.unpack(raw, off) for off in range(0, min(used, len(raw)), R.FRAME_SIZE)]


def _counter(t: Target, q: DriverQueue) -> tuple[int, R.Frame]:
    nonce = secrets.token_bytes(16)
    used, frames = _rpmb(t, q, [rpmb_frame(R.VIRTIO_RPMB_REQ_GET_WRITE_COUNTER, nonce)])
    expect(used == R.FRAME_SIZE and frames, f"GET_WRITE_COUNTER answered with used length {used}")
    f = frames[0]
    expect(f.req_resp == R.VIRTIO_RPMB_RESP_GET_COUNTER and f.nonce == nonce and
           f.result in (R.VIRTIO_RPMB_RES_OK, R.VIRTIO_RPMB_RES_NO_AUTH_KEY),
           f"GET_WRITE_COUNTER answered req_resp {f.req_resp:#06x}, result {R.RESULT_NAMES.get(f.result, f.result)}, "
           f"nonce {'echoed' if f.nonce == nonce else 'not echoed'}", f.pack()[484:])
    return f.result, f


@check("rpmb.counter-response", f"{_RPMB} / Device Operation / Device Operation: Get Write Counter",
       "GET_WRITE_COUNTER is answered with one frame of req_resp VIRTIO_RPMB_RESP_GET_COUNTER, the request's nonce, "
       "and result OK, or NO_AUTH_KEY before a key is programmed.")
def _counter_response(t: Target) -> str:
    result, frame = _counter(t, _rpmb_queue(t))
    return f"{R.RESULT_NAMES[result]}, write counter {frame.write_counter}"


@check("rpmb.unauthenticated-write", f"{_RPMB} / Device Operation / Device Operation: Data Write", "A DATA_WRITE "
       "whose MAC does not verify is answered AUTH_FAILURE (NO_AUTH_KEY before a key exists) and changes nothing: "
       "the write counter stays.")
def _unauthenticated_write(t: Target) -> str:
    q = _rpmb_queue(t)
    result, frame = _counter(t, q)
    write = R.Frame(req_resp=R.VIRTIO_RPMB_REQ_DATA_WRITE, block_count=1, address=0,
                    write_counter=frame.write_counter, data=secrets.token_bytes(R.BLOCK_SIZE))
    sealed = R.seal([write], secrets.token_bytes(32))
    used, frames = _rpmb(t, q, [sealed, rpmb_frame(R.VIRTIO_RPMB_REQ_RESULT_READ)])
    expect(used == R.FRAME_SIZE and frames, f"DATA_WRITE + RESULT_READ answered with used length {used}")
    want = R.VIRTIO_RPMB_RES_AUTH_FAILURE if result == R.VIRTIO_RPMB_RES_OK else R.VIRTIO_RPMB_RES_NO_AUTH_KEY
    got = frames[0]
    expect(got.req_resp == R.VIRTIO_RPMB_RESP_DATA_WRITE and got.result == want, f"answered req_resp "
           f"{got.req_resp:#06x}, result {R.RESULT_NAMES.get(got.result, got.result)} (expected "
           f"{R.RESULT_NAMES[want]})", got.pack()[500:])
    after = _counter(t, q)[1].write_counter
    expect(after == frame.write_counter, f"the write counter moved from {frame.write_counter} to {after}")
    return f"{R.RESULT_NAMES[want]}, counter {after} unchanged"


def _keyed(t: Target, result: int) -> None:
    """Skipped unless the device has a key (its answer ``result`` says OK); Failed when the user said it has one."""
    if result != R.VIRTIO_RPMB_RES_OK:
        expect(t.rpmb_key is None, "the device answers NO_AUTH_KEY, but a key is programmed (--rpmb-key)")
        raise Skipped("no authentication key is programmed (this tool never programs one)")


@check("rpmb.response-mac", f"{_RPMB} / Device Operation / Device Operation: Get Write Counter", "Once a key is "
       "programmed, a response carries in key_mac the HMAC-SHA256 of its frames with that key (needs --rpmb-key).")
def _response_mac(t: Target) -> str:
    rpmb_config(t.facts)
    if t.rpmb_key is None:
        raise Skipped("the key is not known (--rpmb-key)")
    result, frame = _counter(t, _rpmb_queue(t))
    _keyed(t, result)
    expect(R.verify(t.rpmb_key, frame.pack()), "the GET_WRITE_COUNTER response's MAC does not verify with the key",
           frame.key_mac)
    return "GET_WRITE_COUNTER response MAC verified"


@check("rpmb.key-persists-reset", f"{_RPMB} / Device Operation", "The authentication key and the write counter are "
       "kept across a device reset.")
def _key_persists_reset(t: Target) -> str:
    rpmb_config(t.facts)
    drv = t.ready()
    result, frame = _counter(t, drv.queue(0))
    _keyed(t, result)
    drv.init(features_wanted=t.features(t.format()))  # device reset, then initialized again
    after_result, after = _counter(t, drv.queue(0))
    expect(after_result == R.VIRTIO_RPMB_RES_OK and after.write_counter == frame.write_counter,
           f"after a reset: {R.RESULT_NAMES.get(after_result, after_result)}, counter {after.write_counter} "
           f"(was OK, {frame.write_counter})", after.pack()[500:])
    return f"key and counter {after.write_counter} kept"
