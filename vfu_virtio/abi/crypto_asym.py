"""The asymmetric crypto service RFC v3's numbers and wire layouts, for both sides.

Source: "virtio crypto device specification: asymmetric crypto service", RFC v3 (January 2017, written against the
v15 crypto patch) and its review (docs/decisions.md, AMB-32 and AMB-37 for the holes and the placement). The RFC
adds service ASYM (4), six opcodes and sixteen request structs, each ``parameter`` (fixed fields, then the
variable data they describe) + ``odata`` (device-readable) + ``idata`` (device-writable: ``le32 status``, a
second le32 word, the outputs). The ``struct.Struct`` constants below are the FIXED part of each struct, named
after it; their comments give each field's byte offset within it. Every integer field is little-endian; big
numbers and point coordinates are unsigned big-endian octet strings whose length is the matching ``*_len``
(AMB-32).

Placement (AMB-32): an ASYM request is a dataq request in the v16 mux layout: ``virtio_crypto_op_header`` (24
bytes, ``algo`` names the algorithm), the fixed part of ``parameter`` zero-padded to the 80-byte mux union
(every fixed part is at most 76 bytes), then the variable part of ``parameter`` and ``odata`` back to back in
struct order. ``idata`` fills the writable part from offset 0. :data:`VIRTIO_CRYPTO_F_ASYM` is the project's own
feature bit (the RFC defines none; its reviewer asked for one). Imports nothing of vfu_virtio outside ``abi``.
"""
from __future__ import annotations

import struct

from . import crypto as C

# ---- Feature bit (project-defined; requires the v16 VIRTIO_CRYPTO_F_NON_SESSION_MODE, bit 0) -------------------
VIRTIO_CRYPTO_F_ASYM = 5

# ---- Service and opcodes -----------------------------------------------------------------------------------------
VIRTIO_CRYPTO_SERVICE_ASYM = 4
VIRTIO_CRYPTO_ASYM_SIGN = C.VIRTIO_CRYPTO_OPCODE(VIRTIO_CRYPTO_SERVICE_ASYM, 0x00)
VIRTIO_CRYPTO_ASYM_VERIFY = C.VIRTIO_CRYPTO_OPCODE(VIRTIO_CRYPTO_SERVICE_ASYM, 0x01)
VIRTIO_CRYPTO_ASYM_ENCRYPT = C.VIRTIO_CRYPTO_OPCODE(VIRTIO_CRYPTO_SERVICE_ASYM, 0x02)
VIRTIO_CRYPTO_ASYM_DECRYPT = C.VIRTIO_CRYPTO_OPCODE(VIRTIO_CRYPTO_SERVICE_ASYM, 0x03)
VIRTIO_CRYPTO_ASYM_KEY_GEN = C.VIRTIO_CRYPTO_OPCODE(VIRTIO_CRYPTO_SERVICE_ASYM, 0x04)
VIRTIO_CRYPTO_ASYM_KEY_EXCHG = C.VIRTIO_CRYPTO_OPCODE(VIRTIO_CRYPTO_SERVICE_ASYM, 0x05)
OPCODES = (VIRTIO_CRYPTO_ASYM_SIGN, VIRTIO_CRYPTO_ASYM_VERIFY, VIRTIO_CRYPTO_ASYM_ENCRYPT, VIRTIO_CRYPTO_ASYM_DECRYPT,
           VIRTIO_CRYPTO_ASYM_KEY_GEN, VIRTIO_CRYPTO_ASYM_KEY_EXCHG)

# ---- Algorithms (the header's algo; bit numbers of asym_algo) ----------------------------------------------------
VIRTIO_CRYPTO_ASYM_NONE = 0
VIRTIO_CRYPTO_ASYM_RSA = 1
VIRTIO_CRYPTO_ASYM_DSA = 2
VIRTIO_CRYPTO_ASYM_DH = 3
VIRTIO_CRYPTO_ASYM_ECDSA = 4
VIRTIO_CRYPTO_ASYM_ECDH = 5

