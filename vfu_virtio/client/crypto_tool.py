"""A crypto device for a person or a script: what it offers, and one operation per call, by algorithm name.

:class:`CryptoClient` drives a running ``vfu-virtio crypto`` device (or any virtio-crypto device on a vfio-user socket)
through the project's driver: :meth:`CryptoClient.offered` decodes ``struct virtio_crypto_config`` ("Device
configuration layout") into the services and algorithm names it advertises; :meth:`~CryptoClient.cipher`,
:meth:`~CryptoClient.hash`, :meth:`~CryptoClient.mac`, :meth:`~CryptoClient.aead`, :meth:`~CryptoClient.sign` and
:meth:`~CryptoClient.verify` each create a session on the controlq, run one request on data queue 0 and destroy the
session. Requests are built by :mod:`vfu_virtio.client.crypto` (the published standard's layouts, as the Linux driver
lays them out); algorithm names are the standard's with dashes (``aes-cbc``, ``sha-256``, ``hmac-sha-256``,
``aes-gcm``, ``rsa``, ``ecdsa``): :data:`CIPHERS`, :data:`HASHES`, :data:`MACS`, :data:`AEADS`, :data:`AKCIPHERS`.
A status other than OK raises :class:`CryptoStatusError` naming the operation and the status; a request larger than
the device's ``max_size`` is refused before it is sent (:class:`CryptoClientError`).

Public-key material is parsed with ``cryptography`` (PEM or DER, PKCS#8 or the traditional forms) and sent as the
standard wants it: RSA keys as DER RSAPrivateKey / RSAPublicKey (PKCS#1), ECDSA private keys as DER ECPrivateKey and
public keys as the uncompressed X9.62 point. Signing takes a digest ("AKCIPHER Service Operation": the device signs
what it is given).

Imports only the side-neutral :mod:`vfu_virtio.abi` and the driver side.
"""
from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ..abi import crypto as C
from . import crypto as D
from .virtio_pci import VirtioPciDriver

#: Cipher algorithm names -> the standard's values ("CIPHER services").
CIPHERS = {
    "arc4": C.VIRTIO_CRYPTO_CIPHER_ARC4, "aes-ecb": C.VIRTIO_CRYPTO_CIPHER_AES_ECB,
    "aes-cbc": C.VIRTIO_CRYPTO_CIPHER_AES_CBC, "aes-ctr": C.VIRTIO_CRYPTO_CIPHER_AES_CTR,
    "des-ecb": C.VIRTIO_CRYPTO_CIPHER_DES_ECB, "des-cbc": C.VIRTIO_CRYPTO_CIPHER_DES_CBC,
    "3des-ecb": C.VIRTIO_CRYPTO_CIPHER_3DES_ECB, "3des-cbc": C.VIRTIO_CRYPTO_CIPHER_3DES_CBC,
    "3des-ctr": C.VIRTIO_CRYPTO_CIPHER_3DES_CTR, "kasumi-f8": C.VIRTIO_CRYPTO_CIPHER_KASUMI_F8,
    "snow3g-uea2": C.VIRTIO_CRYPTO_CIPHER_SNOW3G_UEA2, "aes-f8": C.VIRTIO_CRYPTO_CIPHER_AES_F8,
    "aes-xts": C.VIRTIO_CRYPTO_CIPHER_AES_XTS, "zuc-eea3": C.VIRTIO_CRYPTO_CIPHER_ZUC_EEA3,
}
#: Hash algorithm names -> (value, default result length in bytes) ("HASH services").
HASHES = {
    "md5": (C.VIRTIO_CRYPTO_HASH_MD5, 16), "sha1": (C.VIRTIO_CRYPTO_HASH_SHA1, 20),
    "sha-224": (C.VIRTIO_CRYPTO_HASH_SHA_224, 28), "sha-256": (C.VIRTIO_CRYPTO_HASH_SHA_256, 32),
    "sha-384": (C.VIRTIO_CRYPTO_HASH_SHA_384, 48), "sha-512": (C.VIRTIO_CRYPTO_HASH_SHA_512, 64),
    "sha3-224": (C.VIRTIO_CRYPTO_HASH_SHA3_224, 28), "sha3-256": (C.VIRTIO_CRYPTO_HASH_SHA3_256, 32),
    "sha3-384": (C.VIRTIO_CRYPTO_HASH_SHA3_384, 48), "sha3-512": (C.VIRTIO_CRYPTO_HASH_SHA3_512, 64),
    "shake128": (C.VIRTIO_CRYPTO_HASH_SHA3_SHAKE128, 16), "shake256": (C.VIRTIO_CRYPTO_HASH_SHA3_SHAKE256, 32),
}
#: MAC algorithm names -> (value, default result length in bytes) ("MAC services").
MACS = {
    "hmac-md5": (C.VIRTIO_CRYPTO_MAC_HMAC_MD5, 16), "hmac-sha1": (C.VIRTIO_CRYPTO_MAC_HMAC_SHA1, 20),
    "hmac-sha-224": (C.VIRTIO_CRYPTO_MAC_HMAC_SHA_224, 28), "hmac-sha-256": (C.VIRTIO_CRYPTO_MAC_HMAC_SHA_256, 32),
    "hmac-sha-384": (C.VIRTIO_CRYPTO_MAC_HMAC_SHA_384, 48), "hmac-sha-512": (C.VIRTIO_CRYPTO_MAC_HMAC_SHA_512, 64),
    "cmac-3des": (C.VIRTIO_CRYPTO_MAC_CMAC_3DES, 8), "cmac-aes": (C.VIRTIO_CRYPTO_MAC_CMAC_AES, 16),
    "kasumi-f9": (C.VIRTIO_CRYPTO_MAC_KASUMI_F9, 4), "snow3g-uia2": (C.VIRTIO_CRYPTO_MAC_SNOW3G_UIA2, 4),
    "gmac-aes": (C.VIRTIO_CRYPTO_MAC_GMAC_AES, 16), "gmac-twofish": (C.VIRTIO_CRYPTO_MAC_GMAC_TWOFISH, 16),
    "cbcmac-aes": (C.VIRTIO_CRYPTO_MAC_CBCMAC_AES, 16), "cbcmac-kasumi-f9": (C.VIRTIO_CRYPTO_MAC_CBCMAC_KASUMI_F9, 4),
    "xcbc-aes": (C.VIRTIO_CRYPTO_MAC_XCBC_AES, 16), "zuc-eia3": (C.VIRTIO_CRYPTO_MAC_ZUC_EIA3, 4),
}
#: AEAD algorithm names -> the standard's values ("AEAD services").
AEADS = {"aes-gcm": C.VIRTIO_CRYPTO_AEAD_GCM, "aes-ccm": C.VIRTIO_CRYPTO_AEAD_CCM,
         "chacha20-poly1305": C.VIRTIO_CRYPTO_AEAD_CHACHA20_POLY1305}
