"""The v16 crypto patch's numbers and wire layouts, for both sides.

Source: "virtio-crypto specification", PATCH v16 (January 2017) and the header update its author attached in the
review thread, which fixes the padding of every non-session struct (``__u8 padding[...]``) and so the size of
``struct virtio_crypto_op_data_req_mux``. Every integer is little-endian (the header's ``__virtio32`` fields
included: a virtio 1.0 device); the ``struct.Struct`` constants are named after v16's structs and their comments
give each field's byte offset.

What v16 shares with the published standard (``vfu_virtio.abi.crypto``), which grew out of it, is not repeated:
the service numbers 0..3, the CIPHER/HASH/MAC/AEAD algorithm numbers, the opcodes of those services, the
controlq and dataq headers (v16 names the controlq header's last word ``queue_id``), the session parameter
structs, ``struct virtio_crypto_session_input`` and ``struct virtio_crypto_inhdr``. Without
``VIRTIO_CRYPTO_F_NON_SESSION_MODE`` both request heads are 72 bytes, byte for byte the standard's heads without
REVISION_1. What differs is here: the feature bits, the header flag values, the five status codes, the
configuration (``reserved`` where the standard has ``akcipher_algo``), the 8-byte destroy-session result, the
mux wrapper and the non-session structs. Imports nothing of vfu_virtio outside ``abi``.
"""
from __future__ import annotations

import struct

from . import crypto as C

# ---- Feature bits ("Feature bits"); bits 1..4 each require bit 0 ("Feature bit requirements") -------------------
VIRTIO_CRYPTO_F_NON_SESSION_MODE = 0
VIRTIO_CRYPTO_F_CIPHER_NON_SESSION_MODE = 1
VIRTIO_CRYPTO_F_HASH_NON_SESSION_MODE = 2
VIRTIO_CRYPTO_F_MAC_NON_SESSION_MODE = 3
VIRTIO_CRYPTO_F_AEAD_NON_SESSION_MODE = 4

#: The non-session feature bit of each service (service number -> bit).
NON_SESSION_FEATURE = {
    C.VIRTIO_CRYPTO_SERVICE_CIPHER: VIRTIO_CRYPTO_F_CIPHER_NON_SESSION_MODE,
    C.VIRTIO_CRYPTO_SERVICE_HASH: VIRTIO_CRYPTO_F_HASH_NON_SESSION_MODE,
    C.VIRTIO_CRYPTO_SERVICE_MAC: VIRTIO_CRYPTO_F_MAC_NON_SESSION_MODE,
    C.VIRTIO_CRYPTO_SERVICE_AEAD: VIRTIO_CRYPTO_F_AEAD_NON_SESSION_MODE,
}
#: Every feature bit v16 defines (0..4).
FEATURES = 1 << VIRTIO_CRYPTO_F_NON_SESSION_MODE | sum(1 << bit for bit in NON_SESSION_FEATURE.values())

# ---- The services and opcodes v16 defines (no AKCIPHER: that came after v16) -----------------------------------
SERVICES = (C.VIRTIO_CRYPTO_SERVICE_CIPHER, C.VIRTIO_CRYPTO_SERVICE_HASH, C.VIRTIO_CRYPTO_SERVICE_MAC,
            C.VIRTIO_CRYPTO_SERVICE_AEAD)
CREATE_SESSION_OPCODES = {op: s for op, s in C.CREATE_SESSION_OPCODES.items() if s in SERVICES}
DESTROY_SESSION_OPCODES = {op: s for op, s in C.DESTROY_SESSION_OPCODES.items() if s in SERVICES}
DATA_OPCODES = {op: s for op, s in C.DATA_OPCODES.items() if s in SERVICES}

# ---- Dataq header flag (struct virtio_crypto_op_header) ----------------------------------------------------------
VIRTIO_CRYPTO_FLAG_SESSION_MODE = 1
VIRTIO_CRYPTO_FLAG_NON_SESSION_MODE = 2

# ---- Operation status (enum VIRITO_CRYPTO_STATUS, the seed's spelling) ------------------------------------------
VIRTIO_CRYPTO_OK = 0
VIRTIO_CRYPTO_ERR = 1
VIRTIO_CRYPTO_BADMSG = 2
VIRTIO_CRYPTO_NOTSUPP = 3
VIRTIO_CRYPTO_INVSESS = 4
VIRTIO_CRYPTO_MAX = 5  # the enum's end marker, never a status

