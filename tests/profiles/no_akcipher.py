"""Test-only crypto profile "standard-no-akcipher": the published standard without the AKCIPHER service.

It proves the profile seam: data plus this one module. It reuses the standard's codec, configuration layout and
feature rule, with its own name, its own feature bits (REVISION_1 and the stateless bits of CIPHER, HASH, MAC and
AEAD: 0x1F, no AKCIPHER_STATELESS_MODE) and algorithm and service tables without AKCIPHER, so its configuration
space shows crypto_services 0x0F and akcipher_algo 0, and AKCIPHER requests are answered NOTSUPP.
"""
from __future__ import annotations

import dataclasses

from vfu_virtio.devices.crypto.profiles import standard
from vfu_virtio.devices.crypto.values import AkcipherParams, Service

PROFILE = dataclasses.replace(
    standard.PROFILE,
    name="standard-no-akcipher",
    summary="the published standard without AKCIPHER (a test profile)",
    features=standard.stateless_features([Service.CIPHER, Service.HASH, Service.MAC, Service.AEAD]),
    sessions={params: session for params, session in standard.PROFILE.sessions.items() if params is not AkcipherParams},
    algorithms={service: table for service, table in standard.ALGORITHMS.items() if service is not Service.AKCIPHER},
)
