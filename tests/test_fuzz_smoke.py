"""The CI smoke run of the project's fuzz targets (``vfu_virtio.fuzz``): each target runs under atheris/libFuzzer
from its seed inputs and then :data:`RUNS` more from a fixed random seed, and must end without a finding (its seeds
are checked to reach the code they were written for); the negative control, a target with a
planted crash, must end with one (its input written to the findings directory), so the harness is shown able to
report. Long runs: ``scripts/fuzz``. Skipped without atheris (the ``fuzz`` extra), except under CI.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

from conftest import TOP
from vfu_virtio.fuzz import TARGETS
from vfu_virtio.fuzz.__main__ import findings, load_targets

RUNS = 400

load_targets(instrument=False)


@pytest.fixture(autouse=True)
def atheris_present():
    if importlib.util.find_spec("atheris") is None:
        if os.environ.get("CI"):
            raise RuntimeError("atheris is missing: scripts/setup installs the fuzz extra")
        pytest.skip("atheris is not installed (pip install -e .[fuzz])")


def smoke(name: str, tmp_path) -> tuple[subprocess.CompletedProcess, list]:
    out, corpus = tmp_path / "findings", tmp_path / "corpus"
    out.mkdir()
    TARGETS[name].write_seeds(corpus)
    r = subprocess.run([sys.executable, "-m", "vfu_virtio.fuzz", "run", name, str(corpus), f"-runs={RUNS}", "-seed=1",
                        f"-artifact_prefix={out}/"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       cwd=TOP, timeout=240)
    return r, findings(out)


@pytest.mark.parametrize("name", [n for n, t in TARGETS.items() if not t.control])
def test_target_runs_without_a_finding(name, tmp_path):
    r, found = smoke(name, tmp_path)
    assert r.returncode == 0 and not found, r.stdout[-3000:]
    assert f"stat::number_of_executed_units: {RUNS}" in r.stdout


def test_negative_control_is_reported(tmp_path):
    (name,) = [n for n, t in TARGETS.items() if t.control]
    r, found = smoke(name, tmp_path)
    assert r.returncode != 0 and "planted crash reached" in r.stdout
    assert len(found) == 1 and found[0].name.startswith("crash-") and found[0].read_bytes()[:1] == b"!"


def test_every_target_names_modules_that_exist():
    for t in TARGETS.values():
        assert t.modules and all(importlib.util.find_spec(m) for m in t.modules), t.name


def test_seeds_reach_what_they_were_written_for():
    """The seeds start the fuzzer deep: a ring's chains are popped, the RPMB device answers, and a whole virtio
    initialisation over vfio-user ends with the echo device's requests in the used ring."""
    from vfu_virtio.fuzz import targets as T
    from vfu_virtio.fuzz.coverage import replay

    def covered(name: str, module: str) -> float:
        t = TARGETS[name]
        return next(m.percent for m in replay(t.fn, t.seeds(), t.modules) if m.module == module)

    assert covered("split-ring", "vfu_virtio.virtio.split") > 80
    assert covered("packed-ring", "vfu_virtio.virtio.packed") > 80
    assert covered("rpmb-device", "vfu_virtio.devices.rpmb.device") > 60
    assert covered("vfio-user", "vfu_virtio.virtio.transport") > 50
    used = os.pread(T._server.fds[0], 8, 0x200)  # used ring of the seed's queue 0: flags, idx 2, element 0
    assert used == bytes.fromhex("0000" "0200" "00000000")
    assert covered("crypto-standard", "vfu_virtio.devices.crypto.profiles.standard") > 60
    assert covered("crypto-standard", "vfu_virtio.devices.crypto.services") > 55
    assert covered("der-keys", "vfu_virtio.devices.crypto.keys") > 70


def test_every_crypto_profile_is_a_target():
    """The crypto targets come from the profile registry: a profile added to it is fuzzed without another line."""
    from vfu_virtio.devices.crypto import profiles
    assert {f"crypto-{name}" for name in profiles.available()} <= set(TARGETS)


def test_der_keys_oracle_reports_a_reader_that_ignores_trailing_bytes(monkeypatch):
    """Negative control of the der-keys oracle: a key reader that drops a byte after the key is a finding."""
    from vfu_virtio.devices.crypto import keys
    from vfu_virtio.fuzz import Finding
    from vfu_virtio.fuzz import targets as T
    strict = keys.rsa_public_key
    monkeypatch.setattr(keys, "rsa_public_key", lambda der: strict(der[:-1] if der.endswith(b"\0") else der))
    seed = next(s for s in TARGETS["der-keys"].seeds() if s[0] == 1)
    with pytest.raises(Finding, match="byte after the key"):
        T.der_keys(seed)
