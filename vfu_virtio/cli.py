"""The ``vfu-virtio`` command line (click): serve a device, print the QEMU command line, run the demo.

Every option names its unit and limit; bad values are refused with a message naming the value and the
limit. Logs go to stderr with levels (``--log-level``).
"""
from __future__ import annotations

import json
import logging
import sys

import click

from .devices import DEVICE_KINDS

log = logging.getLogger("vfu_virtio")

LOG_LEVELS = ["debug", "info", "warning", "error"]


def _setup_logging(level: str) -> int:
    lvl = getattr(logging, level.upper())
    logging.basicConfig(level=lvl, stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    return lvl


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--log-level", type=click.Choice(LOG_LEVELS), default="info", show_default=True,
              help="Least severe log level written to stderr (libvfio-user's own lines included).")
@click.pass_context
def main(ctx: click.Context, log_level: str) -> None:
    """vfu-virtio: a virtio-pci function (virtio-crypto, virtio-rpmb) served over vfio-user.

    Attach it to QEMU with `-device vfio-user-pci` (see `vfu-virtio qemu-cmdline`) or drive it with the
    project's own vfio-user driver (`vfu_virtio.client`).
    """
    ctx.obj = {"log_level": _setup_logging(log_level)}


def _serve(ctx: click.Context, device, socket: str, once: bool) -> None:
    from .libvfio_user import VfuError
    from .libvfio_user._lib import LibraryNotFound
    from .server import DeviceServer
    try:
        server = DeviceServer(device, socket, ctx.obj["log_level"])
    except (VfuError, LibraryNotFound, ValueError) as e:
        device.close()
        raise click.ClickException(str(e)) from e
    server.serve_forever(max_clients=1 if once else None)


def _make_device(kind: str, **kwargs):
    """``DEVICE_KINDS[kind](**kwargs)``; a store that is locked, rolled back or unreadable, or a refused
    option, becomes a one-line error instead of a traceback."""
    from .store import StoreError
    try:
        return DEVICE_KINDS[kind](**kwargs)
    except (StoreError, ValueError) as e:
        raise click.ClickException(str(e)) from e


_SOCKET = click.option("--socket", "socket", required=True, type=click.Path(dir_okay=False),
                       help="vfio-user UNIX socket path to listen on (a stale socket file is replaced).")
_STATE = click.option("--state", "state", required=True, type=click.Path(dir_okay=False),
                      help="SQLite state store shared by all devices (created with mode 0600).")
_INSTANCE = click.option("--instance", default="0", show_default=True,
                         help="Device instance name inside the store (several devices can share one file).")
_ONCE = click.option("--once", is_flag=True, help="Exit after the first client disconnects.")


