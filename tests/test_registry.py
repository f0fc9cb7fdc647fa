"""The device-kind registry, in-process: the built-in kinds as data, kinds from ``VFU_VIRTIO_DEVICES``, refused
definitions and modules, the stored-settings rule, and ``open_device`` on a real store file."""
from __future__ import annotations

import importlib
import logging

import pytest

from vfu_virtio.devices.registry import (BUILTIN, ENV_VAR, DeviceKind, Option, RegistryError, SettingRefused,
                                         load, modules, open_device, settle)
from vfu_virtio.store import StoreLocked, open_namespace

WHERE = "state store s.db: test instance '0'"


def test_builtin_kinds():
    kinds = load(BUILTIN)
    assert [(k.name, k.virtio_id, k.pci_id, k.pci_class, k.pci_class_code, k.guest_attachable)
            for k in kinds.values()] == [("crypto", 20, "1af4:1054", (0x00, 0xFF, 0x00), 0x00FF00, True),
                                         ("rpmb", 28, "1af4:105c", (0x00, 0xFF, 0x00), 0x00FF00, True)]
    crypto, rpmb = kinds["crypto"], kinds["rpmb"]
    assert [(o.flag, o.dest, o.range, o.default, o.fixed) for o in crypto.options] == [
        ("--profile", "profile", None, "standard", True),
        ("--queues", "max_dataqueues", (1, 64), 4, False),
        ("--max-sessions", "max_sessions", (1, 1 << 20), 1024, False),
        ("--max-size", "max_size", (1, 1 << 30), 1 << 20, False),
        ("--bulk-threshold", "bulk_threshold", (0, (1 << 32) - 1), 256 << 10, False),
        ("--max-rsa-keygen-bits", "max_rsa_keygen_bits", (1024, 8192), 4096, False),
        ("--max-dsa-keygen-bits", "max_dsa_keygen_bits", (1024, 4096), 2048, False),
        ("--max-dh-param-bits", "max_dh_param_bits", (512, 8192), 1024, False)]
    assert [(o.flag, o.dest, o.range, o.default, o.fixed) for o in rpmb.options] == [
        ("--capacity", "capacity", (1, 128), 1, True), ("--max-wr-cnt", "max_wr_cnt", (0, 255), 1, False),
        ("--max-rd-cnt", "max_rd_cnt", (0, 255), 1, False)]
    assert crypto.store_tables == "" and "rpmb_state" in rpmb.store_tables and "rpmb_block" in rpmb.store_tables
    for kind in kinds.values():
        importlib.import_module(kind.client_module)


def test_environment_names_extra_kinds():
    assert modules({}) == BUILTIN
    assert modules({ENV_VAR: " devices.null , ,"}) == (*BUILTIN, "devices.null")
    kinds = load(modules({ENV_VAR: "devices.null"}))
    assert list(kinds) == ["crypto", "rpmb", "null"]
    null = kinds["null"]
    assert (null.virtio_id, null.pci_id, null.pci_class_code, null.guest_attachable) == (63, "1af4:107f", 0xFF0000,
                                                                                         False)


@pytest.mark.parametrize("names, message", [
    ((*BUILTIN, "no_such_kind_module"), f"'no_such_kind_module' .*{ENV_VAR}.* cannot be imported"),
    ((*BUILTIN, "json"), "'json' has no KIND"),
    ((*BUILTIN, BUILTIN[0]), "kind 'crypto' .* clashes with kind 'crypto'"),
])
def test_bad_kind_modules_are_refused(names, message):
    with pytest.raises(RegistryError, match=message):
        load(names)


def _kind(**changes) -> DeviceKind:
    fields = dict(name="test", virtio_id=0x3E, pci_class=(0xFF, 0, 0), summary="a test kind", factory=None,
                  options=(Option("--size", "size", "Size in bytes.", 4, range=(1, 8), unit="bytes"),
                           Option("--mode", "mode", "Mode.", "a", choices=("a", "b")),
                           Option("--slots", "slots", "Slots, fixed.", 1, range=(1, 4), unit="x 2 slots", fixed=True)))
    fields.update(changes)
    return DeviceKind(**fields)


