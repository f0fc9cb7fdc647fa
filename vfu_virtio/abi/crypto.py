"""The published virtio standard's crypto device: its numbers and wire layouts, for both sides.

Source: virtio v1.4 "Crypto Device" ("Device ID", "Feature bits", "Supported crypto services", "Device configuration
layout", "Operation Status", "Control Virtqueue", "Data Virtqueue", "Session operation: AKCIPHER session", and the
per-service "... Operation" sections). Every integer is little-endian; the ``struct.Struct`` constants are named after
the standard's structs and their comments give each field's byte offset.

Where the Linux uapi header (``include/uapi/linux/virtio_crypto.h``) disagrees with the standard, the standard wins
(PD-1 in ``docs/decisions.md``): Linux numbers ECDSA 3 (after a DSA = 2 that the standard does not define); the
standard numbers ECDSA 2, and so does this module.

The device side (``vfu_virtio.devices.crypto``, its standard profile) parses with these layouts, the driver side
(``vfu_virtio.client.crypto``) builds requests with them. Imports nothing of vfu_virtio.
"""
from __future__ import annotations

import struct

VIRTIO_ID_CRYPTO = 20

# ---- Feature bits ("Feature bits") -------------------------------------------------------------------
VIRTIO_CRYPTO_F_REVISION_1 = 0
VIRTIO_CRYPTO_F_CIPHER_STATELESS_MODE = 1
VIRTIO_CRYPTO_F_HASH_STATELESS_MODE = 2
VIRTIO_CRYPTO_F_MAC_STATELESS_MODE = 3
VIRTIO_CRYPTO_F_AEAD_STATELESS_MODE = 4
VIRTIO_CRYPTO_F_AKCIPHER_STATELESS_MODE = 5

# ---- Services ("Supported crypto services"): bit numbers of crypto_services and the opcode's service byte
VIRTIO_CRYPTO_SERVICE_CIPHER = 0
VIRTIO_CRYPTO_SERVICE_HASH = 1
VIRTIO_CRYPTO_SERVICE_MAC = 2
VIRTIO_CRYPTO_SERVICE_AEAD = 3
VIRTIO_CRYPTO_SERVICE_AKCIPHER = 4
VIRTIO_CRYPTO_SERVICE_IPSEC = 5

SERVICE_NAMES = {
    VIRTIO_CRYPTO_SERVICE_CIPHER: "CIPHER",
    VIRTIO_CRYPTO_SERVICE_HASH: "HASH",
    VIRTIO_CRYPTO_SERVICE_MAC: "MAC",
    VIRTIO_CRYPTO_SERVICE_AEAD: "AEAD",
    VIRTIO_CRYPTO_SERVICE_AKCIPHER: "AKCIPHER",
    VIRTIO_CRYPTO_SERVICE_IPSEC: "IPSEC",
}

#: The stateless-mode feature bit of each service ("Feature bits").
STATELESS_FEATURE = {
    VIRTIO_CRYPTO_SERVICE_CIPHER: VIRTIO_CRYPTO_F_CIPHER_STATELESS_MODE,
    VIRTIO_CRYPTO_SERVICE_HASH: VIRTIO_CRYPTO_F_HASH_STATELESS_MODE,
    VIRTIO_CRYPTO_SERVICE_MAC: VIRTIO_CRYPTO_F_MAC_STATELESS_MODE,
    VIRTIO_CRYPTO_SERVICE_AEAD: VIRTIO_CRYPTO_F_AEAD_STATELESS_MODE,
    VIRTIO_CRYPTO_SERVICE_AKCIPHER: VIRTIO_CRYPTO_F_AKCIPHER_STATELESS_MODE,
}

# ---- CIPHER algorithms ("CIPHER services"): values and bit numbers of cipher_algo_l/_h
VIRTIO_CRYPTO_NO_CIPHER = 0
VIRTIO_CRYPTO_CIPHER_ARC4 = 1
VIRTIO_CRYPTO_CIPHER_AES_ECB = 2
VIRTIO_CRYPTO_CIPHER_AES_CBC = 3
VIRTIO_CRYPTO_CIPHER_AES_CTR = 4
VIRTIO_CRYPTO_CIPHER_DES_ECB = 5
VIRTIO_CRYPTO_CIPHER_DES_CBC = 6
VIRTIO_CRYPTO_CIPHER_3DES_ECB = 7
VIRTIO_CRYPTO_CIPHER_3DES_CBC = 8
VIRTIO_CRYPTO_CIPHER_3DES_CTR = 9
VIRTIO_CRYPTO_CIPHER_KASUMI_F8 = 10
VIRTIO_CRYPTO_CIPHER_SNOW3G_UEA2 = 11
VIRTIO_CRYPTO_CIPHER_AES_F8 = 12
VIRTIO_CRYPTO_CIPHER_AES_XTS = 13
VIRTIO_CRYPTO_CIPHER_ZUC_EEA3 = 14

