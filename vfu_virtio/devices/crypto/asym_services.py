"""The asymmetric service behind the wire (``Service.ASYM``): RSA, DSA, ECDSA, DH and ECDH, every primitive from
``cryptography``.

One session class per request family of :mod:`.asym_values` (:data:`SESSIONS`); the service is sessionless, so a
session lives for one request: built from the request's parameters (kept as they are), its ``run(op, out)``
validates and loads the key material, then returns the result value (:class:`~.asym_values.Signature`, a key pair,
bytes, or the verdict ``bool``) and writes nothing; the profile's codec lays the result out. Every ASYM session has
``offload = True``: the device runs it on the data queue's worker thread, never on the event-loop thread (key
generation takes seconds, loading or using an 8192-bit key a tenth of one; ``cryptography`` releases the GIL
meanwhile).

Validation (AMB-32 in ``docs/decisions.md``): an algorithm, padding, hash, curve, field type, key size or prime
count this module does not implement -> NOTSUPP; numbers that are not a key (a point off the curve, a DH public
value outside 2..p-2, d >= n, a CRT key whose parts disagree) -> ERR; an operation the key or padding cannot do
(sign with a public key, OAEP signatures) -> NOTSUPP. A signature that does not verify is a verdict (``False``),
not a fault: the request succeeded.

Keys and their limits:

* RSA: moduli up to ``keys.RSA_MAX_BITS`` (8192) bits, two primes (``cryptography`` has no multi-prime
  keys). A private key (n, d) or (p, q, dp, dq, qinv) carries no public exponent, which ``cryptography`` needs to
  build the key: e is taken from the Fermat primes 3, 5, 17, 257, 65537 (:data:`RSA_PUBLIC_EXPONENTS`, the first
  one that fits: 2^(e*d) = 2 mod n, or e*dp = 1 mod p-1 and e*dq = 1 mod q-1), then the primes are recovered from
  (n, e, d) or d from (e, p, q); a key with another exponent -> NOTSUPP. Paddings: NONE (raw RSA, encrypt and
  decrypt only: modular exponentiation on the key numbers, CRT for the private key, the one place where Python
  arithmetic stands in for ``cryptography``, which has no unpadded RSA), PKCS1 (v1.5 encrypt, decrypt, sign,
  verify: EMSA-PKCS1-v1_5 with the DigestInfo of ``hash_algo``; without a hash, verify compares the recovered
  block with the message and sign is NOTSUPP), OAEP (encrypt, decrypt: SHA-1 and MGF1-SHA-1, empty label, as
  OpenSSL's RSA_PKCS1_OAEP_PADDING that the RFC names), PSS (sign, verify: MGF1 with ``hash_algo``, salt as long as
  the digest; verification accepts any salt length). SSLv23 and X9.31 -> NOTSUPP. A signature or ciphertext is
  ``k`` bytes (the modulus length); a signature is read as a number and one not below n does not verify.
* RSA key generation: 2 primes, e 3 or 65537 (``cryptography``), at least 1024 bits.
* DSA: p of 1024, 2048, 3072 or 4096 bits, q of 160, 224 or 256 bits (what ``cryptography`` takes). The request's
  per-signature random ``k`` is never used: ``cryptography`` draws its own (a guest-chosen k that repeats would
  reveal the key). Key generation: p of 1024, 2048, 3072 or 4096 bits.
* ECDSA and ECDH: prime-field curves given by explicit domain parameters, matched against the named curves
  ``cryptography`` implements (:data:`CURVES`: P-192 .. P-521, secp256k1, brainpoolP256r1/384r1/512r1, whose
  explicit parameters are ``vfu_virtio.abi.crypto_asym.EC_CURVES``); another
  curve or a binary field -> NOTSUPP. The ECDSA ``k`` is ignored as the DSA one. ECDH's secret is the x-coordinate
  of the shared point, the field's length.
* Hashes applied to a message before signing: SHA-1, SHA-224/256/384/512, SHA3-224/256/384/512 (and MD5 where the
  key type takes it); none (AMB-32) means the message is already the digest: DSA and ECDSA sign it as it is
  (20, 28, 32, 48 or 64 bytes).
* DH: p of 512 .. ``DH_MAX_BITS`` bits, g in 2..p-2; the secret is as long as p (leading zeros kept); parameter
  generation finds a safe prime with generator 2. ``cryptography`` deprecates finite-field DH and warns on every
  call; the RFC needs it, so this module silences that one warning by its message.
"""
from __future__ import annotations

