"""Imports point one way: the store knows no device kind, ``vfu_virtio.abi`` imports nothing else of the project,
the driver side (``vfu_virtio.client``) nothing of the device side. Read from the source with ``ast`` (imports
inside functions included), with a negative control for the checker itself."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import TOP

#: package -> the vfu_virtio modules (prefixes) its modules must not import. The layers, bottom up (each imports
#: only what is below it; docs/architecture.md): abi and libvfio_user (nothing of ours), pci, store, virtio,
#: devices, server, cli; the driver side (client) beside them imports only abi; the conformance checks (conform)
#: sit on client and abi only; qemu (the guest harness) sits on client and the device registry.
_TOP_LAYERS = ("vfu_virtio.server", "vfu_virtio.cli", "vfu_virtio.commands", "vfu_virtio.control", "vfu_virtio.qemu",
               "vfu_virtio.demo", "vfu_virtio.conform")
#: Every package and top module of the project: what a module importing nothing of it must not import.
_ALL = ("vfu_virtio.abi", "vfu_virtio.devices", "vfu_virtio.client", "vfu_virtio.virtio", "vfu_virtio.store",
        "vfu_virtio.pci", "vfu_virtio.libvfio_user", "vfu_virtio.unixsock", "vfu_virtio.logs", *_TOP_LAYERS)
RULES = {
    "vfu_virtio.abi": ("vfu_virtio.devices", "vfu_virtio.client", "vfu_virtio.virtio", "vfu_virtio.store",
                       "vfu_virtio.pci", "vfu_virtio.libvfio_user", *_TOP_LAYERS),
    "vfu_virtio.libvfio_user": ("vfu_virtio.abi", "vfu_virtio.devices", "vfu_virtio.client", "vfu_virtio.virtio",
                                "vfu_virtio.store", "vfu_virtio.pci", *_TOP_LAYERS),
    "vfu_virtio.pci": ("vfu_virtio.devices", "vfu_virtio.client", "vfu_virtio.virtio", "vfu_virtio.store",
                       "vfu_virtio.libvfio_user", *_TOP_LAYERS),
    "vfu_virtio.store": ("vfu_virtio.devices", "vfu_virtio.client", "vfu_virtio.virtio", "vfu_virtio.abi",
                         "vfu_virtio.pci", "vfu_virtio.libvfio_user", *_TOP_LAYERS),
    "vfu_virtio.virtio": ("vfu_virtio.devices", "vfu_virtio.client", "vfu_virtio.store", "vfu_virtio.libvfio_user",
                          *_TOP_LAYERS),
    "vfu_virtio.devices": ("vfu_virtio.client", "vfu_virtio.pci", "vfu_virtio.libvfio_user", *_TOP_LAYERS),
    "vfu_virtio.client": ("vfu_virtio.devices", "vfu_virtio.store", "vfu_virtio.virtio", "vfu_virtio.pci",
                          "vfu_virtio.libvfio_user", *_TOP_LAYERS),
    "vfu_virtio.conform": ("vfu_virtio.devices", "vfu_virtio.store", "vfu_virtio.virtio", "vfu_virtio.pci",
                           "vfu_virtio.libvfio_user", *(t for t in _TOP_LAYERS if t != "vfu_virtio.conform")),
    "vfu_virtio.server": ("vfu_virtio.devices", "vfu_virtio.client", "vfu_virtio.store", "vfu_virtio.cli",
                          "vfu_virtio.commands", "vfu_virtio.qemu", "vfu_virtio.conform"),
    # beside the layers: socket paths and logging import nothing of the project; the status endpoint only socket
    # paths; the subcommands sit on the driver side, the registry, the store and the endpoint, never on a server
    "vfu_virtio.unixsock": _ALL,
    "vfu_virtio.logs": _ALL,
    "vfu_virtio.control": tuple(m for m in _ALL if m != "vfu_virtio.unixsock"),
    "vfu_virtio.commands": ("vfu_virtio.server", "vfu_virtio.cli", "vfu_virtio.qemu", "vfu_virtio.demo",
                            "vfu_virtio.virtio", "vfu_virtio.pci", "vfu_virtio.libvfio_user", "vfu_virtio.conform"),
}

def imported(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every module ``source`` (the text of ``module``) imports, relative imports resolved."""
    package = module if is_package else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join([*base, node.module] if node.module else base)
            out.add(target)
            out.update(f"{target}.{alias.name}" for alias in node.names)
    return out


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    forbidden = next((bad for pkg, bad in RULES.items() if module == pkg or module.startswith(pkg + ".")), ())
    return sorted(f"{module} imports {name}" for name in imported(source, module, is_package)
                  if any(name == f or name.startswith(f + ".") for f in forbidden))


def project_modules():
    for path in sorted((TOP / "vfu_virtio").rglob("*.py")):
        parts = path.relative_to(TOP).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        yield path, ".".join(parts[:-1] if is_package else parts), is_package


@pytest.mark.parametrize("package", sorted(RULES))
def test_imports_point_one_way(package):
    found = [(path, module, pkg) for path, module, pkg in project_modules() if module.startswith(package)]
    assert found, package
    bad = [v for path, module, pkg in found for v in violations(Path(path).read_text(), module, pkg)]
    assert bad == []


def test_the_checker_sees_relative_lazy_and_absolute_imports():
    source = ("from . import store\nfrom .store import Store\n"
              "def f():\n    from ..devices import registry\n    import vfu_virtio.client.spawn\n")
    assert violations(source, "vfu_virtio.store.fake") == [
        "vfu_virtio.store.fake imports vfu_virtio.client.spawn", "vfu_virtio.store.fake imports vfu_virtio.devices",
        "vfu_virtio.store.fake imports vfu_virtio.devices.registry"]
    assert violations("from ..abi import rpmb\n", "vfu_virtio.client.fake") == []
