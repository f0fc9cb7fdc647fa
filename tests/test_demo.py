"""The host-only main job: NIST SP 800-38A F.2.1–F.2.6 (AES-128/192/256-CBC, encrypt and decrypt)
through a real server over the socket with the project's driver, and the README command itself."""
import subprocess
import sys

from vfu_virtio import demo


def test_nist_cbc_vectors_through_the_device(serve, capsys):
    server = serve("crypto", "--queues", str(demo.QUEUES))
    assert demo.run(server.socket) is True
    out = capsys.readouterr().out
    assert out.count("-> ok") == 3 and "FAIL" not in out


def test_host_only_main_job_command():
    r = subprocess.run([sys.executable, "-m", "vfu_virtio.demo"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "result: every vector matched" in r.stdout