#: Public-key algorithm names -> the standard's values ("AKCIPHER services").
AKCIPHERS = {"rsa": C.VIRTIO_CRYPTO_AKCIPHER_RSA, "ecdsa": C.VIRTIO_CRYPTO_AKCIPHER_ECDSA}
#: Digest names for RSA PKCS#1 v1.5 signatures -> (hash_algo value, digest size in bytes).
RSA_HASHES = {"sha1": (C.VIRTIO_CRYPTO_RSA_SHA1, 20), "sha-224": (C.VIRTIO_CRYPTO_RSA_SHA224, 28),
              "sha-256": (C.VIRTIO_CRYPTO_RSA_SHA256, 32), "sha-384": (C.VIRTIO_CRYPTO_RSA_SHA384, 48),
              "sha-512": (C.VIRTIO_CRYPTO_RSA_SHA512, 64), "md5": (C.VIRTIO_CRYPTO_RSA_MD5, 16)}
#: ``cryptography`` curve names -> the standard's curve_id.
CURVES = {"secp192r1": C.VIRTIO_CRYPTO_CURVE_NIST_P192, "secp224r1": C.VIRTIO_CRYPTO_CURVE_NIST_P224,
          "secp256r1": C.VIRTIO_CRYPTO_CURVE_NIST_P256, "secp384r1": C.VIRTIO_CRYPTO_CURVE_NIST_P384,
          "secp521r1": C.VIRTIO_CRYPTO_CURVE_NIST_P521}
#: Host-side digests for a message to sign or verify (the device signs a digest).
HOST_DIGESTS = {"sha1": hashes.SHA1, "sha-224": hashes.SHA224, "sha-256": hashes.SHA256, "sha-384": hashes.SHA384,
                "sha-512": hashes.SHA512}


class CryptoClientError(Exception):
    """A request the client will not send (unknown name, too large, bad key); one line saying why."""


class CryptoStatusError(CryptoClientError):
    """The device answered an operation with a status other than OK: ``status`` (int), ``status_name``, ``what``."""

    def __init__(self, what: str, status: int):
        self.what = what
        self.status = status
        self.status_name = C.STATUS_NAMES.get(status, f"status {status}")
        super().__init__(f"{what}: the device answered {self.status_name}")


