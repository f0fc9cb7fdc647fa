"""The server spawner (``vfu_virtio.client.spawn``): readiness is the server's own ``--ready-fd`` line, not the
socket file; a server that fails, closes the pipe or never answers is reported with its log and reaped; stop
escalates to SIGKILL; every child is gone afterwards."""
from __future__ import annotations

import os
import sys

import pytest

from conftest import SERVER_ENV, TOP, gone
from vfu_virtio.client.spawn import Server, ServerFailed, ServerGroup
from vfu_virtio.client.vfio_user import VfioUserClient

PCI_VENDOR = b"\xf4\x1a"
ROUNDS = 30

#: Stand-ins for ``python -m vfu_virtio`` (they receive the same arguments): what the spawner must survive.
SILENT = "import time; time.sleep(60)"
WRONG_LINE = "import os, sys, time; fd = int(sys.argv[sys.argv.index('--ready-fd') + 1]); " \
             "os.write(fd, b'later\\n'); time.sleep(60)"
DEAF = "import os, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); " \
       "fd = int(sys.argv[sys.argv.index('--ready-fd') + 1]); os.write(fd, b'ready\\n'); os.close(fd); time.sleep(60)"


def fake(tmp_path, code: str, **kw) -> Server:
    return Server("crypto", str(tmp_path / "x.sock"), str(tmp_path / "s.db"), log_path=str(tmp_path / "x.log"),
                  program=(sys.executable, "-c", code), **kw)


def test_connect_right_after_start_is_never_refused(tmp_path):
    """Start, connect at once, stop: ROUNDS times in a row, never refused (the socket file alone appears
    before the socket listens), every stop clean, including a stop right after the start."""
    group = ServerGroup(tmp_path, env=SERVER_ENV, cwd=str(TOP))
    for i in range(ROUNDS):
        server = group.start("null", name=f"null{i}")
        client = VfioUserClient(server.socket)
        assert client.region_read(7, 0, 2) == PCI_VENDOR
        client.close()
        assert server.stop() == 0, server.log()
        assert not os.path.exists(server.socket) and gone(server.pid)
    quick = group.start("null", name="quick")
    assert quick.stop() == 0 and "shutting down" in quick.log()  # SIGTERM the moment it is ready
    assert all("Traceback" not in s.log() for s in group.servers)


def test_server_that_exits_is_reported_with_its_log(tmp_path):
    server = Server("rpmb", str(tmp_path / "r.sock"), str(tmp_path / "s.db"), ("--capacity", "0"),
                    log_path=str(tmp_path / "r.log"), cwd=str(TOP))
    with pytest.raises(ServerFailed, match=r"(?s)rpmb server \(pid \d+\) closed its readiness pipe .* exit status 2"
                                           r".*--capacity"):
        server.start()
    assert server.returncode == 2 and gone(server.pid)


def test_silent_server_is_killed_after_the_deadline(tmp_path):
    server = fake(tmp_path, SILENT, ready_timeout=1, stop_grace=1)
    with pytest.raises(ServerFailed, match="did not signal readiness within 1 s; exit status -15"):
        server.start()
    assert gone(server.pid)


def test_a_wrong_line_is_not_readiness(tmp_path):
    server = fake(tmp_path, WRONG_LINE, stop_grace=1)
    with pytest.raises(ServerFailed, match=r"signalled b'later\\n' instead of b'ready\\n'"):
        server.start()
    assert gone(server.pid)


def test_stop_escalates_to_sigkill_and_reaps(tmp_path):
    server = fake(tmp_path, DEAF, stop_grace=0.5).start()
    assert server.alive()
    assert server.stop() == -9 and gone(server.pid)
    server.start()  # a stopped server starts again with the same arguments
    assert server.kill() == -9 and gone(server.pid)


def test_group_stops_everything_it_started(tmp_path):
    with ServerGroup(tmp_path, env=SERVER_ENV, cwd=str(TOP)) as group:
        a, b = group.start("null"), group.start("null", "--instance", "b")
        assert (a.name, b.name) == ("null", "null2") and a.alive() and b.alive()
        with pytest.raises(ValueError, match="'null' is in the group already"):
            group.start("null", name="null")
    assert (a.returncode, b.returncode) == (0, 0) and gone(a.pid) and gone(b.pid)
    assert "--- null2 server (null), pid" in group.logs()