# ---- HASH algorithms ("HASH services"): values and bit numbers of hash_algo
VIRTIO_CRYPTO_NO_HASH = 0
VIRTIO_CRYPTO_HASH_MD5 = 1
VIRTIO_CRYPTO_HASH_SHA1 = 2
VIRTIO_CRYPTO_HASH_SHA_224 = 3
VIRTIO_CRYPTO_HASH_SHA_256 = 4
VIRTIO_CRYPTO_HASH_SHA_384 = 5
VIRTIO_CRYPTO_HASH_SHA_512 = 6
VIRTIO_CRYPTO_HASH_SHA3_224 = 7
VIRTIO_CRYPTO_HASH_SHA3_256 = 8
VIRTIO_CRYPTO_HASH_SHA3_384 = 9
VIRTIO_CRYPTO_HASH_SHA3_512 = 10
VIRTIO_CRYPTO_HASH_SHA3_SHAKE128 = 11
VIRTIO_CRYPTO_HASH_SHA3_SHAKE256 = 12

# ---- MAC algorithms ("MAC services"): values and bit numbers of mac_algo_l/_h
VIRTIO_CRYPTO_NO_MAC = 0
VIRTIO_CRYPTO_MAC_HMAC_MD5 = 1
VIRTIO_CRYPTO_MAC_HMAC_SHA1 = 2
VIRTIO_CRYPTO_MAC_HMAC_SHA_224 = 3
VIRTIO_CRYPTO_MAC_HMAC_SHA_256 = 4
VIRTIO_CRYPTO_MAC_HMAC_SHA_384 = 5
VIRTIO_CRYPTO_MAC_HMAC_SHA_512 = 6
VIRTIO_CRYPTO_MAC_CMAC_3DES = 25
VIRTIO_CRYPTO_MAC_CMAC_AES = 26
VIRTIO_CRYPTO_MAC_KASUMI_F9 = 27
VIRTIO_CRYPTO_MAC_SNOW3G_UIA2 = 28
VIRTIO_CRYPTO_MAC_GMAC_AES = 41
VIRTIO_CRYPTO_MAC_GMAC_TWOFISH = 42
VIRTIO_CRYPTO_MAC_CBCMAC_AES = 49
VIRTIO_CRYPTO_MAC_CBCMAC_KASUMI_F9 = 50
VIRTIO_CRYPTO_MAC_XCBC_AES = 53
VIRTIO_CRYPTO_MAC_ZUC_EIA3 = 54

# ---- AEAD algorithms ("AEAD services"): values and bit numbers of aead_algo
VIRTIO_CRYPTO_NO_AEAD = 0
VIRTIO_CRYPTO_AEAD_GCM = 1
VIRTIO_CRYPTO_AEAD_CCM = 2
VIRTIO_CRYPTO_AEAD_CHACHA20_POLY1305 = 3

# ---- AKCIPHER algorithms ("AKCIPHER services"): values and bit numbers of akcipher_algo
VIRTIO_CRYPTO_NO_AKCIPHER = 0
VIRTIO_CRYPTO_AKCIPHER_RSA = 1
VIRTIO_CRYPTO_AKCIPHER_ECDSA = 2  # the standard's number; Linux's uapi header says 3

# ---- Config status bits ("Device configuration layout")
VIRTIO_CRYPTO_S_HW_READY = 1 << 0

# ---- Operation status ("Operation Status", enum VIRTIO_CRYPTO_STATUS)
VIRTIO_CRYPTO_OK = 0
VIRTIO_CRYPTO_ERR = 1
VIRTIO_CRYPTO_BADMSG = 2
VIRTIO_CRYPTO_NOTSUPP = 3
VIRTIO_CRYPTO_INVSESS = 4
VIRTIO_CRYPTO_NOSPC = 5
VIRTIO_CRYPTO_KEY_REJECTED = 6
VIRTIO_CRYPTO_IPSEC_SA_SOFT_EXPIRY = 7

