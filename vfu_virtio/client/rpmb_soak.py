"""Kill soak: SIGKILL the RPMB server at random moments during a stream of authenticated writes, restart it on the
same store, and check that nothing acknowledged was lost -- until ``--writes`` writes were acknowledged.

Write number ``k`` (write counter ``k`` -> ``k + 1``) puts block ``k`` with data derived from ``k`` (capacity 128:
65 536 blocks, so every write has a block of its own and says which write put it there). Each round: connect the
project's RPMB client (:class:`vfu_virtio.client.rpmb.RpmbClient`, one write in flight), arm a timer that SIGKILLs
the server after a random delay (uniform in ``[0, --max-delay]`` seconds), write until the server dies. Then:

* the store, opened as the kill left it (SQLite recovers its WAL), answers ``PRAGMA integrity_check`` with ``ok``;
* after a restart, through the device: the write counter equals the number of acknowledged writes, or one more
  (the write in flight committed but its completion was never seen); the last acknowledged write's block is there;
  the in-flight write's block is there exactly when the counter says it committed, and zero otherwise.

At the end every block written is read back and compared, and the totals are printed: kills, acknowledged writes,
writes committed while in flight, integrity checks, mismatches. Exit status 0 only when nothing was lost.

    scripts/soak-rpmb [--writes 10000] [--max-delay 0.3] [--seed N] [--dir DIR]

``tests/test_rpmb_crash.py`` runs the same kind of round, fewer of them, with :func:`block` and :func:`integrity`.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import random
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

from vfu_virtio.abi import rpmb as F
from vfu_virtio.client.rpmb import RpmbClient
from vfu_virtio.client.spawn import Server

KEY = bytes(range(32))
CAPACITY = 128  # 65 536 blocks


def block(k: int) -> bytes:
    """The 256 bytes write ``k`` stores."""
    return hashlib.sha256(k.to_bytes(4, "big")).digest() * 8


def integrity(path: str) -> str:
    """``PRAGMA integrity_check`` of the SQLite store at ``path`` (``"ok"`` when sound)."""
    db = sqlite3.connect(path)
    try:
        return db.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        db.close()


def write_until_killed(server: Server, acked: int, delay: float) -> int:
    """Write blocks acked, acked+1, ... until the server dies ``delay`` seconds from now; returns the new number
    of acknowledged writes."""
    client = RpmbClient.connect(server.socket, KEY, timeout=0.5)  # a dead server is noticed by the timeout
    timer = threading.Timer(delay, os.kill, (server.pid, signal.SIGKILL))
    timer.start()
    try:
        while True:
            result, after = client.write(acked, [block(acked)], acked)
            if (result, after) != (F.VIRTIO_RPMB_RES_OK, acked + 1):
                raise AssertionError(f"write {acked} answered result {result:#x}, counter {after}")
            acked += 1
    except AssertionError:
        raise
    except Exception:  # noqa: BLE001 - the server died under the request (disconnect, timeout, EPIPE)
        return acked
    finally:
        timer.join()
        client.close()


def soak(workdir: Path, writes: int, max_delay: float, rng: random.Random) -> dict[str, int]:
    server = Server("rpmb", str(workdir / "rpmb.sock"), str(workdir / "soak.db"), ("--capacity", str(CAPACITY)),
                    log_path=str(workdir / "rpmb.log"), log_level="warning").start()
    stats = {"kills": 0, "acknowledged": 0, "committed_in_flight": 0, "integrity_ok": 0, "lost": 0}
    try:
        with RpmbClient.connect(server.socket) as c:
            assert c.program_key(KEY) == F.VIRTIO_RPMB_RES_OK
        acked = 0
        while acked < writes:
            acked = write_until_killed(server, acked, rng.uniform(0.0, max_delay))
            server.kill()
            stats["kills"] += 1
            if integrity(server.state) != "ok":
                raise AssertionError(f"integrity_check failed after kill {stats['kills']}")
            stats["integrity_ok"] += 1
            os.unlink(server.socket)  # the kill left it behind
            server.start()
            with RpmbClient.connect(server.socket, KEY) as c:
                result, now = c.read_counter()
                if result != F.VIRTIO_RPMB_RES_OK or now not in (acked, acked + 1):
                    raise AssertionError(f"counter {now} after {acked} acknowledged writes (result {result:#x})")
                if acked and c.read(acked - 1) != (0, [block(acked - 1)]):
                    raise AssertionError(f"acknowledged write {acked - 1} lost")
                in_flight = c.read(acked)[1][0]
                if in_flight != (block(acked) if now == acked + 1 else bytes(F.BLOCK_SIZE)):
                    raise AssertionError(f"block {acked} disagrees with counter {now}")
            stats["committed_in_flight"] += now - acked
            acked = now
            print(f"kill {stats['kills']}: {acked} writes acknowledged", end="\r", file=sys.stderr, flush=True)
        with RpmbClient.connect(server.socket, KEY) as c:
            stats["lost"] = sum(c.read(k) != (0, [block(k)]) for k in range(acked))
            assert c.read_counter() == (F.VIRTIO_RPMB_RES_OK, acked)
        stats["acknowledged"] = acked
    finally:
        if server.alive():
            server.stop()
    if integrity(server.state) != "ok":
        raise AssertionError("integrity_check failed after the last stop")
    stats["integrity_ok"] += 1
    return stats


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--writes", type=int, default=10_000, help="acknowledged writes to reach (default 10000)")
    p.add_argument("--max-delay", type=float, default=0.3,
                   help="each kill comes uniform(0, this) seconds into a round (default 0.3)")
    p.add_argument("--seed", type=int, default=None, help="random seed of the kill delays (default: random)")
    p.add_argument("--dir", default=None, help="work directory for the store, socket and log (default: a "
                                               "temporary directory)")
    a = p.parse_args()
    seed = a.seed if a.seed is not None else int.from_bytes(os.urandom(4), "big")
    with tempfile.TemporaryDirectory(prefix="rpmb-soak-", dir=a.dir) as d:
        t0 = time.monotonic()
        stats = soak(Path(d), a.writes, a.max_delay, random.Random(seed))
        elapsed = time.monotonic() - t0
    print(f"seed {seed}: {stats['kills']} SIGKILLs, {stats['acknowledged']} writes acknowledged "
          f"({stats['committed_in_flight']} committed while in flight), {stats['integrity_ok']} integrity checks ok, "
          f"{stats['lost']} acknowledged writes lost, {elapsed:.0f} s")
    return 1 if stats["lost"] else 0


if __name__ == "__main__":
    sys.exit(main())