@dataclass(frozen=True)
class CryptoConfig:
    """``struct virtio_crypto_config`` (56 bytes, "Device configuration layout"): ``status`` (bit 0 HW_READY),
    ``max_dataqueues``, ``crypto_services`` (bit per service), algorithm masks (bit v = algorithm value v, AMB-5),
    ``max_cipher_key_len`` and ``max_auth_key_len`` in bytes, ``max_size`` (bytes of a request's variable-length
    fields, AMB-13)."""

    status: int
    max_dataqueues: int
    crypto_services: int
    cipher_algo: int
    hash_algo: int
    mac_algo: int
    aead_algo: int
    max_cipher_key_len: int
    max_auth_key_len: int
    akcipher_algo: int
    max_size: int

    @classmethod
    def unpack(cls, raw: bytes) -> "CryptoConfig":
        (status, dataqueues, services, cipher_l, cipher_h, hash_algo, mac_l, mac_h, aead, max_ck, max_ak, akcipher,
         max_size) = C.VIRTIO_CRYPTO_CONFIG.unpack(raw[:C.VIRTIO_CRYPTO_CONFIG.size])
        return cls(status, dataqueues, services, cipher_l | cipher_h << 32, hash_algo, mac_l | mac_h << 32, aead,
                   max_ck, max_ak, akcipher, max_size)


def _names(mask: int, table: dict) -> list[str]:
    return [name for name, value in table.items() if mask >> (value[0] if isinstance(value, tuple) else value) & 1]


def _pick(name: str, table: dict, what: str):
    try:
        return table[name]
    except KeyError:
        raise CryptoClientError(f"unknown {what} {name!r}; known: {', '.join(table)}") from None


