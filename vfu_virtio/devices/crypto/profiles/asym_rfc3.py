"""The asymmetric crypto service RFC v3 as a profile: the v16 crypto patch plus service ASYM, its sixteen requests.

"virtio crypto device specification: asymmetric crypto service", RFC v3 (January 2017, written against v15), placed
as its reviewer asked, in the v16 mux wrapper (AMB-32 in ``docs/decisions.md``). Numbers and layouts:
:mod:`vfu_virtio.abi.crypto_asym`; the services: :mod:`..asym_services`.

What a driver sees (everything of the v16 profile, :mod:`.v16`, plus):

* Configuration: the RFC's ``struct virtio_crypto_config``, 64 bytes: the v16 words up to ``aead_algo``, then
  ``asym_algo`` @36 (bits 1..5: RSA, DSA, DH, ECDSA, ECDH), ``rsa_padding`` @40 (bits 0, 1, 3, 5: no padding,
  PKCS#1 v1.5, OAEP, PSS), ``max_cipher_key_len`` @44, ``max_auth_key_len`` @48, ``reserved`` @52, ``max_size``
  @56 -- inserted where the RFC inserts them, not appended (AMB-37); ``crypto_services`` has bit 4 (ASYM).
* Feature bits 0..5: v16's and the project's ``VIRTIO_CRYPTO_F_ASYM`` (5), which requires
  ``VIRTIO_CRYPTO_F_NON_SESSION_MODE`` (FEATURES_OK refused otherwise). Without bit 5 an ASYM request is NOTSUPP.
* An ASYM request (opcodes 0x0400..0x0405) is a mux-layout dataq request: the 24-byte header, whose ``algo`` names
  the algorithm (for ASYM it is not informational) and whose ``session_id`` and ``flag`` are ignored; the fixed
  part of ``parameter`` zero-padded to 80 bytes; the variable part of ``parameter`` and ``odata`` in struct order.
  ``idata`` starts at offset 0 of the writable part: ``le32 status``, a second le32 word, the outputs. Numbers are
  unsigned big-endian, left-padded with zeros to their declared field length. The holes (AMB-32): RSA verify's
  signature (``n_len`` bytes) follows ``msg``; RSA encrypt's ``cmsg`` is ``n_len`` bytes; RSA decrypt reports the
  recovered length in ``reserved`` (the message starts at offset 8, zeros after it); DH parameter generation's
  idata is ``status, reserved, p_len, g_len, p, g``; ECDH shared-secret computation uses ``keyexchg_op``
  COMPUTE_KEY (the RFC's driver rule says GEN_KEY: a slip) and ignores the inner parameter's d_len, x_len, y_len.
* Outputs whose length is the device's: RSA key generation writes n and d (rep1) or p, q, dp, dq, qinv (rep2,
  ceil(modulus_len / 2) bytes each) and n (``modulus_len`` bytes), e (``e_len`` bytes, 3 when 0), with the length
  fields filled in; DSA key generation p, g, y (``modulus_len`` bytes) and q, x (q's length); DH key generation
  x and y (p's length); DH parameter generation p and g (``modules_len`` bytes). The writable part must hold
  the largest possible idata (for DSA: q of 32 bytes), else ERR before anything is generated.
* Outcome: the whole writable part is written -- idata, then zeros -- and is the used length; on any status but OK
  every byte after ``status`` is zero. A verification that ran reports ``status`` OK and the verdict in
  ``verify_result``: OK (0) or BADMSG (2). Status codes are v16's (OK, ERR, BADMSG, NOTSUPP; never INVSESS).
* Faults: a field whose declared length exceeds what is readable, variable-length fields summing to more than
  ``max_size`` (AMB-13), a writable part smaller than the idata, an unknown ``keyexchg_op`` (for ECDH anything
  but GEN_KEY and COMPUTE_KEY), priv_key_rep_type or field type -> ERR; an algorithm or combination not offered
  (an unknown algo, DSA encrypt, DH sign), a padding, curve, hash or key size not implemented, more than two RSA
  primes, key generation above the device's bounds (``--max-rsa-keygen-bits``, ``--max-dsa-keygen-bits``,
  ``--max-dh-param-bits``) -> NOTSUPP.

The request's per-signature random ``k`` (DSA, ECDSA) is read and never used (:mod:`..asym_services`).
"""
from __future__ import annotations

