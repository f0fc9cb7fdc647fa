"""The server process: clients coming and going, signals, CLI errors.

Real `vfu-virtio` processes, real sockets, the project's vfio-user client.
"""
import os
import signal
import subprocess
import sys

import pytest

from vfu_virtio.client.vfio_user import VfioUserClient

CFG = 7


def connect(path, patience=10.0):
    """Connect, retrying while the server's one-slot listen backlog is taken (EAGAIN)."""
    import time
    deadline = time.monotonic() + patience
    while True:
        try:
            return VfioUserClient(path)
        except BlockingIOError:
            assert time.monotonic() < deadline, f"server did not accept a client within {patience} s"
            time.sleep(0.1)


@pytest.mark.ring_neutral
def test_reconnect_gets_a_fresh_client_slot(serve):
    server = serve("crypto")
    for _ in range(3):
        c = VfioUserClient(server.socket)
        assert c.region_read(CFG, 0, 2) == b"\xf4\x1a"
        c.close()
    assert server.alive()


@pytest.mark.ring_neutral
def test_garbage_client_does_not_kill_the_server(serve):
    import socket
    server = serve("crypto")
    s = socket.socket(socket.AF_UNIX)
    s.connect(server.socket)
    s.sendall(b"\xff" * 64)  # not a vfio-user version message
    s.close()
    c = connect(server.socket)
    assert c.region_read(CFG, 0, 2) == b"\xf4\x1a"
    c.close()
    assert server.alive()
    # libvfio-user's own complaint reaches Python logging at its level
    assert any("ERROR" in ln and "vfu_virtio.libvfio_user" in ln and "version" in ln
               for ln in server.log().splitlines()), server.log()


@pytest.mark.ring_neutral
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_cleanly_with_a_client_attached(serve, sig):
    server = serve("crypto")
    c = VfioUserClient(server.socket)
    server.proc.send_signal(sig)
    assert server.proc.wait(timeout=15) == 0
    assert not os.path.exists(server.socket)
    assert "shutting down" in server.log()
    c.close()


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "vfu_virtio", *args], capture_output=True, text=True, timeout=60)


def test_cli_refuses_bad_values_naming_the_limit(tmp_path):
    r = run_cli("crypto", "--socket", str(tmp_path / "s"), "--state", str(tmp_path / "db"), "--queues", "65")
    assert r.returncode == 2
    assert "65" in r.stderr and "1<=x<=64" in r.stderr


def test_cli_socket_in_missing_directory(tmp_path):
    sock = tmp_path / "no" / "such" / "dir.sock"
    r = run_cli("crypto", "--socket", str(sock), "--state", str(tmp_path / "db"))
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert f"vfio-user socket {sock}: directory {sock.parent} does not exist" in r.stderr
    assert not (tmp_path / "db").exists()  # refused before the store was touched


def test_cli_refuses_to_replace_a_regular_file(tmp_path):
    f = tmp_path / "not-a-socket"
    f.write_text("precious")
    r = run_cli("crypto", "--socket", str(f), "--state", str(tmp_path / "db"))
    assert r.returncode == 1 and "not a socket" in r.stderr
    assert f.read_text() == "precious"


def test_qemu_cmdline_uses_the_json_device_form():
    r = run_cli("qemu-cmdline", "--socket", "/tmp/a.sock", "--socket", "/tmp/b.sock")
    assert r.returncode == 0
    out = r.stdout
    assert "memory-backend-memfd,id=mem,size=512M,share=on" in out
    assert "q35,memory-backend=mem" in out
    assert out.count('"driver": "vfio-user-pci"') == 2 and '"path": "/tmp/b.sock"' in out


def test_help_explains_options():
    r = run_cli("crypto", "--help")
    assert r.returncode == 0
    for opt in ("--socket", "--state", "--queues", "--max-size", "--once"):
        assert opt in r.stdout


@pytest.mark.ring_neutral
def test_silent_client_does_not_hang_the_server(serve):
    """A client that connects and never sends the version message is dropped after the receive timeout."""
    import socket
    server = serve("crypto")
    s = socket.socket(socket.AF_UNIX)
    s.connect(server.socket)
    c = connect(server.socket, patience=30)  # the backlog is full until the server drops the silent one
    assert c.region_read(CFG, 0, 2) == b"\xf4\x1a"
    c.close()
    s.close()
    assert "client refused during attach" in server.log()
