"""``vfu-virtio crypto-client``: smoke-test a running crypto device from the shell through the project's driver.

Subcommands: ``info`` (configuration and what the device offers, by algorithm name), ``cipher``, ``hash``, ``mac``,
``aead``, ``sign``, ``verify``. Inputs come as hex (``--data-hex``) or from a file (``--in``), keys as hex
(``--key-hex``) or a file (``--key-file``: raw bytes for symmetric keys, PEM or DER for sign and verify); results go
to stdout as hex, or raw to ``--out FILE``. A status other than OK exits 1 with one line naming the operation and the
status; bad values are refused in one line naming the value and what is expected. The work is
:class:`vfu_virtio.client.crypto_tool.CryptoClient`, whose requests come from :mod:`vfu_virtio.client.crypto`.
"""
from __future__ import annotations

import click

from ..client.crypto_tool import AEADS, CIPHERS, HASHES, MACS
from .common import connect, hex_value, output, read_file, wait_option, with_log_options


@click.group("crypto-client")
@click.option("--socket", "socket", type=click.Path(dir_okay=False),
              help="vfio-user socket of a running `vfu-virtio crypto` server (needed by every subcommand).")
@wait_option()
@click.pass_context
def crypto_client(ctx: click.Context, socket: str | None, wait: float) -> None:
    """Host-side crypto client through the project's vfio-user driver (no guest needed): list what the device
    offers and run cipher, hash, MAC, AEAD, sign and verify requests on hex or files.

    Each operation creates a session on the controlq, runs one request on data queue 0 and destroys the session.
    A status other than OK exits 1.
    """
    ctx.ensure_object(dict)["crypto"] = {"socket": socket, "wait": wait}


def _run(ctx: click.Context, op):
    """Connect, ``op(client)``, close; the client's and the driver's errors as one line."""
    from ..client import VfioUserError, VirtioDriverError
    from ..client.crypto_tool import CryptoClient, CryptoClientError
    opts = ctx.obj["crypto"]
    socket = opts["socket"]
    if not socket:
        raise click.UsageError("crypto-client needs --socket SOCKET (before the subcommand)")
    try:
        client = connect(lambda: CryptoClient.connect(socket), socket, opts["wait"])
        with client:
            return op(client)
    except CryptoClientError as e:
        raise click.ClickException(str(e)) from None
    except (VfioUserError, VirtioDriverError, OSError) as e:
        raise click.ClickException(f"{socket}: {e}") from None


def _data(data_hex: str | None, path: str | None, what: str = "data", required: bool = True) -> bytes | None:
    """One input: exactly one of ``--<what>-hex`` and its file option (``--in`` for data)."""
    flag = f"--{what}-hex"
    file_flag = "--in" if what == "data" else f"--{what}-file"
    if data_hex is not None and path is not None:
        raise click.UsageError(f"give one of {flag} and {file_flag}, not both")
    if data_hex is not None:
        return hex_value(data_hex, flag)
    if path is not None:
        return read_file(path, file_flag)
    if required:
        raise click.UsageError(f"give {flag} or {file_flag}")
    return None


def _input_options(f):
    f = click.option("--in", "in_file", type=click.Path(dir_okay=False), help="Input data from this file.")(f)
    f = click.option("--data-hex", metavar="HEX", help="Input data as hex digits.")(f)
    return f


def _key_options(f, help_file: str = "The key, raw bytes, from this file."):
    f = click.option("--key-file", type=click.Path(dir_okay=False), help=help_file)(f)
    f = click.option("--key-hex", metavar="HEX", help="The key as hex digits.")(f)
    return f


def _out_option(f):
    return click.option("--out", type=click.Path(dir_okay=False),
                        help="Write the result (raw bytes) here instead of hex to stdout.")(f)


def _algo(names: dict, default: str | None = None):
    return click.option("--algo", type=click.Choice(sorted(names)), required=default is None, default=default,
                        show_default=default is not None, help="Algorithm (the device must offer it: see `info`).")


@with_log_options
@crypto_client.command("info")
@click.pass_context
def crypto_info(ctx: click.Context) -> None:
    """Print the device configuration and the algorithms it offers per service."""
    def op(client):
        cfg = client.config
        click.echo(f"status {cfg.status:#x} ({'HW_READY' if cfg.status & 1 else 'not ready'}), max_dataqueues "
                   f"{cfg.max_dataqueues}, max_size {cfg.max_size} bytes, max_cipher_key_len "
                   f"{cfg.max_cipher_key_len} bytes, max_auth_key_len {cfg.max_auth_key_len} bytes")
        for service, names in client.offered().items():
            click.echo(f"{service}: {' '.join(names) or '(no algorithm)'}")
    _run(ctx, op)


@with_log_options
@crypto_client.command("cipher")
@_algo(CIPHERS)
@click.option("--decrypt", is_flag=True, help="Decrypt (default: encrypt).")
@_key_options
@click.option("--iv-hex", metavar="HEX", default="", help="The IV (or counter block) as hex digits.")
@_input_options
@_out_option
@click.pass_context
def crypto_cipher(ctx, algo, decrypt, key_hex, key_file, iv_hex, data_hex, in_file, out) -> None:
    """Encrypt or decrypt data with a cipher session (the output has the input's length)."""
    key, iv, data = _data(key_hex, key_file, "key"), hex_value(iv_hex, "--iv-hex"), _data(data_hex, in_file)
    output(_run(ctx, lambda c: c.cipher(algo, key, iv, data, encrypt=not decrypt)), out)