import warnings
from typing import Callable

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dh, dsa, ec, padding, rsa, utils
from cryptography.utils import CryptographyDeprecationWarning

from vfu_virtio.abi.crypto_asym import EC_CURVES

from .asym_values import (AsymDecrypt, AsymEncrypt, AsymKeyGen, AsymPadding, AsymSign, AsymVerify, DhGroup, DhKeyPair,
                          DhParamGenParams, DhParams, DsaGroup, DsaKeyGenParams, DsaKeyPair, DsaParams, EcField,
                          EcGroup, EcKeyGenParams, EcKeyPair, EcParams, KeyAgreement, RsaKeyForm, RsaKeyGenParams,
                          RsaKeyPair, RsaParams, RsaPrivateKey, RsaPublicKey, Signature)
from .errors import CryptoStatus
from .keys import RSA_MAX_BITS
from .values import Service, Status

warnings.filterwarnings("ignore", message="Diffie-Hellman over finite fields", category=CryptographyDeprecationWarning)

#: ASYM algorithm names implemented (those a profile may advertise).
ASYM_ALGORITHMS = frozenset({"RSA", "DSA", "DH", "ECDSA", "ECDH"})
#: RSA paddings implemented.
RSA_PADDINGS = frozenset({AsymPadding.NONE, AsymPadding.PKCS1, AsymPadding.OAEP, AsymPadding.PSS})
#: Public exponents tried for a private key that comes without one (the Fermat primes), in this order.
RSA_PUBLIC_EXPONENTS = (65537, 3, 5, 17, 257)
#: Largest DH prime in bits.
DH_MAX_BITS = 8192
DSA_P_BITS = frozenset({1024, 2048, 3072, 4096})
DSA_Q_BITS = frozenset({160, 224, 256})

#: Hashes a message may be signed with.
HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "MD5": hashes.MD5, "SHA-1": hashes.SHA1, "SHA-224": hashes.SHA224, "SHA-256": hashes.SHA256,
    "SHA-384": hashes.SHA384, "SHA-512": hashes.SHA512, "SHA3-224": hashes.SHA3_224, "SHA3-256": hashes.SHA3_256,
    "SHA3-384": hashes.SHA3_384, "SHA3-512": hashes.SHA3_512,
}
#: The hash a DSA/ECDSA digest of that many bytes stands for when the request names none (only its size counts).
_DIGEST_SIZES = {20: hashes.SHA1, 28: hashes.SHA224, 32: hashes.SHA256, 48: hashes.SHA384, 64: hashes.SHA512}


def _err(why: str) -> CryptoStatus:
    return CryptoStatus(Status.ERR, why)


def _notsupp(why: str) -> CryptoStatus:
    return CryptoStatus(Status.NOTSUPP, why)


def _hash(name) -> hashes.HashAlgorithm | None:
    """The hash called ``name`` (None for none); NOTSUPP for a hash not in :data:`HASHES`."""
    if name is None:
        return None
    factory = HASHES.get(name)
    if factory is None:
        raise _notsupp(f"hash_algo {name}")
    return factory()


def _prehashed(digest: bytes) -> utils.Prehashed:
    """DSA/ECDSA over a message that is already a digest; ERR for a length no hash has."""
    factory = _DIGEST_SIZES.get(len(digest))
    if factory is None:
        raise _err(f"a {len(digest)}-byte message without hash_algo is not a 20, 28, 32, 48 or 64-byte digest")
    return utils.Prehashed(factory())


def _dss(der: bytes) -> Signature:
    r, s = utils.decode_dss_signature(der)
    return Signature(r, s)


def _signed(sign: Callable[[], bytes], what: str) -> bytes:
    """What ``sign`` (a ``cryptography`` signing call) returns; ERR when ``cryptography`` refuses the input."""
    try:
        return sign()
    except (ValueError, UnsupportedAlgorithm) as e:
        raise _err(f"{what} signing refused: {e}") from None


