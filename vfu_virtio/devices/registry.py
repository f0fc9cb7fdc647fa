"""The device kinds vfu-virtio serves, as data: one :class:`DeviceKind` per kind, and how an instance is opened.

A kind is one package exposing ``KIND = DeviceKind(...)``: its name (the ``vfu-virtio <name>`` command), virtio
device id, PCI class code, one-line summary, serve options (:class:`Option`: data, turned into click options by
``vfu_virtio.cli``), factory, store tables and the module of its host-side client. The built-in kinds are the
modules of :data:`BUILTIN`, one line each; more come from the modules named in the environment variable
:data:`ENV_VAR` (comma-separated importable module names, loaded after the built-in ones), so a new kind is one
folder plus one line here, or one entry in the environment for a kind kept outside the project.

Stored settings, one rule for every kind (:func:`settle`): an option given on the command line wins and is
stored with the instance; an option left out takes the stored value, else its default; an option fixed at
creation (RPMB ``--capacity``) is refused if it differs from the stored value. :func:`open_device` applies the
rule on the instance's store namespace and builds the device.

Imports point one way: the kinds import this module and ``vfu_virtio.store``; the store knows no kind.
"""
from __future__ import annotations

import importlib
import logging
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Iterable, Mapping

from vfu_virtio.store import Namespace, open_namespace
from vfu_virtio.store.store import kind_statements
from vfu_virtio.abi.virtio import VIRTIO_PCI_DEVICE_ID_BASE, VIRTIO_PCI_VENDOR_ID
from vfu_virtio.virtio.device import VirtioDevice

log = logging.getLogger("vfu_virtio.devices.registry")

#: The built-in kinds: one importable module (exposing ``KIND``) per line.
BUILTIN = (
    "vfu_virtio.devices.crypto",
    "vfu_virtio.devices.rpmb",
)

#: Environment variable naming extra kind modules, comma-separated (e.g. ``VFU_VIRTIO_DEVICES=devices.null``).
ENV_VAR = "VFU_VIRTIO_DEVICES"

#: Highest virtio device id a modern PCI function can carry: PCI device ids 0x1040..0x107f
#: ("PCI Device Discovery").
MAX_VIRTIO_ID = 0x3F

_NAME = re.compile(r"[a-z][a-z0-9-]*")
_FLAG = re.compile(r"--[a-z][a-z0-9-]*")

Value = int | str
#: ``factory(namespace, **settings)``: a ready device on the instance's (locked) store namespace.
Factory = Callable[..., VirtioDevice]


class RegistryError(Exception):
    """A kind module cannot be loaded, exposes no :class:`DeviceKind`, or clashes with another kind."""


class SettingRefused(ValueError):
    """A setting breaks the stored-settings rule (fixed at creation) or its option's limits; the message
    names the store, the instance, the setting and both values."""


@dataclass(frozen=True)
class Option:
    """One serve option of a kind, as data.

    ``flag`` (``"--queues"``), ``dest`` (the factory keyword and the stored setting's name), ``help`` (one
    sentence naming the unit), ``default``, exactly one of ``range`` (inclusive integer bounds) or ``choices``
    (strings), ``unit`` (short, for messages: ``"x 128 KiB"``), ``fixed`` (fixed when the instance is
    created). ValueError on an inconsistent definition.
    """

    flag: str
    dest: str
    help: str
    default: Value
    range: tuple[int, int] | None = None
    choices: tuple[str, ...] | None = None
    unit: str = ""
    fixed: bool = False

    def __post_init__(self) -> None:
        if not _FLAG.fullmatch(self.flag) or not self.dest.isidentifier():
            raise ValueError(f"option {self.flag!r} -> {self.dest!r}: a --lower-case flag and an identifier")
        if (self.range is None) == (self.choices is None):
            raise ValueError(f"option {self.flag}: give exactly one of range and choices")
        if self.range is not None and not self.range[0] <= self.range[1]:
            raise ValueError(f"option {self.flag}: empty range {self.range}")
        problem = self.problem(self.default)
        if problem:
            raise ValueError(f"option {self.flag}: default {problem}")

    def limits(self) -> str:
        """The accepted values in words: ``"1..64"`` or ``"one of a, b"``."""
        if self.range is not None:
            return f"{self.range[0]}..{self.range[1]}"
        return "one of " + ", ".join(self.choices)

    def problem(self, value: object) -> str | None:
        """Why ``value`` is not acceptable for this option, or None."""
        if self.range is not None:
            ok = isinstance(value, int) and not isinstance(value, bool) and self.range[0] <= value <= self.range[1]
        else:
            ok = value in self.choices
        return None if ok else f"{value!r} is not {self.limits()}"


