"""``vfu-virtio crypto-client`` against a real crypto server: what the device offers, and cipher, hash, MAC, AEAD,
sign and verify on hex and files, each checked against published vectors or against ``cryptography`` on the host;
error statuses and bad values in one line. The library under it (``vfu_virtio.client.crypto_tool``) too."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from conftest import TOP
from vfu_virtio.client.crypto_tool import CryptoClient, CryptoClientError, CryptoStatusError

# NIST SP 800-38A F.2.1 (AES-128-CBC encrypt), first two blocks
SP800_38A_KEY = "2b7e151628aed2a6abf7158809cf4f3c"
SP800_38A_IV = "000102030405060708090a0b0c0d0e0f"
SP800_38A_PLAIN = "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
SP800_38A_CIPHER = "7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2"
# FIPS 180-2 "abc"
SHA256_ABC = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
# RFC 4231 test case 2: HMAC-SHA-256, key "Jefe", data "what do ya want for nothing?"
RFC4231_2 = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vfu_virtio", *args], capture_output=True, text=True, timeout=60,
                          cwd=TOP, env=dict(os.environ))


@pytest.fixture
def crypto(serve):
    server = serve("crypto", "--queues", "1", "--max-size", "4096")
    return lambda *args: cli("crypto-client", "--socket", server.socket, *args)


def ok(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    return r.stdout


def test_info_lists_what_the_device_offers(crypto):
    lines = ok(crypto("info")).splitlines()
    assert lines[0] == ("status 0x1 (HW_READY), max_dataqueues 1, max_size 4096 bytes, max_cipher_key_len 64 bytes, "
                        "max_auth_key_len 512 bytes")
    offered = dict(line.split(": ", 1) for line in lines[1:])
    assert set(offered) == {"CIPHER", "HASH", "MAC", "AEAD", "AKCIPHER"}
    assert "aes-cbc" in offered["CIPHER"].split() and "sha-256" in offered["HASH"].split()
    assert offered["AEAD"].split() == ["aes-gcm", "aes-ccm", "chacha20-poly1305"]
    assert offered["AKCIPHER"].split() == ["rsa", "ecdsa"]


def test_cipher_hash_and_mac_match_published_vectors(crypto, tmp_path):
    out = ok(crypto("cipher", "--algo", "aes-cbc", "--key-hex", SP800_38A_KEY, "--iv-hex", SP800_38A_IV,
                    "--data-hex", SP800_38A_PLAIN))
    assert out == SP800_38A_CIPHER + "\n"
    ct = tmp_path / "ct"
    ok(crypto("cipher", "--algo", "aes-cbc", "--key-hex", SP800_38A_KEY, "--iv-hex", SP800_38A_IV, "--data-hex",
              SP800_38A_CIPHER, "--decrypt", "--out", str(ct)))
    assert ct.read_bytes().hex() == SP800_38A_PLAIN
    data = tmp_path / "abc"
    data.write_bytes(b"abc")
    assert ok(crypto("hash", "--algo", "sha-256", "--in", str(data))) == SHA256_ABC + "\n"
    assert ok(crypto("hash", "--algo", "sha-256", "--data-hex", "616263", "--length", "4")) == SHA256_ABC[:8] + "\n"
    key = tmp_path / "jefe"
    key.write_bytes(b"Jefe")
    assert ok(crypto("mac", "--algo", "hmac-sha-256", "--key-file", str(key), "--data-hex",
                     b"what do ya want for nothing?".hex())) == RFC4231_2 + "\n"


def test_aead_round_trip_agrees_with_the_host(crypto):
    key, nonce, aad, plain = bytes(range(16)), bytes(12), b"header", b"attack at dawn"
    sealed = bytes.fromhex(ok(crypto("aead", "--algo", "aes-gcm", "--key-hex", key.hex(), "--iv-hex", nonce.hex(),
                                     "--aad-hex", aad.hex(), "--data-hex", plain.hex())).strip())
    assert sealed == AESGCM(key).encrypt(nonce, plain, aad)
    opened = ok(crypto("aead", "--algo", "aes-gcm", "--decrypt", "--key-hex", key.hex(), "--iv-hex", nonce.hex(),
                       "--aad-hex", aad.hex(), "--data-hex", sealed.hex()))
    assert bytes.fromhex(opened.strip()) == plain
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    r = crypto("aead", "--algo", "aes-gcm", "--decrypt", "--key-hex", key.hex(), "--iv-hex", nonce.hex(),
               "--aad-hex", aad.hex(), "--data-hex", tampered.hex())
    assert r.returncode == 1 and r.stderr == "Error: aes-gcm decrypt: the device answered BADMSG\n"


def test_sign_and_verify_with_ecdsa_and_rsa_keys(crypto, tmp_path):
    message = tmp_path / "message"
    message.write_bytes(b"sign me")
    digest = hashes.Hash(hashes.SHA256())
    digest.update(b"sign me")
    digest = digest.finalize()
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for name, key in (("ec", ec_key), ("rsa", rsa_key)):
        pem = tmp_path / f"{name}.pem"
        pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
        pub = tmp_path / f"{name}.pub.der"
        pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.DER,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo))
        sig = tmp_path / f"{name}.sig"
        ok(crypto("sign", "--key-file", str(pem), "--in", str(message), "--out", str(sig)))
        if name == "ec":
            key.public_key().verify(sig.read_bytes(), digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
        else:
            key.public_key().verify(sig.read_bytes(), b"sign me", padding.PKCS1v15(), hashes.SHA256())
        assert ok(crypto("verify", "--key-file", str(pub), "--in", str(message), "--signature-file",
                         str(sig))) == "signature OK\n"
        assert ok(crypto("verify", "--key-file", str(pem), "--prehashed", "--data-hex", digest.hex(),
                         "--signature-file", str(sig))) == "signature OK\n"
        r = crypto("verify", "--key-file", str(pub), "--data-hex", "00", "--signature-file", str(sig))
        assert r.returncode == 1 and r.stderr == \
            "Error: signature does not verify (the device answered KEY_REJECTED)\n"


def test_errors_are_one_line(crypto, tmp_path):
    r = crypto("cipher", "--algo", "aes-cbc", "--key-hex", "00" * 5, "--iv-hex", "00" * 16, "--data-hex", "00" * 16)
    assert r.returncode == 1 and r.stderr == "Error: aes-cbc encrypt session: the device answered ERR\n"
    r = crypto("hash", "--algo", "sha-256", "--data-hex", "00" * 5000)
    assert r.returncode == 1 and r.stderr == ("Error: sha-256: 5000 bytes of keys and data; the device takes at most "
                                              "max_size 4096 bytes per request\n")
    r = crypto("hash", "--algo", "sha-256", "--data-hex", "xyz")
    assert r.returncode == 2 and r.stderr.splitlines()[-1] == \
        "Error: Invalid value for --data-hex: 'xyz' is not hex digits (two per byte, e.g. 68656c6c6f)"
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key")
    r = crypto("sign", "--key-file", str(junk), "--data-hex", "00")
    assert r.returncode == 1 and r.stderr == \
        "Error: the key file holds no private key in PEM or DER (RSA or EC, unencrypted)\n"
    r = cli("crypto-client", "--socket", str(tmp_path / "none.sock"), "--wait", "0", "info")
    assert r.returncode == 1 and r.stderr == f"Error: {tmp_path / 'none.sock'}: no such socket\n"
    assert cli("crypto-client", "cipher", "--help").returncode == 0


@pytest.mark.ring_neutral
def test_the_library_refuses_another_kind_and_unknown_names(serve):
    rpmb = serve("rpmb")
    with pytest.raises(CryptoClientError, match=r"serves virtio device 28, not crypto \(20\)"):
        CryptoClient.connect(rpmb.socket)
    crypto = serve("crypto", "--queues", "1", name="c")
    with CryptoClient.connect(crypto.socket) as c:
        with pytest.raises(CryptoClientError, match="unknown hash 'sha-999'; known: md5, sha1"):
            c.hash("sha-999", b"")
        with pytest.raises(CryptoStatusError) as e:
            c.mac("hmac-sha-256", b"k", b"x", result_len=99)
        assert e.value.status_name == "ERR"