@with_log_options
@crypto_client.command("hash")
@_algo(HASHES)
@click.option("--length", type=click.IntRange(1), help="Result bytes (default: the digest size).")
@_input_options
@_out_option
@click.pass_context
def crypto_hash(ctx, algo, length, data_hex, in_file, out) -> None:
    """Hash data with a hash session."""
    data = _data(data_hex, in_file)
    output(_run(ctx, lambda c: c.hash(algo, data, length)), out)


@with_log_options
@crypto_client.command("mac")
@_algo(MACS)
@click.option("--length", type=click.IntRange(1), help="Result bytes (default: the full tag).")
@_key_options
@_input_options
@_out_option
@click.pass_context
def crypto_mac(ctx, algo, length, key_hex, key_file, data_hex, in_file, out) -> None:
    """MAC data with a MAC session."""
    key, data = _data(key_hex, key_file, "key"), _data(data_hex, in_file)
    output(_run(ctx, lambda c: c.mac(algo, key, data, length)), out)


@with_log_options
@crypto_client.command("aead")
@_algo(AEADS)
@click.option("--decrypt", is_flag=True, help="Decrypt ciphertext || tag (default: encrypt to ciphertext || tag).")
@_key_options
@click.option("--iv-hex", metavar="HEX", required=True, help="The IV / nonce as hex digits.")
@click.option("--aad-hex", metavar="HEX", default="", help="Additional authenticated data as hex digits.")
@click.option("--tag-len", type=click.IntRange(1, 16), default=16, show_default=True, help="Tag bytes.")
@_input_options
@_out_option
@click.pass_context
def crypto_aead(ctx, algo, decrypt, key_hex, key_file, iv_hex, aad_hex, tag_len, data_hex, in_file, out) -> None:
    """Encrypt to ciphertext || tag, or decrypt and verify it (BADMSG when the tag does not verify)."""
    key, data = _data(key_hex, key_file, "key"), _data(data_hex, in_file)
    iv, aad = hex_value(iv_hex, "--iv-hex"), hex_value(aad_hex, "--aad-hex")
    output(_run(ctx, lambda c: c.aead(algo, key, iv, data, aad, tag_len, encrypt=not decrypt)), out)


def _digest(data_hex, in_file, hash_name: str, prehashed: bool) -> bytes:
    from ..client.crypto_tool import CryptoClientError, host_digest
    message = _data(data_hex, in_file)
    if prehashed:
        return message
    try:
        return host_digest(hash_name, message)
    except CryptoClientError as e:
        raise click.BadParameter(str(e), param_hint="--hash") from None


def _sign_options(f):
    f = click.option("--prehashed", is_flag=True, help="The input is the digest itself (not hashed on the host).")(f)
    f = click.option("--hash", "hash_name", type=click.Choice(["sha1", "sha-224", "sha-256", "sha-384", "sha-512"]),
                     default="sha-256", show_default=True,
                     help="Digest of the input (computed on the host: the device signs a digest) and, for RSA, "
                          "the DigestInfo in the PKCS#1 v1.5 signature.")(f)
    f = click.option("--key-file", type=click.Path(dir_okay=False), required=True,
                     help="RSA or EC key, PEM or DER (unencrypted).")(f)
    return f


@with_log_options
@crypto_client.command("sign")
@_sign_options
@_input_options
@_out_option
@click.pass_context
def crypto_sign(ctx, key_file, hash_name, prehashed, data_hex, in_file, out) -> None:
    """Sign with an RSA (PKCS#1 v1.5) or ECDSA private key: the device signs the input's digest."""
    key = read_file(key_file, "--key-file", 1 << 16)
    digest = _digest(data_hex, in_file, hash_name, prehashed)
    output(_run(ctx, lambda c: c.sign(key, digest, hash_name)), out)


@with_log_options
@crypto_client.command("verify")
@_sign_options
@click.option("--signature-hex", metavar="HEX", help="The signature as hex digits.")
@click.option("--signature-file", type=click.Path(dir_okay=False), help="The signature from this file.")
@_input_options
@click.pass_context
def crypto_verify(ctx, key_file, hash_name, prehashed, signature_hex, signature_file, data_hex, in_file) -> None:
    """Verify a signature with an RSA or EC key (public or private): prints `signature OK`, or exits 1 with
    `signature does not verify` (KEY_REJECTED)."""
    key = read_file(key_file, "--key-file", 1 << 16)
    signature = _data(signature_hex, signature_file, "signature")
    digest = _digest(data_hex, in_file, hash_name, prehashed)
    if not _run(ctx, lambda c: c.verify(key, digest, signature, hash_name)):
        raise click.ClickException("signature does not verify (the device answered KEY_REJECTED)")
    click.echo("signature OK")