def _verdict(verify: Callable[[], object], what: str) -> bool:
    """True when ``verify`` (a ``cryptography`` verification call) passes, False when the signature does not
    verify; ERR when ``cryptography`` refuses the input."""
    try:
        verify()
    except InvalidSignature:
        return False
    except (ValueError, UnsupportedAlgorithm) as e:
        raise _err(f"{what} verification refused: {e}") from None
    return True


class _AsymSession:
    """What every ASYM session shares: the service, the worker-thread rule, the operations it runs.

    Building one only keeps the parameters: the key material is validated and loaded by ``run``, on the worker
    thread (loading a large RSA or DH key costs as much as using it).
    """

    service = Service.ASYM
    offload = True
    op_class: tuple = ()

    def __init__(self, params):
        self.params = params

    def run(self, op, out):
        """The result of ``op`` (see the module docstring); ERR for an operation this session does not run."""
        self._prepare(self.params)
        handler = self._handlers().get(type(op))
        if handler is None:
            raise _err(f"{type(op).__name__} on a {type(self).__name__}")
        return handler(op)

    def _prepare(self, params) -> None:
        """Validate ``params`` and load the key (raises :class:`~.errors.CryptoStatus`)."""
        raise NotImplementedError

    def _handlers(self) -> dict[type, Callable]:
        raise NotImplementedError


# ---- RSA ------------------------------------------------------------------------------------------------------
def _rsa_public(key: RsaPublicKey) -> rsa.RSAPublicKey:
    if key.n.bit_length() > RSA_MAX_BITS:
        raise _notsupp(f"{key.n.bit_length()}-bit RSA modulus (at most {RSA_MAX_BITS} bits)")
    try:
        return rsa.RSAPublicNumbers(key.e, key.n).public_key()
    except ValueError as e:
        raise _err(f"RSA public key rejected: {e}") from None


def _rsa_private(key: RsaPrivateKey) -> rsa.RSAPrivateKey:
    """The private key from (n, d) or (p, q, dp, dq, qinv), its public exponent found (module docstring)."""
    if key.primes != 2:
        raise _notsupp(f"{key.primes}-prime RSA key (cryptography takes two primes)")
    if not isinstance(key.form, RsaKeyForm):
        raise _err(f"priv_key_rep_type {key.form}")
    try:
        if key.form is RsaKeyForm.EXPONENT:
            n, d = key.numbers
            if n.bit_length() > RSA_MAX_BITS:
                raise _notsupp(f"{n.bit_length()}-bit RSA modulus (at most {RSA_MAX_BITS} bits)")
            if n < 3 or not 1 < d < n:
                raise _err("RSA (n, d) with d not in 2..n-1")
            e = next((e for e in RSA_PUBLIC_EXPONENTS if pow(pow(2, e, n), d, n) == 2), None)
            if e is None:
                raise _notsupp(f"RSA (n, d) key whose public exponent is none of {RSA_PUBLIC_EXPONENTS}")
            p, q = rsa.rsa_recover_prime_factors(n, e, d)
        else:
            p, q, dp, dq, qinv = key.numbers
            if (p * q).bit_length() > RSA_MAX_BITS:
                raise _notsupp(f"{(p * q).bit_length()}-bit RSA modulus (at most {RSA_MAX_BITS} bits)")
            if min(p, q) < 3:
                raise _err("RSA CRT key with a prime below 3")
            e = next((e for e in RSA_PUBLIC_EXPONENTS if e * dp % (p - 1) == 1 and e * dq % (q - 1) == 1), None)
            if e is None:
                raise _notsupp(f"RSA CRT key whose public exponent is none of {RSA_PUBLIC_EXPONENTS}")
            d = rsa.rsa_recover_private_exponent(e, p, q)
            if (dp, dq, qinv) != (d % (p - 1), d % (q - 1), rsa.rsa_crt_iqmp(p, q)):
                raise _err("RSA CRT key whose dp, dq and qinv disagree with p and q")
        numbers = rsa.RSAPrivateNumbers(p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q),
                                        rsa.rsa_crt_iqmp(p, q), rsa.RSAPublicNumbers(e, p * q))
        return numbers.private_key()
    except (ValueError, TypeError, ZeroDivisionError) as e:
        raise _err(f"RSA private key rejected: {e}") from None