STATUS_NAMES = {VIRTIO_CRYPTO_OK: "OK", VIRTIO_CRYPTO_ERR: "ERR", VIRTIO_CRYPTO_BADMSG: "BADMSG",
                VIRTIO_CRYPTO_NOTSUPP: "NOTSUPP", VIRTIO_CRYPTO_INVSESS: "INVSESS"}

# ---- Sizes -------------------------------------------------------------------------------------------------------
#: The union of struct virtio_crypto_op_data_req_mux: every member padded to 80 bytes (the header update's
#: ``__u8 padding[80]``; session members are the 48-byte v16 struct followed by ``padding[32]``).
VIRTIO_CRYPTO_OP_DATA_REQ_MUX_UNION = 80
#: A dataq head with VIRTIO_CRYPTO_F_NON_SESSION_MODE: virtio_crypto_op_header (24) + the mux union (80).
MUX_HEAD = C.VIRTIO_CRYPTO_OP_HEADER.size + VIRTIO_CRYPTO_OP_DATA_REQ_MUX_UNION

# ---- Controlq ----------------------------------------------------------------------------------------------------
#: The device-writable part of struct virtio_crypto_destroy_session_req, 8 bytes: le32 status @0, le32 padding @4.
VIRTIO_CRYPTO_DESTROY_SESSION_REQ_INPUT = struct.Struct("<II")

# ---- Dataq, non-session mode (struct virtio_crypto_op_data_req_mux members) -------------------------------------
#: struct virtio_crypto_cipher_para_non_sess, 24 bytes: sess_para {algo @0, keylen @4, op @8}, iv_len @12,
#: src_data_len @16, dst_data_len @20 (struct virtio_crypto_cipher_data_req_non_sess adds padding[48]: 72).
VIRTIO_CRYPTO_CIPHER_PARA_NON_SESS = struct.Struct("<6I")
#: struct virtio_crypto_alg_chain_data_para_non_sess, 72 bytes: sess_para {alg_chain_order @0, aad_len @4,
#: cipher {algo @8, keylen @12, op @16}, hash {algo @20, auth_key_len @24, hash_mode @28}}, iv_len @32,
#: src_data_len @36, dst_data_len @40, cipher_start_src_offset @44, len_to_cipher @48, hash_start_src_offset @52,
#: len_to_hash @56, aad_len @60, hash_result_len @64, reserved @68.
VIRTIO_CRYPTO_ALG_CHAIN_DATA_PARA_NON_SESS = struct.Struct("<18I")
#: struct virtio_crypto_sym_data_req_non_sess, 80 bytes: u (cipher or chain, padded to 72) @0, le32 op_type @72,
#: le32 padding @76.
VIRTIO_CRYPTO_SYM_DATA_REQ_NON_SESS = struct.Struct("<72sII")
#: struct virtio_crypto_hash_para_non_sess, 16 bytes: sess_para.algo @0, src_data_len @4, hash_result_len @8,
#: reserved @12 (+ padding[64] in virtio_crypto_hash_data_req_non_sess).
VIRTIO_CRYPTO_HASH_PARA_NON_SESS = struct.Struct("<4I")
#: struct virtio_crypto_mac_para_non_sess, 16 bytes: sess_para {algo @0, auth_key_len @4}, src_data_len @8,
#: hash_result_len @12 (+ padding[64]).
VIRTIO_CRYPTO_MAC_PARA_NON_SESS = struct.Struct("<4I")
#: struct virtio_crypto_aead_para_non_sess, 32 bytes: sess_para {algo @0, key_len @4, op @8}, iv_len @12,
#: tag_len @16, aad_len @20, src_data_len @24, dst_data_len @28 (+ padding[48]). The field order differs from
#: the session-mode struct virtio_crypto_aead_para.
VIRTIO_CRYPTO_AEAD_PARA_NON_SESS = struct.Struct("<8I")

# ---- Device configuration ("Device configuration layout") ------------------------------------------------------
#: struct virtio_crypto_config, 56 bytes: le32 status @0, le32 max_dataqueues @4, le32 crypto_services @8,
#: le32 cipher_algo_l @12, le32 cipher_algo_h @16, le32 hash_algo @20, le32 mac_algo_l @24, le32 mac_algo_h @28,
#: le32 aead_algo @32, le32 max_cipher_key_len @36, le32 max_auth_key_len @40, le32 reserved @44,
#: le64 max_size @48.
VIRTIO_CRYPTO_CONFIG = struct.Struct("<12IQ")
