"""Running the app with uvicorn: bind the port first (so a bad or busy port is one clear error and the address we
print is the one we listen on), then serve it through `uvicorn.Server` on that socket.

uvicorn's public API has no read timeout for a request head and no call that serves an already accepted
connection (what the balanced workers need). The two small pieces that reach past it live here and only here:
`uvicorn_config` gives the HTTP protocol class `Config.load()` picked a deadline for the first request head, and
`handoff_protocol` builds that protocol for a connection accepted elsewhere. tests/test_serve_reliability.py runs
both against real sockets, so an uvicorn upgrade that changes them fails loudly there.
"""
from __future__ import annotations

import asyncio
import os
import socket
from typing import Any, Callable

from ..errors import DigitlabError

KEEP_ALIVE = 5  # seconds an idle keep-alive connection stays open between requests (uvicorn's timeout_keep_alive)


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: any free one), or a DigitlabError saying why not."""
    if not 0 <= port <= 65535:
        raise DigitlabError(f"--port must be 1-65535 (or 0 for any free port), not {port}")
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    except socket.gaierror as e:
        raise DigitlabError(f"cannot listen on {host}:{port}: unknown host ({e.strerror})") from None
    try:
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as e:
        reason = os.strerror(e.errno) if e.errno else str(e)  # create_server's strerror also repeats the address
        raise DigitlabError(f"cannot listen on {host}:{port} ({reason}); try another --port") from None


def url(sock: socket.socket) -> str:
    """http://host:port/ of a bound socket: the real port when 0 was asked for."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def uvicorn_config(app: Any, head_timeout: float) -> Any:
    """uvicorn's settings for every process, loaded, with connections closed when their first request head takes
    longer than `head_timeout` seconds (a client trickling headers would otherwise hold its socket for ever)."""
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_keep_alive=KEEP_ALIVE)
    config.load()
    config.http_protocol_class = _with_head_deadline(config.http_protocol_class, head_timeout)
    return config


def _with_head_deadline(base: type, seconds: float) -> type:
    """`base` (uvicorn's HTTP protocol) closing a connection whose first request has not begun within `seconds`;
    uvicorn's protocols set `cycle` once a request head is complete."""

    class HeadDeadline(base):  # type: ignore[misc, valid-type]
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            self.head_timer = asyncio.get_running_loop().call_later(seconds, self.head_overdue)

        def head_overdue(self) -> None:
            if self.cycle is None and not self.transport.is_closing():
                self.transport.close()

        def connection_lost(self, exc: Exception | None) -> None:
            self.head_timer.cancel()
            super().connection_lost(exc)

    return HeadDeadline


def serve_one(app: Any, sock: socket.socket, head_timeout: float) -> None:
    """Serve the app on an already bound socket in this process until interrupted."""
    import uvicorn

    uvicorn.Server(uvicorn_config(app, head_timeout)).run(sockets=[sock])


def handoff_protocol(server: Any, on_close: Callable[[], None]) -> Callable[[], asyncio.Protocol]:
    """A factory of uvicorn HTTP protocols for connections accepted elsewhere, for `loop.connect_accepted_socket`.

    `Server.serve(sockets=...)` only takes listening sockets, so this builds the protocol the way `Server.startup`
    does: the config's protocol class with the server's state, so `server.shutdown()` still closes these
    connections; `on_close` hears of each one that ends."""
    config = server.config
    if not config.loaded:
        config.load()

    class Handoff(config.http_protocol_class):  # type: ignore[misc, name-defined]
        def connection_lost(self, exc: Exception | None) -> None:
            super().connection_lost(exc)
            on_close()

    return lambda: Handoff(config=config, server_state=server.server_state, app_state={})