@pytest.mark.parametrize("make", [
    lambda: Option("--x", "x", "X.", 1),  # neither range nor choices
    lambda: Option("--x", "x", "X.", 1, range=(0, 2), choices=("1",)),
    lambda: Option("--x", "x", "X.", 3, range=(0, 2)),  # default outside the range
    lambda: Option("x", "x", "X.", 1, range=(0, 2)),  # not a --flag
    lambda: _kind(name="Test"),
    lambda: _kind(virtio_id=64),  # beyond PCI device id 0x107f
    lambda: _kind(pci_class=(0x100, 0, 0)),
    lambda: _kind(summary="two\nlines"),
    lambda: _kind(options=(Option("--a", "a", "A.", 1, range=(0, 1)), Option("--a", "b", "B.", 1, range=(0, 1)))),
    lambda: _kind(store_tables="CREATE TABLE t(x)"),  # would fail on a store that has it
])
def test_inconsistent_definitions_are_refused(make):
    with pytest.raises(ValueError):
        make()


def test_settle_given_wins_left_out_takes_stored_else_default(caplog):
    kind = _kind()
    assert settle(kind, {}, {}, WHERE) == {"size": 4, "mode": "a", "slots": 1}
    assert settle(kind, {"size": 2, "mode": "b", "slots": 3}, {"size": None}, WHERE) == {"size": 2, "mode": "b",
                                                                                          "slots": 3}
    with caplog.at_level(logging.INFO, "vfu_virtio.devices.registry"):
        assert settle(kind, {"size": 2}, {"size": 8, "mode": "b"}, WHERE) == {"size": 8, "mode": "b", "slots": 1}
    assert caplog.messages == [f"{WHERE}: size changes from the stored 2 to 8"]


def test_settle_refuses_a_changed_fixed_option():
    kind = _kind()
    assert settle(kind, {}, {"slots": 3}, WHERE)["slots"] == 3  # nothing stored yet: the creation value
    assert settle(kind, {"slots": 3}, {"slots": 3}, WHERE)["slots"] == 3
    with pytest.raises(SettingRefused) as e:
        settle(kind, {"slots": 3}, {"slots": 2}, WHERE)
    assert str(e.value) == (f"{WHERE} has slots 3 (x 2 slots); it cannot become 2 (--slots is fixed when the "
                            "instance is created)")


@pytest.mark.parametrize("stored", [{"size": 9}, {"size": "4"}, {"mode": "c"}, {"slots": 0}])
def test_settle_refuses_stored_values_outside_the_limits(stored):
    with pytest.raises(SettingRefused, match=f"{WHERE}: {next(iter(stored))} .* is not"):
        settle(_kind(), stored, {}, WHERE)


def test_settle_refuses_names_that_are_no_option():
    with pytest.raises(ValueError, match="no option for"):
        settle(_kind(), {}, {"queues": 2}, WHERE)


def test_open_device_stores_the_settings_and_holds_the_namespace(tmp_path):
    rpmb = load(BUILTIN)["rpmb"]
    path = str(tmp_path / "s.db")
    dev = open_device(rpmb, path, "a", {"capacity": 2, "max_wr_cnt": None, "max_rd_cnt": 0})
    assert dev.device_id == 28 and dev.config_space() == bytes([2, 1, 0])
    with pytest.raises(StoreLocked):
        open_namespace(path, "rpmb", "a")
    dev.close()
    ns = open_namespace(path, "rpmb", "a")  # released by close
    assert ns.config() == {"capacity": 2, "max_wr_cnt": 1, "max_rd_cnt": 0}
    ns.close()
    with pytest.raises(SettingRefused, match="has capacity 2 .*cannot become 3"):
        open_device(rpmb, path, "a", {"capacity": 3})
    dev = open_device(rpmb, path, "a", {"max_wr_cnt": 9})  # the refusal left the namespace free
    assert dev.config_space() == bytes([2, 9, 0])
    dev.close()


def test_open_device_checks_the_factory_builds_the_kind(tmp_path):
    crypto = load(BUILTIN)["crypto"]
    liar = _kind(name="liar", virtio_id=0x3E, options=crypto.options, factory=crypto.factory)
    with pytest.raises(RegistryError, match="virtio id 20, not 62"):
        open_device(liar, str(tmp_path / "s.db"))
    open_namespace(str(tmp_path / "s.db"), "liar", "0").close()  # not left locked