@dataclass(frozen=True)
class DeviceKind:
    """One kind of device (see the module docstring).

    ``name`` (lower-case, the CLI subcommand and the store namespace kind), ``virtio_id`` (1..63),
    ``pci_class`` (base class, subclass, programming interface), ``summary`` (one line), ``factory``
    (``factory(namespace, **settings) -> VirtioDevice``, settings keyed by the options' ``dest``),
    ``options``, ``store_tables`` (SQL of ``CREATE TABLE IF NOT EXISTS`` statements the kind's instances
    need; ``""`` for none), ``client_module`` (importable module of its host-side client, or None),
    ``guest_attachable`` (the guest harness attaches one to every ``vfu-virtio`` boot), ``inspect``
    (``inspect(db, namespace_id) -> {name: value}``: what the kind keeps in its own tables for one instance, in words,
    from a read-only connection, for ``vfu-virtio info``; never a secret; None when it keeps nothing). ValueError on
    an inconsistent definition.
    """

    name: str
    virtio_id: int
    pci_class: tuple[int, int, int]
    summary: str
    factory: Factory
    options: tuple[Option, ...] = ()
    store_tables: str = ""
    client_module: str | None = None
    guest_attachable: bool = False
    inspect: Callable[..., dict] | None = None

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"kind name {self.name!r}: lower-case letters, digits and '-', a letter first")
        if not 1 <= self.virtio_id <= MAX_VIRTIO_ID:
            raise ValueError(f"kind {self.name}: virtio id {self.virtio_id} is outside 1..{MAX_VIRTIO_ID}")
        if len(self.pci_class) != 3 or not all(0 <= b <= 0xFF for b in self.pci_class):
            raise ValueError(f"kind {self.name}: PCI class {self.pci_class} is not three bytes")
        if not self.summary or "\n" in self.summary:
            raise ValueError(f"kind {self.name}: the summary is one non-empty line")
        for attr in ("flag", "dest"):
            names = [getattr(o, attr) for o in self.options]
            if len(set(names)) != len(names):
                raise ValueError(f"kind {self.name}: two options share a {attr}")
        kind_statements([self.store_tables])  # ValueError unless CREATE ... IF NOT EXISTS only

    @property
    def pci_id(self) -> str:
        """``"1af4:1054"``: PCI vendor and device id (0x1040 + virtio id, a modern-only function)."""
        return f"{VIRTIO_PCI_VENDOR_ID:04x}:{VIRTIO_PCI_DEVICE_ID_BASE + self.virtio_id:04x}"

    @property
    def pci_class_code(self) -> int:
        """The 24-bit class code, ``0x00ff00`` for (0x00, 0xFF, 0x00)."""
        base, sub, prog_if = self.pci_class
        return base << 16 | sub << 8 | prog_if


def modules(environ: Mapping[str, str] = os.environ) -> tuple[str, ...]:
    """The kind modules to load: :data:`BUILTIN`, then those named in ``environ[ENV_VAR]``."""
    extra = (m.strip() for m in environ.get(ENV_VAR, "").split(","))
    return BUILTIN + tuple(m for m in extra if m)


@lru_cache(maxsize=8)
def load(names: tuple[str, ...]) -> dict[str, DeviceKind]:
    """``{name: kind}`` of the ``KIND`` of each module in ``names``, in that order.

    Raises :class:`RegistryError` (one line naming the module) if a module cannot be imported, has no
    ``KIND`` of type :class:`DeviceKind`, or repeats another kind's name or virtio id.
    """
    kinds: dict[str, DeviceKind] = {}
    for name in names:
        try:
            module = importlib.import_module(name)
        except ImportError as e:
            raise RegistryError(f"device kind module {name!r} (built in, or named in {ENV_VAR}) cannot be "
                                f"imported: {e}") from e
        kind = getattr(module, "KIND", None)
        if not isinstance(kind, DeviceKind):
            raise RegistryError(f"device kind module {name!r} has no KIND = DeviceKind(...)")
        for other in kinds.values():
            if kind.name == other.name or kind.virtio_id == other.virtio_id:
                raise RegistryError(f"device kind module {name!r}: kind {kind.name!r} (virtio id {kind.virtio_id})"
                                    f" clashes with kind {other.name!r} (virtio id {other.virtio_id})")
        kinds[kind.name] = kind
    return kinds


