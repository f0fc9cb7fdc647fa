"""vfu-virtio as a package: its metadata, ``pip install`` of the tree into a fresh venv (the ``vfu-virtio`` command
and a device served from the installed copy, away from the source tree), and the libvfio-user loader: a library the
project's recipe stamped is found wherever it was installed, any other build is passed over and named, and when none
is found the one-line message says where it looked and how to build it."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from conftest import TOP
from vfu_virtio import __version__
from vfu_virtio.libvfio_user import _lib


def test_metadata():
    meta = tomllib.loads((TOP / "pyproject.toml").read_text())["project"]
    assert meta["license"] == "BSD-3-Clause" and (TOP / "LICENSE").read_text().startswith("BSD 3-Clause License")
    assert meta["readme"] == "README.md" and meta["dynamic"] == ["version"]
    assert meta["urls"] and all(u.startswith("https://") for u in meta["urls"].values())
    assert "Programming Language :: Python :: 3.11" in meta["classifiers"]
    r = subprocess.run([sys.executable, "-m", "vfu_virtio", "--version"], capture_output=True, text=True, cwd=TOP)
    assert r.stdout == f"vfu-virtio {__version__}\n"


def stamped_copy(where: Path, stamp: str = _lib.BUILD_STAMP) -> Path:
    """The project's libvfio-user build copied to ``where`` with the stamp ``stamp`` beside it."""
    where.mkdir(parents=True, exist_ok=True)
    shutil.copy(os.path.realpath(_lib.locate()), where / _lib.LIBRARY_NAME)
    (where / _lib.STAMP_NAME).write_text(stamp + "\n")
    return where / _lib.LIBRARY_NAME


def test_the_loader_finds_a_stamped_build_wherever_it_was_installed(tmp_path, monkeypatch):
    lib = stamped_copy(tmp_path / "opt" / "lib")
    monkeypatch.setattr(_lib, "SOURCE_TREE", tmp_path / "installed")  # as from an installed copy, not a checkout
    assert _lib.locate({"LD_LIBRARY_PATH": f"/nonexistent:{lib.parent}"}) == lib
    assert _lib.locate({"VMKIT": str(tmp_path / "opt")}) == lib
    # a symlink into the build directory: the stamp is beside the file it resolves to
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / _lib.LIBRARY_NAME).symlink_to(lib)
    assert _lib.locate({"LIBVFIO_USER_SO": str(tmp_path / "elsewhere" / _lib.LIBRARY_NAME)}) == \
        tmp_path / "elsewhere" / _lib.LIBRARY_NAME


def test_other_builds_are_passed_over_and_named(tmp_path, monkeypatch):
    other = stamped_copy(tmp_path / "old", _lib.PINNED_REVISION)  # the unpatched revision
    good = stamped_copy(tmp_path / "good")
    monkeypatch.setattr(_lib, "SOURCE_TREE", tmp_path / "installed")
    assert _lib.locate({"LD_LIBRARY_PATH": f"{other.parent}:{good.parent}"}) == good
    with pytest.raises(_lib.LibraryNotFound) as e:
        _lib.locate({"LD_LIBRARY_PATH": str(other.parent)})
    assert f"found only other builds ({other} is build {_lib.PINNED_REVISION})" in str(e.value)
    with pytest.raises(_lib.LibraryNotFound, match=f"LIBVFIO_USER_SO={other} is libvfio-user build "):
        _lib.locate({"LIBVFIO_USER_SO": str(other), "LD_LIBRARY_PATH": str(good.parent)})  # named: no fallback


def test_no_library_says_where_it_looked_and_how_to_build_it(tmp_path, monkeypatch):
    monkeypatch.setattr(_lib, "SOURCE_TREE", tmp_path / "installed")  # as from an installed copy, not a checkout
    with pytest.raises(_lib.LibraryNotFound) as e:
        _lib.locate({"LD_LIBRARY_PATH": str(tmp_path)})
    message = str(e.value)
    assert "\n" not in message and "(looked in " in message and f" {tmp_path}, " in message
    assert "build it with the project's recipe: in a vfu-virtio source tree run `VMKIT=DIR bash " \
           "native/libvfio-user.sh`" in message
    assert "set LIBVFIO_USER_SO=DIR/lib/libvfio-user.so.0" in message


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh venv with the tree installed by ``pip install`` (a copy of the tracked files: the build leaves
    nothing in the source tree)."""
    root = tmp_path_factory.mktemp("pkg")
    src = root / "src"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=TOP, capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, files):
        target = src / os.fsdecode(name)
        if (TOP / os.fsdecode(name)).is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(TOP / os.fsdecode(name), target)
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True)
    r = subprocess.run([str(root / "venv" / "bin" / "pip"), "install", "-q", str(src)], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return root / "venv"


def test_pip_install_into_a_fresh_venv_serves_a_device(venv, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("LIBVFIO_USER_SO", "VMKIT", "PYTHONPATH")}
    exe = venv / "bin" / "vfu-virtio"
    r = subprocess.run([str(exe), "--version"], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert r.stdout == f"vfu-virtio {__version__}\n"
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import vfu_virtio; print(vfu_virtio.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path, env=env).stdout
    assert where.startswith(str(venv)), where
    # no library anywhere the installed copy looks: one line, nothing written
    r = subprocess.run([str(exe), "crypto", "--socket", str(tmp_path / "c.sock"), "--state", str(tmp_path / "s.db")],
                       capture_output=True, text=True, cwd=tmp_path, env=env)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "build it with the project's recipe" in r.stderr
    assert not (tmp_path / "s.db").exists()
    # the stamped build installed in a directory of its own, found through LD_LIBRARY_PATH
    lib = stamped_copy(tmp_path / "lib")
    env["LD_LIBRARY_PATH"] = str(lib.parent)
    server = subprocess.Popen([str(exe), "--ready-fd", "1", "crypto", "--socket", str(tmp_path / "c.sock"), "--state",
                               str(tmp_path / "s.db"), "--queues", "1"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, cwd=tmp_path, env=env)
    try:
        assert server.stdout.readline() == b"ready\n", server.stderr.read()
        r = subprocess.run([str(exe), "crypto-client", "--socket", str(tmp_path / "c.sock"), "hash", "--algo",
                            "sha-256", "--data-hex", "616263"], capture_output=True, text=True, env=env, timeout=60)
        assert r.stdout == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n", r.stderr
    finally:
        server.terminate()
        assert server.wait(timeout=15) == 0