# ---- RSA paddings (padding_mode; bit numbers of rsa_padding) -----------------------------------------------------
VIRTIO_CRYPTO_RSA_NO_PADDING = 0
VIRTIO_CRYPTO_RSA_PKCS1_PADDING = 1
VIRTIO_CRYPTO_RSA_SSLV23_PADDING = 2
VIRTIO_CRYPTO_RSA_PKCS1_OAEP_PADDING = 3
VIRTIO_CRYPTO_RSA_X931_PADDING = 4
VIRTIO_CRYPTO_RSA_PKCS1_PSS_PADDING = 5

# ---- EC field types, RSA private-key forms, key-exchange sub-operations ----------------------------------------
VIRTIO_CRYPTO_EC_FIELD_TYPE_PRIME = 0
VIRTIO_CRYPTO_EC_FIELD_TYPE_BINARY = 1
VIRTIO_CRYPTO_RSA_PRIV_KEY_REPTYPE1 = 0  # (n, d)
VIRTIO_CRYPTO_RSA_PRIV_KEY_REPTYPE2 = 1  # (p, q, dp, dq, qinv [, r[], d[], t[] for more primes])
VIRTIO_CRYPTO_KEY_EXCHANGE_GEN_KEY = 0
VIRTIO_CRYPTO_KEY_EXCHANGE_COMPUTE_KEY = 1
VIRTIO_CRYPTO_KEY_EXCHANGE_GEN_DH_PARAM = 2  # DH only

# ---- Shared sub-structures ---------------------------------------------------------------------------------------
#: struct virtio_crypto_ec_group, 32 bytes: xg_len @0, yg_len @4, n_len @8, q_len @12, a_len @16, b_len @20,
#: h_len @24, reserved @28; its data (struct virtio_crypto_ec_group_data): xg, yg, n, q, a, b, h.
VIRTIO_CRYPTO_EC_GROUP = struct.Struct("<8I")
#: struct virtio_crypto_dsa_group, 16 bytes: p_len @0, q_len @4, g_len @8, reserved @12; data: p, q, g.
VIRTIO_CRYPTO_DSA_GROUP = struct.Struct("<4I")
#: struct virtio_crypto_rsa_pub_key, 8 bytes: n_len @0, e_len @4; data: n, e.
VIRTIO_CRYPTO_RSA_PUB_KEY = struct.Struct("<II")
#: struct virtio_crypto_rsa_priv_key_rep1, 8 bytes: n_len @0, d_len @4; data: n, d.
VIRTIO_CRYPTO_RSA_PRIV_KEY_REP1 = struct.Struct("<II")
#: struct virtio_crypto_rsa_priv_key_rep2, 32 bytes: p_len @0, q_len @4, dp_len @8, dq_len @12 (the RFC repeats
#: the name dp_len, AMB-32), qinv_len @16, r_len @20, d_len @24, t_len @28; data: p, q, dp, dq, qinv, then
#: prime_number - 2 entries of each of r, d, t.
VIRTIO_CRYPTO_RSA_PRIV_KEY_REP2 = struct.Struct("<8I")
#: struct virtio_crypto_rsa_priv_key (fixed part), 40 bytes: prime_number @0, priv_key_rep_type @4, key @8 (the
#: rep1 or rep2 struct; the union always occupies 32 bytes, AMB-32).
VIRTIO_CRYPTO_RSA_PRIV_KEY = struct.Struct("<II32s")