class RsaSession(_AsymSession):
    """RSA sign, verify, encrypt, decrypt with one key and padding (module docstring)."""

    op_class = (AsymSign, AsymVerify, AsymEncrypt, AsymDecrypt)

    def _prepare(self, params: RsaParams) -> None:
        if params.padding not in RSA_PADDINGS:
            raise _notsupp(f"RSA padding_mode {params.padding}")
        self.padding = params.padding
        self.hash = _hash(params.hash_algo)
        if isinstance(params.key, RsaPrivateKey):
            self.key = _rsa_private(params.key)
            self.public = self.key.public_key()
        else:
            self.key = None
            self.public = _rsa_public(params.key)
        self.n = self.public.public_numbers().n
        self.k = (self.n.bit_length() + 7) // 8

    def _handlers(self):
        return {AsymSign: self._sign, AsymVerify: self._verify, AsymEncrypt: self._encrypt,
                AsymDecrypt: self._decrypt}

    def _private(self) -> rsa.RSAPrivateKey:
        if self.key is None:
            raise _notsupp("the operation needs a private key")
        return self.key

    def _oaep(self) -> padding.OAEP:
        return padding.OAEP(padding.MGF1(hashes.SHA1()), hashes.SHA1(), None)

    def _pss(self, salt) -> padding.PSS:
        return padding.PSS(padding.MGF1(self.hash), salt)

    def _raw(self, data: bytes, private: bool) -> bytes:
        x = int.from_bytes(data, "big")
        if x >= self.n:
            raise _err("raw RSA input is not below the modulus")
        if private:
            p = self._private().private_numbers()
            m1, m2 = pow(x, p.dmp1, p.p), pow(x, p.dmq1, p.q)
            y = m2 + (p.iqmp * (m1 - m2) % p.p) * p.q
        else:
            y = pow(x, self.public.public_numbers().e, self.n)
        return y.to_bytes(self.k, "big")

    def _sign(self, op: AsymSign) -> bytes:
        key = self._private()
        if self.padding not in (AsymPadding.PKCS1, AsymPadding.PSS):
            raise _notsupp(f"RSA signatures with padding {self.padding.value}")
        if self.hash is None:
            raise _notsupp("RSA signatures without hash_algo (the DigestInfo names the hash)")
        pad = padding.PKCS1v15() if self.padding is AsymPadding.PKCS1 else self._pss(padding.PSS.DIGEST_LENGTH)
        return _signed(lambda: key.sign(op.src, pad, self.hash), "RSA")

    def _verify(self, op: AsymVerify) -> bool:
        if self.padding not in (AsymPadding.PKCS1, AsymPadding.PSS):
            raise _notsupp(f"RSA signatures with padding {self.padding.value}")
        (signature,) = op.signature
        value = int.from_bytes(signature, "big")
        if value >= self.n:
            return False
        signature = value.to_bytes(self.k, "big")
        if self.padding is AsymPadding.PSS:
            if self.hash is None:
                raise _notsupp("PSS without hash_algo")
            return _verdict(lambda: self.public.verify(signature, op.src, self._pss(padding.PSS.AUTO), self.hash),
                            "RSA")
        if self.hash is None:
            def compare() -> None:  # no DigestInfo: the recovered block is the message
                if self.public.recover_data_from_signature(signature, padding.PKCS1v15(), None) != op.src:
                    raise InvalidSignature()
            return _verdict(compare, "RSA")
        return _verdict(lambda: self.public.verify(signature, op.src, padding.PKCS1v15(), self.hash), "RSA")

    def _encrypt(self, op: AsymEncrypt) -> bytes:
        if self.padding is AsymPadding.NONE:
            return self._raw(op.src, private=False)
        if self.padding is AsymPadding.PSS:
            raise _notsupp("RSA encryption with PSS padding")
        try:
            return self.public.encrypt(op.src, padding.PKCS1v15() if self.padding is AsymPadding.PKCS1
                                       else self._oaep())
        except ValueError as e:
            raise _err(f"RSA encryption refused: {e}") from None

    def _decrypt(self, op: AsymDecrypt) -> bytes:
        key = self._private()
        if self.padding is AsymPadding.NONE:
            return self._raw(op.src, private=True)
        if self.padding is AsymPadding.PSS:
            raise _notsupp("RSA decryption with PSS padding")
        try:
            return key.decrypt(op.src, padding.PKCS1v15() if self.padding is AsymPadding.PKCS1 else self._oaep())
        except ValueError as e:
            raise _err(f"RSA decryption failed: {e}") from None


