"""Running the app: bind the port first (so a bad or busy port is one clear error and the address we print is the
one we listen on), then serve it in this process or, with `--workers N`, in N processes sharing connections evenly.

uvicorn's own `--workers` share one listening socket and each process accepts every connection that is waiting,
so a handful of keep-alive clients can land 6:2 on two processes, and the busy one sets everyone's latency. Here
the parent accepts each connection and hands its file descriptor (SCM_RIGHTS over a Unix socket pair) to the
worker with the fewest open connections; workers tell the parent when a connection closes. Each worker runs a
`uvicorn.Server` (public API: signals, graceful shutdown) and feeds it the connections it is given through
`handoff_protocol`, the one place that reaches past uvicorn's public API.
"""
from __future__ import annotations

import asyncio
import multiprocessing
import os
import selectors
import signal
import socket
from typing import Any, Callable

from ..errors import DigitlabError

READY, CLOSED, FAILED = b"r", b"-", b"E"
KEEP_ALIVE = 5  # seconds an idle keep-alive connection stays open between requests


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


def server_config(app: Any) -> Any:
    """The uvicorn settings every process uses."""
    import uvicorn

    return uvicorn.Config(app, log_level="warning", lifespan="off", timeout_keep_alive=KEEP_ALIVE)


def serve_one(app: Any, sock: socket.socket) -> None:
    """Serve the app on an already bound socket in this process until interrupted (uvicorn's public API)."""
    import uvicorn

    uvicorn.Server(server_config(app)).run(sockets=[sock])


def handoff_protocol(server: Any, on_close: Callable[[], None]) -> Callable[[], asyncio.Protocol]:
    """A factory of uvicorn HTTP protocols for connections accepted elsewhere, for `loop.connect_accepted_socket`.

    uvicorn has no public call that serves an accepted connection (`Server.serve(sockets=...)` wants listening
    sockets), so this builds its protocol the way `Server.startup` does: the class `Config.load()` picked, with the
    server's state, so `server.shutdown()` still closes these connections. tests/test_serve_reliability.py runs
    this on a socket pair and fails loudly if an uvicorn upgrade changes any of it."""
    config = server.config
    if not config.loaded:
        config.load()

    class Handoff(config.http_protocol_class):  # type: ignore[misc, name-defined]
        def connection_lost(self, exc: Exception | None) -> None:
            super().connection_lost(exc)
            on_close()

    return lambda: Handoff(config=config, server_state=server.server_state, app_state={})


def _worker(models: list[str], threads: int, body_timeout: float, channel: socket.socket) -> None:
    """One server process: build the app, then serve every connection the parent passes down the channel."""
    import torch
    import uvicorn

    from .app import create_app

    torch.set_num_threads(threads)
    try:
        app = create_app(models, body_timeout=body_timeout)
    except DigitlabError as e:
        channel.sendall(FAILED + str(e).encode())
        return
    server = uvicorn.Server(server_config(app))

    def tell_closed() -> None:
        try:
            channel.send(CLOSED)
        except OSError:  # the parent is gone; the reader below stops the server
            pass

    async def main() -> None:
        loop = asyncio.get_running_loop()
        protocol = handoff_protocol(server, tell_closed)

        def on_message() -> None:
            try:
                message, fds, _, _ = socket.recv_fds(channel, 16, 64)
            except BlockingIOError:
                return
            if not message:  # the parent exited
                loop.remove_reader(channel.fileno())
                server.should_exit = True
            for fd in fds:
                loop.create_task(loop.connect_accepted_socket(protocol, socket.socket(fileno=fd)))

        channel.setblocking(False)
        loop.add_reader(channel.fileno(), on_message)
        channel.send(READY)
        await server.serve(sockets=[])  # no listener of its own: connections come from the parent

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl+C after its graceful shutdown
        pass


def serve_balanced(models: list[str], listener: socket.socket, workers: int, threads: int, body_timeout: float) -> None:
    """Share the connections of a bound listening socket among `workers` processes until interrupted."""
    context = multiprocessing.get_context("spawn")  # no forked copies of torch's thread pools
    channels, processes = [], []
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill` stops the workers too, like Ctrl+C
    try:
        for _ in range(workers):
            ours, theirs = socket.socketpair()
            process = context.Process(target=_worker, args=(models, threads, body_timeout, theirs), daemon=True)
            process.start()
            theirs.close()
            channels.append(ours)
            processes.append(process)
        for ours in channels:
            answer = ours.recv(4096)
            if answer != READY:
                raise DigitlabError(answer[1:].decode() if answer.startswith(FAILED) else "a server worker failed to start")
        _share_connections(listener, channels)
    except KeyboardInterrupt:
        pass
    finally:
        listener.close()
        for ours in channels:
            ours.close()
        for process in processes:
            process.join(5)
            if process.is_alive():
                process.kill()


def _share_connections(listener: socket.socket, channels: list[socket.socket]) -> None:
    """Accept each connection and hand it to the worker with the fewest open ones, for ever."""
    open_connections = [0] * len(channels)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, None)
    for i, ours in enumerate(channels):
        selector.register(ours, selectors.EVENT_READ, i)
    while True:
        for key, _ in selector.select():
            if key.data is None:
                try:
                    connection, _ = listener.accept()
                except OSError:  # the client gave up before we took it (ECONNABORTED) or we are out of descriptors
                    continue
                i = min(range(len(channels)), key=open_connections.__getitem__)
                socket.send_fds(channels[i], [b"c"], [connection.fileno()])
                connection.close()
                open_connections[i] += 1
            else:
                news = key.fileobj.recv(4096)
                if not news:
                    raise DigitlabError(f"server worker {key.data + 1} of {len(channels)} stopped; see the messages above")
                open_connections[key.data] -= news.count(CLOSED)
