"""``vfu-virtio rpmb-client``: drive a running RPMB device from the shell through the project's driver.

Every answer is reported with the device's result first (``result OK``, ``result NO_AUTH_KEY ...``); a result other
than OK exits 1 with one line that names the limit involved (``max_wr_cnt``, ``max_rd_cnt``, the capacity in
blocks) or the likely cause. With ``--key-file`` every response MAC is checked; a response whose MAC does not verify
is reported with the result it claims, marked unverified, and exits 1 (a device without a key answers with no MAC;
one with another key answers AUTH_FAILURE under its own MAC). Without ``--key-file`` the output says that the MAC
was not checked. Bad values (key files, hex) are refused in one line naming the value and what is expected.
"""
from __future__ import annotations

from dataclasses import dataclass

import click

from ..abi import rpmb as F
from .common import connect, hex_value, read_file, read_key_file, wait_option, with_log_options

#: Largest data a write takes from the command line: block_count is 16 bits.
MAX_WRITE_BYTES = 0xFFFF * F.BLOCK_SIZE


@dataclass(frozen=True)
class Config:
    """The device configuration (``struct virtio_rpmb_config``): capacity in 128 KiB units, max_wr_cnt and max_rd_cnt
    in 256-byte blocks per request (0 = no limit)."""

    capacity: int
    max_wr_cnt: int
    max_rd_cnt: int

    @property
    def blocks(self) -> int:
        return self.capacity * F.BLOCKS_PER_CAPACITY_UNIT


@click.group("rpmb-client")
@click.option("--socket", "socket", type=click.Path(dir_okay=False),
              help="vfio-user socket of a running `vfu-virtio rpmb` server (needed by every subcommand).")
@click.option("--key-file", type=click.Path(dir_okay=False),
              help="The authentication key: a file of exactly 32 raw bytes (or 64 hex digits). Needed to program "
                   "the key and to write; with it every response MAC is checked.")
@wait_option()
@click.pass_context
def rpmb_client(ctx: click.Context, socket: str | None, key_file: str | None, wait: float) -> None:
    """Host-side RPMB client through the project's vfio-user driver (no guest needed).

    Prints the device's result first; a result other than OK exits 1 with the limit or cause involved. Response
    nonces are always checked, MACs when --key-file is given (said so when not).
    """
    ctx.ensure_object(dict)["rpmb"] = {"socket": socket, "key_file": key_file, "wait": wait}


def _options(ctx: click.Context, need_key: bool = False) -> tuple[str, bytes | None, float]:
    opts = ctx.obj["rpmb"]
    if not opts["socket"]:
        raise click.UsageError("rpmb-client needs --socket SOCKET (before the subcommand)")
    if need_key and not opts["key_file"]:
        raise click.UsageError(f"{ctx.info_name} needs --key-file (before the subcommand)")
    key = read_key_file(opts["key_file"]) if opts["key_file"] else None
    return opts["socket"], key, opts["wait"]


def _name(result: int | None) -> str:
    return "no result" if result is None else F.RESULT_NAMES.get(result, f"{result:#06x}")


def _session(ctx: click.Context, op, need_key: bool = False) -> None:
    """Connect, run ``op(client, config) -> (result, message, hint)``, report (see the module docstring)."""
    from ..client import VfioUserError, VirtioDriverError
    from ..client.rpmb import RpmbClient, RpmbMacError, RpmbResponseError
    socket, key, wait = _options(ctx, need_key)
    try:
        client = connect(lambda: RpmbClient.connect(socket, key), socket, wait)
        with client:
            config = Config(*client.config())
            try:
                result, message, hint = op(client, config)
            except RpmbMacError as e:
                raise click.ClickException(_unverified(e.result)) from None
    except (RpmbResponseError, VfioUserError, VirtioDriverError, OSError) as e:
        raise click.ClickException(f"{socket}: {e}") from None
    line = f"result {_name(result)}" + (f", {message}" if message else "")
    if result != F.VIRTIO_RPMB_RES_OK:
        raise click.ClickException(line + (f": {hint}" if hint else ""))
    click.echo(line + ("" if key is not None else " (response MAC not checked: no --key-file)"))


def _unverified(result: int | None) -> str:
    """The line for a response whose MAC does not verify with the --key-file key."""
    if result == F.VIRTIO_RPMB_RES_NO_AUTH_KEY:
        return ("result NO_AUTH_KEY: the device has no authentication key yet (program it with program-key); its "
                "answer carries no MAC to check")
    if result == F.VIRTIO_RPMB_RES_OK:
        return ("the response MAC does not verify with the --key-file key: the answer (result OK) is not trusted "
                "and nothing is printed")
    return (f"result {_name(result)} (unverified: the response MAC does not verify with the --key-file key: the "
            "device holds another key)")


def _range(address: int, count: int, config: Config) -> str:
    return (f"blocks {address}..{address + count - 1} do not fit: the device holds {config.blocks} blocks of 256 "
            f"bytes (capacity {config.capacity} x 128 KiB), addresses 0..{config.blocks - 1}")