STATUS_NAMES = {
    VIRTIO_CRYPTO_OK: "OK", VIRTIO_CRYPTO_ERR: "ERR", VIRTIO_CRYPTO_BADMSG: "BADMSG",
    VIRTIO_CRYPTO_NOTSUPP: "NOTSUPP", VIRTIO_CRYPTO_INVSESS: "INVSESS", VIRTIO_CRYPTO_NOSPC: "NOSPC",
    VIRTIO_CRYPTO_KEY_REJECTED: "KEY_REJECTED", VIRTIO_CRYPTO_IPSEC_SA_SOFT_EXPIRY: "IPSEC_SA_SOFT_EXPIRY",
}


def VIRTIO_CRYPTO_OPCODE(service: int, op: int) -> int:  # noqa: N802 - the standard's macro name
    """``((service) << 8) | (op)`` ("Control Virtqueue")."""
    return (service << 8) | op


# ---- Controlq opcodes ("Control Virtqueue", struct virtio_crypto_ctrl_header)
VIRTIO_CRYPTO_CIPHER_CREATE_SESSION = VIRTIO_CRYPTO_OPCODE(VIRTIO_CRYPTO_SERVICE_CIPHER, 0x02)
VIRTIO_CRYPTO_CIPHER_DESTROY_SESSION = VIRTIO_CRYPTO_OPCODE(VIRTIO_CRYPTO_SERVICE_CIPHER, 0x03)
VIRTIO_CRYPTO_HASH_CREATE_SESSION = VIRTIO_CRYPTO_OPCODE(VIRTIO_CRYPTO_SERVICE_HASH, 0x02)
VIRTIO_CRYPTO_HASH_DESTROY_SESSION = VIRTIO_CRYPTO_OPCODE(VIRTIO_CRYPTO_SERVICE_HASH, 0x03)
VIRTIO_CRYPTO_MAC_CREATE_SESSION = VIRTIO_CRYPTO_OPCODE(VIRTIO_CRYPTO_SERVICE_MAC, 0x02)
VIRTIO_CRYPTO_MAC_DESTROY_SESSION = VIRTIO_CRYPTO_OPCODE(VIRTIO_CRYPTO_SERVICE_MAC, 0x03)
VIRTIO_CRYPTO_AEAD_CREATE_SESSION = VIRTIO_CRYPTO_OPCODE(VIRTIO_CRYPTO_SERVICE_AEAD, 0x02)
VIRTIO_CRYPTO_AEAD_DESTROY_SESSION = VIRTIO_CRYPTO_OPCODE(VIRTIO_CRYPTO_SERVICE_AEAD, 0x03)
VIRTIO_CRYPTO_AKCIPHER_CREATE_SESSION = VIRTIO_CRYPTO_OPCODE(VIRTIO_CRYPTO_SERVICE_AKCIPHER, 0x04)
VIRTIO_CRYPTO_AKCIPHER_DESTROY_SESSION = VIRTIO_CRYPTO_OPCODE(VIRTIO_CRYPTO_SERVICE_AKCIPHER, 0x05)

CREATE_SESSION_OPCODES = {
    VIRTIO_CRYPTO_CIPHER_CREATE_SESSION: VIRTIO_CRYPTO_SERVICE_CIPHER,
    VIRTIO_CRYPTO_HASH_CREATE_SESSION: VIRTIO_CRYPTO_SERVICE_HASH,
    VIRTIO_CRYPTO_MAC_CREATE_SESSION: VIRTIO_CRYPTO_SERVICE_MAC,
    VIRTIO_CRYPTO_AEAD_CREATE_SESSION: VIRTIO_CRYPTO_SERVICE_AEAD,
    VIRTIO_CRYPTO_AKCIPHER_CREATE_SESSION: VIRTIO_CRYPTO_SERVICE_AKCIPHER,
}
DESTROY_SESSION_OPCODES = {
    VIRTIO_CRYPTO_CIPHER_DESTROY_SESSION: VIRTIO_CRYPTO_SERVICE_CIPHER,
    VIRTIO_CRYPTO_HASH_DESTROY_SESSION: VIRTIO_CRYPTO_SERVICE_HASH,
    VIRTIO_CRYPTO_MAC_DESTROY_SESSION: VIRTIO_CRYPTO_SERVICE_MAC,
    VIRTIO_CRYPTO_AEAD_DESTROY_SESSION: VIRTIO_CRYPTO_SERVICE_AEAD,
    VIRTIO_CRYPTO_AKCIPHER_DESTROY_SESSION: VIRTIO_CRYPTO_SERVICE_AKCIPHER,
}

