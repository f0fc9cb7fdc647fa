"""``vfu-virtio conform``: the catalogue passes on vfu-virtio and fails on its broken variants, and survives a device
that hangs, closes its socket or answers nonsense.

* Every check PASSes on real vfu-virtio servers -- crypto (every crypto profile) and RPMB, split and packed
  virtqueues (fixture ``ring``: ``--ring split`` withholds VIRTIO_F_RING_PACKED, ``--ring packed`` requires it) --
  except the SKIPs :func:`expected_skips` names (the other device type, the format the server does not serve).
* Every check has its negative control in :data:`NEGATIVE`: a server made defective on purpose (``python -m
  devices.defective DEFECT``, ``tests/devices/defective``) or a fault injected with ``--inject``, on which that check
  reports FAIL. The table covers the whole catalogue.
* The command: exit statuses, ``--list``, ``--only``/``--skip``, ``--json``, ``--junit``; a socket nobody answers
  on, one closed at once, one answering garbage, and a device that stops answering in the middle of a run all give
  ERROR lines within the time limit, no traceback; a vfio-user device that is not a virtio device (libvfio-user's
  own sample ``gpio-pci-idio-16``, built by ``native/libvfio-user.sh`` into ``$VMKIT/bin``) is named and left alone.
"""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import SERVER_ENV, TOP
from vfu_virtio.abi.rpmb import FRAME_SIZE, VIRTIO_RPMB_REQ_PROGRAM_KEY, VIRTIO_RPMB_REQ_RESULT_READ, Frame
from vfu_virtio.client.rpmb import RpmbClient
from vfu_virtio.client.spawn import Server
from vfu_virtio.conform import runner
from vfu_virtio.conform.catalogue import CHECKS, ERROR, FAIL, PASS, SKIP

CONFORM = (sys.executable, "-m", "vfu_virtio", "conform")
KEY = bytes(range(32))


def run(sock: str, only=(), timeout: float = 10.0, ring: str = "auto", key: bytes | None = None,
        crypto_layout: str = "standard") -> runner.Report:
    return runner.run(sock, runner.select(only), timeout, ring, key, crypto_layout=crypto_layout)


def statuses(report: runner.Report) -> dict[str, tuple[str, str]]:
    return {c.id: (o.status, o.detail) for c, o in report.results}


def program_key(sock: str) -> None:
    """PROGRAM_KEY + RESULT_READ with :data:`KEY`; the result must be OK (its MAC is not checked: a defective device
    may seal it wrongly)."""
    with RpmbClient.connect(sock) as client:
        frames = [Frame(req_resp=VIRTIO_RPMB_REQ_PROGRAM_KEY, block_count=1, key_mac=KEY).pack(),
                  Frame(req_resp=VIRTIO_RPMB_REQ_RESULT_READ, block_count=1).pack()]
        used, data = client.request(frames, [FRAME_SIZE])
        assert used == FRAME_SIZE and Frame.unpack(data[0]).result == 0


def expected_skips(kind: str, ring: str) -> set[str]:
    """The checks that do not apply to a ``kind`` server with ``--ring ring``."""
    other = "rpmb" if kind.startswith("crypto") else "crypto"
    unserved = "packed" if ring == "split" else "split"
    return {i for i in CHECKS if i.startswith((f"{other}.", f"{unserved}."))}


# ---- vfu-virtio passes -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind,args", [("crypto", ()), ("crypto-no-akcipher", ("--profile", "standard-no-akcipher")),
                                       ("crypto-v16", ("--profile", "v16")),
                                       ("crypto-asym-rfc3", ("--profile", "asym-rfc3")),
                                       ("rpmb", ("--capacity", "2", "--max-rd-cnt", "4"))])
def test_vfu_virtio_passes_the_catalogue(serve, ring, kind, args):
    server = serve(kind.split("-")[0], *args)
    if kind == "rpmb":
        program_key(server.socket)  # so rpmb.key-persists-reset applies (the tool never programs a key)
    layout = args[1] if kind in ("crypto-v16", "crypto-asym-rfc3") else "standard"
    report = run(server.socket, key=KEY if kind == "rpmb" else None, crypto_layout=layout)
    got = statuses(report)
    assert len(got) == len(CHECKS) >= 40
    bad = {i: s for i, s in got.items() if s[0] != (SKIP if i in expected_skips(kind, ring) else PASS)}
    assert bad == {}, f"{report.facts}\n{server.log()[-3000:]}"
    assert report.exit_status == 0