# ---- parameter structs (fixed parts) -----------------------------------------------------------------------------
#: struct virtio_crypto_ecdsa_sign_para, 64 bytes: hash_algo @0, field_type @4, ec @8, k_len @40, d_len @44,
#: msg_len @48, r_len @52, s_len @56, reserved @60; then ec_data, k, d.  odata: msg.  idata: status, reserved, r, s.
VIRTIO_CRYPTO_ECDSA_SIGN_PARA = struct.Struct("<II32s6I")
#: struct virtio_crypto_dsa_sign_para, 48 bytes: hash_algo @0, reserved1 @4, dsa @8, k_len @24, x_len @28,
#: msg_len @32, r_len @36, s_len @40, reserved2 @44; then dsa_group_data, k, x.  odata: msg.  idata: status,
#: reserved, r, s.
VIRTIO_CRYPTO_DSA_SIGN_PARA = struct.Struct("<II16s6I")
#: struct virtio_crypto_rsa_sign_para, 56 bytes: hash_algo @0, padding_mode @4, priv_key @8, msg_len @48,
#: signature_len @52; then priv_key_data.  odata: msg.  idata: status, reserved, signature.
VIRTIO_CRYPTO_RSA_SIGN_PARA = struct.Struct("<II40sII")
#: struct virtio_crypto_ecdsa_verify_para, 64 bytes: hash_algo @0, field_type @4, ec @8, x_len @40, y_len @44,
#: r_len @48, s_len @52, msg_len @56, reserved @60; then ec_data, x, y.  odata: r, s, msg.  idata: verify result.
VIRTIO_CRYPTO_ECDSA_VERIFY_PARA = struct.Struct("<II32s6I")
#: struct virtio_crypto_dsa_verify_para, 40 bytes: hash_algo @0, reserved @4, dsa @8, y_len @24, r_len @28,
#: s_len @32, msg_len @36; then dsa_data, y.  odata: r, s, msg.  idata: verify result.
VIRTIO_CRYPTO_DSA_VERIFY_PARA = struct.Struct("<II16s4I")
#: struct virtio_crypto_rsa_verify_para, 24 bytes: hash_algo @0, padding_mode @4, pubkey @8, msg_len @16,
#: reserved @20; then pubkey_data.  odata: msg, then signature[n_len] (no field in the RFC, AMB-32).
#: idata: verify result.
VIRTIO_CRYPTO_RSA_VERIFY_PARA = struct.Struct("<II8sII")
#: struct virtio_crypto_rsa_enc_para, 16 bytes: padding_mode @0, pub_key @4, msg_len @12; then pub_key_data.
#: odata: msg.  idata: status, reserved, cmsg[n_len] (AMB-32).
VIRTIO_CRYPTO_RSA_ENC_PARA = struct.Struct("<I8sI")
#: struct virtio_crypto_rsa_dec_para, 48 bytes: padding_mode @0, priv_key @4, cmsg_len @44; then priv_key_data.
#: odata: cmsg.  idata: status, reserved (the recovered length, AMB-32), msg[cmsg_len].
VIRTIO_CRYPTO_RSA_DEC_PARA = struct.Struct("<I40sI")
#: struct virtio_crypto_rsa_keygen_para, 16 bytes: modulus_len @0 (bytes), rsa_prime_number @4,
#: priv_key_rep_type @8, e_len @12; then e.  idata: virtio_crypto_rsa_keygen_input.
VIRTIO_CRYPTO_RSA_KEYGEN_PARA = struct.Struct("<4I")
#: struct virtio_crypto_dsa_keygen_para, 8 bytes: modulus_len @0 (bytes), reserved @4.
#: idata: virtio_crypto_dsa_keygen_input.
VIRTIO_CRYPTO_DSA_KEYGEN_PARA = struct.Struct("<II")
#: struct virtio_crypto_ec_keygen_para, 52 bytes: field_type @0, reserved @4, ec @8, d_len @40, x_len @44,
#: y_len @48; then ec_data.  idata: status, reserved, d, x, y.
VIRTIO_CRYPTO_EC_KEYGEN_PARA = struct.Struct("<II32s3I")
#: struct virtio_crypto_dh_parameter (fixed part), 16 bytes: modules_len @0 (bytes, the RFC's spelling),
#: reserved @4, p_len @8, g_len @12; then p, g.
VIRTIO_CRYPTO_DH_PARAMETER = struct.Struct("<4I")
#: struct virtio_crypto_dh_keyexchg_para, 24 bytes: keyexchg_op @0, reserved @4, dh_param @8.
VIRTIO_CRYPTO_DH_KEYEXCHG_PARA = struct.Struct("<II16s")
#: struct virtio_crypto_ecdh_keyexchg_keygen_para, 60 bytes: keyexchg_op @0, reserved @4, parameter @8 (a
#: virtio_crypto_ec_keygen_para); then ec_data.  idata: virtio_crypto_ec_keygen_input.
VIRTIO_CRYPTO_ECDH_KEYEXCHG_KEYGEN_PARA = struct.Struct("<II52s")
#: struct virtio_crypto_ecdh_keyexchg_compute_key_para, 76 bytes: keyexchg_op @0, reserved @4, d_len @8, x_len @12,
#: y_len @16, shared_secret_len @20, parameter @24 (a virtio_crypto_ec_keygen_para whose own d_len, x_len and y_len
#: are ignored, AMB-32); then ec_data.  odata: d, x, y.  idata: status, reserved, shared_secret.
VIRTIO_CRYPTO_ECDH_KEYEXCHG_COMPUTE_KEY_PARA = struct.Struct("<6I52s")