# ---- Dataq opcodes ("Data Virtqueue", struct virtio_crypto_op_header)
VIRTIO_CRYPTO_CIPHER_ENCRYPT = VIRTIO_CRYPTO_OPCODE(VIRTIO_CRYPTO_SERVICE_CIPHER, 0x00)
VIRTIO_CRYPTO_CIPHER_DECRYPT = VIRTIO_CRYPTO_OPCODE(VIRTIO_CRYPTO_SERVICE_CIPHER, 0x01)
VIRTIO_CRYPTO_HASH = VIRTIO_CRYPTO_OPCODE(VIRTIO_CRYPTO_SERVICE_HASH, 0x00)
VIRTIO_CRYPTO_MAC = VIRTIO_CRYPTO_OPCODE(VIRTIO_CRYPTO_SERVICE_MAC, 0x00)
VIRTIO_CRYPTO_AEAD_ENCRYPT = VIRTIO_CRYPTO_OPCODE(VIRTIO_CRYPTO_SERVICE_AEAD, 0x00)
VIRTIO_CRYPTO_AEAD_DECRYPT = VIRTIO_CRYPTO_OPCODE(VIRTIO_CRYPTO_SERVICE_AEAD, 0x01)
VIRTIO_CRYPTO_AKCIPHER_ENCRYPT = VIRTIO_CRYPTO_OPCODE(VIRTIO_CRYPTO_SERVICE_AKCIPHER, 0x00)
VIRTIO_CRYPTO_AKCIPHER_DECRYPT = VIRTIO_CRYPTO_OPCODE(VIRTIO_CRYPTO_SERVICE_AKCIPHER, 0x01)
VIRTIO_CRYPTO_AKCIPHER_SIGN = VIRTIO_CRYPTO_OPCODE(VIRTIO_CRYPTO_SERVICE_AKCIPHER, 0x02)
VIRTIO_CRYPTO_AKCIPHER_VERIFY = VIRTIO_CRYPTO_OPCODE(VIRTIO_CRYPTO_SERVICE_AKCIPHER, 0x03)
VIRTIO_CRYPTO_IPSEC_OUTBOUND = VIRTIO_CRYPTO_OPCODE(VIRTIO_CRYPTO_SERVICE_IPSEC, 0x00)
VIRTIO_CRYPTO_IPSEC_INBOUND = VIRTIO_CRYPTO_OPCODE(VIRTIO_CRYPTO_SERVICE_IPSEC, 0x01)

DATA_OPCODES = {
    VIRTIO_CRYPTO_CIPHER_ENCRYPT: VIRTIO_CRYPTO_SERVICE_CIPHER,
    VIRTIO_CRYPTO_CIPHER_DECRYPT: VIRTIO_CRYPTO_SERVICE_CIPHER,
    VIRTIO_CRYPTO_HASH: VIRTIO_CRYPTO_SERVICE_HASH,
    VIRTIO_CRYPTO_MAC: VIRTIO_CRYPTO_SERVICE_MAC,
    VIRTIO_CRYPTO_AEAD_ENCRYPT: VIRTIO_CRYPTO_SERVICE_AEAD,
    VIRTIO_CRYPTO_AEAD_DECRYPT: VIRTIO_CRYPTO_SERVICE_AEAD,
    VIRTIO_CRYPTO_AKCIPHER_ENCRYPT: VIRTIO_CRYPTO_SERVICE_AKCIPHER,
    VIRTIO_CRYPTO_AKCIPHER_DECRYPT: VIRTIO_CRYPTO_SERVICE_AKCIPHER,
    VIRTIO_CRYPTO_AKCIPHER_SIGN: VIRTIO_CRYPTO_SERVICE_AKCIPHER,
    VIRTIO_CRYPTO_AKCIPHER_VERIFY: VIRTIO_CRYPTO_SERVICE_AKCIPHER,
}

# ---- Dataq header flag ("Data Virtqueue"): only parsed with REVISION_1 + the service's stateless bit
VIRTIO_CRYPTO_FLAG_SESSION_MODE = 1

# ---- Session parameters ("Session operation: Symmetric algorithms session")
VIRTIO_CRYPTO_OP_ENCRYPT = 1
VIRTIO_CRYPTO_OP_DECRYPT = 2

