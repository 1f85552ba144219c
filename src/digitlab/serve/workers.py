"""`digitlab serve --workers N`: N server processes with the connections shared out evenly.

uvicorn's own `--workers` share one listening socket and each process accepts every connection that is waiting,
so a handful of keep-alive clients can land 6:2 on two processes, and the busy one sets everyone's latency. Here
the parent accepts each connection and hands its file descriptor (SCM_RIGHTS over a Unix socket pair) to the
worker with the fewest open connections; workers tell the parent when a connection closes. Each worker runs a
`uvicorn.Server` (signals, graceful shutdown) fed through `server.handoff_protocol`.
"""
from __future__ import annotations

import asyncio
import multiprocessing
import selectors
import signal
import socket

from ..errors import DigitlabError
from .server import handoff_protocol, uvicorn_config

READY, CLOSED, FAILED = b"r", b"-", b"E"


def _worker(models: list[str], threads: int, body_timeout: float, options: dict, channel: socket.socket) -> None:
    """One server process: build the app, then serve every connection the parent passes down the channel."""
    import torch
    import uvicorn

    from .app import create_app

    torch.set_num_threads(threads)
    try:
        app = create_app(models, body_timeout=body_timeout, **options)
    except DigitlabError as e:
        channel.sendall(FAILED + str(e).encode())
        return
    server = uvicorn.Server(uvicorn_config(app, body_timeout))  # the same limit for request heads and bodies

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
            except OSError:  # the parent closed its end with our news unread (Ctrl+C): it is gone all the same
                message, fds = b"", []
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


def serve_balanced(models: list[str], listener: socket.socket, workers: int, threads: int, body_timeout: float,
                   options: dict | None = None) -> None:
    """Share the connections of a bound listening socket among `workers` processes until interrupted; `options` are
    create_app's (corrections, reload)."""
    context = multiprocessing.get_context("spawn")  # no forked copies of torch's thread pools
    channels, processes = [], []
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill` stops the workers too, like Ctrl+C
    try:
        for _ in range(workers):
            ours, theirs = socket.socketpair()
            process = context.Process(target=_worker, args=(models, threads, body_timeout, options or {}, theirs), daemon=True)
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
