"""The model library: packages operators upload, whether each is signed and published, and where each runs.

``POST /api/v1/models`` (operator) takes a model package (``wardsight.modelpkg``, ``.wsm``) as the raw body
(``application/octet-stream``) or as the ``package`` field of a ``multipart/form-data`` form, at most
``routes.MAX_PACKAGE_BYTES``. The server checks it (manifest, member names, every build's size and sha256, no
members the manifest does not name; ``package``) and stores it as the TUF target ``models/<name>/<version>.wsm``.
It is then *staged*: uploaded, awaiting signature. Only targets metadata signed with the hospital's offline
targets key publishes it (``wardsight ota publish``; ``fleet.ota.repository.metadata.Repository.accept_targets``).
A published version is immutable: a different package for it is refused (use a new version).

``GET /api/v1/models`` (viewer) lists every model: its versions (builds, license, staged / published /
withdrawn, who uploaded it and when) and, from each device's latest heartbeat, how many devices run each
version (revoked devices are not counted; ``store``); beside them (``systems``) the RAUC bundles for system
updates, uploaded with ``POST /api/v1/system-bundles`` (``bundle_routes``, ``bundles``), each the TUF target
``system/<compatible>/<version>.raucb``, staged and published the same way.
"""

from aiohttp import web

from fleet.ota.library import bundle_routes, routes
from fleet.ota.library.bundles import mark_bundles_published
from fleet.ota.library.store import mark_published
from fleet.ota.repository.files import ON_PUBLISHED_KEY


def setup(app: web.Application) -> None:
    """Add the library's routes, and note when signed targets metadata publishes an entry (the repository,
    ``fleet.ota.repository``, must be set up first)."""
    routes.add_routes(app)
    bundle_routes.add_routes(app)
    app[ON_PUBLISHED_KEY].extend((mark_published, mark_bundles_published))