def kinds() -> dict[str, DeviceKind]:
    """Every registered kind: :func:`load` of :func:`modules` (loaded once per module list; a new dict)."""
    return dict(load(modules()))


def settle(kind: DeviceKind, stored: Mapping[str, object], given: Mapping[str, Value | None],
           where: str) -> dict[str, Value]:
    """The settings of an instance of ``kind`` under the stored-settings rule (see the module docstring).

    ``stored``: the namespace's configuration; ``given``: ``{dest: value or None (left out)}``; ``where``
    names the instance in messages (``"state store /x.db: rpmb instance '0'"``). Returns a value for every
    option. A given value that changes a stored one is logged. Raises :class:`SettingRefused` for a fixed
    option given another value than the stored one, or a resulting value outside its option's limits (a
    stored value nobody could have given); ValueError for a ``given`` name that is no option of ``kind``.
    """
    unknown = set(given) - {o.dest for o in kind.options}
    if unknown:
        raise ValueError(f"kind {kind.name} has no option for {sorted(unknown)}")
    settings: dict[str, Value] = {}
    for opt in kind.options:
        old, value = stored.get(opt.dest), given.get(opt.dest)
        if value is None:
            value = opt.default if old is None else old
        elif old is not None and old != value:
            if opt.fixed:
                unit = f" ({opt.unit})" if opt.unit else ""
                raise SettingRefused(f"{where} has {opt.dest} {old}{unit}; it cannot become {value} "
                                     f"({opt.flag} is fixed when the instance is created)")
            log.info("%s: %s changes from the stored %r to %r", where, opt.dest, old, value)
        problem = opt.problem(value)
        if problem:
            raise SettingRefused(f"{where}: {opt.dest} {problem}")
        settings[opt.dest] = value
    return settings


def open_device(kind: DeviceKind, state: str, instance: str = "0",
                given: Mapping[str, Value | None] | None = None) -> VirtioDevice:
    """Open ``(kind.name, instance)`` in the state store ``state`` (created if absent, with the kind's
    tables), :func:`settle` its settings, build the device and store the settings.

    The device holds the namespace (locked until ``device.close()``, which also releases it). Raises
    ``vfu_virtio.store.StoreError`` subclasses (locked, rolled back, unreadable store),
    :class:`SettingRefused`, the factory's ValueError, and :class:`RegistryError` if the factory built a
    device of another virtio id than the kind's.
    """
    ns: Namespace = open_namespace(state, kind.name, instance, [kind.store_tables] if kind.store_tables else [])
    try:
        settings = settle(kind, ns.config(), given or {}, f"state store {ns.store.path}: {kind.name} instance "
                                                          f"{instance!r}")
        device = kind.factory(ns, **settings)
    except BaseException:
        ns.close()
        raise
    try:
        if device.device_id != kind.virtio_id:
            raise RegistryError(f"kind {kind.name}: the factory built a device of virtio id {device.device_id}, "
                                f"not {kind.virtio_id}")
        ns.save_config(settings)
    except BaseException:
        try:
            device.close()
        finally:
            ns.close()
        raise
    device_close = device.close

    def close() -> None:
        try:
            device_close()
        finally:
            ns.close()  # a no-op when the device released it already
    device.close = close
    return device


def described(kinds: Iterable[DeviceKind]) -> list[dict[str, str]]:
    """One row per kind for listings: ``kind``, ``virtio id``, ``PCI id``, ``class``, ``summary``,
    ``options`` (``--flag limits (default[, fixed])`` joined by ``"; "``)."""
    rows = []
    for k in kinds:
        opts = "; ".join(f"{o.flag} {o.limits()} ({o.default}{', fixed' if o.fixed else ''})" for o in k.options)
        rows.append({"kind": k.name, "virtio id": str(k.virtio_id), "PCI id": k.pci_id,
                     "class": f"0x{k.pci_class_code:06x}", "summary": k.summary, "options": opts or "-"})
    return rows
