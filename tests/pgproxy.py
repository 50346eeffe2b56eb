"""A TCP relay in front of PostgreSQL that can cut a connection around its COMMIT.

The real failure it stands for: the network (or the server) goes away while
a COMMIT is in flight, so the client cannot know whether it happened. Armed
with `cut_at_commit(delivered=True)`, the relay passes the next COMMIT to the
server, swallows the answer and closes both sides: committed, but the client
hears nothing. With `delivered=False` it closes before the server sees it.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading

COMMIT = b"Q\x00\x00\x00\x0bCOMMIT\x00"  # the simple-protocol Query message


class PgProxy:
    def __init__(self, upstream: tuple[str, int] = ("127.0.0.1", 5432)) -> None:
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._armed: bool | None = None  # delivered?
        self._lock = threading.Lock()
        self.cuts = 0
        self._closing = False
        self._threads: list[threading.Thread] = []
        accept = threading.Thread(target=self._accept, daemon=True)
        accept.start()
        self._threads.append(accept)

    def url(self, base: str) -> str:
        """`base` (a URL to 127.0.0.1:5432) through the relay."""
        return base.replace("127.0.0.1:5432", f"127.0.0.1:{self.port}")

    def cut_at_commit(self, delivered: bool) -> None:
        with self._lock:
            self._armed = delivered

    def close(self) -> None:
        self._closing = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()  # as a server that is down would
                continue
            relay = threading.Thread(target=self._relay, args=(client, server), daemon=True)
            relay.start()
            self._threads.append(relay)

    def _relay(self, client: socket.socket, server: socket.socket) -> None:
        with client, server:
            while not self._closing:
                readable, _, _ = select.select([client, server], [], [], 0.2)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is client and COMMIT in data:
                        delivered = self._take_armed()
                        if delivered is not None:
                            return self._cut(data, server, delivered)
                    (server if sock is client else client).sendall(data)

    def _take_armed(self) -> bool | None:
        with self._lock:
            armed, self._armed = self._armed, None
            return armed

    def _cut(self, data: bytes, server: socket.socket, delivered: bool) -> None:
        self.cuts += 1
        if delivered:
            server.sendall(data)
            server.settimeout(5)
            with contextlib.suppress(OSError):
                answer = b""
                while b"Z\x00\x00\x00\x05" not in answer:  # ReadyForQuery: it committed
                    chunk = server.recv(65536)
                    if not chunk:
                        break
                    answer += chunk
