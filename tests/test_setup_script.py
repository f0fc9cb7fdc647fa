"""``scripts/setup`` never loses what an earlier, larger setup made: ``--host-only`` after a full setup keeps the guest
kit's variables in ``.vmkit/env.sh`` (it used to rewrite the file down to two lines, and the guest demo and tests then
failed with "VFU_QEMU is unset"). Run for real on a copy of the scripts, with every step's stamp in place so nothing
is downloaded or built."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

from conftest import TOP
from vfu_virtio.libvfio_user import _lib

FULL_ENV = """export VMKIT={kit}
export LIBVFIO_USER_SO={kit}/lib/libvfio-user.so.0
export VFU_QEMU={kit}/bin/qemu-system-x86_64
export VFU_GUEST_KERNELS={kit}/kernels/6.1.0-57-amd64:{kit}/kernels/7.3.4+deb13-amd64
export VFU_GUEST_BIN={kit}/bin
export VFU_DPDK={kit}/dpdk
export VFU_ACCEL=${{VFU_ACCEL:-tcg}}
"""


def provisioned(tmp_path):
    """A copy of the scripts with a kit whose host steps are all stamped done (no network, no build)."""
    top = tmp_path / "tree"
    for part in ("scripts", "native"):
        shutil.copytree(TOP / part, top / part)
    shutil.copy(TOP / "pyproject.toml", top / "pyproject.toml")
    (top / ".venv" / "bin").mkdir(parents=True)
    (top / ".venv" / "bin" / "python").symlink_to(sys.executable)
    kit = tmp_path / "kit"
    (kit / "lib").mkdir(parents=True)
    (kit / "lib" / "libvfio-user.commit").write_text(_lib.BUILD_STAMP + "\n")
    for step in ("hostdeps", "libvfio-user"):
        (kit / f".stamp-{step}").touch()
    (kit / ".stamp-pip").write_text("fuzz,test\n")  # written after pyproject.toml: nothing to reinstall
    return top, kit


def setup(top, kit, *args):
    env = {k: v for k, v in os.environ.items() if k not in ("VFU_QEMU", "LIBVFIO_USER_SO")}
    return subprocess.run(["bash", str(top / "scripts" / "setup"), *args], capture_output=True, text=True,
                          env={**env, "VMKIT": str(kit)}, timeout=120)


def test_host_only_after_a_full_setup_keeps_the_guest_kit(tmp_path):
    top, kit = provisioned(tmp_path)
    (kit / "env.sh").write_text(FULL_ENV.format(kit=kit))
    r = setup(top, kit, "--host-only")
    assert r.returncode == 0, r.stdout + r.stderr
    lines = (kit / "env.sh").read_text().splitlines()
    assert sorted(lines) == sorted(FULL_ENV.format(kit=kit).splitlines())
    # and the file still sets what the guest tests need
    out = subprocess.run(["bash", "-c", f". {kit}/env.sh && echo $VFU_QEMU $VFU_GUEST_KERNELS"], capture_output=True,
                         text=True).stdout
    assert out.startswith(f"{kit}/bin/qemu-system-x86_64 {kit}/kernels/6.1.0-57-amd64:")


def test_a_first_host_only_setup_writes_the_host_lines(tmp_path):
    top, kit = provisioned(tmp_path)
    r = setup(top, kit, "--host-only")
    assert r.returncode == 0, r.stdout + r.stderr
    assert (kit / "env.sh").read_text() == f"export VMKIT={kit}\nexport LIBVFIO_USER_SO={kit}/lib/libvfio-user.so.0\n"


def test_unknown_options_are_refused(tmp_path):
    top, kit = provisioned(tmp_path)
    r = setup(top, kit, "--hostonly")
    assert r.returncode == 2 and r.stderr == "setup: unknown option --hostonly (known: --host-only, --bench)\n"