@with_log_options
@rpmb_client.command("program-key")
@click.pass_context
def rpmb_program_key(ctx: click.Context) -> None:
    """Program the --key-file key (one-time: a second attempt answers WRITE_FAILURE)."""
    key = _options(ctx, need_key=True)[1]

    def op(c, _config):
        result = c.program_key(key)
        hint = ("a key is programmed already (one-time programmable)"
                if result == F.VIRTIO_RPMB_RES_WRITE_FAILURE else "")
        return result, "", hint
    _session(ctx, op, need_key=True)


@with_log_options
@rpmb_client.command("read-counter")
@click.pass_context
def rpmb_read_counter(ctx: click.Context) -> None:
    """Read the write counter (fresh nonce; MAC checked with --key-file)."""
    def op(c, _config):
        result, counter = c.read_counter()
        hint = "the device has no authentication key yet (program-key)" \
            if result == F.VIRTIO_RPMB_RES_NO_AUTH_KEY else ""
        return result, f"write counter {counter}", hint
    _session(ctx, op)


@with_log_options
@rpmb_client.command("write")
@click.option("--address", type=click.IntRange(0, 0xFFFF), required=True, help="First 256-byte block.")
@click.option("--data-hex", metavar="HEX", help="Data as hex digits.")
@click.option("--data-file", type=click.Path(dir_okay=False), help="Data from a file.")
@click.pass_context
def rpmb_write(ctx: click.Context, address: int, data_hex: str | None, data_file: str | None) -> None:
    """Authenticated write at --address (needs --key-file): the data is zero-padded to whole 256-byte blocks and
    sent in one request (the device takes at most max_wr_cnt blocks)."""
    if (data_hex is None) == (data_file is None):
        raise click.UsageError("write needs exactly one of --data-hex, --data-file")
    data = hex_value(data_hex, "--data-hex") if data_hex is not None else \
        read_file(data_file, "--data-file", MAX_WRITE_BYTES)
    if not data:
        raise click.UsageError("no data to write")
    if len(data) > MAX_WRITE_BYTES:
        raise click.BadParameter(f"{len(data)} bytes; one request carries at most {MAX_WRITE_BYTES} "
                                 f"(0xFFFF blocks)", param_hint="--data-hex")
    data += bytes(-len(data) % F.BLOCK_SIZE)
    blocks = [data[i:i + F.BLOCK_SIZE] for i in range(0, len(data), F.BLOCK_SIZE)]

    def op(c, config: Config):
        from ..client.rpmb import RpmbMacError
        try:
            _, counter = c.read_counter()
        except RpmbMacError as e:  # the write's own answer says whether the key is the device's (AUTH_FAILURE)
            if e.result != F.VIRTIO_RPMB_RES_OK:
                raise
            counter = e.frames[-1].write_counter
        result, counter = c.write(address, blocks, counter)
        hint = ""
        if result == F.VIRTIO_RPMB_RES_GENERAL_FAILURE and config.max_wr_cnt and len(blocks) > config.max_wr_cnt:
            hint = f"{len(blocks)} blocks in one write; the device takes at most max_wr_cnt {config.max_wr_cnt}"
        elif result == F.VIRTIO_RPMB_RES_ADDR_FAILURE:
            hint = _range(address, len(blocks), config)
        elif result == F.VIRTIO_RPMB_RES_AUTH_FAILURE:
            hint = "the --key-file key is not the device's key"
        elif result == F.VIRTIO_RPMB_RES_COUNT_FAILURE:
            hint = "the write counter changed between reading it and writing (another writer?)"
        elif result == F.VIRTIO_RPMB_RES_WRITE_COUNTER_EXPIRED:
            hint = "the write counter reached 0xFFFFFFFF: the device takes no more writes"
        return result, f"{len(blocks)} block(s) at {address}, write counter {counter}", hint
    _session(ctx, op, need_key=True)


@with_log_options
@rpmb_client.command("read")
@click.option("--address", type=click.IntRange(0, 0xFFFF), required=True, help="First 256-byte block.")
@click.option("--count", type=click.IntRange(1, 0xFFFF), default=1, show_default=True,
              help="Blocks to read in one request (the device takes at most max_rd_cnt).")
@click.option("--output", type=click.Path(dir_okay=False), help="Write the data here instead of hex to stdout.")
@click.pass_context
def rpmb_read(ctx: click.Context, address: int, count: int, output: str | None) -> None:
    """Authenticated read of --count blocks at --address (fresh nonce; MAC checked with --key-file, and said so
    when not)."""
    def op(c, config: Config):
        result, blocks = c.read(address, count)
        hint = ""
        if result == F.VIRTIO_RPMB_RES_OK:
            if output:
                with open(output, "wb") as f:
                    f.write(b"".join(blocks))
            else:
                for i, b in enumerate(blocks):
                    click.echo(f"{address + i:5d}: {b.hex()}")
        elif result == F.VIRTIO_RPMB_RES_GENERAL_FAILURE and config.max_rd_cnt and count > config.max_rd_cnt:
            hint = f"{count} blocks in one read; the device takes at most max_rd_cnt {config.max_rd_cnt}"
        elif result == F.VIRTIO_RPMB_RES_ADDR_FAILURE:
            hint = _range(address, count, config)
        elif result == F.VIRTIO_RPMB_RES_NO_AUTH_KEY:
            hint = "the device has no authentication key yet (program-key)"
        return result, f"{len(blocks)} block(s) at {address}", hint
    _session(ctx, op)
