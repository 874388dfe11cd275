"""The hospital's offline OTA signing tool (``wardsight ota``): its TUF keys and what only they may sign.

The fleet server holds the *online* snapshot and timestamp keys. The *root* and *targets* keys stay on a
machine the hospital controls (ideally offline); these commands use them there and talk to the server
over its API (an admin API token; https pinned to the fleet CA, plain http only with ``--insecure-http``):

- ``keys``: make ``root.key`` and ``targets.key`` (Ed25519, PKCS#8 PEM, 0600; ``--encrypt`` asks for a
  passphrase) in a directory; ``new-key`` makes one more (for a rotation).
- ``init``: root v1 (root and targets keys from the directory, the server's online keys from
  ``GET /api/v1/ota/online-keys``), signed with the root key, and an empty targets v1, signed with the
  targets key; the server checks both and signs the first snapshot and timestamp.
- ``upload``: stage a model package in the library (no key needed; it is not installable yet).
- ``publish``: upload the package, then sign targets metadata that adds it (length and sha256 computed
  here, from the file the hospital holds) and send it; devices can then install it.
- ``withdraw``: sign targets metadata without a version.
- ``publish-system`` / ``withdraw-system``: the same for RAUC bundles (system updates); ``system-floor``: sign the
  lowest system version a board's devices may install (they refuse a rollback below it, whatever the server says).
- ``rotate-root``: root v(N+1) signed by the current root key and the new one (new root and/or targets
  key; the server's current online keys), plus targets re-signed with a new targets key.
- ``status``: the repository's versions and expiry dates.
- ``package``: build a model package (``.wsm``); ``rollout``: start a staged rollout of a published version.

Before signing on top of the server's targets metadata the signer checks that the metadata carries a valid
signature by its own targets key (a server cannot slip a target in to be blessed) and is not older than the
last version these keys signed (``ota-state.json`` in the keys directory; a server cannot make the hospital
drop newer models by replaying old metadata).

Modules, by responsibility (this package imports only ``wardsight``, never ``fleet`` or ``firmware``):

- :mod:`signing.keys`: make and load the offline keys; retire a replaced one.
- :mod:`signing.state`: ``ota-state.json``, the versions these keys signed last.
- :mod:`signing.client`: :class:`~signing.client.Server`, the fleet server's API as an admin sees it
  (online keys, uploads, rollouts).
- :mod:`signing.metadata`: TUF root and targets signing: init, publish, withdraw.
- :mod:`signing.rotation`: root rotation.
- :mod:`signing.bundles`, :mod:`signing.floors`: RAUC bundles as targets; the signed system floor.
- :mod:`signing.package`: build a ``.wsm`` from the ``package`` command's specs.
- :mod:`signing.commands`: the click group ``ota`` (thin: options, prompts, output).

The functions behind the commands (``generate_keys``, ``init_repository``, ``publish``, ``withdraw``,
``rotate_root``, ``upload_package``, ``start_rollout``) take a ``Server`` and a keys directory, so tests and
tools can call them directly.
"""