VIRTIO_CRYPTO_SYM_OP_NONE = 0
VIRTIO_CRYPTO_SYM_OP_CIPHER = 1
VIRTIO_CRYPTO_SYM_OP_ALGORITHM_CHAINING = 2

VIRTIO_CRYPTO_SYM_ALG_CHAIN_ORDER_HASH_THEN_CIPHER = 1
VIRTIO_CRYPTO_SYM_ALG_CHAIN_ORDER_CIPHER_THEN_HASH = 2

VIRTIO_CRYPTO_SYM_HASH_MODE_PLAIN = 1
VIRTIO_CRYPTO_SYM_HASH_MODE_AUTH = 2
VIRTIO_CRYPTO_SYM_HASH_MODE_NESTED = 3

# ---- AKCIPHER session parameters ("Session operation: AKCIPHER session")
VIRTIO_CRYPTO_AKCIPHER_KEY_TYPE_PUBLIC = 1
VIRTIO_CRYPTO_AKCIPHER_KEY_TYPE_PRIVATE = 2

VIRTIO_CRYPTO_RSA_RAW_PADDING = 0
VIRTIO_CRYPTO_RSA_PKCS1_PADDING = 1

VIRTIO_CRYPTO_RSA_NO_HASH = 0
VIRTIO_CRYPTO_RSA_MD2 = 1
VIRTIO_CRYPTO_RSA_MD3 = 2
VIRTIO_CRYPTO_RSA_MD4 = 3
VIRTIO_CRYPTO_RSA_MD5 = 4
VIRTIO_CRYPTO_RSA_SHA1 = 5
VIRTIO_CRYPTO_RSA_SHA256 = 6
VIRTIO_CRYPTO_RSA_SHA384 = 7
VIRTIO_CRYPTO_RSA_SHA512 = 8
VIRTIO_CRYPTO_RSA_SHA224 = 9

VIRTIO_CRYPTO_CURVE_UNKNOWN = 0
VIRTIO_CRYPTO_CURVE_NIST_P192 = 1
VIRTIO_CRYPTO_CURVE_NIST_P224 = 2
VIRTIO_CRYPTO_CURVE_NIST_P256 = 3
VIRTIO_CRYPTO_CURVE_NIST_P384 = 4
VIRTIO_CRYPTO_CURVE_NIST_P521 = 5

# ---- Fixed sizes of the session-mode heads without REVISION_1 ("Control Virtqueue", "Data Virtqueue")
VIRTIO_CRYPTO_CTRLQ_OP_SPEC_HDR_LEGACY = 56  # controlq op_flf padded to 56 bytes -> 72-byte head
VIRTIO_CRYPTO_DATAQ_OP_SPEC_HDR_LEGACY = 48  # dataq op_flf padded to 48 bytes -> 72-byte head
VIRTIO_CRYPTO_SYM_SESS_OP_SPEC_HDR_SIZE = 48
VIRTIO_CRYPTO_ALG_CHAIN_SESS_OP_SPEC_HDR_SIZE = 16
VIRTIO_CRYPTO_AKCIPHER_SESS_ALGO_SPEC_HDR_SIZE = 44
VIRTIO_CRYPTO_SYM_DATA_REQ_HDR_SIZE = 40
VIRTIO_CRYPTO_SYM_DATE_REQ_HDR_STATELESS_SIZE = 72  # sic: the standard spells it DATE

