"""The ``vfu-virtio`` command line generated from the registry: ``kinds`` (and the README's table), the
stored-settings rule for crypto and RPMB through real server processes, ``qemu-cmdline`` quoting and size
checks, ``--ready-fd``."""
from __future__ import annotations

import pytest

import os
import re
import shlex
import subprocess
import sys

from conftest import TOP
from vfu_virtio import cli
from vfu_virtio.client import spawn
from vfu_virtio.client.rpmb import RpmbClient
from vfu_virtio.client.virtio_pci import VirtioPciDriver
from vfu_virtio.devices.registry import BUILTIN, ENV_VAR, load

README_TABLE = re.compile(r"<!-- device kinds: vfu-virtio kinds --markdown -->\n(.*?)\n<!-- end -->", re.S)


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    return subprocess.run([sys.executable, "-m", "vfu_virtio", *args], capture_output=True, text=True, timeout=60,
                          cwd=TOP, env={**environ, **(env or {})})


def test_kinds_lists_the_registry():
    r = run_cli("kinds")
    assert r.returncode == 0, r.stderr
    header, *rows = r.stdout.splitlines()
    assert header.split()[:7] == ["kind", "virtio", "id", "PCI", "id", "class", "summary"]
    assert [row.split()[:4] for row in rows] == [["crypto", "20", "1af4:1054", "0x00ff00"],
                                                 ["rpmb", "28", "1af4:105c", "0x00ff00"]]
    assert "--capacity 1..128 (1, fixed)" in rows[1] and "--queues 1..64 (4)" in rows[0]
    r = run_cli("kinds", "--markdown")
    assert r.returncode == 0 and r.stdout.rstrip("\n") == cli.kinds_table(load(BUILTIN).values(), markdown=True)


def test_readme_holds_exactly_the_generated_table():
    table = README_TABLE.findall((TOP / "README.md").read_text())
    assert table == [cli.kinds_table(load(BUILTIN).values(), markdown=True)]
    assert table[0].splitlines()[:3] == [
        "| kind | virtio id | PCI id | class | summary | serve options: limits (default) |",
        "|---|---:|---|---|---|---|",
        "| crypto | 20 | 1af4:1054 | 0x00ff00 | virtio-crypto (the standard, or the v16 or ASYM RFC v3 drafts): cipher, "
        "hash, MAC, AEAD and asymmetric requests computed with cryptography | --profile one of asym-rfc3, standard, "
        "v16 (standard, fixed); --queues 1..64 (4); --max-sessions 1..1048576 (1024); --max-size 1..1073741824 "
        "(1048576); --bulk-threshold 0..4294967295 (262144); --max-rsa-keygen-bits 1024..8192 (4096); "
        "--max-dsa-keygen-bits 1024..4096 (2048); --max-dh-param-bits 512..8192 (1024) |"]


def test_every_serve_command_states_the_rule_units_and_defaults():
    for kind in load(BUILTIN).values():
        r = run_cli(kind.name, "--help")
        assert r.returncode == 0, r.stderr
        text = " ".join(r.stdout.split())
        assert "an option left out takes the stored value, else its default" in text
        assert f"virtio id {kind.virtio_id}, PCI {kind.pci_id}" in text
        for opt in kind.options:
            if opt.range is not None:
                assert f"{opt.flag} INTEGER RANGE" in text
                assert f"[default: (the stored value, else {opt.default}); {opt.range[0]}<=x<={opt.range[1]}]" in text
            else:
                assert f"{opt.flag} [{'|'.join(opt.choices)}]" in text
                assert f"[default: (the stored value, else {opt.default})]" in text
    r = run_cli("rpmb", "--help")
    assert "Fixed when the instance is created" in " ".join(r.stdout.split())


def crypto_queues(server) -> int:
    with VirtioPciDriver.connect(server.socket) as drv:
        return drv.num_queues


@pytest.mark.ring_neutral
def test_crypto_keeps_stored_settings(serve):
    """Crypto under the rule: a given --queues is stored, a later start without it keeps it, another value
    wins and is stored."""
    first = serve("crypto", "--queues", "2", "--max-size", "4096", name="first")
    assert crypto_queues(first) == 3  # 2 data queues + the controlq
    assert first.stop() == 0
    second = serve("crypto", name="second")
    assert crypto_queues(second) == 3
    assert second.stop() == 0
    third = serve("crypto", "--queues", "1", name="third")
    with VirtioPciDriver.connect(third.socket) as drv:
        assert drv.num_queues == 2 and drv.device_config(48, 8) == (4096).to_bytes(8, "little")  # max_size
    assert third.stop() == 0
    assert crypto_queues(serve("crypto", name="fourth")) == 2


@pytest.mark.ring_neutral
def test_rpmb_keeps_stored_settings_and_its_fixed_capacity(serve, tmp_path):
    first = serve("rpmb", "--capacity", "2", "--max-wr-cnt", "4", name="first")
    assert first.stop() == 0
    second = serve("rpmb", "--max-rd-cnt", "0", name="second")
    with RpmbClient.connect(second.socket) as c:
        assert c.config() == (2, 4, 0)
    assert second.stop() == 0
    r = run_cli("rpmb", "--socket", str(tmp_path / "never.sock"), "--state", second.state, "--capacity", "3")
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert r.stderr.startswith("Error: state store ") and "has capacity 2 (x 128 KiB); it cannot become 3" in r.stderr
    third = serve("rpmb", "--capacity", "2", name="third")  # the stored value itself is fine
    with RpmbClient.connect(third.socket) as c:
        assert c.config() == (2, 4, 0)


def test_qemu_cmdline_quotes_for_the_shell_and_checks_the_size():
    path = "run/it's a socket"
    r = run_cli("qemu-cmdline", "--socket", path, "--memory", "2G")
    assert r.returncode == 0, r.stderr
    words = shlex.split(r.stdout)
    assert words[:6] == ["-object", "memory-backend-memfd,id=mem,size=2G,share=on", "-machine",
                         "q35,memory-backend=mem", "-m", "2G"]
    assert words[6:] == ["-device", '{"driver": "vfio-user-pci", "socket": {"path": "run/it\'s a socket", '
                                    '"type": "unix"}}']
    for bad in ("512", "2X", "-1G", "0M", "1.G", "512M;reboot"):
        r = run_cli("qemu-cmdline", "--socket", "a.sock", "--memory", bad)
        assert r.returncode == 2 and f"'{bad}' is not a QEMU size such as 512M or 2G" in r.stderr, (bad, r.stderr)
    for good in ("1.5G", "4096k", "512M"):
        assert run_cli("qemu-cmdline", "--socket", "a.sock", "--memory", good).returncode == 0, good


def test_ready_fd_must_be_open():
    r = run_cli("--ready-fd", "250", "kinds")
    assert r.returncode == 2 and "--ready-fd: 250 is not an open file descriptor" in r.stderr


def test_ready_line_is_the_same_on_both_sides():
    assert cli.READY_LINE == spawn.READY_LINE == b"ready\n"
