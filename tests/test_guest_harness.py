"""The guest harness itself (``vfu_virtio.qemu``), without booting a guest to the end.

The initramfs writer is checked against the ``cpio`` tool and the kernel's own modules.dep, the marker
parser against interleaved console lines, and the process handling on its failure paths: QEMU refusing
a socket nobody serves, a boot cut off by its time limit, a server that cannot start. Every process
started here must be gone afterwards.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import gone
from vfu_virtio.client.spawn import ServerFailed, ServerGroup
from vfu_virtio.devices.registry import kinds
from vfu_virtio.qemu import dpdk_image, initramfs
from vfu_virtio.qemu.kit import GuestKernel, GuestKit, KitMissing
from vfu_virtio.qemu.machine import QemuBuiltinCrypto, VfioUser, boot
from vfu_virtio.qemu.report import parse
from vfu_virtio.qemu.scenario import CryptoPlan, guest_kinds, pattern, run_guest


def test_newc_archive_reads_back_with_cpio(tmp_path):
    if not shutil.which("cpio"):
        pytest.skip("no cpio tool")
    arc = initramfs.Newc()
    arc.dir("bin")
    arc.file("bin/x", b"hello\n", 0o755)
    arc.file("odd", b"12345")  # unaligned size: padding must be right for the next header
    arc.symlink("bin/y", "/bin/x")
    arc.chardev("console", 5, 1)
    listing = subprocess.run(["cpio", "-itv", "--quiet"], input=arc.finish(), capture_output=True,
                             check=True).stdout.decode()
    lines = {ln.split()[-1] if "->" not in ln else ln.split()[-3]: ln for ln in listing.splitlines()}
    assert set(lines) == {"bin", "bin/x", "odd", "bin/y", "console"}
    assert lines["bin"].startswith("drwxr-xr-x")
    assert lines["bin/x"].startswith("-rwxr-xr-x") and " 6 " in lines["bin/x"]
    assert lines["bin/y"].startswith("lrwxrwxrwx") and lines["bin/y"].endswith("-> /bin/x")
    assert lines["console"].startswith("crw-------") and "5,   1" in lines["console"]
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run(["cpio", "-id", "--quiet", "--no-absolute-filenames"], input=arc.finish(), cwd=out,
                   check=True, capture_output=True)
    assert (out / "bin" / "x").read_bytes() == b"hello\n" and (out / "odd").read_bytes() == b"12345"


def test_module_closure_is_dependency_ordered(tmp_path):
    (tmp_path / "modules.dep").write_text(
        "kernel/a/virtio_pci.ko: kernel/a/virtio_ring.ko kernel/a/virtio.ko\n"
        "kernel/a/virtio_ring.ko: kernel/a/virtio.ko\n"
        "kernel/a/virtio.ko:\n"
        "kernel/b/virtio_crypto.ko: kernel/a/virtio.ko kernel/b/crypto_engine.ko\n"
        "kernel/b/crypto_engine.ko:\n"
        "kernel/c/algif_skcipher.ko: kernel/c/af_alg.ko\n"
        "kernel/c/af_alg.ko:\n"
        "kernel/d/unrelated.ko:\n")
    wanted = (("virtio_pci", True), ("virtio_crypto", True), ("algif_skcipher", True), ("algif_akcipher", False))
    closure = initramfs.module_closure(tmp_path, wanted)
    assert sorted(closure) == sorted(["kernel/a/virtio_pci.ko", "kernel/a/virtio_ring.ko", "kernel/a/virtio.ko",
                                      "kernel/b/virtio_crypto.ko", "kernel/b/crypto_engine.ko",
                                      "kernel/c/algif_skcipher.ko", "kernel/c/af_alg.ko"])
    assert closure.index("kernel/a/virtio.ko") < closure.index("kernel/a/virtio_ring.ko") \
        < closure.index("kernel/a/virtio_pci.ko")
    with pytest.raises(KitMissing, match="missing_required"):
        initramfs.module_closure(tmp_path, (("missing_required", True),))
    (tmp_path / "modules.builtin").write_text("kernel/drivers/virtio/virtio_pci.ko\nkernel/e/built_in.ko\n")
    assert initramfs.module_closure(tmp_path, (("built_in", True),)) == []  # in the kernel: no file needed


def _names(image: Path) -> dict[str, str]:
    """``{name: cpio -itv line}`` of the first archive of ``image``."""
    out = subprocess.run(["cpio", "-itv", "--quiet"], stdin=open(image, "rb"), capture_output=True,
                         check=True).stdout.decode()
    return {(ln.split(" -> ")[0] if " -> " in ln else ln).split()[-1]: ln for ln in out.splitlines()}


def test_initramfs_holds_the_guest_and_is_cached(kit):
    if not shutil.which("cpio"):
        pytest.skip("no cpio tool")
    first = initramfs.build(kit)
    stamp = first.stat().st_mtime_ns
    assert initramfs.build(kit) == first and first.stat().st_mtime_ns == stamp  # reused, not rewritten
    names = _names(first)
    release = kit.kernel_release
    assert {"init", "lib/vfu/lib.sh", "lib/vfu/linux.sh", "bin/afalg", "bin/pkey", "bin/busybox", "bin/sh",
            "sbin/modprobe", "usr/bin/sha256sum", "dev/console", f"lib/modules/{release}/modules.dep"} <= set(names)
    assert "lib/vfu/dpdk.sh" not in names and names["bin/pkey"].startswith("-rwxr-xr-x")
    for module in initramfs.module_closure(kit.modules_dir, initramfs.PROFILES["linux"].modules):
        assert f"lib/modules/{release}/{module}" in names
    assert any(n.endswith("/virtio_crypto.ko") for n in names)


def test_dpdk_image_holds_dpdk_its_plugins_and_uio(kit):
    if not shutil.which("cpio"):
        pytest.skip("no cpio tool")
    image = initramfs.build(kit, "dpdk")
    assert image != initramfs.build(kit, "linux") and image.exists()  # each profile keeps its own cached image
    names = _names(image)
    assert names["."].startswith("drwxr-xr-x")  # EAL refuses a world-writable path to its plugins
    for prog in ("usr/bin/dpdk-test", "usr/bin/dpdk-test-crypto-perf", "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"):
        assert names[prog].startswith("-rwxr-xr-x"), prog
    assert names["lib64/ld-linux-x86-64.so.2"].endswith("-> /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
    plugins = {n.rsplit("/", 1)[1].split(".so")[0] for n in names if n.startswith(dpdk_image.PMD_DIR + "/")}
    assert plugins == {f"librte_{p}" for p in dpdk_image.PLUGINS}
    assert {"lib/vfu/dpdk.sh", "usr/lib/vfu/enotsup.so"} <= set(names) and "bin/afalg" not in names
    assert any(n.endswith("/uio_pci_generic.ko") for n in names)


def test_dpdk_files_resolve_inside_the_image(kit):
    entries = dpdk_image.image_files(kit.dpdk_root)
    for rel, entry in entries.items():
        if entry.target is None:
            continue
        target = entry.target.lstrip("/") if entry.target.startswith("/") else \
            str(Path(rel).parent / entry.target)
        assert os.path.normpath(target) in entries, f"{rel} -> {entry.target} dangles"
    assert all(e.source is None or str(e.source).startswith(str(kit.dpdk_root.resolve())) or
               str(e.source).startswith(os.path.abspath(kit.dpdk_root)) for e in entries.values())


def test_per_boot_files_follow_the_cached_image(tmp_path):
    if not shutil.which("cpio"):
        pytest.skip("no cpio tool")
    base = initramfs.Newc()
    base.dir("etc")
    base.file("etc/a", b"base")
    (tmp_path / "base.cpio").write_bytes(base.finish())
    out = initramfs.with_files(tmp_path / "base.cpio", {"etc/vfu/key": b"\x01\x02"}, tmp_path / "run.cpio")
    data = out.read_bytes()
    assert data.startswith((tmp_path / "base.cpio").read_bytes())
    rest = data[len((tmp_path / "base.cpio").read_bytes()):]
    x = tmp_path / "x"
    x.mkdir()
    subprocess.run(["cpio", "-id", "--quiet"], input=rest, cwd=x, check=True, capture_output=True)
    assert (x / "etc" / "vfu" / "key").read_bytes() == b"\x01\x02"


def test_markers_are_found_in_interleaved_console_lines():
    console = ("SeaBIOS junk\r\n\x1b[2JVFU-BOOT kernel=6.1\r\n"
               "[    1.0] random kernel line\n"
               "VFU-PCI phase=boot slot=0000:00:01.0 vendor=0x1af4 device=0x1054 driver=virtio-pci\n"
               "[    2.0] virtio_crypto: interleaVFU-AFALG phase=boot size=16 result=ok enc_sha256=ab dec_sha256=cd\n"
               "VFU-DMESG [    1.9] virtio_crypto virtio0: max_queues: 3, max_size 0x1\n"
               "VFU-DONE\n[    3.0] reboot: Power down\n")
    r = parse(console)
    assert [m.tag for m in r.markers] == ["BOOT", "PCI", "AFALG", "DMESG", "DONE"]
    assert r.done and r.pci(device="0x1054")[0]["slot"] == "0000:00:01.0"
    assert r.afalg()[16] == {"phase": "boot", "size": "16", "result": "ok", "enc_sha256": "ab", "dec_sha256": "cd"}
    assert r.dmesg() == ["[    1.9] virtio_crypto virtio0: max_queues: 3, max_size 0x1"]
    assert r.kernel_console == ["[    1.0] random kernel line", "[    2.0] virtio_crypto: interlea",
                                "[    3.0] reboot: Power down"]
    assert r.kernel_complaints() == ["[    2.0] virtio_crypto: interlea"]
    assert not parse("VFU-BOOT\n").done


def test_pattern_and_expected_values():
    # xorshift32(13, 17, 5) from seed 1: 270369, 67634689, 2647435461 -> top bytes 0x00, 0x04, 0x9d
    assert pattern(1, 3) == bytes([0x00, 0x04, 0x9D])
    assert pattern(0, 64) == pattern(0x9E3779B9, 64) and len(set(pattern(7, 4096))) == 256
    plan = CryptoPlan(bytes(16), bytes(16), 1, sizes=(16,))
    enc, dec = plan.expected(16)
    assert plan.mismatches({16: {"result": "ok", "enc_sha256": enc, "dec_sha256": dec}}) == []
    assert plan.mismatches({16: {"result": "ok", "enc_sha256": dec, "dec_sha256": dec}}) == \
        ["16 B: encryption differs from the host"]
    assert plan.mismatches({}) == ["16 B: no result"]
    assert plan.params() == {"key": "00" * 16, "iv": "00" * 16, "seed": 1, "sizes": "16", "reset": 1, "tcrypt": 1}
    assert plan.files() == {}  # no RSA message: no keyctl step


@pytest.mark.guest
def test_qemu_refusing_a_dead_socket_is_reported_at_once(kit, tmp_path):
    result = boot(kit, [VfioUser(tmp_path / "nobody.sock")], timeout=60)
    assert result.returncode != 0 and not result.timed_out and result.seconds < 30
    assert "nobody.sock" in result.stderr, result.stderr
    assert not parse(result.console).markers


@pytest.mark.guest
def test_time_limit_kills_qemu(kit):
    t0 = time.monotonic()
    result = boot(kit, [QemuBuiltinCrypto()], timeout=1.5)
    assert result.timed_out and result.returncode == -9
    assert time.monotonic() - t0 < 10


def test_server_that_cannot_start_is_reported_and_reaped(tmp_path):
    with ServerGroup(tmp_path) as servers:
        with pytest.raises(ServerFailed, match="queues"):
            servers.start("crypto", "--queues", "0")
        (failed,) = servers.servers
    assert failed.returncode not in (None, 0) and gone(failed.pid)


def test_servers_are_stopped_by_pid(tmp_path):
    with ServerGroup(tmp_path) as servers:
        crypto, rpmb = servers.start("crypto"), servers.start("rpmb")
        assert os.path.exists(crypto.socket) and os.path.exists(rpmb.socket) and crypto.alive() and rpmb.alive()
    assert [crypto.returncode, rpmb.returncode] == [0, 0], servers.logs()
    assert gone(crypto.pid) and gone(rpmb.pid)
    assert Path(tmp_path / "state.db").exists()  # both served from one state store


def test_guest_attaches_every_guest_attachable_kind(monkeypatch):
    """The vfu-virtio model's devices come from the registry: crypto and RPMB built in; a kind added through
    VFU_VIRTIO_DEVICES is attached only when it says so (the test-only null kind does not)."""
    assert [k.name for k in guest_kinds()] == ["crypto", "rpmb"]
    monkeypatch.setenv("VFU_VIRTIO_DEVICES", "devices.null")
    assert "null" in kinds() and [k.name for k in guest_kinds()] == ["crypto", "rpmb"]
    with pytest.raises(ValueError, match="null"):
        run_guest(None, "vfu-virtio", CryptoPlan.random(), device_options={"null": ()})


def test_kernels_are_named_and_chosen_by_label(tmp_path):
    roots = []
    for release, suite in (("6.1.0-57-amd64", "bookworm"), ("7.3.4+deb13-amd64", "trixie-backports")):
        root = tmp_path / release
        (root / "lib" / "modules" / release).mkdir(parents=True)
        (root / "lib" / "modules" / release / "modules.dep").write_text("")
        (root / "vmlinuz").write_bytes(b"")
        (root / "kernel.info").write_text(f"release={release}\nsuite={suite}\npackage=linux-image-amd64\n"
                                          f"debs=linux-image-{release}=1\n")
        roots.append(GuestKernel.load(root))
    assert [k.label for k in roots] == ["linux-6.1", "linux-7.3"]
    kit = GuestKit(Path("qemu"), tuple(roots), tmp_path, tmp_path, "tcg", roots[0])
    assert kit.with_kernel("linux-7.3").kernel_release == "7.3.4+deb13-amd64"
    assert kit.with_kernel("6.1.0-57-amd64").kernel is roots[0]
    with pytest.raises(KitMissing, match="linux-5.10"):
        kit.with_kernel("linux-5.10")
    (tmp_path / "6.1.0-57-amd64" / "kernel.info").unlink()
    with pytest.raises(KitMissing, match="kernel.info"):
        GuestKernel.load(tmp_path / "6.1.0-57-amd64")