class CryptoClient:
    """Operations on a crypto device through ``driver`` (an initialised :class:`VirtioPciDriver`); see the module
    docstring. :meth:`connect` makes one from a socket path; ``timeout`` bounds each request (seconds)."""

    def __init__(self, driver: VirtioPciDriver, timeout: float = 30.0):
        self.driver = driver
        self.timeout = timeout
        self.config = CryptoConfig.unpack(driver.device_config(0, C.VIRTIO_CRYPTO_CONFIG.size))
        self.controlq = driver.num_queues - 1

    @classmethod
    def connect(cls, socket_path: str, timeout: float = 30.0, mem_size: int = 64 << 20) -> "CryptoClient":
        """Connect to the device on ``socket_path`` and initialise it (every queue, DRIVER_OK); raises
        :class:`CryptoClientError` if it is not a crypto device, the driver's exceptions otherwise."""
        drv = VirtioPciDriver.connect(socket_path, mem_size=mem_size)
        try:
            drv.init()
            if drv.virtio_device_id != C.VIRTIO_ID_CRYPTO:
                raise CryptoClientError(f"{socket_path} serves virtio device {drv.virtio_device_id}, not crypto "
                                        f"({C.VIRTIO_ID_CRYPTO})")
            return cls(drv, timeout)
        except BaseException:
            drv.close()
            raise

    def close(self) -> None:
        self.driver.close()

    def __enter__(self) -> "CryptoClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- what the device offers --------------------------------------------------------------------------------
    def offered(self) -> dict[str, list[str]]:
        """``{service: [algorithm names]}`` for every service the configuration advertises (CIPHER, HASH, MAC, AEAD,
        AKCIPHER), from its algorithm masks."""
        cfg = self.config
        masks = {C.VIRTIO_CRYPTO_SERVICE_CIPHER: (cfg.cipher_algo, CIPHERS),
                 C.VIRTIO_CRYPTO_SERVICE_HASH: (cfg.hash_algo, HASHES),
                 C.VIRTIO_CRYPTO_SERVICE_MAC: (cfg.mac_algo, MACS),
                 C.VIRTIO_CRYPTO_SERVICE_AEAD: (cfg.aead_algo, AEADS),
                 C.VIRTIO_CRYPTO_SERVICE_AKCIPHER: (cfg.akcipher_algo, AKCIPHERS)}
        return {C.SERVICE_NAMES[svc]: _names(mask, table) for svc, (mask, table) in masks.items()
                if cfg.crypto_services >> svc & 1}

    # ---- plumbing ----------------------------------------------------------------------------------------------
    def _check_size(self, what: str, *fields: bytes) -> None:
        size = sum(map(len, fields))
        if size > self.config.max_size:
            raise CryptoClientError(f"{what}: {size} bytes of keys and data; the device takes at most max_size "
                                    f"{self.config.max_size} bytes per request")

    def _session(self, what: str, req: D.Request) -> int:
        _used, (outcome,) = self.driver.queue(self.controlq).request([req.readable], [req.writable], self.timeout)
        session_id, status = D.session_input(outcome)
        if status != C.VIRTIO_CRYPTO_OK:
            raise CryptoStatusError(f"{what} session", status)
        return session_id

    def _destroy(self, opcode: int, session_id: int) -> None:
        req = D.destroy_session(opcode, session_id)
        self.driver.queue(self.controlq).request([req.readable], [req.writable], self.timeout)

    def _data(self, what: str, req: D.Request) -> tuple[bytes, int]:
        """Run ``req`` on data queue 0: (the writable bytes before the status, the used length)."""
        used, (out,) = self.driver.queue(0).request([req.readable], [req.writable], self.timeout)
        if out[-1] != C.VIRTIO_CRYPTO_OK:
            raise CryptoStatusError(what, out[-1])
        return out[:-1], used

    def _with_session(self, what: str, create: D.Request, destroy_opcode: int, run) -> bytes:
        session_id = self._session(what, create)
        try:
            return run(session_id)
        finally:
            self._destroy(destroy_opcode, session_id)

    # ---- operations --------------------------------------------------------------------------------------------
    def cipher(self, algo: str, key: bytes, iv: bytes, data: bytes, encrypt: bool = True) -> bytes:
        """``data`` encrypted (or decrypted) with cipher ``algo`` under ``key`` and ``iv``; the same length."""
        value = _pick(algo, CIPHERS, "cipher")
        what = f"{algo} {'encrypt' if encrypt else 'decrypt'}"
        self._check_size(what, key, iv, data)
        op = C.VIRTIO_CRYPTO_OP_ENCRYPT if encrypt else C.VIRTIO_CRYPTO_OP_DECRYPT
        opcode = C.VIRTIO_CRYPTO_CIPHER_ENCRYPT if encrypt else C.VIRTIO_CRYPTO_CIPHER_DECRYPT
        return self._with_session(what, D.cipher_create_session(value, key, op),
                                  C.VIRTIO_CRYPTO_CIPHER_DESTROY_SESSION,
                                  lambda sid: self._data(what, D.cipher_data(opcode, sid, iv, data))[0])

    def hash(self, algo: str, data: bytes, result_len: int | None = None) -> bytes:
        """The ``algo`` digest of ``data`` (``result_len`` bytes; default the digest size)."""
        value, default = _pick(algo, HASHES, "hash")
        n = result_len or default
        self._check_size(algo, data)
        return self._with_session(algo, D.hash_create_session(value, n), C.VIRTIO_CRYPTO_HASH_DESTROY_SESSION,
                                  lambda sid: self._data(algo, D.digest_data(C.VIRTIO_CRYPTO_HASH, sid, data, n))[0])

    def mac(self, algo: str, key: bytes, data: bytes, result_len: int | None = None) -> bytes:
        """The ``algo`` MAC of ``data`` under ``key`` (``result_len`` bytes; default the full tag)."""
        value, default = _pick(algo, MACS, "MAC")
        n = result_len or default
        self._check_size(algo, key, data)
        return self._with_session(algo, D.mac_create_session(value, n, key), C.VIRTIO_CRYPTO_MAC_DESTROY_SESSION,
                                  lambda sid: self._data(algo, D.digest_data(C.VIRTIO_CRYPTO_MAC, sid, data, n))[0])

    def aead(self, algo: str, key: bytes, iv: bytes, data: bytes, aad: bytes = b"", tag_len: int = 16,
             encrypt: bool = True) -> bytes:
        """AEAD ``algo``: encrypting, ``data`` -> ciphertext || tag (``tag_len`` bytes); decrypting, ciphertext ||
        tag -> plaintext (:class:`CryptoStatusError` BADMSG when the tag does not verify)."""
        value = _pick(algo, AEADS, "AEAD")
        what = f"{algo} {'encrypt' if encrypt else 'decrypt'}"
        self._check_size(what, key, iv, data, aad)
        if not encrypt and len(data) < tag_len:
            raise CryptoClientError(f"{what}: {len(data)} bytes cannot hold a {tag_len}-byte tag")
        dst_len = len(data) + tag_len if encrypt else len(data) - tag_len
        op = C.VIRTIO_CRYPTO_OP_ENCRYPT if encrypt else C.VIRTIO_CRYPTO_OP_DECRYPT
        opcode = C.VIRTIO_CRYPTO_AEAD_ENCRYPT if encrypt else C.VIRTIO_CRYPTO_AEAD_DECRYPT
        return self._with_session(
            what, D.aead_create_session(value, key, tag_len, len(aad), op), C.VIRTIO_CRYPTO_AEAD_DESTROY_SESSION,
            lambda sid: self._data(what, D.aead_data(opcode, sid, iv, data, aad, tag_len, dst_len))[0][:dst_len])

    def sign(self, key_pem_or_der: bytes, digest: bytes, hash_name: str = "sha-256") -> bytes:
        """The device's signature of ``digest`` with the private key (PEM or DER): RSA PKCS#1 v1.5 with DigestInfo
        of ``hash_name`` (``digest`` is that hash), or ECDSA (DER Ecdsa-Sig-Value)."""
        key = _load_key(key_pem_or_der, private=True)
        algo, wire, params, size = _akcipher(key, hash_name)
        create = D.akcipher_create_session(algo, C.VIRTIO_CRYPTO_AKCIPHER_KEY_TYPE_PRIVATE, wire, **params)
        self._check_size("sign", wire, digest)

        def run(sid: int) -> bytes:
            out, used = self._data("sign", D.akcipher_data(C.VIRTIO_CRYPTO_AKCIPHER_SIGN, sid, digest, size))
            return out[:used - 1]  # AKCIPHER: the used length is the result's length + 1 (AMB-3)
        return self._with_session("sign", create, C.VIRTIO_CRYPTO_AKCIPHER_DESTROY_SESSION, run)

    def verify(self, key_pem_or_der: bytes, digest: bytes, signature: bytes, hash_name: str = "sha-256") -> bool:
        """Whether the device finds ``signature`` valid for ``digest`` under the key (PEM or DER, public or private:
        its public half is used): True for OK, False for KEY_REJECTED; another status raises."""
        key = _load_key(key_pem_or_der, private=False)
        algo, wire, params, _size = _akcipher(key, hash_name)
        create = D.akcipher_create_session(algo, C.VIRTIO_CRYPTO_AKCIPHER_KEY_TYPE_PUBLIC, wire, **params)
        self._check_size("verify", wire, digest, signature)

        def run(sid: int) -> bool:
            try:
                self._data("verify", D.akcipher_data(C.VIRTIO_CRYPTO_AKCIPHER_VERIFY, sid, signature, 0, digest))
            except CryptoStatusError as e:
                if e.status == C.VIRTIO_CRYPTO_KEY_REJECTED:
                    return False
                raise
            return True
        return self._with_session("verify", create, C.VIRTIO_CRYPTO_AKCIPHER_DESTROY_SESSION, run)


