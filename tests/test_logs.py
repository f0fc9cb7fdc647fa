"""What the server log says: at debug one line per request (queue, request type, sizes, status); at info one line per
client attach and detach, one per guest error with its reason, no libvfio-user reset noise on a normal disconnect, a
final ``stopped`` line with the totals; ``--log-format json`` for machines; both options after the kind too. Real
servers, their real log files."""
from __future__ import annotations

import json
import re

import pytest

from vfu_virtio.abi import crypto as C
from vfu_virtio.abi.virtio import ACKNOWLEDGE, DRIVER, DRIVER_OK
from vfu_virtio.client import crypto as D
from vfu_virtio.client.rpmb import RpmbClient
from vfu_virtio.client.virtio_pci import VirtioPciDriver

KEY = bytes(range(32))


def test_debug_has_one_line_per_request(serve):
    s = serve("crypto", "--queues", "1")
    with VirtioPciDriver.connect(s.socket) as drv:
        drv.init()
        create = D.hash_create_session(C.VIRTIO_CRYPTO_HASH_SHA_256, 32)
        _u, (outcome,) = drv.queue(1).request([create.readable], [create.writable])
        sid, _status = D.session_input(outcome)
        for src in (b"a", b"bc"):
            r = D.digest_data(C.VIRTIO_CRYPTO_HASH, sid, src, 32)
            drv.queue(0).request([r.readable], [r.writable])
        bad = D.digest_data(C.VIRTIO_CRYPTO_HASH, sid + 7, b"x", 32)
        drv.queue(0).request([bad.readable], [bad.writable])
    log = s.log()
    assert len(re.findall(rf"vfu_virtio.devices.crypto: queue 1: HASH_CREATE_SESSION session {sid}: 72 bytes read, "
                          r"16 written: OK\n", log)) == 1
    assert len(re.findall(rf"queue 0: HASH session {sid}: 7[34] bytes read, 33 written: OK\n", log)) == 2
    assert len(re.findall(rf"queue 0: HASH session {sid + 7}: 73 bytes read, 33 written: INVSESS \(no live HASH "
                          rf"session {sid + 7}\)\n", log)) == 1


@pytest.mark.ring_neutral
def test_debug_names_rpmb_requests_and_results(serve):
    s = serve("rpmb")
    with RpmbClient.connect(s.socket) as c:
        c.program_key(KEY)
        c.key = KEY
        c.write(3, [bytes(256)])
    log = s.log()
    assert "vfu_virtio.devices.rpmb: queue 0: PROGRAM_KEY: 1024 bytes read, 512 written: OK" in log
    assert "queue 0: GET_WRITE_COUNTER: 512 bytes read, 512 written: OK" in log
    assert "queue 0: DATA_WRITE 1 block(s) at 3: 1024 bytes read, 512 written: OK" in log


@pytest.mark.ring_neutral
def test_info_has_attach_detach_guest_errors_and_totals_without_reset_noise(serve):
    s = serve("rpmb", "--log-level", "INFO")  # after the kind, in upper case: wins over the spawner's debug
    with RpmbClient.connect(s.socket) as c:
        c.read_counter()
    with VirtioPciDriver.connect(s.socket) as drv:
        drv.begin_init()
        drv.set_status(ACKNOWLEDGE | DRIVER | DRIVER_OK)
    assert s.stop() == 0
    log = s.log()
    assert " DEBUG " not in log and "vfu_reset_ctx" not in log and "client connection lost" not in log
    assert re.search(r"INFO    vfu_virtio.server: client 1 attached\n", log)
    assert re.search(r"INFO    vfu_virtio.server: client 1 gone after \d+\.\d s; device reset, waiting for the next "
                     r"client\n", log)
    assert "WARNING vfu_virtio.virtio.transport: DEVICE_NEEDS_RESET: DRIVER_OK set without FEATURES_OK\n" in log
    assert log.rstrip().endswith("INFO    vfu_virtio.server: stopped: 2 client(s) served, 1 request(s), 1 answered "
                                 "with an error, 1 needs-reset event(s)")


@pytest.mark.ring_neutral
def test_json_log_lines(serve):
    s = serve("crypto", "--log-format", "json", "--log-level", "info")
    with VirtioPciDriver.connect(s.socket) as drv:
        drv.init()
    assert s.stop() == 0
    records = [json.loads(line) for line in s.log().splitlines()]
    assert all(set(r) == {"time", "level", "logger", "message"} for r in records)
    assert {"level": "INFO", "logger": "vfu_virtio.server", "message": "client 1 attached"} in \
        [{k: r[k] for k in ("level", "logger", "message")} for r in records]
    assert records[-1]["message"].startswith("stopped: 1 client(s) served")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", records[0]["time"])