def test_the_crypto_layout_decides_where_the_fields_are(serve):
    """The ASYM RFC's 64-byte configuration read as the standard's: its max_cipher_key_len (64, at 44) lands where
    the standard has akcipher_algo, an undefined bit 6; read as --crypto-layout asym-rfc3, asym_algo (RSA .. ECDH,
    bits 1..5, at 36) is that mask and the key lengths sit at 44 and 48, max_size at 56."""
    server = serve("crypto", "--profile", "asym-rfc3")
    wrong = statuses(run(server.socket, ["crypto.algorithm-masks", "crypto.config-limits"]))
    assert wrong["crypto.algorithm-masks"] == (FAIL, "akcipher mask 0x40 has undefined algorithm bits [6]")
    right = statuses(run(server.socket, ["crypto.algorithm-masks", "crypto.config-limits"], crypto_layout="asym-rfc3"))
    assert right["crypto.algorithm-masks"][0] == PASS and "akcipher 0x3e" in right["crypto.algorithm-masks"][1]
    assert right["crypto.config-limits"] == (PASS, "4 data queues, max_size 1048576, keys 64/512")


def test_a_device_without_a_key_skips_what_needs_one(serve):
    server = serve("rpmb")
    assert statuses(run(server.socket, ["rpmb.*"])) == {
        "rpmb.capacity": (PASS, "capacity 1 x 128 KiB, max_wr_cnt 1, max_rd_cnt 1"),
        "rpmb.counter-response": (PASS, "NO_AUTH_KEY, write counter 0"),
        "rpmb.unauthenticated-write": (PASS, "NO_AUTH_KEY, counter 0 unchanged"),
        "rpmb.response-mac": (SKIP, "the key is not known (--rpmb-key)"),
        "rpmb.key-persists-reset": (SKIP, "no authentication key is programmed (this tool never programs one)")}


# ---- every check fails on its negative control ----------------------------------------------------------------------
def _d(defect: str, kind: str = "rpmb", ring: str = "any", key: bool = False):
    return ("defect", defect, kind, ring, key)


def _i(spec: str, kind: str = "crypto", ring: str = "any"):
    return ("inject", spec, kind, ring, False)