# ---- odata and idata ---------------------------------------------------------------------------------------------
#: struct virtio_crypto_dh_keyexchg_compute_key_output (fixed part), 16 bytes: x_len @0, y_len @4,
#: shared_secret_len @8, reserved @12; then x (own private key), y (the peer's public key).
VIRTIO_CRYPTO_DH_KEYEXCHG_COMPUTE_KEY_OUTPUT = struct.Struct("<4I")
#: The fixed head of every idata, 8 bytes: le32 status @0, le32 reserved @4 (struct
#: virtio_crypto_asym_verify_gen_input: le32 status, le32 verify_result).
VIRTIO_CRYPTO_ASYM_INPUT = struct.Struct("<II")
#: struct virtio_crypto_rsa_keygen_input (fixed part), 56 bytes: status @0, reserved @4, priv_key @8,
#: pub_key @48; then priv_key_data, pub_key_data.
VIRTIO_CRYPTO_RSA_KEYGEN_INPUT = struct.Struct("<II40s8s")
#: struct virtio_crypto_dsa_keygen_input (fixed part), 32 bytes: status @0, reserved @4, dsa @8, x_len @24,
#: y_len @28; then dsa_data, x, y.
VIRTIO_CRYPTO_DSA_KEYGEN_INPUT = struct.Struct("<II16sII")
#: struct virtio_crypto_dh_keyexchg_keygen_input (fixed part), 16 bytes: status @0, reserved @4, x_len @8,
#: y_len @12; then x, y.
VIRTIO_CRYPTO_DH_KEYEXCHG_KEYGEN_INPUT = struct.Struct("<4I")
#: The DH parameter-generation idata (the RFC has only status and reserved and asks for p and g in the
#: device-readable dh_param; AMB-32), 16 bytes: status @0, reserved @4, p_len @8, g_len @12; then p, g.
VIRTIO_CRYPTO_DH_KEYEXCHG_PARAM_GEN_INPUT = struct.Struct("<4I")

# ---- Device configuration (the RFC's layout: asym_algo and rsa_padding inserted at 36 and 40) ---------------------
#: struct virtio_crypto_config, 64 bytes: le32 status @0, max_dataqueues @4, crypto_services @8, cipher_algo_l @12,
#: cipher_algo_h @16, hash_algo @20, mac_algo_l @24, mac_algo_h @28, aead_algo @32, asym_algo @36, rsa_padding @40,
#: max_cipher_key_len @44, max_auth_key_len @48, reserved @52, le64 max_size @56.
VIRTIO_CRYPTO_CONFIG = struct.Struct("<14IQ")


# ---- Named prime-field curves, as explicit domain parameters ----------------------------------------------------
def _curve(*hex_numbers: str) -> tuple[int, ...]:
    return tuple(int(h, 16) for h in hex_numbers)


