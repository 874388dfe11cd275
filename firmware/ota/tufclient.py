"""The device's TUF client (python-tuf ngclient): which model package to trust, by signed metadata.

Trust starts from the fleet's root metadata that came in the enrollment bundle (``tuf_root``), stored at
enrollment as ``<device dir>/ota/root.json``. Every :meth:`TufClient.targetinfo` call makes a fresh
``Updater`` (ngclient allows one ``refresh()`` per instance) bootstrapped from that root; newer roots are
walked to from the cache in ``<device dir>/ota/metadata/root_history`` and then from the server, each
signed by the one before, so a rotated root is followed and a forged one is refused.

:meth:`TufClient.lookup` also gives the top-level targets metadata that refresh trusted, for what the targets role
signs besides targets (the hospital's system floors, :mod:`wardsight.sysfloor`), as that refresh verified it.

Metadata comes from ``<server>/tuf/metadata/`` and packages from ``<server>/tuf/targets/``, over
:class:`UrllibFetcher`: urllib with the fleet CA pinned (the same TLS context as every device request).

Clock: TUF refuses expired metadata by the system clock. A Raspberry Pi has no RTC, so the client can be
given ``reference_time`` (e.g. the fleet server's time as ``FleetClient.server_now`` knows it) to judge
expiry by; ngclient has no public setting for it, so it is set on the trusted set it keeps.
"""

from __future__ import annotations

import datetime
import logging
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib import parse

from tuf.api import exceptions
from tuf.api.metadata import Metadata, Root, TargetFile, Targets
from tuf.ngclient import Updater, UpdaterConfig
from tuf.ngclient.fetcher import FetcherInterface

from wardsight import wire
from wardsight.errors import WardSightError

log = logging.getLogger("wardsight.device.ota")

CHUNK = 64 * 1024
ROOT_FILE = "root.json"  # under <device dir>/ota/: the root the enrollment bundle brought


class TufError(WardSightError):
    """The OTA metadata could not be obtained or did not verify; ``code`` is the report's reason."""

    def __init__(self, message: str, code: str = "tuf_error") -> None:
        super().__init__(message)
        self.code = code