# ---- Controlq wire structs ("Control Virtqueue", "Session operation") -----------------------------------
#: struct virtio_crypto_ctrl_header, 16 bytes: le32 opcode @0, le32 algo @4, le32 flag @8, le32 reserved @12.
VIRTIO_CRYPTO_CTRL_HEADER = struct.Struct("<IIII")
#: struct virtio_crypto_cipher_session_flf, 16 bytes: le32 algo @0, key_len @4, op @8, padding @12.
VIRTIO_CRYPTO_CIPHER_SESSION_FLF = struct.Struct("<IIII")
#: struct virtio_crypto_hash_create_session_flf, 8 bytes: le32 algo @0, le32 hash_result_len @4.
VIRTIO_CRYPTO_HASH_CREATE_SESSION_FLF = struct.Struct("<II")
#: struct virtio_crypto_mac_create_session_flf, 16 bytes: algo @0, hash_result_len @4, auth_key_len @8, padding.
VIRTIO_CRYPTO_MAC_CREATE_SESSION_FLF = struct.Struct("<IIII")
#: struct virtio_crypto_alg_chain_session_flf, 48 bytes: le32 alg_chain_order @0, le32 hash_mode @4,
#: cipher_hdr (virtio_crypto_cipher_session_flf) @8..23, algo_flf[16] (hash or mac session flf) @24..39,
#: le32 aad_len @40, le32 padding @44.
VIRTIO_CRYPTO_ALG_CHAIN_SESSION_FLF = struct.Struct("<II16s16sII")
#: struct virtio_crypto_sym_create_session_flf, 56 bytes: op_flf[48] (cipher or chain session flf) @0,
#: le32 op_type @48, le32 padding @52.
VIRTIO_CRYPTO_SYM_CREATE_SESSION_FLF = struct.Struct("<48sII")
#: struct virtio_crypto_aead_create_session_flf, 24 bytes: algo @0, key_len @4, tag_len @8, aad_len @12,
#: op @16, padding @20.
VIRTIO_CRYPTO_AEAD_CREATE_SESSION_FLF = struct.Struct("<IIIIII")
#: struct virtio_crypto_akcipher_create_session_flf, 56 bytes: le32 algo @0, le32 key_type @4,
#: le32 key_len @8, algo_flf[44] @12 (virtio_crypto_rsa_session_para or virtio_crypto_ecdsa_session_para).
VIRTIO_CRYPTO_AKCIPHER_CREATE_SESSION_FLF = struct.Struct("<III44s")
#: struct virtio_crypto_rsa_session_para, 8 bytes: le32 padding_algo @0, le32 hash_algo @4.
VIRTIO_CRYPTO_RSA_SESSION_PARA = struct.Struct("<II")
#: struct virtio_crypto_ecdsa_session_para, 4 bytes: le32 curve_id @0.
VIRTIO_CRYPTO_ECDSA_SESSION_PARA = struct.Struct("<I")
#: struct virtio_crypto_destroy_session_flf, 8 bytes: le64 session_id @0.
VIRTIO_CRYPTO_DESTROY_SESSION_FLF = struct.Struct("<Q")
#: struct virtio_crypto_create_session_input (device-writable), 16 bytes: le64 session_id @0,
#: le32 status @8, le32 padding @12.
VIRTIO_CRYPTO_CREATE_SESSION_INPUT = struct.Struct("<QII")
#: struct virtio_crypto_destroy_session_input (device-writable), 1 byte: u8 status.
VIRTIO_CRYPTO_DESTROY_SESSION_INPUT = struct.Struct("<B")

