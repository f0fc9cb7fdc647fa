"""What the ``vfu-virtio`` subcommands share: the logging options (accepted before and after a subcommand, in any
case), hex and key-file values refused in one line, and connecting to a device that may still be starting.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, TypeVar

import click

from .. import logs

T = TypeVar("T")

#: Seconds a client command waits, by default, for a socket that is absent or refuses (a device just started).
DEFAULT_WAIT_S = 5.0


def _apply_logging(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Option callback: (re)configure logging when ``--log-level`` or ``--log-format`` is given here."""
    if value is None:
        return None
    obj = ctx.find_root().ensure_object(dict)
    key = "log_level_name" if param.name == "log_level" else "log_format"
    obj[key] = value.lower()
    obj["log_level"] = logs.setup(obj.get("log_level_name", "info"), obj.get("log_format", "text"))
    return value


def log_options() -> list[click.Option]:
    """``--log-level`` and ``--log-format``, for the group and for each subcommand (the later one wins)."""
    return [
        click.Option(["--log-level"], type=click.Choice(logs.LEVELS, case_sensitive=False), default=None,
                     expose_value=False, is_eager=True, callback=_apply_logging,
                     help="Least severe log level written to stderr, any case (default info): debug adds one line "
                          "per request and libvfio-user's own detail."),
        click.Option(["--log-format"], type=click.Choice(logs.FORMATS, case_sensitive=False), default=None,
                     expose_value=False, is_eager=True, callback=_apply_logging,
                     help="Log lines as text (default) or json: one JSON object per line (time, level, logger, "
                          "message)."),
    ]


def with_log_options(command: click.Command) -> click.Command:
    """Add :func:`log_options` to ``command`` (a decorator, after the click decorators)."""
    command.params.extend(log_options())
    return command


def wait_option() -> Callable:
    return click.option("--wait", "wait", type=click.FloatRange(0), default=DEFAULT_WAIT_S, show_default=True,
                        metavar="SECONDS", help="Wait this long for a socket that is absent or refuses (a device "
                                                "started a moment ago); 0: fail at once.")


def hex_value(value: str, option: str) -> bytes:
    """``value`` as bytes from hex digits (spaces allowed); one-line :class:`click.BadParameter` otherwise."""
    try:
        return bytes.fromhex(value)
    except ValueError:
        shown = value if len(value) <= 40 else value[:37] + "..."
        raise click.BadParameter(f"{shown!r} is not hex digits (two per byte, e.g. 68656c6c6f)",
                                 param_hint=option) from None


def read_file(path: str, option: str, limit: int = 1 << 30) -> bytes:
    """The bytes of ``path`` (at most ``limit``); one-line :class:`click.BadParameter` when it cannot be read."""
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise click.BadParameter(f"{path}: {e.strerror}", param_hint=option) from None
    if len(data) > limit:
        raise click.BadParameter(f"{path} holds more than {limit} bytes", param_hint=option)
    return data


def read_key_file(path: str, option: str = "--key-file", size: int = 32) -> bytes:
    """A key file: exactly ``size`` raw bytes, or ``2 * size`` hex digits (surrounding whitespace allowed);
    one-line :class:`click.BadParameter` naming the file, what it holds and what is expected otherwise."""
    raw = read_file(path, option, limit=4096)
    if len(raw) == size:
        return raw
    text = raw.strip()
    if len(text) == 2 * size:
        try:
            return bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            pass
    raise click.BadParameter(f"{path} holds {len(raw)} bytes; a key file holds exactly {size} raw bytes (or "
                             f"{2 * size} hex digits)", param_hint=option)


def connect(open_: Callable[[], T], socket_path: str, wait: float) -> T:
    """``open_()`` (a connection to ``socket_path``), retried for up to ``wait`` seconds while the socket is
    absent or refuses; one-line :class:`click.ClickException` when it never answers."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return open_()
        except (FileNotFoundError, ConnectionRefusedError, BlockingIOError) as e:
            if time.monotonic() >= deadline:
                why = "no such socket" if isinstance(e, FileNotFoundError) else (
                    "nothing accepts connections there" if isinstance(e, ConnectionRefusedError)
                    else "the device is busy with another client")
                waited = f" (waited {wait:g} s)" if wait else ""
                raise click.ClickException(f"{socket_path}: {why}{waited}") from None
            time.sleep(0.1)


def output(data: bytes, path: str | None) -> None:
    """``data`` to the file ``path``, or as hex digits on one line of stdout."""
    if path:
        Path(path).write_bytes(data)
    else:
        click.echo(data.hex())