#: The explicit domain parameters (p, a, b, gx, gy, n, h) a driver sends in virtio_crypto_ec_group_data (field
#: type PRIME; the struct's q is the field prime p) for the named curves the project's device implements:
#: SEC 2 / FIPS 186-4 D.1.2 (P-192 .. P-521, secp256k1) and RFC 5639 (brainpool). The device checks at start-up
#: that ``cryptography``'s curves have these generators and orders.
EC_CURVES: dict[str, tuple[int, ...]] = {
    "P-192": _curve(
        "fffffffffffffffffffffffffffffffeffffffffffffffff",  # p
        "fffffffffffffffffffffffffffffffefffffffffffffffc",  # a
        "64210519e59c80e70fa7e9ab72243049feb8deecc146b9b1",  # b
        "188da80eb03090f67cbf20eb43a18800f4ff0afd82ff1012",  # gx
        "7192b95ffc8da78631011ed6b24cdd573f977a11e794811",  # gy
        "ffffffffffffffffffffffff99def836146bc9b1b4d22831",  # n
        "1",  # h
    ),
    "P-224": _curve(
        "ffffffffffffffffffffffffffffffff000000000000000000000001",  # p
        "fffffffffffffffffffffffffffffffefffffffffffffffffffffffe",  # a
        "b4050a850c04b3abf54132565044b0b7d7bfd8ba270b39432355ffb4",  # b
        "b70e0cbd6bb4bf7f321390b94a03c1d356c21122343280d6115c1d21",  # gx
        "bd376388b5f723fb4c22dfe6cd4375a05a07476444d5819985007e34",  # gy
        "ffffffffffffffffffffffffffff16a2e0b8f03e13dd29455c5c2a3d",  # n
        "1",  # h
    ),
    "P-256": _curve(
        "ffffffff00000001000000000000000000000000ffffffffffffffffffffffff",  # p
        "ffffffff00000001000000000000000000000000fffffffffffffffffffffffc",  # a
        "5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b",  # b
        "6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296",  # gx
        "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5",  # gy
        "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551",  # n
        "1",  # h
    ),
    "P-384": _curve(
        "fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffff",  # p
        "fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffeffffffff0000000000000000fffffffc",  # a
        "b3312fa7e23ee7e4988e056be3f82d19181d9c6efe8141120314088f5013875ac656398d8a2ed19d2a85c8edd3ec2aef",  # b
        "aa87ca22be8b05378eb1c71ef320ad746e1d3b628ba79b9859f741e082542a385502f25dbf55296c3a545e3872760ab7",  # gx
        "3617de4a96262c6f5d9e98bf9292dc29f8f41dbd289a147ce9da3113b5f0b8c00a60b1ce1d7e819d7a431d7c90ea0e5f",  # gy
        "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973",  # n
        "1",  # h
    ),
    "P-521": _curve(
        "1fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
        "fffffffffffffffffffffffffffffffffff",  # p
        "1fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
        "ffffffffffffffffffffffffffffffffffc",  # a
        "51953eb9618e1c9a1f929a21a0b68540eea2da725b99b315f3b8b489918ef109e156193951ec7e937b1652c0bd3bb1bf"
        "073573df883d2c34f1ef451fd46b503f00",  # b
        "c6858e06b70404e9cd9e3ecb662395b4429c648139053fb521f828af606b4d3dbaa14b5e77efe75928fe1dc127a2ffa8"
        "de3348b3c1856a429bf97e7e31c2e5bd66",  # gx
        "11839296a789a3bc0045c8a5fb42c7d1bd998f54449579b446817afbd17273e662c97ee72995ef42640c550b9013fad0"
        "761353c7086a272c24088be94769fd16650",  # gy
        "1fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffa51868783bf2f966b7fcc0148f709a"
        "5d03bb5c9b8899c47aebb6fb71e91386409",  # n
        "1",  # h
    ),
    "secp256k1": _curve(
        "fffffffffffffffffffffffffffffffffffffffffffffffffffffffefffffc2f",  # p
        "0",  # a
        "7",  # b
        "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798",  # gx
        "483ada7726a3c4655da4fbfc0e1108a8fd17b448a68554199c47d08ffb10d4b8",  # gy
        "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141",  # n
        "1",  # h
    ),
    "brainpoolP256r1": _curve(
        "a9fb57dba1eea9bc3e660a909d838d726e3bf623d52620282013481d1f6e5377",  # p
        "7d5a0975fc2c3057eef67530417affe7fb8055c126dc5c6ce94a4b44f330b5d9",  # a
        "26dc5c6ce94a4b44f330b5d9bbd77cbf958416295cf7e1ce6bccdc18ff8c07b6",  # b
        "8bd2aeb9cb7e57cb2c4b482ffc81b7afb9de27e1e3bd23c23a4453bd9ace3262",  # gx
        "547ef835c3dac4fd97f8461a14611dc9c27745132ded8e545c1d54c72f046997",  # gy
        "a9fb57dba1eea9bc3e660a909d838d718c397aa3b561a6f7901e0e82974856a7",  # n
        "1",  # h
    ),
    "brainpoolP384r1": _curve(
        "8cb91e82a3386d280f5d6f7e50e641df152f7109ed5456b412b1da197fb71123acd3a729901d1a71874700133107ec53",  # p
        "7bc382c63d8c150c3c72080ace05afa0c2bea28e4fb22787139165efba91f90f8aa5814a503ad4eb04a8c7dd22ce2826",  # a
        "4a8c7dd22ce28268b39b55416f0447c2fb77de107dcd2a62e880ea53eeb62d57cb4390295dbc9943ab78696fa504c11",  # b
        "1d1c64f068cf45ffa2a63a81b7c13f6b8847a3e77ef14fe3db7fcafe0cbd10e8e826e03436d646aaef87b2e247d4af1e",  # gx
        "8abe1d7520f9c2a45cb1eb8e95cfd55262b70b29feec5864e19c054ff99129280e4646217791811142820341263c5315",  # gy
        "8cb91e82a3386d280f5d6f7e50e641df152f7109ed5456b31f166e6cac0425a7cf3ab6af6b7fc3103b883202e9046565",  # n
        "1",  # h
    ),
    "brainpoolP512r1": _curve(
        "aadd9db8dbe9c48b3fd4e6ae33c9fc07cb308db3b3c9d20ed6639cca703308717d4d9b009bc66842aecda12ae6a380e6"
        "2881ff2f2d82c68528aa6056583a48f3",  # p
        "7830a3318b603b89e2327145ac234cc594cbdd8d3df91610a83441caea9863bc2ded5d5aa8253aa10a2ef1c98b9ac8b5"
        "7f1117a72bf2c7b9e7c1ac4d77fc94ca",  # a
        "3df91610a83441caea9863bc2ded5d5aa8253aa10a2ef1c98b9ac8b57f1117a72bf2c7b9e7c1ac4d77fc94cadc083e67"
        "984050b75ebae5dd2809bd638016f723",  # b
        "81aee4bdd82ed9645a21322e9c4c6a9385ed9f70b5d916c1b43b62eef4d0098eff3b1f78e2d0d48d50d1687b93b97d5f"
        "7c6d5047406a5e688b352209bcb9f822",  # gx
        "7dde385d566332ecc0eabfa9cf7822fdf209f70024a57b1aa000c55b881f8111b2dcde494a5f485e5bca4bd88a2763ae"
        "d1ca2b2fa8f0540678cd1e0f3ad80892",  # gy
        "aadd9db8dbe9c48b3fd4e6ae33c9fc07cb308db3b3c9d20ed6639cca70330870553e5c414ca92619418661197fac1047"
        "1db1d381085ddaddb58796829ca90069",  # n
        "1",  # h
    ),
}
