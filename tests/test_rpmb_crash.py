"""Crash safety: a stream of authenticated writes while the ``vfu-virtio rpmb`` process is killed with
SIGKILL at a random moment, then restarted on the same store -- :data:`ROUNDS` times.

Write number ``k`` (counter ``k`` -> ``k + 1``) goes to block ``k`` with data derived from ``k``, so
every block says which write put it there. After each kill, before the restart, the store is opened as
it was left (SQLite recovers the WAL) and ``PRAGMA integrity_check`` must say ``ok``; after the restart,
through the device:

* the counter equals the number of acknowledged writes, or one more (the write in flight committed but
  its completion was never seen);
* every acknowledged write's block is there; the in-flight write's block is there exactly when the
  counter says it committed, and zero otherwise (data and counter never disagree).

``VFU_RPMB_CRASH_ROUNDS`` overrides the number of rounds per virtqueue format (default 25: 50 in all, about 40 s
here). ``scripts/soak-rpmb`` (:mod:`vfu_virtio.client.rpmb_soak`, which gives this test its blocks and check) runs
the same until 10 000 writes are acknowledged.
"""
from __future__ import annotations

import os
import random
import signal
import threading

from vfu_virtio.abi import rpmb as F
from vfu_virtio.client.rpmb import RpmbClient
from vfu_virtio.client.rpmb_soak import CAPACITY, KEY, block, integrity

ROUNDS = int(os.environ.get("VFU_RPMB_CRASH_ROUNDS", "25"))


def test_sigkill_during_a_write_stream(serve):
    s = serve("rpmb", "--capacity", str(CAPACITY))
    rng = random.Random(int.from_bytes(os.urandom(4), "big"))
    with RpmbClient.connect(s.socket) as c:
        assert c.program_key(KEY) == F.VIRTIO_RPMB_RES_OK
    acked = 0  # writes whose completion the driver saw: blocks 0 .. acked-1, counter >= acked
    in_flight_rounds = 0
    for _ in range(ROUNDS):
        c = RpmbClient.connect(s.socket, KEY, timeout=0.5)  # a dead server is noticed by the timeout
        timer = threading.Timer(rng.uniform(0.0, 0.15), os.kill, (s.proc.pid, signal.SIGKILL))
        timer.start()
        counter = acked
        try:
            while True:
                result, counter_after = c.write(counter, [block(counter)], counter)
                assert (result, counter_after) == (F.VIRTIO_RPMB_RES_OK, counter + 1)
                counter = acked = counter + 1
        except AssertionError:
            raise
        except Exception:  # noqa: BLE001 - the server died under the request (disconnect, timeout, EPIPE)
            pass
        finally:
            timer.join()
            c.close()
        s.kill()
        assert integrity(s.state) == "ok"
        os.unlink(s.socket)  # the crash left it behind
        s.start()
        with RpmbClient.connect(s.socket, KEY) as c:
            result, now = c.read_counter()
            assert result == F.VIRTIO_RPMB_RES_OK and now in (acked, acked + 1), (now, acked)
            assert c.read(acked - 1) == (0, [block(acked - 1)]) if acked else True
            in_flight = c.read(acked)[1][0]
            assert in_flight == (block(acked) if now == acked + 1 else bytes(256))
            in_flight_rounds += now - acked
            acked = now
    with RpmbClient.connect(s.socket, KEY) as c:
        for k in range(0, acked, 1):
            assert c.read(k) == (0, [block(k)]), k
    assert s.stop() == 0
    assert integrity(s.state) == "ok"
    print(f"{ROUNDS} SIGKILL rounds, {acked} writes committed, {in_flight_rounds} committed while in flight")
    assert acked > ROUNDS  # the kills landed in the middle of streams, not before them