import logging
import struct

from vfu_virtio.abi import crypto_asym as A
from vfu_virtio.abi import crypto_v16 as V
from vfu_virtio.virtio.chain import ChainReader, ChainWriter

from ..asym_services import RSA_PADDINGS
from ..asym_services import SESSIONS as ASYM_SESSIONS
from ..asym_values import (AsymDecrypt, AsymEncrypt, AsymKeyGen, AsymPadding, AsymSign, AsymVerify, DhGroup,
                           DhKeyPair, DhParamGenParams, DhParams, DsaGroup, DsaKeyGenParams, DsaKeyPair, DsaParams,
                           EcField, EcGroup, EcKeyGenParams, EcKeyPair, EcParams, KeyAgreement, RsaKeyForm,
                           RsaKeyGenParams, RsaKeyPair, RsaParams, RsaPrivateKey, RsaPublicKey, Signature)
from ..errors import CryptoStatus
from ..profile import ConfigValues, Profile
from ..values import DataRequest, Limits, Service, Status
from . import v16
from .standard import ALGORITHMS as STANDARD_ALGORITHMS
from .standard import _read

log = logging.getLogger(__name__)

#: The ASYM algorithm numbers (the header's algo, bits of asym_algo).
ASYM_ALGORITHMS = {A.VIRTIO_CRYPTO_ASYM_RSA: "RSA", A.VIRTIO_CRYPTO_ASYM_DSA: "DSA", A.VIRTIO_CRYPTO_ASYM_DH: "DH",
                   A.VIRTIO_CRYPTO_ASYM_ECDSA: "ECDSA", A.VIRTIO_CRYPTO_ASYM_ECDH: "ECDH"}
SERVICE_BITS = {**v16.SERVICE_BITS, Service.ASYM: A.VIRTIO_CRYPTO_SERVICE_ASYM}
_PADDINGS = {A.VIRTIO_CRYPTO_RSA_NO_PADDING: AsymPadding.NONE, A.VIRTIO_CRYPTO_RSA_PKCS1_PADDING: AsymPadding.PKCS1,
             A.VIRTIO_CRYPTO_RSA_SSLV23_PADDING: AsymPadding.SSLV23,
             A.VIRTIO_CRYPTO_RSA_PKCS1_OAEP_PADDING: AsymPadding.OAEP,
             A.VIRTIO_CRYPTO_RSA_X931_PADDING: AsymPadding.X931, A.VIRTIO_CRYPTO_RSA_PKCS1_PSS_PADDING: AsymPadding.PSS}
#: rsa_padding: the paddings the services implement.
RSA_PADDING_BITS = sum(1 << number for number, padding in _PADDINGS.items() if padding in RSA_PADDINGS)
_FORMS = {A.VIRTIO_CRYPTO_RSA_PRIV_KEY_REPTYPE1: RsaKeyForm.EXPONENT,
          A.VIRTIO_CRYPTO_RSA_PRIV_KEY_REPTYPE2: RsaKeyForm.CRT}
_FORM_NUMBERS = {form: number for number, form in _FORMS.items()}
_FIELDS = {A.VIRTIO_CRYPTO_EC_FIELD_TYPE_PRIME: EcField.PRIME, A.VIRTIO_CRYPTO_EC_FIELD_TYPE_BINARY: EcField.BINARY}
#: hash_algo: the HASH service's numbers (AMB-32); 0 (VIRTIO_CRYPTO_NO_HASH) is None, a message already hashed.
_HASHES = {0: None, **STANDARD_ALGORITHMS[Service.HASH]}
_U32 = struct.Struct("<I")
_RESERVED = bytes(4)
#: The request the device hands back to :meth:`AsymCodec.data_outcome` when an ASYM request did not parse.
_UNPARSED = DataRequest(Service.ASYM, None, None, None)
#: Largest DSA q in bytes: the room DSA key generation needs for q and x.
_DSA_Q_MAX = 32


def _be(value: int, width: int, what: str) -> bytes:
    """``value`` as ``width`` unsigned big-endian bytes; ERR if it does not fit."""
    if value < 0 or value.bit_length() > 8 * width:
        raise CryptoStatus(Status.ERR, f"a {value.bit_length()}-bit {what} does not fit its {width}-byte field")
    return value.to_bytes(width, "big")