def host_digest(hash_name: str, message: bytes) -> bytes:
    """``message``'s digest computed on the host with ``cryptography`` (for :meth:`CryptoClient.sign`)."""
    h = hashes.Hash(_pick(hash_name, HOST_DIGESTS, "digest")())
    h.update(message)
    return h.finalize()


def _load_key(data: bytes, private: bool):
    """A ``cryptography`` RSA or EC key from PEM or DER (a private key for ``private``, else either half)."""
    loaders = [serialization.load_pem_private_key, serialization.load_der_private_key]
    if not private:
        loaders += [serialization.load_pem_public_key, serialization.load_der_public_key]
    for load in loaders:
        try:
            key = load(data, None) if "private" in load.__name__ else load(data)
        except (ValueError, TypeError):
            continue
        if not private and hasattr(key, "public_key"):
            key = key.public_key()
        if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey, ec.EllipticCurvePrivateKey,
                            ec.EllipticCurvePublicKey)):
            return key
        raise CryptoClientError(f"the key is a {type(key).__name__}; the device signs with RSA or ECDSA keys")
    raise CryptoClientError(f"the key file holds no {'private ' if private else ''}key in PEM or DER (RSA or EC, "
                            "unencrypted)")


def _akcipher(key, hash_name: str) -> tuple[int, bytes, dict, int]:
    """(algorithm value, key bytes as the standard wants them, session parameters, room for a signature)."""
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        hash_algo = _pick(hash_name, RSA_HASHES, "RSA signature hash")[0]
        if isinstance(key, rsa.RSAPrivateKey):
            wire = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
                                     serialization.NoEncryption())
        else:
            wire = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
        params = {"padding": C.VIRTIO_CRYPTO_RSA_PKCS1_PADDING, "hash_algo": hash_algo}
        return C.VIRTIO_CRYPTO_AKCIPHER_RSA, wire, params, (key.key_size + 7) // 8
    curve = _pick(key.curve.name, CURVES, "curve")
    if isinstance(key, ec.EllipticCurvePrivateKey):
        wire = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
                                 serialization.NoEncryption())
    else:
        wire = key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return C.VIRTIO_CRYPTO_AKCIPHER_ECDSA, wire, {"curve": curve}, 2 * ((key.curve.key_size + 7) // 8) + 9
