"""The README's walk-throughs, run as written: each ``sh`` block after a ``<!-- walk-through: NAME -->`` marker goes to
``bash -e`` unchanged, with the project's ``vfu-virtio`` command on ``PATH`` (as ``. .venv/bin/activate`` puts it
there) and ``mktemp -d`` inside the test's directory; the output must say what the README says it does. The Python
library example runs against a crypto server listening on ``crypto.sock`` in its working directory."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from conftest import TOP

README = (TOP / "README.md").read_text()


def block(kind: str, name: str, lang: str) -> str:
    """The fenced ``lang`` block right after ``<!-- kind: name ... -->`` in the README."""
    found = re.findall(rf"<!-- {kind}: {name}\b[^>]*-->\n```{lang}\n(.*?)```", README, re.S)
    assert len(found) == 1, f"README has {len(found)} {kind} {name!r} blocks"
    return found[0]


@pytest.fixture
def shell(tmp_path):
    """Run a README block with bash -e, ``vfu-virtio`` on PATH, temporary directories under ``tmp_path``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "vfu-virtio"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m vfu_virtio "$@"\n')
    shim.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "TMPDIR": str(tmp_path),
           "PYTHONPATH": os.pathsep.join(p for p in (str(TOP), os.environ.get("PYTHONPATH")) if p)}

    def run(script: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-e", "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path,
                              timeout=240)
    return run


@pytest.mark.ring_neutral
def test_rpmb_walk_through(shell):
    r = shell(block("walk-through", "rpmb", "sh"))
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout.splitlines()
    assert out[:2] == ["result OK", "result OK, 1 block(s) at 0, write counter 1"]
    assert out[2] == f"    0: 68656c6c6f{'00' * 251}" and out[3] == "result OK, 1 block(s) at 0"
    assert out[4] == "result OK, write counter 1"
    assert out[5].startswith("rpmb instance '0' (state ") and out[6].endswith(" served")
    assert any(line.startswith("rpmb: write_counter 1, key_programmed 1, capacity 4") for line in out)
    info = out[out.index(next(line for line in out if line.startswith("state store "))):]
    assert info[0].endswith(": 1 instance(s)")
    assert info[2].split() == ["rpmb", "0", "yes", "capacity=4", "max_rd_cnt=1", "max_wr_cnt=1", "write_counter=1",
                               "key=programmed", "blocks_written=1"]
    assert "Traceback" not in r.stderr
    assert "stopped: 4 client(s) served, 5 request(s), 0 answered with an error" in r.stderr


@pytest.mark.ring_neutral
def test_crypto_walk_through(shell):
    r = shell(block("walk-through", "crypto", "sh"))
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout.splitlines()
    assert out[0].startswith("status 0x1 (HW_READY), max_dataqueues 2")
    assert "AEAD: aes-gcm aes-ccm chacha20-poly1305" in out
    rest = out[out.index("AKCIPHER: rsa ecdsa") + 1:]
    assert rest[0] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # FIPS 180-2 "abc"
    assert rest[1] == "7649abac8119b246cee98e9b12e9197d"  # NIST SP 800-38A F.2.1, first block
    assert len(rest[2]) == 64  # HMAC-SHA-256 under "Jefe"
    assert rest[3] == "616263"  # the AES-GCM round trip gives "abc" back
    assert rest[4] == "signature OK"
    assert rest[5].startswith("crypto instance '0' (state ") and rest[-1] == \
        "crypto: profile standard, sessions_live 0, sessions_created 7, max_sessions 1024"
    assert "Traceback" not in r.stderr


def test_library_example(serve, tmp_path):
    server = serve("crypto", "--queues", "1")
    assert server.socket == str(tmp_path / "crypto.sock")
    r = subprocess.run([sys.executable, "-c", block("example", "library", "python")], capture_output=True, text=True,
                       cwd=tmp_path, timeout=60, env={**os.environ, "PYTHONPATH": str(TOP)})
    assert r.returncode == 0, r.stderr
    assert r.stdout == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad status 0\n"