#: check id -> its negative control: (how, what, device kind, --ring, program an RPMB key first)
NEGATIVE = {
    "pci.device-id": _d("device-id-unlisted"),
    "pci.revision": _d("revision-0"),
    "pci.subsystem-id": _d("subsystem-id-low"),
    "pci.capability-list": _d("capability-loop"),
    "cap.cap-len": _d("cap-len-short"),
    "cap.common-present": _d("no-common-cap"),
    "cap.common-layout": _d("common-cap-unaligned"),
    "cap.notify-present": _d("no-notify-cap"),
    "cap.notify-multiplier": _d("notify-multiplier-odd"),
    "cap.notify-length": _d("notify-length-short", "crypto"),
    "cap.isr-present": _d("no-isr-cap"),
    "cap.device-cfg": _d("device-cfg-unaligned"),
    "cap.pci-cfg-present": _d("no-pci-cfg-cap"),
    "cap.pci-cfg-read": _d("pci-cfg-window-dead"),
    "cap.pci-cfg-write": _d("pci-cfg-window-dead"),
    "msix.table-size": _d("msix-table-size-1"),
    "msix.vector-readback": _d("msix-vector-reads-0"),
    "msix.vector-failure": _d("msix-vector-any"),
    "msix.unmapped-on-reset": _d("msix-vectors-survive-reset"),
    "common.device-feature-select": _d("feature-word-2-echo"),
    "common.driver-feature-readback": _d("driver-feature-reads-0"),
    "common.queue-size-absent": _d("absent-queue-size"),
    "common.queue-size-pow2": _d("queue-size-100"),
    "common.queue-address-halves": _d("queue-desc-high-half-ignored"),
    "common.reset": _d("reset-keeps-status"),
    "common.queue-enable-reset": _d("queue-enable-sticky"),
    "features.version-1": _d("no-version-1"),
    "features.reserved-bits": _d("offers-bit-44"),
    "features.dependencies": _d("crypto-stateless-without-revision-1", "crypto"),
    "features.unoffered-refused": _d("accepts-unoffered"),
    "features.renegotiate": _d("refuses-second-negotiation"),
    "config.readable-before-features-ok": _d("config-hidden-before-features-ok"),
    "status.no-use-before-driver-ok": _d("uses-before-driver-ok"),
    "status.needs-reset-notifies": _d("needs-reset-silent"),
    "status.reset-quiets-queues": _d("reset-keeps-queues"),
    "queue.reset": _d("queue-reset-ignored"),
    "ring.used-len": _d("used-len-overflow"),
    "ring.used-id": _d("used-id-off-by-one"),
    "ring.readable-untouched": _d("writes-readable"),
    "ring.message-framing": _d("refuses-split-buffers"),
    "ring.spurious-notify": _d("spurious-notify-needs-reset"),
    "split.descriptors-untouched": _d("writes-descriptor-table", ring="split"),
    "split.used-flags": _d("used-flags-2", ring="split"),
    "split.notify-when-asked": _i("drop-irq", "rpmb", "split"),
    "split.used-event-ignored": _d("used-event-always", ring="split"),
    "split.event-idx": _d("event-idx-off-by-one", ring="split"),
    "split.event-idx-flags-ignored": _d("no-interrupt-flag-with-event-idx", ring="split"),
    "split.indirect-after-direct": _d("indirect-after-direct-refused", ring="split"),
    "split.indirect-write-flag": _d("indirect-write-flag-refused", ring="split"),
    "packed.used-flags": _d("packed-used-wrap-wrong", ring="packed"),
    "packed.wrap": _d("packed-wrap-not-toggled", ring="packed"),
    "irq.queue-vector": _d("msix-wrong-vector"),
    "irq.no-vector-silent": _d("no-vector-uses-config"),
    "irq.intx": _i("drop-irq:vector=intx", "rpmb"),
    "irq.config-no-vector": _d("config-no-vector-uses-0"),
    "isr.queue-bit": _d("isr-no-queue-bit"),
    "isr.read-clears": _d("isr-sticky"),
    "isr.pci-status": _d("status-interrupt-bit-never"),
    "isr.config-bit": _d("isr-no-config-bit"),
    "crypto.config-limits": _d("crypto-zero-dataqueues", "crypto"),
    "crypto.status-flags": _d("crypto-status-bit-1", "crypto"),
    "crypto.hw-ready": _i("clear-hw-ready"),
    "crypto.algorithm-masks": _d("crypto-undefined-algo-bits", "crypto"),
    "crypto.session-ids": _d("crypto-session-ids-repeat", "crypto"),
    "crypto.session-id-only-on-ok": _d("crypto-session-id-on-error", "crypto"),
    "crypto.unsupported-algorithm": _i("error:op=HASH_CREATE_SESSION,status=ERR"),
    "crypto.destroy-session": _d("crypto-destroy-always-ok", "crypto"),
    "crypto.hash-result": _i("error:op=HASH"),
    "crypto.cipher-result": _i("error:op=CIPHER_ENCRYPT"),
    "crypto.invalid-session": _i("error:op=HASH,status=ERR"),
    "rpmb.capacity": _d("rpmb-capacity-0x81"),
    "rpmb.counter-response": _d("rpmb-wrong-response-type"),
    "rpmb.unauthenticated-write": _d("rpmb-accepts-any-mac", key=True),
    "rpmb.key-persists-reset": _d("rpmb-forgets-key-on-reset", key=True),
    "rpmb.response-mac": _d("rpmb-mac-wrong-key", key=True),
}


def defective(tmp_path: Path, defect: str, kind: str, *options: str) -> Server:
    """A ``kind`` server with ``defect`` applied (``python -m devices.defective``), started and ready."""
    return Server(kind, str(tmp_path / f"{kind}.sock"), str(tmp_path / "state.db"), options,
                  log_path=str(tmp_path / f"{kind}.log"), log_level="debug", env=SERVER_ENV, cwd=str(TOP),
                  program=(sys.executable, "-m", "devices.defective", defect)).start()


@pytest.fixture
def negative_server(tmp_path):
    servers: list[Server] = []

    def start(how: str, what: str, kind: str, ring: str) -> Server:
        if how == "defect":
            server = defective(tmp_path, what, kind, "--ring", ring)
        else:
            server = Server(kind, str(tmp_path / f"{kind}.sock"), str(tmp_path / "state.db"),
                            ("--ring", ring, "--inject", what), log_path=str(tmp_path / f"{kind}.log"),
                            log_level="debug", env=SERVER_ENV, cwd=str(TOP)).start()
        servers.append(server)
        return server
    yield start
    for server in servers:
        server.stop()
        assert "Traceback" not in server.log(), server.log()