# ---- Dataq wire structs ("Data Virtqueue" and the per-service "... Operation" sections) -------------------
#: struct virtio_crypto_op_header, 24 bytes: le32 opcode @0, le32 algo @4, le64 session_id @8,
#: le32 flag @16, le32 padding @20.
VIRTIO_CRYPTO_OP_HEADER = struct.Struct("<IIQII")
#: struct virtio_crypto_cipher_data_flf, 16 bytes: iv_len @0, src_data_len @4, dst_data_len @8, padding @12.
VIRTIO_CRYPTO_CIPHER_DATA_FLF = struct.Struct("<IIII")
#: struct virtio_crypto_alg_chain_data_flf, 40 bytes: iv_len @0, src_data_len @4, dst_data_len @8,
#: cipher_start_src_offset @12, len_to_cipher @16, hash_start_src_offset @20, len_to_hash @24,
#: aad_len @28, hash_result_len @32, reserved @36.
VIRTIO_CRYPTO_ALG_CHAIN_DATA_FLF = struct.Struct("<10I")
#: struct virtio_crypto_sym_data_flf, 48 bytes: op_type_flf[40] @0, le32 op_type @40, le32 padding @44.
VIRTIO_CRYPTO_SYM_DATA_FLF = struct.Struct("<40sII")
#: struct virtio_crypto_hash_data_flf (and virtio_crypto_mac_data_flf), 8 bytes: src_data_len @0,
#: hash_result_len @4.
VIRTIO_CRYPTO_HASH_DATA_FLF = struct.Struct("<II")
VIRTIO_CRYPTO_MAC_DATA_FLF = VIRTIO_CRYPTO_HASH_DATA_FLF
#: struct virtio_crypto_aead_data_flf, 24 bytes: iv_len @0, aad_len @4, src_data_len @8, dst_data_len @12,
#: tag_len @16, reserved @20.
VIRTIO_CRYPTO_AEAD_DATA_FLF = struct.Struct("<6I")
#: struct virtio_crypto_akcipher_data_flf, 8 bytes: src_data_len @0, dst_data_len @4.
VIRTIO_CRYPTO_AKCIPHER_DATA_FLF = struct.Struct("<II")
#: struct virtio_crypto_cipher_data_flf_stateless, 24 bytes: sess_para {algo @0, key_len @4, op @8},
#: iv_len @12, src_data_len @16, dst_data_len @20.
VIRTIO_CRYPTO_CIPHER_DATA_FLF_STATELESS = struct.Struct("<6I")
#: struct virtio_crypto_alg_chain_data_flf_stateless, 72 bytes: sess_para {alg_chain_order @0, aad_len @4,
#: cipher {algo @8, key_len @12, op @16}, hash {algo @20, auth_key_len @24, hash_mode @28}}, iv_len @32,
#: src_data_len @36, dst_data_len @40, cipher_start_src_offset @44, len_to_cipher @48,
#: hash_start_src_offset @52, len_to_hash @56, aad_len @60, hash_result_len @64, reserved @68.
VIRTIO_CRYPTO_ALG_CHAIN_DATA_FLF_STATELESS = struct.Struct("<18I")
#: struct virtio_crypto_sym_data_flf_stateless, 76 bytes: op_type_flf[72] @0, le32 op_type @72.
VIRTIO_CRYPTO_SYM_DATA_FLF_STATELESS = struct.Struct("<72sI")
#: struct virtio_crypto_hash_data_flf_stateless, 16 bytes: sess_para.algo @0, src_data_len @4,
#: hash_result_len @8, reserved @12.
VIRTIO_CRYPTO_HASH_DATA_FLF_STATELESS = struct.Struct("<4I")
#: struct virtio_crypto_mac_data_flf_stateless, 16 bytes: sess_para {algo @0, auth_key_len @4},
#: src_data_len @8, hash_result_len @12.
VIRTIO_CRYPTO_MAC_DATA_FLF_STATELESS = struct.Struct("<4I")
#: struct virtio_crypto_aead_data_flf_stateless, 32 bytes: sess_para {algo @0, key_len @4, op @8},
#: iv_len @12, tag_len @16, aad_len @20, src_data_len @24, dst_data_len @28.
VIRTIO_CRYPTO_AEAD_DATA_FLF_STATELESS = struct.Struct("<8I")
#: struct virtio_crypto_akcipher_data_flf_stateless, 28 bytes: sess_para {algo @0, key_type @4, key_len @8,
#: u (rsa {padding_algo, hash_algo} or ecdsa {curve_id}, 8 bytes) @12}, src_data_len @20, dst_data_len @24.
VIRTIO_CRYPTO_AKCIPHER_DATA_FLF_STATELESS = struct.Struct("<III8sII")
#: struct virtio_crypto_inhdr (device-writable), 1 byte: u8 status; the last byte of the writable stream.
VIRTIO_CRYPTO_INHDR = struct.Struct("<B")

#: Size of a controlq head without REVISION_1: virtio_crypto_ctrl_header + the op_flf padded to 56 bytes (72).
CTRL_HEAD_LEGACY = VIRTIO_CRYPTO_CTRL_HEADER.size + VIRTIO_CRYPTO_CTRLQ_OP_SPEC_HDR_LEGACY
#: Size of a dataq head without REVISION_1: virtio_crypto_op_header + the op_flf padded to 48 bytes (72).
DATA_HEAD_LEGACY = VIRTIO_CRYPTO_OP_HEADER.size + VIRTIO_CRYPTO_DATAQ_OP_SPEC_HDR_LEGACY

# ---- Device configuration ("Device configuration layout") ------------------------------------------------------
#: struct virtio_crypto_config, 56 bytes: le32 status @0, le32 max_dataqueues @4, le32 crypto_services @8,
#: le32 cipher_algo_l @12, le32 cipher_algo_h @16, le32 hash_algo @20, le32 mac_algo_l @24, le32 mac_algo_h @28,
#: le32 aead_algo @32, le32 max_cipher_key_len @36, le32 max_auth_key_len @40, le32 akcipher_algo @44,
#: le64 max_size @48.
VIRTIO_CRYPTO_CONFIG = struct.Struct("<12IQ")
