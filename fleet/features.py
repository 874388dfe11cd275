"""The fleet server's features, in the order their routes and tasks are added: the one list of what the server is.

Each is a package ``fleet/<feature>/`` whose ``__init__`` only wires: ``setup(app)`` adds its routes, background
tasks and listeners. Their tables come from the numbered migrations in :mod:`fleet.store.migrations`, which run
when the database opens, before any feature's code touches it.
"""

from __future__ import annotations

from types import ModuleType

from fleet import (
    accounts,
    alerts,
    audit,
    commissioning,
    console,
    devices,
    enrollment,
    health,
    jobs,
    ota,
    reports,
    scene,
    webhooks,
)

FEATURES: tuple[ModuleType, ...] = (
    enrollment,  # tokens, device keys, nonces and credentials
    devices,  # device administration, event intake and heartbeats from devices
    accounts,  # operators, sessions, API tokens
    audit,  # the append-only audit log
    webhooks,  # signed delivery of events to hospital systems
    health,  # heartbeats, presence, metrics
    ota,  # the TUF repository, the model library, rollouts
    alerts,  # alert states and live streams
    reports,  # compliance reports
    scene,  # metadata-only scene previews
    jobs,  # remote maintenance
    commissioning,  # per-device commissioning checks and test alerts
    console,  # the web console
)