def test_every_check_has_a_negative_control():
    assert sorted(NEGATIVE) == sorted(CHECKS)


@pytest.mark.ring_neutral
@pytest.mark.parametrize("check_id", sorted(NEGATIVE))
def test_check_fails_on_its_negative_control(negative_server, check_id):
    how, what, kind, ring, key = NEGATIVE[check_id]
    server = negative_server(how, what, kind, ring)
    if key:
        program_key(server.socket)
    report = run(server.socket, [check_id], timeout=6.0, key=KEY if key else None)
    (check, outcome), = report.results
    assert outcome.status == FAIL, f"{check_id} on {how} {what}: {outcome}\n{server.log()[-3000:]}"
    assert report.exit_status == 1


def test_the_same_checks_pass_without_the_defects(serve):
    """The negative controls' servers minus their defect: the same checks, same kinds, all PASS (so each FAIL above
    is the defect's)."""
    for kind in ("rpmb", "crypto"):
        server = serve(kind, "--ring", "any", name=kind)
        ids = [i for i, n in NEGATIVE.items() if n[2] == kind and n[3] == "any" and not n[4]]
        got = statuses(run(server.socket, ids))
        assert {i: s for i, s in got.items() if s[0] != PASS} == {}, server.log()[-2000:]


# ---- the command --------------------------------------------------------------------------------------------------
def conform(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*CONFORM, *args], capture_output=True, text=True, timeout=timeout, cwd=TOP,
                          env={**os.environ, **SERVER_ENV})


