"""The crypto services behind the wire: one session class per service, every primitive from ``cryptography``.

Profile-neutral: a session object is built from the parameter values of ``values.py`` (a create-session request or
the ``sess_para`` of a stateless request, as any profile's codec makes them; algorithms by name) and validates them
once; ``run(op, out)`` executes one data operation, writes its outputs into ``out`` (the request's
:class:`~vfu_virtio.virtio.chain.ChainWriter`, at offsets into the writable stream; the status byte is the profile's
business) and returns the stream offset just past the last output byte (0 when there is none). Faults raise
:class:`~.errors.CryptoStatus` before any output is written. A cipher or digest reads its source straight from guest
memory, and a cipher writes its result straight into it, when the bytes lie in one descriptor (``ChainReader.take``,
``ChainWriter.view``).

Validation ("Session operation: create session" device requirements; ``docs/decisions.md``):

* algorithm (or RSA padding, DigestInfo hash, curve) not in this module's tables, or not working in the installed
  OpenSSL -> NOTSUPP;
* key length illegal for the algorithm, ``op`` not ENCRYPT/DECRYPT, ``hash_result_len``/``tag_len`` out of
  range, unknown chain order or key type -> ERR (AMB-14, AMB-18, AMB-17);
* data operation whose opcode direction differs from the session's ``op`` -> ERR (AMB-12).

A wire value the profile does not name (an ``int``, see ``values.py``) is in none of the tables, so it gets the
answer of its field above.

Semantics decided where the standard is silent:

* CIPHER: one request = one complete operation with the request's IV; nothing (IV, counter, ARC4
  keystream) carries over between requests (AMB-16). Exactly ``src_data_len`` bytes are produced at
  ``dst_data`` offset 0, the rest of ``dst_data`` is not written (AMB-15). ECB/CBC need block-multiple input.
  DES keys (8 bytes) and two-key 3DES keys (16 bytes) are expanded to the equivalent three-key EDE key
  (K1K1K1, K1K2K1), which is how DES and keying option 2 are defined.
* HASH/MAC: ``hash_result`` = the first ``hash_result_len`` bytes of the digest (truncation allowed,
  1..digest size; SHAKE: 1..SHAKE_MAX_RESULT_LEN, the XOF output of that length). GMAC/CBC-MAC/XCBC/3GPP
  MACs are not offered: the request format cannot carry their IV, or ``cryptography`` lacks them (AMB-25).
* Chaining (AMB-19): ``dst_data`` = ``src_data`` with ``[cipher_start, +len_to_cipher)`` replaced by its
  encryption/decryption; the hash/MAC input is ``aad || region[hash_start, +len_to_hash)`` where region is
  ``src_data`` (HASH_THEN_CIPHER) or ``dst_data`` (CIPHER_THEN_HASH); the digest goes to ``hash_result``
  right after ``dst_data[dst_data_len]``. HASH_MODE_NESTED -> NOTSUPP (no wire fields).
* AEAD (AMB-17): encrypt writes ciphertext || tag; decrypt reads ciphertext || tag and writes the plaintext
  only when the tag verifies, else BADMSG. GCM: a 12-byte IV, or 16 bytes that are the pre-counter block J0
  (AMB-GCM-J0: GCTR and GHASH composed from ``cryptography``'s AES-CTR, AES-ECB and GCM), tags 4, 8, 12..16;
  CCM: 7..13-byte nonce, tags 4..16 even; ChaCha20-Poly1305: 12-byte nonce, 16-byte tag.
* AKCIPHER ("AKCIPHER Service Operation"): keys are read by :mod:`.keys` (AMB-KEYS: strict DER RSAPrivateKey,
  RSAPublicKey, ECPrivateKey and ECPoint octets, the one relaxation Linux needs; a refused key -> KEY_REJECTED,
  an RSA modulus outside 512..8192 bits -> NOTSUPP). RSA raw ("ciphertext and plaintext MUST be padded with
  leading zeros"): output is always the modulus length ``k``; ``cryptography`` has no unpadded RSA, so raw RSA is
  the bare modular exponentiation on the key numbers ``cryptography`` parsed (CRT for the private key), the one
  place where Python arithmetic stands in for a library call (not constant-time). RSA PKCS#1 v1.5: encrypt
  (RSAES), decrypt (RSAES on that raw exponentiation: a ciphertext whose padding does not parse -> BADMSG, no
  implicit rejection, AMB-RSA-DECRYPT), sign/verify (EMSA with the session ``hash_algo``'s DigestInfo; src is the
  digest); NO_HASH verify compares the recovered block, NO_HASH sign -> NOTSUPP; raw sign/verify -> NOTSUPP (the
  standard forbids it). ECDSA: sign/verify of a 20/28/32/48/64-byte digest, DER Ecdsa-Sig-Value;
  encrypt/decrypt -> NOTSUPP. A failed verification -> KEY_REJECTED.

Threads: a session may run on the event-loop thread and on a data queue's worker thread at once. Every cipher and
AEAD operation builds its own context; a digest starts from ``copy()`` of the session's fresh (keyed) context, which
is never updated itself: ``cryptography``'s ``Hash.copy``, ``HMAC.copy`` and ``CMAC.copy`` borrow that context
read-only and duplicate it in OpenSSL, so two threads may copy it at once without a lock. Key objects are immutable.

:data:`SESSIONS` (parameter type -> session class) and :data:`IMPLEMENTED` (service -> algorithm names) are what a
profile builds its service table and its advertised algorithms from.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from cryptography.exceptions import InvalidSignature, InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.decrepit.ciphers.algorithms import ARC4, TripleDES
from cryptography.hazmat.primitives import cmac, constant_time, hashes, hmac
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305

from vfu_virtio.virtio.chain import ChainWriter, Scattered

from . import keys
from .errors import CryptoStatus
from .values import (AeadOp, AeadParams, AkcipherOp, AkcipherOperation, AkcipherParams, Buffer, ChainOp, ChainOrder,
                     ChainParams, CipherOp, CipherParams, DigestOp, Direction, HashParams, KeyType, MacParams,
                     RsaPadding, Service, Status)

#: Largest SHAKE128/SHAKE256 ``hash_result_len`` in bytes (the XOF has no natural bound).
SHAKE_MAX_RESULT_LEN = 4096


def _err(why: str) -> CryptoStatus:
    return CryptoStatus(Status.ERR, why)


def _notsupp(why: str) -> CryptoStatus:
    return CryptoStatus(Status.NOTSUPP, why)


def _direction(op: Direction | int) -> bool:
    """``op`` ENCRYPT (True) / DECRYPT (False); anything else -> ERR."""
    if op is Direction.ENCRYPT:
        return True
    if op is Direction.DECRYPT:
        return False
    raise _err(f"op {op} is neither ENCRYPT nor DECRYPT")


def _same_direction(request_encrypt: bool, session_encrypt: bool) -> None:
    """A data request's opcode must go the session's way (encrypt / decrypt); otherwise ERR (AMB-12)."""
    if request_encrypt != session_encrypt:
        raise _err("opcode direction differs from the session's op (AMB-12)")


# ---- CIPHER -----------------------------------------------------------------------------------------------
def _des_key(key: bytes) -> bytes:
    return key * 3  # DES = EDE with K1 = K2 = K3


def _tdes_key(key: bytes) -> bytes:
    return key + key[:8] if len(key) == 16 else key  # keying option 2: K1K2K1


@dataclass(frozen=True)
class CipherSpec:
    """How one cipher algorithm maps onto ``cryptography``: legal ``key_sizes`` (bytes),
    ``iv_len`` (bytes, 0 = none), ``block`` (input must be a multiple; 1 = any), ``min_len`` (bytes)."""

    algorithm: Callable[[bytes], object]
    mode: Callable[[bytes], object] | None
    key_sizes: frozenset
    iv_len: int
    block: int = 1
    min_len: int = 0


_CIPHER_SPECS = {
    "ARC4": CipherSpec(ARC4, None, frozenset({5, 7, 8, 10, 16, 20, 24, 32}), 0),
    "AES-ECB": CipherSpec(algorithms.AES, lambda iv: modes.ECB(), frozenset({16, 24, 32}), 0, 16),
    "AES-CBC": CipherSpec(algorithms.AES, modes.CBC, frozenset({16, 24, 32}), 16, 16),
    "AES-CTR": CipherSpec(algorithms.AES, modes.CTR, frozenset({16, 24, 32}), 16),
    "AES-XTS": CipherSpec(algorithms.AES, modes.XTS, frozenset({32, 64}), 16, 1, 16),
    "DES-ECB": CipherSpec(lambda k: TripleDES(_des_key(k)), lambda iv: modes.ECB(), frozenset({8}), 0, 8),
    "DES-CBC": CipherSpec(lambda k: TripleDES(_des_key(k)), modes.CBC, frozenset({8}), 8, 8),
    "3DES-ECB": CipherSpec(lambda k: TripleDES(_tdes_key(k)), lambda iv: modes.ECB(), frozenset({16, 24}), 0, 8),
    "3DES-CBC": CipherSpec(lambda k: TripleDES(_tdes_key(k)), modes.CBC, frozenset({16, 24}), 8, 8),
    "3DES-CTR": CipherSpec(lambda k: TripleDES(_tdes_key(k)), modes.CTR, frozenset({16, 24}), 8),
}


def _probe_cipher(spec: CipherSpec) -> bool:
    key = bytes(range(1, max(spec.key_sizes) + 1))
    mode = spec.mode(bytes(spec.iv_len)) if spec.mode else None
    try:
        Cipher(spec.algorithm(key), mode).encryptor().update(bytes(max(spec.block, spec.min_len, 16)))
    except (UnsupportedAlgorithm, ValueError):
        return False
    return True


#: The cipher algorithms that work with the installed ``cryptography``/OpenSSL (3DES-CTR does not).
CIPHERS = {algo: spec for algo, spec in _CIPHER_SPECS.items() if _probe_cipher(spec)}


class CipherEngine:
    """A validated cipher algorithm + key; :meth:`apply` runs one complete operation (AMB-15, AMB-16)."""

    def __init__(self, algo: str | int, key: bytes):
        spec = CIPHERS.get(algo)
        if spec is None:
            raise _notsupp(f"cipher algorithm {algo}")
        if len(key) not in spec.key_sizes:
            raise _err(f"cipher algorithm {algo} does not take a {len(key)}-byte key")
        if algo == "AES-XTS" and key[:len(key) // 2] == key[len(key) // 2:]:
            raise _err("AES-XTS key with two equal halves (OpenSSL refuses them)")
        self.algorithm = spec.algorithm(key)
        self.spec = spec

    def _start(self, encrypt: bool, iv: bytes, n: int):
        """Check ``iv`` and the length ``n`` (bytes) of the data; a fresh encryptor/decryptor, None if n is 0."""
        spec = self.spec
        if len(iv) != spec.iv_len:
            raise _err(f"iv_len {len(iv)}, the algorithm needs {spec.iv_len} (AMB-16)")
        if n % spec.block:
            raise _err(f"{n} bytes is not a multiple of the {spec.block}-byte block")
        if not n:
            return None
        if n < spec.min_len:
            raise _err(f"{n} bytes is shorter than the mode's minimum {spec.min_len}")
        cipher = Cipher(self.algorithm, spec.mode(iv) if spec.mode else None)
        return cipher.encryptor() if encrypt else cipher.decryptor()

    def apply(self, encrypt: bool, iv: bytes, data: Buffer) -> bytes:
        """Encrypt or decrypt ``data`` with ``iv`` (must be exactly the mode's IV length) -> same length."""
        ctx = self._start(encrypt, iv, len(data))
        if ctx is None:
            return b""
        return ctx.update(data) + ctx.finalize()

    def apply_to(self, encrypt: bool, iv: bytes, data: Buffer, out: ChainWriter) -> None:
        """:meth:`apply`, with the ``len(data)`` result bytes written at offset 0 of ``out``.

        When they lie in one writable descriptor the cipher writes into guest memory itself
        (``update_into``, which wants room for ``len(input) + block - 1`` bytes: a descriptor without that
        slack gets the last block through ``update``; the block modes here stream, and XTS, which does not,
        has a 1-byte block).
        """
        n = len(data)
        ctx = self._start(encrypt, iv, n)
        if ctx is None:
            return
        block = self.spec.block
        view = out.view(0, n)
        if view is None:
            out.write_at(0, ctx.update(data) + ctx.finalize())
            return
        if len(view) >= n + block - 1:
            ctx.update_into(data, view)
        else:
            cut = n - block
            ctx.update_into(data[:cut], view)
            view[cut:n] = ctx.update(data[cut:])
        ctx.finalize()


class CipherSession:
    """Plain cipher session (sym op_type CIPHER, "Session operation: Symmetric algorithms session")."""

    service = Service.CIPHER
    op_class = CipherOp

    def __init__(self, params: CipherParams):
        self.engine = CipherEngine(params.algo, params.key)
        self.encrypt = _direction(params.op)

    def run(self, op: CipherOp, out: ChainWriter) -> int:
        """``dst_data[0:src_data_len]`` = the cipher output; ERR if ``dst_data_len < src_data_len``."""
        _same_direction(op.encrypt, self.encrypt)
        n = len(op.src)
        if op.dst_len < n:
            raise _err(f"dst_data_len {op.dst_len} < src_data_len {n} (AMB-15)")
        self.engine.apply_to(op.encrypt, op.iv, op.src, out)
        return n


# ---- HASH and MAC -----------------------------------------------------------------------------------------
_HASHES = {
    "MD5": hashes.MD5, "SHA-1": hashes.SHA1, "SHA-224": hashes.SHA224, "SHA-256": hashes.SHA256,
    "SHA-384": hashes.SHA384, "SHA-512": hashes.SHA512, "SHA3-224": hashes.SHA3_224, "SHA3-256": hashes.SHA3_256,
    "SHA3-384": hashes.SHA3_384, "SHA3-512": hashes.SHA3_512,
}
_XOFS = {"SHAKE128": hashes.SHAKE128, "SHAKE256": hashes.SHAKE256}
#: HASH algorithm names offered.
HASHES = frozenset(_HASHES) | frozenset(_XOFS)

_HMACS = {
    "HMAC-MD5": hashes.MD5, "HMAC-SHA-1": hashes.SHA1, "HMAC-SHA-224": hashes.SHA224,
    "HMAC-SHA-256": hashes.SHA256, "HMAC-SHA-384": hashes.SHA384, "HMAC-SHA-512": hashes.SHA512,
}
#: CMAC algorithms: (block cipher factory, legal key sizes in bytes).
_CMACS = {
    "CMAC-AES": (algorithms.AES, frozenset({16, 24, 32})),
    "CMAC-3DES": (lambda k: TripleDES(_tdes_key(k)), frozenset({16, 24})),
}
#: MAC algorithm names offered.
MACS = frozenset(_HMACS) | frozenset(_CMACS)


class DigestEngine:
    """A HASH or MAC algorithm with its result length (and key): :meth:`digest` -> ``result_len`` bytes.

    The session keeps one fresh (keyed) context and each digest starts from a copy of it, so a MAC key is
    set up once per session, not once per request; the fresh context is only ever copied, from any thread (see the
    module docstring).
    """

    def __init__(self, params: HashParams | MacParams):
        self.result_len = params.result_len
        if isinstance(params, HashParams):
            if params.algo in _XOFS:
                if not 1 <= params.result_len <= SHAKE_MAX_RESULT_LEN:
                    raise _err(f"SHAKE hash_result_len {params.result_len} not in 1..{SHAKE_MAX_RESULT_LEN}")
                self.fresh = hashes.Hash(_XOFS[params.algo](params.result_len))
                return
            factory = _HASHES.get(params.algo)
            if factory is None:
                raise _notsupp(f"hash algorithm {params.algo}")
            self.fresh = hashes.Hash(factory())
            size = factory.digest_size
        else:
            if not params.key:
                raise _err("empty MAC key (AMB-14)")
            if params.algo in _HMACS:
                factory = _HMACS[params.algo]
                self.fresh = hmac.HMAC(params.key, factory())
                size = factory.digest_size
            elif params.algo in _CMACS:
                block, sizes = _CMACS[params.algo]
                if len(params.key) not in sizes:
                    raise _err(f"MAC algorithm {params.algo} does not take a {len(params.key)}-byte key")
                cipher = block(params.key)
                self.fresh = cmac.CMAC(cipher)
                size = cipher.block_size // 8
            else:
                raise _notsupp(f"MAC algorithm {params.algo}")
        if not 1 <= params.result_len <= size:
            raise _err(f"hash_result_len {params.result_len} not in 1..{size} (AMB-18)")

    def digest(self, data: Buffer | Scattered) -> bytes:
        """The first ``result_len`` bytes of the digest/MAC of ``data`` (:class:`Scattered` parts: one update
        each, never joined)."""
        ctx = self.fresh.copy()
        if isinstance(data, Scattered):
            for part in data.parts:
                ctx.update(part)
        else:
            ctx.update(data)
        return ctx.finalize()[:self.result_len]


class DigestSession:
    """HASH or MAC session ("HASH Service Operation", "MAC Service Operation")."""

    op_class = DigestOp

    def __init__(self, params: HashParams | MacParams):
        self.service = Service.HASH if isinstance(params, HashParams) else Service.MAC
        self.engine = DigestEngine(params)

    def run(self, op: DigestOp, out: ChainWriter) -> int:
        """``hash_result`` at offset 0; the request's ``hash_result_len`` must equal the session's (AMB-18)."""
        n = self.engine.result_len
        if op.result_len != n:
            raise _err(f"hash_result_len {op.result_len} != the session's {n} (AMB-18)")
        out.write_at(0, self.engine.digest(op.src))
        return n


# ---- Algorithm chaining -----------------------------------------------------------------------------------
class ChainSession:
    """Algorithm-chaining session (sym op_type ALGORITHM_CHAINING): cipher + HASH (PLAIN) or MAC (AUTH) (AMB-19)."""

    service = Service.CIPHER
    op_class = ChainOp

    def __init__(self, params: ChainParams):
        if not isinstance(params.order, ChainOrder):
            raise _err(f"alg_chain_order {params.order}")
        self.cipher = CipherEngine(params.cipher.algo, params.cipher.key)
        self.encrypt = _direction(params.cipher.op)
        self.digest = DigestEngine(params.auth)
        self.hash_first = params.order is ChainOrder.HASH_THEN_CIPHER

    def run(self, op: ChainOp, out: ChainWriter) -> int:
        """``dst_data`` at offset 0 (``src_data_len`` bytes), ``hash_result`` at offset ``dst_data_len``."""
        _same_direction(op.encrypt, self.encrypt)
        n = len(op.src)
        if op.dst_len < n:
            raise _err(f"dst_data_len {op.dst_len} < src_data_len {n}")
        if op.cipher_start + op.cipher_len > n or op.hash_start + op.hash_len > n:
            raise _err("cipher or hash region outside src_data")
        if op.hash_result_len != self.digest.result_len:
            raise _err(f"hash_result_len {op.hash_result_len} != the session's {self.digest.result_len}")
        src = bytes(op.src)  # one snapshot of guest memory for both the cipher and the hash
        dst = bytearray(src)
        end = op.cipher_start + op.cipher_len
        dst[op.cipher_start:end] = self.cipher.apply(op.encrypt, op.iv, src[op.cipher_start:end])
        region = src if self.hash_first else dst
        mac = self.digest.digest(op.aad + bytes(region[op.hash_start:op.hash_start + op.hash_len]))
        out.write_at(0, dst)
        out.write_at(op.dst_len, mac)
        return op.dst_len + len(mac)


# ---- AEAD -------------------------------------------------------------------------------------------------
_GCM_TAGS = frozenset({4, 8, 12, 13, 14, 15, 16})  # NIST SP 800-38D 5.2.1.2
_CCM_TAGS = frozenset({4, 6, 8, 10, 12, 14, 16})  # NIST SP 800-38C A.1
#: AEAD algorithm names offered.
AEADS = frozenset({"AES-GCM", "AES-CCM", "ChaCha20-Poly1305"})
#: GCM ``iv_len`` values: a 96-bit IV, or the pre-counter block J0 itself (AMB-GCM-J0).
GCM_IV_LEN, GCM_J0_LEN = 12, 16


def _aes_block(key: bytes, block: bytes) -> bytes:
    """E_K(block): one AES block encryption."""
    ctx = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return ctx.update(block) + ctx.finalize()


def _xor_block(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(16, "big")


def _gctr(key: bytes, j0: bytes, data: bytes) -> bytes:
    """GCTR_K(inc32(J0), data) (NIST SP 800-38D 6.5, 7.1 step 3): AES-CTR whose counter blocks increment only their
    low 32 bits, modulo 2^32. ``cryptography``'s CTR carries into the whole block, so a run is split where the low
    32 bits wrap."""
    prefix, counter = j0[:12], (int.from_bytes(j0[12:], "big") + 1) & 0xFFFFFFFF
    out, pos = [], 0
    while pos < len(data):
        chunk = data[pos:pos + ((1 << 32) - counter) * 16]
        ctx = Cipher(algorithms.AES(key), modes.CTR(prefix + counter.to_bytes(4, "big"))).encryptor()
        out.append(ctx.update(chunk) + ctx.finalize())
        pos, counter = pos + len(chunk), 0
    return b"".join(out)


def _gcm_j0_tag(key: bytes, j0: bytes, ciphertext: bytes, aad: bytes) -> bytes:
    """The full 16-byte GCM tag E_K(J0) xor GHASH_H(A, C) of ``ciphertext`` under the pre-counter block ``j0``
    (NIST SP 800-38D 7.1 steps 5-6). GHASH comes from ``cryptography``'s GCM under the IV 0^96 (J0' = 0^96 || 1):
    encrypting P' = GCTR(J0', C) there gives back C and the tag T' = E_K(J0') xor GHASH_H(A, C)."""
    j0_zero = bytes(12) + b"\0\0\0\x01"
    ctx = Cipher(algorithms.AES(key), modes.GCM(bytes(GCM_IV_LEN))).encryptor()
    ctx.authenticate_additional_data(aad)
    ctx.update(_gctr(key, j0_zero, ciphertext))
    ctx.finalize()
    ghash = _xor_block(ctx.tag, _aes_block(key, j0_zero))
    return _xor_block(_aes_block(key, j0), ghash)


class AeadSession:
    """AEAD session ("Session operation: AEAD session", "AEAD Service Operation"; AMB-17)."""

    service = Service.AEAD
    op_class = AeadOp

    def __init__(self, params: AeadParams):
        algo, key, tag_len = params.algo, params.key, params.tag_len
        if algo not in AEADS:
            raise _notsupp(f"AEAD algorithm {algo}")
        if algo == "ChaCha20-Poly1305":
            key_sizes, tags = {32}, {16}
        else:
            key_sizes, tags = {16, 24, 32}, _GCM_TAGS if algo == "AES-GCM" else _CCM_TAGS
        if len(key) not in key_sizes:
            raise _err(f"AEAD algorithm {algo} does not take a {len(key)}-byte key")
        if tag_len not in tags:
            raise _err(f"tag_len {tag_len} is not legal for AEAD algorithm {algo}")
        self.algo, self.key, self.tag_len = algo, key, tag_len
        self.encrypt = _direction(params.op)
        # the one-shot primitive that writes into a caller's buffer (AES-GCM only with its full 16-byte tag)
        if algo == "AES-GCM":
            self._into = AESGCM(key) if tag_len == 16 else None
        elif algo == "AES-CCM":
            self._into = AESCCM(key, tag_len)
        else:
            self._into = ChaCha20Poly1305(key)

    def _check_iv(self, iv: bytes) -> None:
        n = len(iv)
        if self.algo == "AES-GCM":
            ok = n in (GCM_IV_LEN, GCM_J0_LEN)
        else:
            ok = 7 <= n <= 13 if self.algo == "AES-CCM" else n == 12
        if not ok:
            raise _err(f"iv_len {n} is not legal for AEAD algorithm {self.algo}")

    def run(self, op: AeadOp, out: ChainWriter) -> int:
        """Encrypt: ``dst_data`` = ciphertext || tag. Decrypt: plaintext, or BADMSG on a tag mismatch.

        Copies: an encryption whose ciphertext and tag fit in one writable descriptor is written there by the
        primitive itself (``encrypt_into``); a decryption goes into a scratch buffer (``decrypt_into``, which reads
        ciphertext || tag as it lies in the request) and reaches guest memory only once its tag verified.
        """
        _same_direction(op.encrypt, self.encrypt)
        if op.tag_len != self.tag_len:
            raise _err(f"tag_len {op.tag_len} != the session's {self.tag_len} (AMB-17)")
        self._check_iv(op.iv)
        t = self.tag_len
        into = self._into if len(op.iv) != GCM_J0_LEN or self.algo != "AES-GCM" else None
        n = len(op.src)
        if op.encrypt:
            if op.dst_len < n + t:
                raise _err(f"dst_data_len {op.dst_len} < src_data_len + tag_len")
            view = out.view(0, n + t) if into is not None else None
            if view is not None:
                try:
                    into.encrypt_into(op.iv, op.src, op.aad, view[:n + t])
                except (ValueError, OverflowError) as e:  # e.g. CCM message too long for the nonce's length field
                    raise _err(f"AEAD encryption refused: {e}") from None
                return n + t
            result = self._seal(op.iv, op.src, op.aad)
        else:
            if n < t:
                raise _err(f"src_data_len {n} < tag_len {t}")
            if op.dst_len < n - t:
                raise _err(f"dst_data_len {op.dst_len} < src_data_len - tag_len")
            try:
                if into is not None:
                    result = bytearray(n - t)
                    try:
                        into.decrypt_into(op.iv, op.src, op.aad, result)
                    except (ValueError, OverflowError) as e:
                        raise _err(f"AEAD decryption refused: {e}") from None
                else:
                    src = memoryview(op.src)
                    result = self._open(op.iv, src[:n - t], bytes(src[n - t:]), op.aad)
            except InvalidTag:
                raise CryptoStatus(Status.BADMSG, "authentication tag mismatch") from None
        out.write_at(0, result)  # a plaintext only once its tag verified
        return len(result)

    def _seal(self, iv: bytes, data: bytes, aad: bytes) -> bytes:
        try:
            if self.algo == "AES-GCM" and len(iv) == GCM_J0_LEN:
                ct = _gctr(self.key, iv, data)
                return ct + _gcm_j0_tag(self.key, iv, ct, aad)[:self.tag_len]
            if self.algo == "AES-GCM":
                ctx = Cipher(algorithms.AES(self.key), modes.GCM(iv)).encryptor()
                ctx.authenticate_additional_data(aad)
                out = ctx.update(data) + ctx.finalize()
                return out + ctx.tag[:self.tag_len]
            if self.algo == "AES-CCM":
                return AESCCM(self.key, self.tag_len).encrypt(iv, data, aad)
            return ChaCha20Poly1305(self.key).encrypt(iv, data, aad)
        except (ValueError, OverflowError) as e:  # e.g. CCM message too long for the nonce's length field
            raise _err(f"AEAD encryption refused: {e}") from None

    def _open(self, iv: bytes, ct: bytes, tag: bytes, aad: bytes) -> bytes:
        try:
            if self.algo == "AES-GCM" and len(iv) == GCM_J0_LEN:
                if not constant_time.bytes_eq(_gcm_j0_tag(self.key, iv, ct, aad)[:len(tag)], tag):
                    raise InvalidTag()
                return _gctr(self.key, iv, ct)
            if self.algo == "AES-GCM":
                ctx = Cipher(algorithms.AES(self.key), modes.GCM(iv, tag, min_tag_length=len(tag))).decryptor()
                ctx.authenticate_additional_data(aad)
                out = ctx.update(ct)
                return out + ctx.finalize()  # raises InvalidTag before anything is returned
            if self.algo == "AES-CCM":
                return AESCCM(self.key, self.tag_len).decrypt(iv, ct + tag, aad)
            return ChaCha20Poly1305(self.key).decrypt(iv, ct + tag, aad)
        except (ValueError, OverflowError) as e:
            raise _err(f"AEAD decryption refused: {e}") from None


# ---- AKCIPHER ---------------------------------------------------------------------------------------------
_RSA_HASHES = {
    "MD5": hashes.MD5, "SHA-1": hashes.SHA1, "SHA-224": hashes.SHA224, "SHA-256": hashes.SHA256,
    "SHA-384": hashes.SHA384, "SHA-512": hashes.SHA512,
}
_CURVES = {"P-192": ec.SECP192R1, "P-224": ec.SECP224R1, "P-256": ec.SECP256R1, "P-384": ec.SECP384R1,
           "P-521": ec.SECP521R1}
#: ECDSA digest lengths (bytes) and the hash whose size they match (only the length matters to ECDSA).
_ECDSA_DIGESTS = {20: hashes.SHA1, 28: hashes.SHA224, 32: hashes.SHA256, 48: hashes.SHA384, 64: hashes.SHA512}
#: AKCIPHER algorithm names offered.
AKCIPHERS = frozenset({"RSA", "ECDSA"})


class AkcipherSession:
    """AKCIPHER session (RSA, ECDSA): "Session operation: AKCIPHER session", "AKCIPHER Service Operation"."""

    service = Service.AKCIPHER
    op_class = AkcipherOp

    def __init__(self, params: AkcipherParams):
        if params.algo not in AKCIPHERS:
            raise _notsupp(f"AKCIPHER algorithm {params.algo}")
        if not isinstance(params.key_type, KeyType):
            raise _err(f"key_type {params.key_type}")
        self.algo = params.algo
        self.private = params.key_type is KeyType.PRIVATE
        if params.algo == "RSA":
            self._init_rsa(params)
        else:
            self._init_ecdsa(params)

    def _init_rsa(self, params: AkcipherParams) -> None:
        if not isinstance(params.padding, RsaPadding):
            raise _notsupp(f"RSA padding_algo {params.padding}")
        self.raw = params.padding is RsaPadding.RAW
        self.hash = None
        if not self.raw and params.hash_algo is not None:
            factory = _RSA_HASHES.get(params.hash_algo)
            if factory is None:
                raise _notsupp(f"RSA hash_algo {params.hash_algo}")
            self.hash = factory()
        key = keys.rsa_private_key(params.key) if self.private else keys.rsa_public_key(params.key)
        self.key = key
        self.public = key.public_key() if self.private else key
        self.k = (self.public.key_size + 7) // 8

    def _init_ecdsa(self, params: AkcipherParams) -> None:
        factory = _CURVES.get(params.curve)
        if factory is None:
            raise _notsupp(f"ECDSA curve_id {params.curve}")
        curve = factory()
        key = keys.ec_private_key(params.key, curve) if self.private else keys.ec_public_key(params.key, curve)
        self.key = key
        self.public = key.public_key() if self.private else key

    def run(self, op: AkcipherOp, out: ChainWriter) -> int:
        """The result at offset 0 (its length tells the driver the result size); VERIFY writes nothing."""
        fn = self._rsa if self.algo == "RSA" else self._ecdsa
        result = fn(op)
        if result is None:
            return 0
        if len(result) > op.dst_len:
            raise _err(f"result of {len(result)} bytes does not fit dst_data_len {op.dst_len}")
        out.write_at(0, result)
        return len(result)

    def _need_private(self) -> None:
        if not self.private:
            raise _err("the operation needs a private-key session")

    def _rsa_raw(self, data: bytes, private: bool) -> bytes:
        if len(data) > self.k:
            raise _err(f"{len(data)}-byte input exceeds the {self.k}-byte modulus")
        x = int.from_bytes(data, "big")
        pub = self.public.public_numbers()
        if x >= pub.n:
            raise _err("input is not smaller than the modulus")
        if private:
            p = self.key.private_numbers()
            m1, m2 = pow(x, p.dmp1, p.p), pow(x, p.dmq1, p.q)
            y = m2 + (p.iqmp * (m1 - m2) % p.p) * p.q
        else:
            y = pow(x, pub.e, pub.n)
        return y.to_bytes(self.k, "big")

    def _rsaes_pkcs1_v1_5_decrypt(self, ciphertext: bytes) -> bytes:
        """RSAES-PKCS1-v1_5 decryption (RFC 8017 7.2.2) that says when the padding is wrong (AMB-RSA-DECRYPT).

        The ciphertext must be exactly ``k`` (modulus length) bytes and smaller than the modulus, else ERR; the
        encoded message ``EM = 0x00 || 0x02 || PS || 0x00 || M`` (``PS`` at least 8 non-zero octets) must parse,
        else BADMSG, and nothing is written. OpenSSL's decryption cannot be used: since 3.2 it answers a bad
        padding with a synthetic message (implicit rejection) that the guest cannot tell from a real one.
        """
        if len(ciphertext) != self.k:
            raise _err(f"a {len(ciphertext)}-byte ciphertext; the modulus is {self.k} bytes (RFC 8017 7.2.2)")
        em = self._rsa_raw(ciphertext, private=True)
        separator = em.find(b"\0", 2)
        if em[0] != 0 or em[1] != 2 or separator < 10:
            raise CryptoStatus(Status.BADMSG, "RSAES-PKCS1-v1_5 decryption error (the padding does not parse)")
        return em[separator + 1:]

    def _rsa(self, op: AkcipherOp) -> bytes | None:
        if op.operation is AkcipherOperation.ENCRYPT:
            if self.raw:
                return self._rsa_raw(op.src, private=False)
            try:
                return self.public.encrypt(op.src, padding.PKCS1v15())
            except ValueError as e:
                raise _err(f"RSA encryption refused: {e}") from None
        if op.operation is AkcipherOperation.DECRYPT:
            self._need_private()
            if self.raw:
                return self._rsa_raw(op.src, private=True)
            return self._rsaes_pkcs1_v1_5_decrypt(op.src)
        if self.raw:
            raise _notsupp("RSA raw-padding sessions cannot sign or verify")
        if op.operation is AkcipherOperation.SIGN:
            self._need_private()
            if self.hash is None:
                raise _notsupp("PKCS#1 v1.5 signing without a hash_algo")
            try:
                return self.key.sign(op.src, padding.PKCS1v15(), utils.Prehashed(self.hash))
            except ValueError as e:
                raise _err(f"RSA signing refused: {e}") from None
        try:
            if self.hash is None:
                if self.public.recover_data_from_signature(op.src, padding.PKCS1v15(), None) != op.message:
                    raise InvalidSignature()
            else:
                self.public.verify(op.src, op.message, padding.PKCS1v15(), utils.Prehashed(self.hash))
        except InvalidSignature:
            raise CryptoStatus(Status.KEY_REJECTED, "RSA signature verification failed") from None
        except ValueError as e:
            raise _err(f"RSA verification refused: {e}") from None
        return None

    def _ecdsa(self, op: AkcipherOp) -> bytes | None:
        if op.operation in (AkcipherOperation.ENCRYPT, AkcipherOperation.DECRYPT):
            raise _notsupp("ECDSA cannot encrypt or decrypt")
        digest = op.src if op.operation is AkcipherOperation.SIGN else op.message
        factory = _ECDSA_DIGESTS.get(len(digest))
        if factory is None:
            raise _err(f"a {len(digest)}-byte digest is not 20, 28, 32, 48 or 64 bytes")
        algorithm = ec.ECDSA(utils.Prehashed(factory()))
        if op.operation is AkcipherOperation.SIGN:
            self._need_private()
            return self.key.sign(digest, algorithm)
        try:
            self.public.verify(op.src, digest, algorithm)
        except (InvalidSignature, ValueError):
            raise CryptoStatus(Status.KEY_REJECTED, "ECDSA signature verification failed") from None
        return None


# ---- What a profile builds on -------------------------------------------------------------------------------
Session = CipherSession | ChainSession | DigestSession | AeadSession | AkcipherSession

#: Session class per parameter type: the service table of a profile that serves every service implemented here.
SESSIONS = {CipherParams: CipherSession, ChainParams: ChainSession, HashParams: DigestSession,
            MacParams: DigestSession, AeadParams: AeadSession, AkcipherParams: AkcipherSession}
#: Algorithm names implemented per service (those a profile may advertise).
IMPLEMENTED = {Service.CIPHER: frozenset(CIPHERS), Service.HASH: HASHES, Service.MAC: MACS, Service.AEAD: AEADS,
               Service.AKCIPHER: AKCIPHERS}
