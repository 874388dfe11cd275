"""Signed OTA model and system updates on the server: the TUF repository (:mod:`fleet.ota.repository`), the model
library (:mod:`fleet.ota.library`) and staged rollouts (:mod:`fleet.ota.rollouts`)."""

from aiohttp import web

from fleet.ota import library, repository, rollouts
from fleet.ota.repository.files import REPOSITORY_KEY, published_check
from fleet.ota.rollouts.appkeys import TARGET_CHECK_KEY


def setup(app: web.Application) -> None:
    """Add the repository, the library and the rollouts; a rollout may offer only a published version."""
    repository.setup(app)
    library.setup(app)
    app[TARGET_CHECK_KEY] = published_check(app[REPOSITORY_KEY])
    rollouts.setup(app)