@pytest.mark.ring_neutral
def test_command_outputs_and_exit_status(serve, tmp_path):
    server = serve("rpmb")
    junit = tmp_path / "conform.xml"
    proc = conform(server.socket, "--only", "pci.*,rpmb.capacity", "--skip", "pci.revision", "--junit", str(junit))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"{server.socket}: PCI 1af4:105c, virtio device 28 (RPMB)")
    assert [ln.split()[:2] for ln in lines[1:-1]] == [["PASS", "pci.device-id"], ["PASS", "pci.subsystem-id"],
                                                     ["PASS", "pci.capability-list"], ["PASS", "rpmb.capacity"]]
    assert lines[-1].startswith("4 checks: 4 PASS, 0 FAIL, 0 SKIP, 0 ERROR")
    suite = ET.parse(junit).getroot()
    assert (suite.tag, suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("testsuite", "4", "0", "0")
    assert [c.get("name") for c in suite.iter("testcase")] == ["pci.device-id", "pci.subsystem-id",
                                                               "pci.capability-list", "rpmb.capacity"]
    data = json.loads(conform(server.socket, "--only", "rpmb.*", "--json").stdout)
    assert data["device"]["virtio_id"] == 28 and data["counts"] == {"PASS": 3, "FAIL": 0, "SKIP": 2, "ERROR": 0}
    assert {r["id"]: r["status"] for r in data["results"]}["rpmb.key-persists-reset"] == "SKIP"


def test_command_reports_a_failure_with_the_observed_bytes(tmp_path):
    server = defective(tmp_path, "notify-multiplier-odd", "rpmb")
    try:
        junit = tmp_path / "conform.xml"
        proc = conform(server.socket, "--only", "cap.notify-multiplier", "--junit", str(junit))
    finally:
        server.stop()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (line,) = [ln for ln in proc.stdout.splitlines() if ln.startswith("FAIL")]
    # the 20-byte notify capability: vndr 09, next 64, len 14, type 02, bar 0, id 0, pad, offset 0x3000, length 4,
    # multiplier 3
    assert "notify_off_multiplier 3" in line and "[observed: 09 64 14 02 00 00 00 00 00 30 00 00 04 00 00 00 " \
        "03 00 00 00]" in line
    failure = ET.parse(junit).getroot().find("testcase/failure")
    assert failure is not None and "09 64 14 02" in failure.text


def test_the_readme_shows_the_catalogue():
    table = re.findall(r"<!-- conform catalogue: vfu-virtio conform --list --markdown -->\n(.*?)\n<!-- end -->",
                       (TOP / "README.md").read_text(), re.S)
    assert table == [conform("--list", "--markdown").stdout.rstrip("\n")]


def test_list_and_selection_errors():
    proc = conform("--list")
    assert proc.returncode == 0
    ids = [ln.split()[0] for ln in proc.stdout.splitlines() if ln and not ln.startswith(" ")]
    assert ids == [c.id for c in runner.select()] and len(ids) >= 40
    bad = conform("/nonexistent.sock", "--only", "no.such-check")
    assert bad.returncode == 2 and "no check matches 'no.such-check'" in bad.stderr


# ---- broken peers -------------------------------------------------------------------------------------------------
class FakePeer:
    """A UNIX socket server that does ``behaviour(connection)`` with every client: a device that is not one."""

    def __init__(self, path: Path, behaviour):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(8)
        self.path = str(path)
        self.behaviour = behaviour
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            self.behaviour(conn)

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


def _silent(conn: socket.socket) -> None:
    pass


def _closes(conn: socket.socket) -> None:
    conn.close()


def _nonsense(conn: socket.socket) -> None:
    conn.recv(4096)
    conn.sendall(bytes(range(256)) * 4)


@pytest.mark.parametrize("behaviour", [_silent, _closes, _nonsense], ids=["hangs", "closes", "nonsense"])
def test_a_broken_peer_is_an_error_line_within_the_time_limit(tmp_path, behaviour):
    peer = FakePeer(tmp_path / "peer.sock", behaviour)
    try:
        proc = conform(peer.path, "--timeout", "2", timeout=30)
    finally:
        peer.close()
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout.startswith("ERROR  discovery  ") and "Traceback" not in proc.stdout + proc.stderr


def test_a_device_that_stops_answering_mid_run_costs_one_time_limit(tmp_path):
    server = defective(tmp_path, "hangs-from-client-3", "rpmb")
    try:
        junit = tmp_path / "conform.xml"
        proc = conform(server.socket, "--timeout", "3", "--junit", str(junit), timeout=60)
    finally:
        server.stop()
    assert proc.returncode == 2, proc.stdout + proc.stderr
    results = [ln.split(None, 2) for ln in proc.stdout.splitlines()[1:-1]]
    first = next(i for i, r in enumerate(results) if r[0] == ERROR)  # the first check that opens a connection
    assert {r[0] for r in results[:first]} <= {PASS}, proc.stdout
    assert all(r[0] == ERROR and r[2] == f"the device stopped answering during {results[first][1]}"
               for r in results[first + 1:]), proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    assert ET.parse(junit).getroot().get("errors") == str(len(results) - first)


# ---- a vfio-user device that is not a virtio device -----------------------------------------------------------------
def gpio_sample() -> Path:
    """libvfio-user's sample device, as the library's recipe builds it (skipped without it, except under CI)."""
    path = Path(os.environ.get("VMKIT", TOP / ".vmkit")) / "bin" / "gpio-pci-idio-16"
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing: scripts/setup builds it with libvfio-user")
        pytest.skip(f"{path} is missing (scripts/setup builds it with libvfio-user)")
    return path


def listening(path: Path) -> bool:
    """Whether a UNIX socket is listening on ``path`` (``/proc/net/unix`` flag __SO_ACCEPTCON), without connecting:
    the sample serves one client and exits."""
    return any(line.split()[-1] == str(path) and line.split()[3] == "00010000"
               for line in Path("/proc/net/unix").read_text().splitlines()[1:] if len(line.split()) > 7)


def test_a_non_virtio_device_is_named_and_left_alone(tmp_path):
    sample = gpio_sample()
    sock = tmp_path / "gpio.sock"
    with open(tmp_path / "gpio.log", "wb") as log:
        proc = subprocess.Popen([str(sample), str(sock)], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL,
                                env={**os.environ, "LD_LIBRARY_PATH": str(sample.parent.parent / "lib")})
    try:
        deadline = time.monotonic() + 30
        while not listening(sock):
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "gpio.log").read_text()
            time.sleep(0.01)
        junit = tmp_path / "conform.xml"
        out = conform(str(sock), "--junit", str(junit))
    finally:
        proc.kill()
        proc.wait()
    assert out.returncode == 3, out.stdout + out.stderr
    assert out.stdout == (f"{sock}: PCI 494f:0dc8 (class 0x000000) is not a virtio device: virtio-pci functions have "
                          "Vendor ID 0x1af4 and Device ID 0x1000..0x107f; nothing to check\n")
    case = ET.parse(junit).getroot().find("testcase")
    assert case.get("name") == "discovery" and case.find("skipped") is not None
