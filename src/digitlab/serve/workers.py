"""`digitlab serve --workers N`: N server processes with the connections shared out evenly.

uvicorn's own `--workers` share one listening socket and each process accepts every connection that is waiting,
so a handful of keep-alive clients can land 6:2 on two processes, and the busy one sets everyone's latency. Here
the parent accepts each connection and hands its file descriptor (SCM_RIGHTS over a Unix socket pair) to the
worker with the fewest open connections; workers tell the parent when a connection closes. Each worker runs
uvicorn's HTTP protocol on the sockets it is given.
"""
from __future__ import annotations

import asyncio
import multiprocessing
import selectors
import signal
import socket
from typing import Any

from ..errors import DigitlabError

READY, CLOSED, FAILED = b"r", b"-", b"E"


def _worker(models: list[str], threads: int, channel: socket.socket) -> None:
    """One server process: build the app, then serve every connection the parent passes down the channel."""
    import torch
    import uvicorn
    from uvicorn.server import ServerState

    from .app import create_app

    torch.set_num_threads(threads)
    try:
        app = create_app(models)
    except DigitlabError as e:
        channel.sendall(FAILED + str(e).encode())
        return
    config = uvicorn.Config(app, log_level="warning", lifespan="off")
    config.load()
    state = ServerState()

    class Protocol(config.http_protocol_class):  # type: ignore[name-defined, misc]
        def connection_lost(self, exc: Exception | None) -> None:
            super().connection_lost(exc)
            try:
                channel.send(CLOSED)
            except OSError:  # the parent is gone; the loop below stops
                pass

    def protocol() -> Any:
        return Protocol(config=config, server_state=state, app_state={})

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = loop.create_future()
        done = lambda: stop.done() or stop.set_result(None)  # noqa: E731
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, done)

        def on_message() -> None:
            try:
                message, fds, _, _ = socket.recv_fds(channel, 16, 64)
            except BlockingIOError:
                return
            if not message:  # the parent exited
                done()
            for fd in fds:
                loop.create_task(loop.connect_accepted_socket(protocol, socket.socket(fileno=fd)))

        channel.setblocking(False)
        loop.add_reader(channel.fileno(), on_message)
        channel.send(READY)
        await stop
        for connection in list(state.connections):
            connection.shutdown()
        await asyncio.sleep(0.1)

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())


def serve_balanced(models: list[str], host: str, port: int, workers: int, threads: int) -> None:
    """Listen on host:port and share connections among `workers` processes until interrupted."""
    try:
        listener = socket.create_server((host, port), backlog=2048)
    except OSError as e:
        raise DigitlabError(f"cannot listen on {host}:{port} ({e.strerror}); try another --port") from None
    context = multiprocessing.get_context("spawn")  # no forked copies of torch's thread pools
    channels, processes = [], []
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill` stops the workers too, like Ctrl+C
    try:
        for _ in range(workers):
            ours, theirs = socket.socketpair()
            process = context.Process(target=_worker, args=(models, threads, theirs), daemon=True)
            process.start()
            theirs.close()
            channels.append(ours)
            processes.append(process)
        for ours in channels:
            answer = ours.recv(4096)
            if answer != READY:
                raise DigitlabError(answer[1:].decode() if answer.startswith(FAILED) else "a server worker failed to start")
        open_connections = [0] * workers
        selector = selectors.DefaultSelector()
        selector.register(listener, selectors.EVENT_READ, None)
        for i, ours in enumerate(channels):
            selector.register(ours, selectors.EVENT_READ, i)
        while True:
            for key, _ in selector.select():
                if key.data is None:
                    connection, _ = listener.accept()
                    i = min(range(workers), key=open_connections.__getitem__)
                    socket.send_fds(channels[i], [b"c"], [connection.fileno()])
                    connection.close()
                    open_connections[i] += 1
                else:
                    news = key.fileobj.recv(4096)
                    if not news:
                        raise DigitlabError(f"server worker {key.data + 1} of {workers} stopped; see the messages above")
                    open_connections[key.data] -= news.count(CLOSED)
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