class RsaKeyGenSession(_AsymSession):
    """RSA key generation (two primes, e 3 or 65537, at least 1024 bits)."""

    op_class = (AsymKeyGen,)

    def _prepare(self, params: RsaKeyGenParams) -> None:
        if params.primes != 2:
            raise _notsupp(f"{params.primes}-prime RSA key generation (cryptography makes two-prime keys)")
        if params.e not in (3, 65537):
            raise _notsupp(f"RSA public exponent {params.e} (cryptography generates keys with 3 or 65537)")
        if params.bits < 1024:
            raise _notsupp(f"{params.bits}-bit RSA key generation (at least 1024 bits)")
        if not isinstance(params.form, RsaKeyForm):
            raise _err(f"priv_key_rep_type {params.form}")
        self.params = params

    def _handlers(self):
        return {AsymKeyGen: self._generate}

    def _generate(self, op: AsymKeyGen) -> RsaKeyPair:
        key = rsa.generate_private_key(self.params.e, self.params.bits)
        n = key.private_numbers()
        return RsaKeyPair(n.public_numbers.n, n.public_numbers.e, n.d, n.p, n.q, n.dmp1, n.dmq1, n.iqmp)


# ---- DSA ------------------------------------------------------------------------------------------------------
def _dsa_parameters(group: DsaGroup) -> dsa.DSAParameterNumbers:
    if group.p.bit_length() not in DSA_P_BITS or group.q.bit_length() not in DSA_Q_BITS:
        raise _notsupp(f"DSA group of {group.p.bit_length()}-bit p, {group.q.bit_length()}-bit q")
    return dsa.DSAParameterNumbers(group.p, group.q, group.g)


class DsaSession(_AsymSession):
    """DSA sign (private x) or verify (public y)."""

    op_class = (AsymSign, AsymVerify)

    def _prepare(self, params: DsaParams) -> None:
        self.hash = _hash(params.hash_algo)
        numbers = _dsa_parameters(params.group)
        try:
            if params.x is not None:
                if not 0 < params.x < params.group.q or not 1 < params.group.g < params.group.p:
                    raise _err("DSA private key x not in 1..q-1")
                y = pow(params.group.g, params.x, params.group.p)
                self.key = dsa.DSAPrivateNumbers(params.x, dsa.DSAPublicNumbers(y, numbers)).private_key()
                self.public = self.key.public_key()
            else:
                self.key = None
                self.public = dsa.DSAPublicNumbers(params.y, numbers).public_key()
        except ValueError as e:
            raise _err(f"DSA key rejected: {e}") from None

    def _handlers(self):
        return {AsymSign: self._sign, AsymVerify: self._verify}

    def _sign(self, op: AsymSign) -> Signature:
        if self.key is None:
            raise _notsupp("DSA signing needs the private key")
        algorithm = self.hash or _prehashed(op.src)
        return _dss(_signed(lambda: self.key.sign(op.src, algorithm), "DSA"))

    def _verify(self, op: AsymVerify) -> bool:
        signature, algorithm = utils.encode_dss_signature(*op.signature), self.hash or _prehashed(op.src)
        return _verdict(lambda: self.public.verify(signature, op.src, algorithm), "DSA")


class DsaKeyGenSession(_AsymSession):
    """DSA domain parameters and a key pair, p of 1024, 2048, 3072 or 4096 bits."""

    op_class = (AsymKeyGen,)

    def _prepare(self, params: DsaKeyGenParams) -> None:
        if params.bits not in DSA_P_BITS:
            raise _notsupp(f"{params.bits}-bit DSA key generation (1024, 2048, 3072 or 4096 bits)")
        self.bits = params.bits

    def _handlers(self):
        return {AsymKeyGen: self._generate}

    def _generate(self, op: AsymKeyGen) -> DsaKeyPair:
        numbers = dsa.generate_parameters(self.bits).generate_private_key().private_numbers()
        group = numbers.public_numbers.parameter_numbers
        return DsaKeyPair(DsaGroup(group.p, group.q, group.g), numbers.x, numbers.public_numbers.y)