@main.command()
@_SOCKET
@_STATE
@_INSTANCE
@click.option("--queues", "max_dataqueues", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Number of data queues (max_dataqueues), 1..64; the controlq comes after them.")
@click.option("--max-sessions", type=click.IntRange(1, 1 << 20), default=1024, show_default=True,
              help="Cap on live sessions; create-session answers an error when it is reached.")
@click.option("--max-size", type=click.IntRange(1, 1 << 30), default=1 << 20, show_default=True,
              help="max_size: largest request payload in bytes the device accepts.")
@_ONCE
@click.pass_context
def crypto(ctx, socket, state, instance, max_dataqueues, max_sessions, max_size, once):
    """Serve a virtio-crypto device (virtio id 20, PCI 1af4:1054) on SOCKET."""
    device = _make_device("crypto", state=state, instance=instance, max_dataqueues=max_dataqueues,
                          max_sessions=max_sessions, max_size=max_size)
    _serve(ctx, device, socket, once)


@main.command()
@_SOCKET
@_STATE
@_INSTANCE
@click.option("--capacity", type=click.IntRange(1, 128), default=None,
              help="Data area in 128 KiB units, 1..128 (16 MiB); fixed when the instance is created. "
                   "[default: the stored value, else 1]")
@click.option("--max-wr-cnt", type=click.IntRange(0, 255), default=None,
              help="max_wr_cnt: most 256-byte blocks per write request, 0..255, 0 = no limit. "
                   "[default: the stored value, else 1]")
@click.option("--max-rd-cnt", type=click.IntRange(0, 255), default=None,
              help="max_rd_cnt: most 256-byte blocks per read request, 0..255, 0 = no limit. "
                   "[default: the stored value, else 1]")
@_ONCE
@click.pass_context
def rpmb(ctx, socket, state, instance, capacity, max_wr_cnt, max_rd_cnt, once):
    """Serve a virtio-rpmb device (virtio id 28, PCI 1af4:105c) on SOCKET; key, write counter and data
    persist in the --state store."""
    device = _make_device("rpmb", state=state, instance=instance, capacity=capacity, max_wr_cnt=max_wr_cnt,
                          max_rd_cnt=max_rd_cnt)
    _serve(ctx, device, socket, once)


@main.group("rpmb-client")
@click.option("--socket", "socket", required=True, type=click.Path(dir_okay=False),
              help="vfio-user socket of a running `vfu-virtio rpmb` server.")
@click.option("--key-file", type=click.Path(exists=True, dir_okay=False),
              help="The 32-byte authentication key: 32 raw bytes or 64 hex digits. Needed to program the "
                   "key, to write, and to verify response MACs.")
@click.pass_context
def rpmb_client(ctx, socket, key_file):
    """Host-side RPMB client through the project's vfio-user driver (no guest needed).

    Every response's MAC (when the key is known) and nonce are checked; a result other than OK exits 1.
    """
    key = None
    if key_file:
        raw = open(key_file, "rb").read()
        key = raw if len(raw) == 32 else bytes.fromhex(raw.decode("ascii", "replace").strip())
        if len(key) != 32:
            raise click.BadParameter(f"{key_file} holds {len(key)} bytes, not a 32-byte key", param_hint="--key-file")
    ctx.obj.update(socket=socket, key=key)


def _rpmb_session(ctx, op):
    from .devices.rpmb import frame as F
    from .devices.rpmb.tool import RpmbClient, RpmbResponseError
    from .client import VfioUserError, VirtioDriverError
    try:
        with RpmbClient.connect(ctx.obj["socket"], ctx.obj["key"]) as client:
            result, message = op(client)
    except (RpmbResponseError, VfioUserError, VirtioDriverError, OSError, ValueError) as e:
        raise click.ClickException(str(e)) from e
    name = F.RESULT_NAMES.get(result, f"{result:#06x}")
    if result != F.VIRTIO_RPMB_RES_OK:
        raise click.ClickException(f"result {name}" + (f" ({message})" if message else ""))
    click.echo(f"result {name}" + (f", {message}" if message else ""))


@rpmb_client.command("program-key")
@click.pass_context
def rpmb_program_key(ctx):
    """Program the --key-file key (one-time: a second attempt answers WRITE_FAILURE)."""
    if ctx.obj["key"] is None:
        raise click.UsageError("program-key needs --key-file")
    _rpmb_session(ctx, lambda c: (c.program_key(ctx.obj["key"]), ""))


@rpmb_client.command("read-counter")
@click.pass_context
def rpmb_read_counter(ctx):
    """Read the write counter (fresh nonce; MAC checked with --key-file if given)."""
    def op(c):
        result, counter = c.read_counter()
        return result, f"write counter {counter}"
    _rpmb_session(ctx, op)


@rpmb_client.command("write")
@click.option("--address", type=click.IntRange(0, 0xFFFF), required=True, help="First 256-byte block.")
@click.option("--data-hex", help="Data as hex digits.")
@click.option("--data-file", type=click.Path(exists=True, dir_okay=False), help="Data from a file.")
@click.pass_context
def rpmb_write(ctx, address, data_hex, data_file):
    """Authenticated write at --address; the data is zero-padded to whole 256-byte blocks, sent in one
    request (at most max_wr_cnt blocks)."""
    if ctx.obj["key"] is None or (data_hex is None) == (data_file is None):
        raise click.UsageError("write needs --key-file and exactly one of --data-hex, --data-file")
    data = bytes.fromhex(data_hex) if data_hex is not None else open(data_file, "rb").read()
    if not data:
        raise click.UsageError("no data to write")
    data += bytes(-len(data) % 256)
    blocks = [data[i:i + 256] for i in range(0, len(data), 256)]

    def op(c):
        result, counter = c.write(address, blocks)
        return result, f"{len(blocks)} block(s) at {address}, write counter {counter}"
    _rpmb_session(ctx, op)


@rpmb_client.command("read")
@click.option("--address", type=click.IntRange(0, 0xFFFF), required=True, help="First 256-byte block.")
@click.option("--count", type=click.IntRange(1, 0xFFFF), default=1, show_default=True,
              help="Blocks to read in one request (at most max_rd_cnt).")
@click.option("--output", type=click.Path(dir_okay=False), help="Write the data here instead of hex to stdout.")
@click.pass_context
def rpmb_read(ctx, address, count, output):
    """Authenticated read of --count blocks at --address (fresh nonce; MAC checked with --key-file)."""
    def op(c):
        result, blocks = c.read(address, count)
        if result == 0:
            if output:
                with open(output, "wb") as f:
                    f.write(b"".join(blocks))
            else:
                for i, b in enumerate(blocks):
                    click.echo(f"{address + i:5d}: {b.hex()}")
        return result, f"{len(blocks)} block(s) at {address}"
    _rpmb_session(ctx, op)


@main.command("qemu-cmdline")
@click.option("--socket", "sockets", multiple=True, required=True,
              help="Device socket to attach (repeat for several devices).")
@click.option("--memory", default="512M", show_default=True, help="Guest RAM size (shared memfd backend).")
def qemu_cmdline(sockets, memory):
    """Print the QEMU arguments that attach the given vfio-user sockets (shared guest RAM required)."""
    args = ["-object", f"memory-backend-memfd,id=mem,size={memory},share=on",
            "-machine", "q35,memory-backend=mem", "-m", memory]
    for s in sockets:
        args += ["-device", json.dumps({"driver": "vfio-user-pci", "socket": {"path": s, "type": "unix"}})]
    click.echo(" ".join(a if a.startswith("-") else "'" + a + "'" for a in args))


if __name__ == "__main__":
    main()
