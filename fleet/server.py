"""Running the fleet app: in the foreground (``wardsight fleet serve``) or on a background thread."""

from __future__ import annotations

import asyncio
import threading

from aiohttp import web

from fleet.app import create_app
from fleet.config import ServerConfig


class BackgroundServer:
    """The fleet server on its own thread and event loop; ``url`` is known once ``start`` returns."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="fleet-server", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._start())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._cleanup())
        self._loop.close()

    async def _start(self) -> None:
        self._runner = web.AppRunner(create_app(self.config), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        addresses = self._runner.addresses
        port = addresses[0][1] if addresses else self.config.port
        self.url = f"http://{self.config.host}:{port}"

    async def _cleanup(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def start(self, timeout: float = 15.0) -> BackgroundServer:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("fleet server did not start in time")
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
