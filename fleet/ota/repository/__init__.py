"""The OTA repository: The Update Framework (python-tuf) metadata and model files, served to devices.

Roles and keys (each role threshold 1):

- ``root`` and ``targets``: **offline** Ed25519 keys the hospital keeps (``wardsight ota keys``). Root says
  which keys may sign what; targets lists every installable model package with its length and sha256. The
  server never holds these keys: it only checks what the hospital uploads (``checks``,
  ``Repository.accept_root`` / ``accept_targets`` in ``metadata``), so a compromised server cannot make
  devices install anything.
- ``snapshot`` and ``timestamp``: **online** keys in the server's keys directory (``keys``). The server signs
  a new snapshot and timestamp whenever targets change and re-signs them before they expire (``resign``).

Modules: ``metadata`` (the repository on disk and its signing), ``checks`` (what it accepts), ``keys``,
``files`` (where it lives, the app key, the enrollment bundle's root), ``routes``, ``resign``. The model
library (uploads, listing) is :mod:`fleet.ota.library`.
"""

from aiohttp import web

from fleet.ota.repository import resign, routes
from fleet.ota.repository.files import ON_PUBLISHED_KEY, REPOSITORY_KEY, open_repository
from fleet.web.appkeys import CONFIG_KEY


def setup(app: web.Application) -> None:
    """Add the repository (online keys made on first use), its routes and the background re-signing task;
    what it publishes is told to the listeners in ``app[ON_PUBLISHED_KEY]``."""
    app[REPOSITORY_KEY] = open_repository(app[CONFIG_KEY])
    app[ON_PUBLISHED_KEY] = []
    routes.add_routes(app)
    app.cleanup_ctx.append(resign.resigner())