# ---- Elliptic curves ------------------------------------------------------------------------------------------------
#: The ``cryptography`` curve of each named curve of :data:`vfu_virtio.abi.crypto_asym.EC_CURVES`.
_CURVE_CLASSES: dict[str, type[ec.EllipticCurve]] = {
    "P-192": ec.SECP192R1, "P-224": ec.SECP224R1, "P-256": ec.SECP256R1, "P-384": ec.SECP384R1,
    "P-521": ec.SECP521R1, "secp256k1": ec.SECP256K1, "brainpoolP256r1": ec.BrainpoolP256R1,
    "brainpoolP384r1": ec.BrainpoolP384R1, "brainpoolP512r1": ec.BrainpoolP512R1,
}


def _named_curves() -> dict[str, tuple[ec.EllipticCurve, EcGroup]]:
    """The named curves the installed ``cryptography`` implements, with their explicit domain parameters; ValueError
    if a curve's generator or order differs from the table's, or the generator is not on y^2 = x^3 + ax + b."""
    found = {}
    for name, factory in _CURVE_CLASSES.items():
        curve = factory()
        try:
            generator = ec.derive_private_key(1, curve).public_key().public_numbers()
        except (UnsupportedAlgorithm, ValueError):
            continue
        group = EcGroup(EcField.PRIME, *EC_CURVES[name])
        p, a, b, gx, gy = group.p, group.a, group.b, group.gx, group.gy
        if (generator.x, generator.y, curve.group_order) != (gx, gy, group.n) or (gy * gy - gx ** 3 - a * gx - b) % p:
            raise ValueError(f"curve {name}: the domain parameters of EC_CURVES are not cryptography's curve")
        found[name] = (curve, group)
    return found


#: Curve name -> (``cryptography`` curve, its explicit domain parameters).
CURVES = _named_curves()
_CURVE_BY_GROUP = {group: curve for curve, group in CURVES.values()}


def curve_of(group: EcGroup) -> ec.EllipticCurve:
    """The named curve with these explicit domain parameters; NOTSUPP for another curve or a binary field, ERR for
    an unknown field type."""
    if group.field is EcField.BINARY:
        raise _notsupp("binary-field curves")
    if group.field is not EcField.PRIME:
        raise _err(f"field_type {group.field}")
    curve = _CURVE_BY_GROUP.get(group._replace(a=group.a % group.p if group.p else group.a))
    if curve is None:
        raise _notsupp(f"no implemented curve has these domain parameters ({group.p.bit_length()}-bit p)")
    return curve


class EcSession(_AsymSession):
    """ECDSA sign (d) and verify (point), ECDH shared secret (own d, the peer's point in the operation)."""

    op_class = (AsymSign, AsymVerify, KeyAgreement)

    def _prepare(self, params: EcParams) -> None:
        if params.algo not in ("ECDSA", "ECDH"):
            raise _notsupp(f"EC algorithm {params.algo}")
        self.algo = params.algo
        self.curve = curve_of(params.group)
        self.hash = _hash(params.hash_algo)
        try:
            if params.d is not None:
                self.key = ec.derive_private_key(params.d, self.curve)
                self.public = self.key.public_key()
            else:
                self.key = None
                self.public = self._point(params.point)
        except ValueError as e:
            raise _err(f"EC key rejected: {e}") from None

    def _point(self, point: tuple[int, int]) -> ec.EllipticCurvePublicKey:
        x, y = point
        try:
            return ec.EllipticCurvePublicNumbers(x, y, self.curve).public_key()
        except ValueError as e:
            raise _err(f"EC point rejected: {e}") from None

    def _handlers(self):
        if self.algo == "ECDH":
            return {KeyAgreement: self._agree}
        return {AsymSign: self._sign, AsymVerify: self._verify}

    def _algorithm(self, message: bytes) -> ec.ECDSA:
        return ec.ECDSA(self.hash or _prehashed(message))

    def _sign(self, op: AsymSign) -> Signature:
        if self.key is None:
            raise _notsupp("ECDSA signing needs the private key")
        algorithm = self._algorithm(op.src)
        return _dss(_signed(lambda: self.key.sign(op.src, algorithm), "ECDSA"))

    def _verify(self, op: AsymVerify) -> bool:
        signature, algorithm = utils.encode_dss_signature(*op.signature), self._algorithm(op.src)
        return _verdict(lambda: self.public.verify(signature, op.src, algorithm), "ECDSA")

    def _agree(self, op: KeyAgreement) -> bytes:
        if self.key is None:
            raise _err("ECDH needs the own private key d")
        peer = self._point(op.peer)
        try:
            return self.key.exchange(ec.ECDH(), peer)
        except ValueError as e:
            raise _err(f"ECDH refused: {e}") from None


