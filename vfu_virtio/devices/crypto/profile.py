"""What a crypto profile is: one wire dialect of the crypto device, chosen once when the device is made.

A :class:`Profile` is data plus a few functions:

* ``name`` and a one-line ``summary``;
* ``features``: the device-type feature bits offered, and ``refuse_features``: the dependency rule that refuses a
  feature set at FEATURES_OK (a reason string, or None to accept);
* ``config_layout``: builds the device configuration bytes from :class:`ConfigValues`;
* ``codec``: ``(negotiated features, limits, advertised algorithms) -> codec``, the object that turns request bytes
  into the profile-neutral values of :mod:`.values` AND writes outcomes back (status placement, used length); its
  methods are those of :class:`Codec`;
* ``sessions``: the service table, parameter type -> session class (``services.SESSIONS`` serves the standard's
  services, ``asym_services.SESSIONS`` the asymmetric service);
* ``algorithms``: per :class:`~.values.Service`, the profile's algorithm numbers -> algorithm names. The profile
  advertises (and its codec names) those the services implement (:data:`IMPLEMENTED`); a service is offered
  when at least one of its algorithms is advertised.

A profile is one module exposing ``PROFILE`` (see :mod:`.profiles`); everything wire-specific (opcodes, structs,
status bytes, numbers, dataq wrapper) stays inside it, so the device and the services never change for a new one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, NamedTuple, Protocol

from vfu_virtio.virtio.chain import ChainReader, ChainWriter

from . import services
from .asym_services import ASYM_ALGORITHMS
from .asym_values import ASYM_PARAMS
from .errors import CryptoStatus
from .services import Session
from .values import (AeadParams, AkcipherParams, ChainParams, CipherParams, CtrlRequest, DataRequest, HashParams,
                     Limits, MacParams, Service, SessionParams, Status)

#: Per service: the profile's algorithm number -> the algorithm's name.
AlgorithmTables = Mapping[Service, Mapping[int, str]]

#: The service each parameter type belongs to (CIPHER has two: plain and chained sessions; ASYM one per family).
_SERVICE_OF = {CipherParams: Service.CIPHER, ChainParams: Service.CIPHER, HashParams: Service.HASH,
               MacParams: Service.MAC, AeadParams: Service.AEAD, AkcipherParams: Service.AKCIPHER,
               **{params: Service.ASYM for params in ASYM_PARAMS}}
#: Algorithm names implemented per service (those a profile may advertise).
IMPLEMENTED = {**services.IMPLEMENTED, Service.ASYM: ASYM_ALGORITHMS}


class ConfigValues(NamedTuple):
    """What a configuration layout is built from: ``max_dataqueues``, the device ``limits`` (bytes), the advertised
    ``algorithms`` (service -> number -> name), the offered ``services`` and whether the device is ``ready`` (the
    standard's VIRTIO_CRYPTO_S_HW_READY)."""

    max_dataqueues: int
    limits: Limits
    algorithms: AlgorithmTables
    services: frozenset[Service]
    ready: bool = True


class Codec(Protocol):
    """A profile's wire format for one negotiated feature set. ``parse_*`` raise :class:`~.errors.CryptoStatus`;
    the ``*_outcome`` writers never raise for a chain with at least one writable byte."""

    def parse_ctrl_header(self, reader: ChainReader) -> int:
        """Read the controlq header; return its opcode (given back to :meth:`parse_ctrl` and :meth:`ctrl_outcome`)."""

    def parse_ctrl(self, opcode: int, reader: ChainReader, out_capacity: int) -> CtrlRequest:
        """The rest of a controlq request; also refuses a request whose outcome cannot fit ``out_capacity`` bytes."""

    def ctrl_outcome(self, writer: ChainWriter, opcode: int | None, status: Status, session_id: int) -> int:
        """Write a controlq outcome (``opcode`` None: no header); return the used length in bytes."""

    def parse_data(self, reader: ChainReader, out_capacity: int) -> DataRequest:
        """One dataq request; refuses declared outputs that cannot fit ``out_capacity`` bytes with the status (a
        :class:`~.errors.CryptoStatus` may carry the part that parsed, see its ``request``)."""

    def data_outcome(self, writer: ChainWriter, request: DataRequest | None, status: Status, end) -> int:
        """Write a dataq status (``request`` None: it did not parse; ``end``: what the session's ``run`` returned,
        the stream offset past the outputs it wrote, or the result value an ASYM session leaves to the codec to
        lay out; 0 on failure); return the used length in bytes."""

    def request_type(self, head: bytes) -> str | None:
        """The name of the request whose first readable bytes are ``head`` (one of the codec class's
        ``REQUEST_TYPES``), None if unknown (fault injection's ``op=``)."""


@dataclass(frozen=True, eq=False)
class Profile:
    """One crypto profile (see the module docstring); profiles compare by identity. Raises ValueError if it
    advertises a service its ``sessions`` cannot serve."""

    name: str
    summary: str
    features: int
    refuse_features: Callable[[int], str | None]
    config_layout: Callable[[ConfigValues], bytes]
    codec: Callable[[int, Limits, AlgorithmTables], Codec]
    sessions: Mapping[type, Callable[[SessionParams], Session]]
    algorithms: AlgorithmTables
    #: The algorithms advertised: ``algorithms`` restricted to the names the services implement.
    advertised: AlgorithmTables = field(init=False)
    #: The services offered: those with at least one advertised algorithm.
    services: frozenset[Service] = field(init=False)

    def __post_init__(self) -> None:
        advertised = {}
        for service, table in self.algorithms.items():
            names = {number: name for number, name in table.items() if name in IMPLEMENTED[service]}
            if names:
                advertised[service] = names
        served = {_SERVICE_OF[params] for params in self.sessions}
        missing = set(advertised) - served
        if missing:
            raise ValueError(f"crypto profile {self.name!r} advertises {sorted(s.name for s in missing)} "
                             "without a session class for them")
        object.__setattr__(self, "advertised", advertised)
        object.__setattr__(self, "services", frozenset(advertised))

    def config_space(self, max_dataqueues: int, limits: Limits, ready: bool = True) -> bytes:
        """The device configuration bytes for ``max_dataqueues`` data queues and ``limits``, ready or not."""
        return self.config_layout(ConfigValues(max_dataqueues, limits, self.advertised, self.services, ready))

    def new_codec(self, features: int, limits: Limits) -> Codec:
        """The codec for the negotiated device-type ``features`` (0 before negotiation)."""
        return self.codec(features, limits, self.advertised)

    def make_session(self, params: SessionParams) -> Session:
        """Build (and validate) the session for ``params``; :class:`~.errors.CryptoStatus` NOTSUPP when the profile
        has no session class for their type, else whatever the session class raises (NOTSUPP, ERR)."""
        session_class = self.sessions.get(type(params))
        if session_class is None:
            raise CryptoStatus(Status.NOTSUPP, f"{type(params).__name__} sessions are not served by profile "
                               f"{self.name!r}")
        return session_class(params)
