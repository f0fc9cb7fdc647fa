"""virtio-crypto (virtio device id 20): profiles of the crypto device on one set of ``cryptography`` services,
and its :data:`KIND`.

``values`` (profile-neutral request values; ``asym_values`` those of the asymmetric service), ``profile`` (what a
profile is), ``profiles`` (the published standard, the v16 crypto patch, the ASYM RFC v3, and plug-ins),
``services`` (``cryptography``-backed sessions per service; ``asym_services`` for the asymmetric service),
``sessions`` (session table), ``device`` (:class:`CryptoDevice`: queues, request flow, bulk work on worker threads).

:data:`KIND` registers it (``vfu_virtio.devices.registry``): ``vfu-virtio crypto`` with ``--profile``, ``--queues``,
``--max-sessions``, ``--max-size``, ``--bulk-threshold`` and the asymmetric service's key-generation bounds
``--max-rsa-keygen-bits``, ``--max-dsa-keygen-bits``, ``--max-dh-param-bits``; the store keeps its settings only (no
tables of its own). The profile is fixed when the instance is created.
"""
from __future__ import annotations

from vfu_virtio.abi.crypto import VIRTIO_ID_CRYPTO
from vfu_virtio.devices.registry import DeviceKind, Option
from vfu_virtio.store import Namespace

from . import profiles
from .device import (BULK_THRESHOLD, KEYGEN_LIMITS, MAX_BULK_THRESHOLD, MAX_DATAQUEUES, MAX_DH_PARAM_BITS,
                     MAX_DSA_KEYGEN_BITS, MAX_RSA_KEYGEN_BITS, CryptoDevice)

__all__ = ["CryptoDevice", "KIND"]


def _build(ns: Namespace, **settings) -> CryptoDevice:
    """A :class:`CryptoDevice` with ``settings``; sessions are volatile, so ``ns`` holds nothing else."""
    return CryptoDevice(**settings)


KIND = DeviceKind(
    name="crypto",
    virtio_id=VIRTIO_ID_CRYPTO,
    pci_class=(0x00, 0xFF, 0x00),  # class 0x00ff00, as QEMU's virtio-crypto-pci presents it
    summary="virtio-crypto (the standard, or the v16 or ASYM RFC v3 drafts): cipher, hash, MAC, AEAD and "
            "asymmetric requests computed with cryptography",
    factory=_build,
    options=(
        Option("--profile", "profile", "Crypto profile, the device's wire dialect (configuration layout, feature "
               "bits, request format, algorithm numbers): standard is the published virtio standard v1.4 as the "
               "Linux driver speaks it, v16 the v16 crypto patch with its non-session mode, asym-rfc3 v16 plus the "
               "asymmetric service of the ASYM RFC v3; more come from the modules named in "
               "VFU_VIRTIO_CRYPTO_PROFILES.",
               profiles.DEFAULT, choices=tuple(sorted(profiles.available())), fixed=True),
        Option("--queues", "max_dataqueues", "Number of data queues (max_dataqueues); the controlq comes "
               "after them.", 4, range=(1, MAX_DATAQUEUES), unit="data queues"),
        Option("--max-sessions", "max_sessions", "Cap on live sessions; create-session answers an error when "
               "it is reached.", 1024, range=(1, 1 << 20), unit="sessions"),
        Option("--max-size", "max_size", "max_size: largest request payload in bytes the device accepts.",
               1 << 20, range=(1, 1 << 30), unit="bytes"),
        Option("--bulk-threshold", "bulk_threshold", "Data-queue requests whose source is at least this many "
               "bytes run their cryptography call on that queue's worker thread, so smaller ones are not held up "
               "behind them; 0 = every request on the event-loop thread (the asymmetric service's always run on "
               "a worker).", BULK_THRESHOLD, range=(0, MAX_BULK_THRESHOLD), unit="bytes"),
        Option("--max-rsa-keygen-bits", "max_rsa_keygen_bits", "Largest RSA modulus in bits the asymmetric service "
               "(profile asym-rfc3) generates; larger key-generation requests are answered NOTSUPP.",
               MAX_RSA_KEYGEN_BITS, range=KEYGEN_LIMITS["max_rsa_keygen_bits"], unit="bits"),
        Option("--max-dsa-keygen-bits", "max_dsa_keygen_bits", "Largest DSA prime p in bits the asymmetric service "
               "generates with a key pair.", MAX_DSA_KEYGEN_BITS, range=KEYGEN_LIMITS["max_dsa_keygen_bits"],
               unit="bits"),
        Option("--max-dh-param-bits", "max_dh_param_bits", "Largest DH prime p in bits the asymmetric service's "
               "parameter generation searches for (a safe prime: the slowest request there is).", MAX_DH_PARAM_BITS,
               range=KEYGEN_LIMITS["max_dh_param_bits"], unit="bits"),
    ),
    client_module="vfu_virtio.client.crypto",
    guest_attachable=True,
)