class EcKeyGenSession(_AsymSession):
    """An EC key pair on a named curve."""

    op_class = (AsymKeyGen,)

    def _prepare(self, params: EcKeyGenParams) -> None:
        self.curve = curve_of(params.group)

    def _handlers(self):
        return {AsymKeyGen: self._generate}

    def _generate(self, op: AsymKeyGen) -> EcKeyPair:
        numbers = ec.generate_private_key(self.curve).private_numbers()
        return EcKeyPair(numbers.private_value, numbers.public_numbers.x, numbers.public_numbers.y)


# ---- DH -------------------------------------------------------------------------------------------------------
class DhSession(_AsymSession):
    """DH key generation and shared-secret computation in the group (p, g)."""

    op_class = (AsymKeyGen, KeyAgreement)

    def _prepare(self, params: DhParams) -> None:
        p, g = params.p, params.g
        if not 512 <= p.bit_length() <= DH_MAX_BITS:
            raise _notsupp(f"{p.bit_length()}-bit DH prime (512 .. {DH_MAX_BITS} bits)")
        if not 1 < g < p - 1:
            raise _err("DH generator g not in 2..p-2")
        self.numbers = dh.DHParameterNumbers(p, g)
        self.x = params.x
        try:
            self.parameters = self.numbers.parameters()
        except ValueError as e:
            raise _err(f"DH group rejected: {e}") from None

    def _handlers(self):
        return {AsymKeyGen: self._generate, KeyAgreement: self._agree}

    def _generate(self, op: AsymKeyGen) -> DhKeyPair:
        numbers = self.parameters.generate_private_key().private_numbers()
        return DhKeyPair(numbers.x, numbers.public_numbers.y)

    def _agree(self, op: KeyAgreement) -> bytes:
        p, g, x = self.numbers.p, self.numbers.g, self.x
        if x is None or not 0 < x < p - 1:
            raise _err("DH private value x not in 1..p-2")
        if not 1 < op.peer < p - 1:
            raise _err("DH peer public value not in 2..p-2")
        try:
            own = dh.DHPrivateNumbers(x, dh.DHPublicNumbers(pow(g, x, p), self.numbers)).private_key()
            return own.exchange(dh.DHPublicNumbers(op.peer, self.numbers).public_key())
        except ValueError as e:
            raise _err(f"DH refused: {e}") from None


class DhParamGenSession(_AsymSession):
    """DH domain parameters: a safe prime of the requested size, generator 2."""

    op_class = (AsymKeyGen,)

    def _prepare(self, params: DhParamGenParams) -> None:
        if not 512 <= params.bits <= DH_MAX_BITS:
            raise _notsupp(f"{params.bits}-bit DH parameter generation (512 .. {DH_MAX_BITS} bits)")
        self.bits = params.bits

    def _handlers(self):
        return {AsymKeyGen: self._generate}

    def _generate(self, op: AsymKeyGen) -> DhGroup:
        numbers = dh.generate_parameters(2, self.bits).parameter_numbers()
        return DhGroup(numbers.p, numbers.g)


# ---- What a profile builds on -------------------------------------------------------------------------------
#: Session class per ASYM parameter type.
SESSIONS = {RsaParams: RsaSession, RsaKeyGenParams: RsaKeyGenSession, DsaParams: DsaSession,
            DsaKeyGenParams: DsaKeyGenSession, EcParams: EcSession, EcKeyGenParams: EcKeyGenSession,
            DhParams: DhSession, DhParamGenParams: DhParamGenSession}