def _nbytes(value: int) -> int:
    return (value.bit_length() + 7) // 8


class AsymCodec(v16.V16Codec):
    """v16's request format plus the ASYM requests (module docstring). ``asym``: VIRTIO_CRYPTO_F_ASYM negotiated
    (with VIRTIO_CRYPTO_F_NON_SESSION_MODE, which the feature rule demands)."""

    def __init__(self, features: int, limits: Limits, algorithms):
        super().__init__(features, limits, algorithms)
        self.asym = self.mux and bool(features >> A.VIRTIO_CRYPTO_F_ASYM & 1)
        self._asym_parsers = {
            (A.VIRTIO_CRYPTO_ASYM_SIGN, "RSA"): self._rsa_sign, (A.VIRTIO_CRYPTO_ASYM_SIGN, "DSA"): self._dsa_sign,
            (A.VIRTIO_CRYPTO_ASYM_SIGN, "ECDSA"): self._ecdsa_sign,
            (A.VIRTIO_CRYPTO_ASYM_VERIFY, "RSA"): self._rsa_verify,
            (A.VIRTIO_CRYPTO_ASYM_VERIFY, "DSA"): self._dsa_verify,
            (A.VIRTIO_CRYPTO_ASYM_VERIFY, "ECDSA"): self._ecdsa_verify,
            (A.VIRTIO_CRYPTO_ASYM_ENCRYPT, "RSA"): self._rsa_encrypt,
            (A.VIRTIO_CRYPTO_ASYM_DECRYPT, "RSA"): self._rsa_decrypt,
            (A.VIRTIO_CRYPTO_ASYM_KEY_GEN, "RSA"): self._rsa_keygen,
            (A.VIRTIO_CRYPTO_ASYM_KEY_GEN, "DSA"): self._dsa_keygen,
            (A.VIRTIO_CRYPTO_ASYM_KEY_GEN, "ECDSA"): self._ec_keygen,
            (A.VIRTIO_CRYPTO_ASYM_KEY_GEN, "ECDH"): self._ec_keygen,
            (A.VIRTIO_CRYPTO_ASYM_KEY_EXCHG, "DH"): self._dh, (A.VIRTIO_CRYPTO_ASYM_KEY_EXCHG, "ECDH"): self._ecdh,
        }

    # ---- parsing -------------------------------------------------------------------------------------------
    def parse_data(self, reader: ChainReader, out_capacity: int) -> DataRequest:
        """A v16 dataq request, or an ASYM one (module docstring). Raises :class:`~..errors.CryptoStatus`; for an
        ASYM opcode it carries ``request`` (service ASYM), so the status goes where idata puts it."""
        opcode, algo, session_id, flag = self._header(reader)
        if opcode not in A.OPCODES:
            return self._parse_sym(opcode, algo, session_id, flag, reader, out_capacity)
        try:
            return self._parse_asym(opcode, algo, reader, out_capacity)
        except CryptoStatus as e:
            e.request = _UNPARSED
            raise

    def _parse_asym(self, opcode: int, algo: int, reader: ChainReader, out_capacity: int) -> DataRequest:
        if not self.asym:
            raise CryptoStatus(Status.NOTSUPP, "ASYM request without VIRTIO_CRYPTO_F_ASYM")
        name = self._name(Service.ASYM, algo)
        parser = self._asym_parsers.get((opcode, name))
        if parser is None:
            raise CryptoStatus(Status.NOTSUPP, f"ASYM opcode {opcode:#x} with algo {name}")
        params, op, out_len = parser(self._read_union(reader), reader)
        needed = A.VIRTIO_CRYPTO_ASYM_INPUT.size + out_len
        if needed > out_capacity:
            raise CryptoStatus(Status.ERR, f"idata of up to {needed} bytes does not fit the {out_capacity}-byte "
                               "writable stream")
        return DataRequest(Service.ASYM, None, params, op)

    def _numbers(self, reader: ChainReader, lengths, what: str) -> list[int]:
        """Read one unsigned big-endian number per length in ``lengths`` (bytes)."""
        return [int.from_bytes(_read(reader, n, what), "big") for n in lengths]

    def _hash(self, number: int):
        return _HASHES.get(number, number)

    @staticmethod
    def _ec_lengths(ec: bytes) -> tuple[int, ...]:
        return A.VIRTIO_CRYPTO_EC_GROUP.unpack(ec)[:7]  # xg, yg, n, q, a, b, h; reserved ignored

    def _ec_group(self, field_type: int, lengths, reader: ChainReader) -> EcGroup:
        """virtio_crypto_ec_group_data (xg, yg, n, q, a, b, h) as an :class:`EcGroup` (q is the field prime)."""
        xg, yg, n, q, a, b, h = self._numbers(reader, lengths, "ec_group_data")
        return EcGroup(_FIELDS.get(field_type, field_type), q, a, b, xg, yg, n, h)

    @staticmethod
    def _dsa_lengths(dsa: bytes) -> tuple[int, ...]:
        return A.VIRTIO_CRYPTO_DSA_GROUP.unpack(dsa)[:3]  # p, q, g; reserved ignored

    def _rsa_private_lengths(self, priv_key: bytes) -> tuple[RsaKeyForm, int, tuple[int, ...]]:
        """(form, prime count, lengths of the key data) of a virtio_crypto_rsa_priv_key; ERR for an unknown
        priv_key_rep_type, NOTSUPP for other than two primes (their r, d, t arrays are never read)."""
        primes, rep_type, key = A.VIRTIO_CRYPTO_RSA_PRIV_KEY.unpack(priv_key)
        form = _FORMS.get(rep_type)
        if form is None:
            raise CryptoStatus(Status.ERR, f"priv_key_rep_type {rep_type}")
        if primes != 2:
            raise CryptoStatus(Status.NOTSUPP, f"{primes}-prime RSA key (cryptography takes two primes)")
        if form is RsaKeyForm.EXPONENT:
            return form, primes, A.VIRTIO_CRYPTO_RSA_PRIV_KEY_REP1.unpack_from(key)
        return form, primes, A.VIRTIO_CRYPTO_RSA_PRIV_KEY_REP2.unpack(key)[:5]  # p, q, dp, dq, qinv

    def _rsa_private(self, form: RsaKeyForm, primes: int, lengths, reader: ChainReader) -> RsaPrivateKey:
        return RsaPrivateKey(form, primes, tuple(self._numbers(reader, lengths, "RSA private key")))

    def _rsa_public(self, pub_key: bytes, reader: ChainReader) -> tuple[RsaPublicKey, int]:
        """The public key and ``n_len``; the caller checked the lengths."""
        n, e = self._numbers(reader, A.VIRTIO_CRYPTO_RSA_PUB_KEY.unpack(pub_key), "RSA public key")
        return RsaPublicKey(n, e), A.VIRTIO_CRYPTO_RSA_PUB_KEY.unpack(pub_key)[0]

    def _padding(self, number: int):
        return _PADDINGS.get(number, number)

    # ---- the sixteen requests: (union, reader) -> (params, op, bytes of idata after the fixed 8) ------------------
    def _rsa_sign(self, union: bytes, reader: ChainReader):
        hash_algo, padding_mode, priv_key, msg_len, signature_len = A.VIRTIO_CRYPTO_RSA_SIGN_PARA.unpack_from(union)
        form, primes, lengths = self._rsa_private_lengths(priv_key)
        self._check_size(*lengths, msg_len, signature_len)
        key = self._rsa_private(form, primes, lengths, reader)
        msg = _read(reader, msg_len, "msg")
        params = RsaParams(key, self._padding(padding_mode), self._hash(hash_algo))
        return params, AsymSign(msg, (signature_len,)), signature_len

    def _dsa_sign(self, union: bytes, reader: ChainReader):
        hash_algo, _r1, dsa, k_len, x_len, msg_len, r_len, s_len, _r2 = A.VIRTIO_CRYPTO_DSA_SIGN_PARA.unpack_from(union)
        lengths = self._dsa_lengths(dsa)
        self._check_size(*lengths, k_len, x_len, msg_len, r_len, s_len)
        group = DsaGroup(*self._numbers(reader, lengths, "dsa_group_data"))
        _read(reader, k_len, "k")  # never used: cryptography draws its own per-signature random
        (x,) = self._numbers(reader, (x_len,), "x")
        msg = _read(reader, msg_len, "msg")
        return DsaParams(group, self._hash(hash_algo), x=x), AsymSign(msg, (r_len, s_len)), r_len + s_len

    def _ecdsa_sign(self, union: bytes, reader: ChainReader):
        hash_algo, field_type, ec, k_len, d_len, msg_len, r_len, s_len, _res = \
            A.VIRTIO_CRYPTO_ECDSA_SIGN_PARA.unpack_from(union)
        lengths = self._ec_lengths(ec)
        self._check_size(*lengths, k_len, d_len, msg_len, r_len, s_len)
        group = self._ec_group(field_type, lengths, reader)
        _read(reader, k_len, "k")  # never used, as DSA's
        (d,) = self._numbers(reader, (d_len,), "d")
        msg = _read(reader, msg_len, "msg")
        return EcParams("ECDSA", group, self._hash(hash_algo), d=d), AsymSign(msg, (r_len, s_len)), r_len + s_len

    def _rsa_verify(self, union: bytes, reader: ChainReader):
        hash_algo, padding_mode, pubkey, msg_len, _res = A.VIRTIO_CRYPTO_RSA_VERIFY_PARA.unpack_from(union)
        n_len, e_len = A.VIRTIO_CRYPTO_RSA_PUB_KEY.unpack(pubkey)
        self._check_size(n_len, e_len, msg_len, n_len)
        key, _n_len = self._rsa_public(pubkey, reader)
        msg = _read(reader, msg_len, "msg")
        signature = _read(reader, n_len, "signature")  # after msg, n_len bytes (AMB-32)
        return RsaParams(key, self._padding(padding_mode), self._hash(hash_algo)), AsymVerify(msg, (signature,)), 0

    def _signature(self, reader: ChainReader, r_len: int, s_len: int, msg_len: int) -> AsymVerify:
        r, s = self._numbers(reader, (r_len, s_len), "signature")
        return AsymVerify(_read(reader, msg_len, "msg"), (r, s))

    def _dsa_verify(self, union: bytes, reader: ChainReader):
        hash_algo, _res, dsa, y_len, r_len, s_len, msg_len = A.VIRTIO_CRYPTO_DSA_VERIFY_PARA.unpack_from(union)
        lengths = self._dsa_lengths(dsa)
        self._check_size(*lengths, y_len, r_len, s_len, msg_len)
        group = DsaGroup(*self._numbers(reader, lengths, "dsa_data"))
        (y,) = self._numbers(reader, (y_len,), "y")
        return DsaParams(group, self._hash(hash_algo), y=y), self._signature(reader, r_len, s_len, msg_len), 0

    def _ecdsa_verify(self, union: bytes, reader: ChainReader):
        hash_algo, field_type, ec, x_len, y_len, r_len, s_len, msg_len, _res = \
            A.VIRTIO_CRYPTO_ECDSA_VERIFY_PARA.unpack_from(union)
        lengths = self._ec_lengths(ec)
        self._check_size(*lengths, x_len, y_len, r_len, s_len, msg_len)
        group = self._ec_group(field_type, lengths, reader)
        x, y = self._numbers(reader, (x_len, y_len), "public key")
        params = EcParams("ECDSA", group, self._hash(hash_algo), point=(x, y))
        return params, self._signature(reader, r_len, s_len, msg_len), 0

    def _rsa_encrypt(self, union: bytes, reader: ChainReader):
        padding_mode, pub_key, msg_len = A.VIRTIO_CRYPTO_RSA_ENC_PARA.unpack_from(union)
        n_len, e_len = A.VIRTIO_CRYPTO_RSA_PUB_KEY.unpack(pub_key)
        self._check_size(n_len, e_len, msg_len, n_len)
        key, n_len = self._rsa_public(pub_key, reader)
        msg = _read(reader, msg_len, "msg")
        return RsaParams(key, self._padding(padding_mode)), AsymEncrypt(msg, (n_len,)), n_len  # cmsg[n_len]

    def _rsa_decrypt(self, union: bytes, reader: ChainReader):
        padding_mode, priv_key, cmsg_len = A.VIRTIO_CRYPTO_RSA_DEC_PARA.unpack_from(union)
        form, primes, lengths = self._rsa_private_lengths(priv_key)
        self._check_size(*lengths, cmsg_len, cmsg_len)
        key = self._rsa_private(form, primes, lengths, reader)
        cmsg = _read(reader, cmsg_len, "cmsg")
        return RsaParams(key, self._padding(padding_mode)), AsymDecrypt(cmsg, (cmsg_len,)), cmsg_len

    def _keygen_bits(self, length: int, limit: int, what: str) -> int:
        bits = 8 * length
        if bits > limit:
            raise CryptoStatus(Status.NOTSUPP, f"{bits}-bit {what} generation (the device's bound is {limit} bits)")
        return bits

    def _rsa_keygen(self, union: bytes, reader: ChainReader):
        modulus_len, primes, rep_type, e_len = A.VIRTIO_CRYPTO_RSA_KEYGEN_PARA.unpack_from(union)
        bits = self._keygen_bits(modulus_len, self.limits.max_rsa_keygen_bits, "RSA key")
        e_width = e_len or 3
        form = _FORMS.get(rep_type, rep_type)
        private = 5 * ((modulus_len + 1) // 2) if form is RsaKeyForm.CRT else 2 * modulus_len
        out_len = A.VIRTIO_CRYPTO_RSA_KEYGEN_INPUT.size - A.VIRTIO_CRYPTO_ASYM_INPUT.size + private + modulus_len \
            + e_width
        self._check_size(e_len, out_len)
        (e,) = self._numbers(reader, (e_len,), "e") if e_len else (65537,)
        return RsaKeyGenParams(bits, primes, e, form), AsymKeyGen((modulus_len, e_width)), out_len

    def _dsa_keygen(self, union: bytes, reader: ChainReader):
        modulus_len, _res = A.VIRTIO_CRYPTO_DSA_KEYGEN_PARA.unpack_from(union)
        bits = self._keygen_bits(modulus_len, self.limits.max_dsa_keygen_bits, "DSA key")
        out_len = A.VIRTIO_CRYPTO_DSA_KEYGEN_INPUT.size - A.VIRTIO_CRYPTO_ASYM_INPUT.size + 3 * modulus_len \
            + 2 * _DSA_Q_MAX
        self._check_size(out_len)
        return DsaKeyGenParams(bits), AsymKeyGen((modulus_len,)), out_len

    def _ec_keygen(self, union: bytes, reader: ChainReader):
        field_type, _res, ec, d_len, x_len, y_len = A.VIRTIO_CRYPTO_EC_KEYGEN_PARA.unpack_from(union)
        lengths = self._ec_lengths(ec)
        self._check_size(*lengths, d_len, x_len, y_len)
        group = self._ec_group(field_type, lengths, reader)
        return EcKeyGenParams(group), AsymKeyGen((d_len, x_len, y_len)), d_len + x_len + y_len

    def _dh(self, union: bytes, reader: ChainReader):
        keyexchg_op, _res, dh_param = A.VIRTIO_CRYPTO_DH_KEYEXCHG_PARA.unpack_from(union)
        modules_len, _res, p_len, g_len = A.VIRTIO_CRYPTO_DH_PARAMETER.unpack(dh_param)
        if keyexchg_op == A.VIRTIO_CRYPTO_KEY_EXCHANGE_GEN_DH_PARAM:
            bits = self._keygen_bits(modules_len, self.limits.max_dh_param_bits, "DH parameter")
            out_len = A.VIRTIO_CRYPTO_DH_KEYEXCHG_PARAM_GEN_INPUT.size - A.VIRTIO_CRYPTO_ASYM_INPUT.size \
                + 2 * modules_len
            self._check_size(p_len, g_len, out_len)
            self._numbers(reader, (p_len, g_len), "dh_param")  # the device's to fill; what the driver sent is unused
            return DhParamGenParams(bits), AsymKeyGen((modules_len,)), out_len
        if keyexchg_op == A.VIRTIO_CRYPTO_KEY_EXCHANGE_GEN_KEY:
            out_len = A.VIRTIO_CRYPTO_DH_KEYEXCHG_KEYGEN_INPUT.size - A.VIRTIO_CRYPTO_ASYM_INPUT.size + 2 * p_len
            self._check_size(p_len, g_len, out_len)
            p, g = self._numbers(reader, (p_len, g_len), "dh_param")
            return DhParams(p, g), AsymKeyGen((_nbytes(p),)), out_len
        if keyexchg_op != A.VIRTIO_CRYPTO_KEY_EXCHANGE_COMPUTE_KEY:
            raise CryptoStatus(Status.ERR, f"DH keyexchg_op {keyexchg_op}")
        self._check_size(p_len, g_len)
        p, g = self._numbers(reader, (p_len, g_len), "dh_param")
        x_len, y_len, secret_len, _res = A.VIRTIO_CRYPTO_DH_KEYEXCHG_COMPUTE_KEY_OUTPUT.unpack(
            _read(reader, A.VIRTIO_CRYPTO_DH_KEYEXCHG_COMPUTE_KEY_OUTPUT.size, "DH compute-key odata"))
        self._check_size(p_len, g_len, x_len, y_len, secret_len)
        x, y = self._numbers(reader, (x_len, y_len), "DH keys")
        return DhParams(p, g, x=x), KeyAgreement(y, (secret_len,)), secret_len

    def _ecdh(self, union: bytes, reader: ChainReader):
        (keyexchg_op,) = _U32.unpack_from(union)
        if keyexchg_op == A.VIRTIO_CRYPTO_KEY_EXCHANGE_GEN_KEY:
            _op, _res, parameter = A.VIRTIO_CRYPTO_ECDH_KEYEXCHG_KEYGEN_PARA.unpack_from(union)
            return self._ec_keygen(parameter, reader)
        if keyexchg_op != A.VIRTIO_CRYPTO_KEY_EXCHANGE_COMPUTE_KEY:
            raise CryptoStatus(Status.ERR, f"ECDH keyexchg_op {keyexchg_op} (GEN_KEY or COMPUTE_KEY)")
        _op, _res, d_len, x_len, y_len, secret_len, parameter = \
            A.VIRTIO_CRYPTO_ECDH_KEYEXCHG_COMPUTE_KEY_PARA.unpack_from(union)
        field_type, _res, ec, *_ignored = A.VIRTIO_CRYPTO_EC_KEYGEN_PARA.unpack(parameter)
        lengths = self._ec_lengths(ec)
        self._check_size(*lengths, d_len, x_len, y_len, secret_len)
        group = self._ec_group(field_type, lengths, reader)
        d, x, y = self._numbers(reader, (d_len, x_len, y_len), "ECDH keys")
        return EcParams("ECDH", group, d=d), KeyAgreement((x, y), (secret_len,)), secret_len

    # ---- outcome -------------------------------------------------------------------------------------------
    def data_outcome(self, writer: ChainWriter, request: DataRequest | None, status: Status, end) -> int:
        """A v16 request's outcome, or an ASYM request's idata (module docstring): the whole writable part
        written, ``status`` as le32 at offset 0, the outputs after the second word when it is OK. ``end`` is the
        session's result value; one that does not fit its declared field makes the status ERR."""
        if request is None or request.service is not Service.ASYM:
            return super().data_outcome(writer, request, status, end)
        capacity = writer.capacity
        body = b""
        if status is Status.OK:
            try:
                body = self._lay_out(request, end)
            except CryptoStatus as e:
                log.debug("ASYM result: %s", e)
                status, body = e.status, b""
        idata = _U32.pack(self.wire_status(status)) + body  # body: the idata after the le32 status
        if len(idata) > capacity and body:  # cannot happen for a request that parsed: its idata was checked to fit
            idata = _U32.pack(self.wire_status(Status.ERR))
        # a writable part shorter than the le32 status gets its first bytes (the low byte is the status)
        writer.write_at(0, idata[:capacity].ljust(capacity, b"\0"))
        return capacity

    def _lay_out(self, request: DataRequest, result) -> bytes:
        """The idata after ``status``: the second word, then the outputs."""
        op, params = request.op, request.params
        if isinstance(op, AsymVerify):
            return _U32.pack(V.VIRTIO_CRYPTO_OK if result else V.VIRTIO_CRYPTO_BADMSG)
        widths = op.widths
        if isinstance(result, Signature):
            return _RESERVED + _be(result.r, widths[0], "r") + _be(result.s, widths[1], "s")
        if isinstance(op, AsymDecrypt):
            if len(result) > widths[0]:
                raise CryptoStatus(Status.ERR, f"{len(result)}-byte message does not fit msg[{widths[0]}]")
            return _U32.pack(len(result)) + result.ljust(widths[0], b"\0")
        if isinstance(result, bytes):  # RSA signature or ciphertext, shared secret: numbers
            return _RESERVED + _be(int.from_bytes(result, "big"), widths[0], type(op).__name__ + " result")
        if isinstance(result, RsaKeyPair):
            return self._rsa_key_pair(params, result, *widths)
        if isinstance(result, DsaKeyPair):
            (width,) = widths
            q_width = _nbytes(result.group.q)
            group = A.VIRTIO_CRYPTO_DSA_GROUP.pack(width, q_width, width, 0)
            numbers = [(result.group.p, width), (result.group.q, q_width), (result.group.g, width),
                       (result.x, q_width), (result.y, width)]
            return _RESERVED + group + struct.pack("<II", q_width, width) + self._concat(numbers)
        if isinstance(result, EcKeyPair):
            return _RESERVED + self._concat(zip((result.d, result.x, result.y), widths))
        if isinstance(result, (DhKeyPair, DhGroup)):
            (width,) = widths
            return _RESERVED + struct.pack("<II", width, width) + self._concat(zip(result, (width, width)))
        raise CryptoStatus(Status.ERR, f"no layout for a {type(result).__name__} result")

    @staticmethod
    def _concat(numbers) -> bytes:
        return b"".join(_be(value, width, "key number") for value, width in numbers)

    def _rsa_key_pair(self, params: RsaKeyGenParams, key: RsaKeyPair, width: int, e_width: int) -> bytes:
        """virtio_crypto_rsa_keygen_input after status: reserved, priv_key (lengths filled in), pub_key, the
        private key data (n, d or p, q, dp, dq, qinv), n, e."""
        if params.form is RsaKeyForm.EXPONENT:
            lengths = A.VIRTIO_CRYPTO_RSA_PRIV_KEY_REP1.pack(width, width)
            private = [(key.n, width), (key.d, width)]
        else:
            half = (width + 1) // 2
            lengths = A.VIRTIO_CRYPTO_RSA_PRIV_KEY_REP2.pack(half, half, half, half, half, 0, 0, 0)
            private = [(key.p, half), (key.q, half), (key.dp, half), (key.dq, half), (key.qinv, half)]
        priv_key = A.VIRTIO_CRYPTO_RSA_PRIV_KEY.pack(2, _FORM_NUMBERS[params.form], lengths)
        pub_key = A.VIRTIO_CRYPTO_RSA_PUB_KEY.pack(width, e_width)
        return _RESERVED + priv_key + pub_key + self._concat([*private, (key.n, width), (key.e, e_width)])


# ---- Configuration and features -----------------------------------------------------------------------------------
def config_layout(values: ConfigValues) -> bytes:
    """The RFC's ``struct virtio_crypto_config`` (64 bytes): the nine v16 words, asym_algo, rsa_padding (0 without
    RSA), the key limits, reserved 0, max_size."""
    limits = values.limits
    asym = values.algorithms.get(Service.ASYM, {})
    paddings = RSA_PADDING_BITS if A.VIRTIO_CRYPTO_ASYM_RSA in asym else 0
    return A.VIRTIO_CRYPTO_CONFIG.pack(*v16.config_words(values, SERVICE_BITS), v16.bitmap(asym), paddings,
                                       limits.max_cipher_key_len, limits.max_auth_key_len, 0, limits.max_size)


def refuse_features(features: int) -> str | None:
    """v16's rule, and VIRTIO_CRYPTO_F_ASYM requires VIRTIO_CRYPTO_F_NON_SESSION_MODE too (AMB-32)."""
    if features >> A.VIRTIO_CRYPTO_F_ASYM & 1 and not features >> V.VIRTIO_CRYPTO_F_NON_SESSION_MODE & 1:
        return "VIRTIO_CRYPTO_F_ASYM without VIRTIO_CRYPTO_F_NON_SESSION_MODE"
    return v16.refuse_features(features)


PROFILE = Profile(
    name="asym-rfc3",
    summary="the v16 crypto patch plus the asymmetric service of the ASYM RFC v3 (RSA, DSA, ECDSA, DH, ECDH)",
    features=V.FEATURES | 1 << A.VIRTIO_CRYPTO_F_ASYM,
    refuse_features=refuse_features,
    config_layout=config_layout,
    codec=AsymCodec,
    sessions={**v16.SYM_SESSIONS, **ASYM_SESSIONS},
    algorithms={**v16.ALGORITHMS, Service.ASYM: ASYM_ALGORITHMS},
)
