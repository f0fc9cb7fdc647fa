"""The loader knows what it loads: libvfio-user at the pinned revision with the project's patch.

``native/libvfio-user.sh`` stamps ``libvfio-user.commit`` with the revision and the patch's sha256 prefix;
:data:`vfu_virtio.libvfio_user._lib.BUILD_STAMP` must equal what the recipe stamps for the patch file in the tree,
and a library stamped otherwise (the unpatched revision) is refused.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys

from conftest import TOP
from vfu_virtio.libvfio_user import _lib

PATCH = TOP / "native" / "libvfio-user-hostile-peers.patch"


def test_the_binding_expects_the_patch_in_the_tree():
    assert _lib.PATCH_SHA256_16 == hashlib.sha256(PATCH.read_bytes()).hexdigest()[:16]
    stamp = subprocess.run(["bash", str(TOP / "native" / "libvfio-user.sh"), "--stamp"], capture_output=True,
                           text=True, check=True, env={"PATH": os.environ["PATH"]}).stdout.strip()
    assert stamp == _lib.BUILD_STAMP == f"{_lib.PINNED_REVISION}+{_lib.PATCH_SHA256_16}"


def test_the_patch_says_why_and_names_its_revision():
    header = PATCH.read_text().split("\ndiff ", 1)[0]
    assert _lib.PINNED_REVISION in header and "Why:" in header and "TD-DMA-FD" in header


def load_from(tmp_path, stamp: str) -> subprocess.CompletedProcess:
    lib = _lib.load_library()
    real = os.path.realpath(lib._name)
    shutil.copy(real, tmp_path / "libvfio-user.so.0")
    (tmp_path / "libvfio-user.commit").write_text(stamp + "\n")
    env = {**os.environ, "LIBVFIO_USER_SO": str(tmp_path / "libvfio-user.so.0")}
    return subprocess.run([sys.executable, "-c", "from vfu_virtio.libvfio_user import load_library; load_library()"],
                          capture_output=True, text=True, env=env, cwd=TOP)


def test_an_unpatched_build_is_refused(tmp_path):
    r = load_from(tmp_path, _lib.PINNED_REVISION)
    assert r.returncode != 0 and "LibraryNotFound" in r.stderr and _lib.BUILD_STAMP in r.stderr
    assert load_from(tmp_path, _lib.BUILD_STAMP).returncode == 0  # control: the same file, stamped as built