class UrllibFetcher(FetcherInterface):
    """ngclient's network access through urllib, trusting only the pinned fleet CA for https."""

    def __init__(self, context: ssl.SSLContext | None, timeout: float = 30.0, chunk_size: int = CHUNK) -> None:
        self.context = context
        self.timeout = timeout
        self.chunk_size = chunk_size

    def open(self, url: str, headers: dict[str, str] | None = None) -> urllib.response.addinfourl:
        """Open ``url`` (http or https with the pinned context); raise ``DownloadHTTPError`` for >= 400."""
        if not url.startswith(("http://", "https://")):
            raise exceptions.DownloadError(f"not an http(s) URL: {url}")
        if url.startswith("https://") and self.context is None:
            raise exceptions.DownloadError("https needs the fleet CA (from the enrollment bundle)")
        request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - scheme checked above
        try:
            return urllib.request.urlopen(request, timeout=self.timeout, context=self.context)  # noqa: S310
        except urllib.error.HTTPError as exc:
            exc.close()
            raise exceptions.DownloadHTTPError(f"{url}: HTTP {exc.code}", exc.code) from None
        except TimeoutError as exc:
            raise exceptions.SlowRetrievalError(f"{url}: {exc}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise exceptions.DownloadError(f"cannot reach {url}: {getattr(exc, 'reason', exc)}") from None

    def _fetch(self, url: str) -> Iterator[bytes]:
        response = self.open(url)
        return self._chunks(response)

    def _chunks(self, response: urllib.response.addinfourl) -> Iterator[bytes]:
        try:
            while True:
                try:
                    chunk = response.read(self.chunk_size)
                except TimeoutError as exc:
                    raise exceptions.SlowRetrievalError(str(exc)) from None
                if not chunk:
                    return
                yield chunk
        finally:
            response.close()


class TufClient:
    """Signed answers to "which file is this target, exactly?" for one device.

    ``ota_dir`` is ``<device dir>/ota``; ``server_url`` the fleet server's base URL.
    """

    def __init__(
        self,
        ota_dir: Path,
        server_url: str,
        context: ssl.SSLContext | None,
        *,
        timeout: float = 30.0,
        reference_time: Callable[[], float] | None = None,
        config: UpdaterConfig | None = None,
    ) -> None:
        self.ota_dir = ota_dir
        self.metadata_dir = ota_dir / "metadata"
        base = server_url.rstrip("/")
        self.metadata_url = base + wire.TUF_METADATA_PATH
        self.targets_url = base + wire.TUF_TARGETS_PATH
        self.fetcher = UrllibFetcher(context, timeout)
        self.reference_time = reference_time
        self.config = config or UpdaterConfig()

    @property
    def root_path(self) -> Path:
        return self.ota_dir / ROOT_FILE

    def bootstrap_root(self) -> bytes:
        try:
            return self.root_path.read_bytes()
        except FileNotFoundError:
            raise TufError(
                f"no trusted OTA root at {self.root_path}: the enrollment bundle carried none", "no_tuf_root"
            ) from None

    def updater(self) -> Updater:
        self.metadata_dir.mkdir(parents=True, exist_ok=True)
        try:
            updater = Updater(
                str(self.metadata_dir),
                self.metadata_url,
                target_base_url=self.targets_url,
                fetcher=self.fetcher,
                config=self.config,
                bootstrap=self.bootstrap_root(),
            )
        except (OSError, exceptions.RepositoryError, ValueError) as exc:
            raise TufError(f"the trusted OTA root cannot be loaded: {exc}") from None
        if self.reference_time is not None:
            trusted = getattr(updater, "_trusted_set", None)
            if trusted is not None and hasattr(trusted, "reference_time"):
                trusted.reference_time = datetime.datetime.fromtimestamp(self.reference_time(), datetime.UTC)
        return updater

    def targetinfo(self, target: str) -> tuple[TargetFile, str]:
        """Refresh the metadata and return the target's signed length and hashes, and the URL to fetch it from."""
        info, url, _ = self._resolve(target, with_targets=False)
        return info, url

    def lookup(self, target: str) -> tuple[TargetFile, str, Targets]:
        """:meth:`targetinfo`, and the top-level targets metadata that refresh trusted (what the targets role signs
        besides the targets: its ``custom``, e.g. the system floors of :mod:`wardsight.sysfloor`)."""
        info, url, trusted = self._resolve(target, with_targets=True)
        assert trusted is not None
        return info, url, trusted

    def _resolve(self, target: str, *, with_targets: bool) -> tuple[TargetFile, str, Targets | None]:
        updater = self.updater()
        try:
            updater.refresh()
            info = updater.get_targetinfo(target)
            trusted = self._trusted_targets(updater, target, info) if with_targets else None
        except exceptions.DownloadError as exc:
            raise TufError(f"cannot fetch OTA metadata: {exc}", "tuf_unreachable") from None
        except exceptions.RepositoryError as exc:
            raise TufError(f"OTA metadata does not verify: {type(exc).__name__}: {exc}") from None
        except OSError as exc:
            raise TufError(f"cannot store OTA metadata: {exc}", "storage_error") from None
        if info is None:
            raise TufError(f"target {target} is not in the signed OTA metadata", "target_unknown")
        if "sha256" not in info.hashes:
            raise TufError(f"target {target} has no sha256 in its metadata", "target_unknown")
        return info, self.target_url(info), trusted

    @staticmethod
    def _trusted_targets(updater: Updater, target: str, info: TargetFile | None) -> Targets:
        """The top-level targets metadata this very refresh verified (ngclient's trusted set: it has no public
        accessor, and the file on disk may be another loop's refresh by now); it must list ``target`` as found."""
        trusted = getattr(getattr(updater, "_trusted_set", None), "targets", None)
        if not isinstance(trusted, Targets) or trusted.targets.get(target) != info:
            raise exceptions.RepositoryError("the refresh's targets metadata is not at hand")
        return trusted

    def target_url(self, info: TargetFile) -> str:
        """Where the target's bytes are: with consistent snapshots, ``<dir>/<hash>.<name>`` as ngclient forms it."""
        path = info.path
        if self.config.prefix_targets_with_hash and self._consistent_snapshot():
            dirname, sep, basename = path.rpartition("/")
            path = f"{dirname}{sep}{next(iter(info.hashes.values()))}.{basename}"
        return self.targets_url + parse.quote(path, safe="/")

    def _consistent_snapshot(self) -> bool:
        # The root the last refresh trusted (ngclient keeps root.json pointing at it).
        root = Metadata[Root].from_bytes((self.metadata_dir / ROOT_FILE).read_bytes())
        return bool(root.signed.consistent_snapshot)
