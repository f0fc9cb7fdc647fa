"""``vfu-virtio rpmb-client`` as a person uses it: bad key files and hex refused in one line, the device's result
first (NO_AUTH_KEY and AUTH_FAILURE are not hidden behind the MAC check), the limits named, an unchecked MAC said, help
that works without --socket, --log-level in any case and after the subcommand. Real servers, the real command."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import TOP

KEY = bytes(range(32))


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vfu_virtio", *args], capture_output=True, text=True, timeout=60,
                          cwd=TOP, env=dict(os.environ))


def refused(r: subprocess.CompletedProcess, code: int = 1) -> str:
    """One ``Error:`` line (after click's usage lines for a usage error), no traceback."""
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    assert r.stderr.splitlines()[-1].startswith("Error: ")
    return r.stderr.splitlines()[-1]


@pytest.fixture
def keyfile(tmp_path):
    path = tmp_path / "key"
    path.write_bytes(KEY)
    return str(path)


@pytest.mark.ring_neutral
@pytest.mark.parametrize("content, size", [(bytes(16), 16), (bytes(33), 33), (b"my secret passphrase\n", 21),
                                           (b"zz" * 32, 64)])
def test_key_files_of_the_wrong_size_or_form_are_refused_in_one_line(serve, tmp_path, content, size):
    s = serve("rpmb")
    bad = tmp_path / "bad.key"
    bad.write_bytes(content)
    line = refused(cli("rpmb-client", "--socket", s.socket, "--key-file", str(bad), "read-counter"), 2)
    assert f"{bad} holds {size} bytes; a key file holds exactly 32 raw bytes (or 64 hex digits)" in line


def test_bad_hex_is_refused_in_one_line(keyfile, tmp_path):
    line = refused(cli("rpmb-client", "--socket", str(tmp_path / "none.sock"), "--key-file", keyfile, "write",
                       "--address", "0", "--data-hex", "zz"), 2)
    assert "--data-hex: 'zz' is not hex digits (two per byte" in line


@pytest.mark.ring_neutral
def test_a_device_without_a_key_says_no_auth_key_even_with_a_key_file(serve, keyfile):
    s = serve("rpmb")
    base = ["rpmb-client", "--socket", s.socket, "--key-file", keyfile]
    for cmd in (["read-counter"], ["read", "--address", "0"], ["write", "--address", "0", "--data-hex", "00"]):
        line = refused(cli(*base, *cmd))
        assert line.startswith("Error: result NO_AUTH_KEY"), (cmd, line)
        assert "MAC does not verify" not in line


@pytest.mark.ring_neutral
def test_a_wrong_key_shows_auth_failure(serve, keyfile, tmp_path):
    s = serve("rpmb")
    assert cli("rpmb-client", "--socket", s.socket, "--key-file", keyfile, "program-key").returncode == 0
    wrong = tmp_path / "wrong"
    wrong.write_bytes(bytes(32))
    line = refused(cli("rpmb-client", "--socket", s.socket, "--key-file", str(wrong), "write", "--address", "0",
                       "--data-hex", "00"))
    assert line == "Error: result AUTH_FAILURE (unverified: the response MAC does not verify with the --key-file " \
                   "key: the device holds another key)"
    line = refused(cli("rpmb-client", "--socket", s.socket, "--key-file", str(wrong), "read-counter"))
    assert line == "Error: the response MAC does not verify with the --key-file key: the answer (result OK) is not " \
                   "trusted and nothing is printed"
    r = cli("rpmb-client", "--socket", s.socket, "read-counter")  # without a key: OK, unchecked, said so
    assert r.returncode == 0 and r.stdout == "result OK, write counter 0 (response MAC not checked: no --key-file)\n"


@pytest.mark.ring_neutral
def test_limits_are_named(serve, keyfile):
    s = serve("rpmb", "--capacity", "1", "--max-wr-cnt", "2", "--max-rd-cnt", "3")
    base = ["rpmb-client", "--socket", s.socket, "--key-file", keyfile]
    assert cli(*base, "program-key").returncode == 0
    line = refused(cli(*base, "write", "--address", "0", "--data-hex", "00" * 700))
    assert line == "Error: result GENERAL_FAILURE, 3 block(s) at 0, write counter 0: 3 blocks in one write; the " \
                   "device takes at most max_wr_cnt 2"
    line = refused(cli(*base, "write", "--address", "511", "--data-hex", "00" * 300))
    assert line.endswith("blocks 511..512 do not fit: the device holds 512 blocks of 256 bytes (capacity 1 x 128 "
                         "KiB), addresses 0..511")
    assert refused(cli(*base, "read", "--address", "0", "--count", "4")).endswith(
        "4 blocks in one read; the device takes at most max_rd_cnt 3")
    assert refused(cli(*base, "read", "--address", "510", "--count", "3")).endswith(
        "blocks 510..512 do not fit: the device holds 512 blocks of 256 bytes (capacity 1 x 128 KiB), "
        "addresses 0..511")
    line = refused(cli(*base, "program-key"))
    assert line == "Error: result WRITE_FAILURE: a key is programmed already (one-time programmable)"


@pytest.mark.ring_neutral
def test_a_read_without_a_key_says_its_mac_was_not_checked(serve, keyfile):
    s = serve("rpmb")
    keyed = ["rpmb-client", "--socket", s.socket, "--key-file", keyfile]
    assert cli(*keyed, "program-key").returncode == 0
    assert cli(*keyed, "write", "--address", "0", "--data-hex", "68656c6c6f").returncode == 0
    r = cli("rpmb-client", "--socket", s.socket, "read", "--address", "0")
    assert r.returncode == 0
    assert r.stdout.splitlines() == [f"    0: 68656c6c6f{'00' * 251}",
                                     "result OK, 1 block(s) at 0 (response MAC not checked: no --key-file)"]
    r = cli(*keyed, "read", "--address", "0")
    assert r.returncode == 0 and r.stdout.splitlines()[-1] == "result OK, 1 block(s) at 0"


def test_subcommand_help_needs_no_socket():
    for sub in ("write", "read", "read-counter", "program-key"):
        r = cli("rpmb-client", sub, "--help")
        assert r.returncode == 0 and "Usage:" in r.stdout, (sub, r.stderr)
    assert "needs --socket" in refused(cli("rpmb-client", "read-counter"), 2)


@pytest.mark.ring_neutral
def test_log_level_in_any_case_before_or_after_the_subcommand(serve):
    s = serve("rpmb")
    for args in (["--log-level", "DEBUG", "rpmb-client", "--socket", s.socket, "read-counter"],
                 ["rpmb-client", "--socket", s.socket, "read-counter", "--log-level", "Debug"]):
        r = cli(*args)
        assert "result NO_AUTH_KEY" in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
    r = cli("--log-level", "loud", "kinds")
    assert r.returncode == 2 and "'loud' is not one of 'debug', 'info', 'warning', 'error'" in r.stderr
