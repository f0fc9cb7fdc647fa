"""The test-only ``null`` kind end to end: ``vfu-virtio null`` served by a real process (loaded through
``VFU_VIRTIO_DEVICES``), driven by the project's virtio-pci driver.

Checks the PCI identity the registry gives it (device id 0x1040 + 63, class code from the kind), loopback on
every virtqueue (used length = min(readable, writable)), and the configuration doorbell: config_generation
moves and the configuration vector fires ("Device Configuration Space", "Notification of Device
Configuration Changes").
"""
from __future__ import annotations

import subprocess
import sys

from conftest import SERVER_ENV, TOP
from vfu_virtio.client.virtio_pci import VirtioPciDriver

PCI_CLASS_OFFSET = 0x09  # prog-if @0x09, subclass @0x0a, base class @0x0b


def test_cli_serves_the_null_kind_from_the_environment():
    env = {"PATH": "", **SERVER_ENV}
    r = subprocess.run([sys.executable, "-m", "vfu_virtio", "null", "--help"], capture_output=True, text=True,
                       env=env, cwd=TOP, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "virtio id 63, PCI 1af4:107f, class 0xff0000" in r.stdout and "--queues" in r.stdout
    r = subprocess.run([sys.executable, "-m", "vfu_virtio", "null", "--help"], capture_output=True, text=True,
                       env={"PATH": ""}, cwd=TOP, timeout=60)  # negative control: without the environment
    assert r.returncode == 2 and "No such command 'null'" in r.stderr


def test_identity_and_loopback_on_every_queue(serve):
    server = serve("null", "--queues", "3")
    with VirtioPciDriver.connect(server.socket) as drv:
        assert (drv.vendor_id, drv.device_id, drv.virtio_device_id) == (0x1AF4, 0x107F, 63)
        assert drv.config_read(PCI_CLASS_OFFSET, 3) == b"\x00\x00\xff"  # class 0xff0000, as the kind says
        drv.init()
        assert drv.num_queues == 3
        for q in range(3):
            tag = bytes([0x41 + q])
            used, (a, b) = drv.queue(q).request([b"0123" + tag, tag * 3], [6, 10])
            assert used == 8 and (a, b[:2]) == (b"0123" + tag + tag, tag * 2)
            used, (short,) = drv.queue(q).request([bytes(range(64))], [5])  # more readable than writable
            assert (used, short) == (5, bytes(range(5)))
            used, _ = drv.queue(q).request([], [4])  # nothing readable
            assert used == 0


def test_doorbell_changes_config_and_interrupts(serve):
    server = serve("null")
    with VirtioPciDriver.connect(server.socket) as drv:
        drv.init()
        assert drv.device_config() == bytes.fromhex("02000000" "00000000" "00000000")
        generation = drv.read_common("config_generation")
        drv.write_device_config(8, bytes.fromhex("05000000"))
        assert drv.wait_config_change(timeout=5)
        assert drv.device_config() == bytes.fromhex("02000000" "05000000" "00000000")
        assert drv.read_common("config_generation") != generation
        generation = drv.read_common("config_generation")
        drv.write_device_config(4, bytes.fromhex("07000000"))  # the counter itself is read-only
        drv.write_device_config(8, bytes.fromhex("0000"))  # not a le32
        assert not drv.wait_config_change(timeout=0.5)
        assert drv.device_config()[4:8] == bytes.fromhex("05000000")
        assert drv.read_common("config_generation") == generation
