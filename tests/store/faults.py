"""A TCP proxy on 127.0.0.1 that injects the failures a store shows while it restarts or is
overloaded: a canned `503 SlowDown` answer, a dropped connection, silence (a hang), or an
answer cut off in the middle.

It forwards raw bytes, so signatures computed for the proxy's address stay valid (the Host
header is the proxy's, and SeaweedFS checks the signature against the Host it received).
Failures are injected per connection: the store under test opens a fresh pool, and each failed
request closes its connection, so every retry is a new connection.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType

SLOW_DOWN = (b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>"
             b"<Message>Please reduce your request rate.</Message></Error>")
MODES = frozenset({"503", "drop", "hang", "cut"})
CUT_AFTER = 64 * 1024


class FaultyProxy:
    """`fail_next(n, mode)` makes the next n connections fail with `mode`, then traffic flows.

    Modes: `503` (a SlowDown answer), `drop` (closed before answering), `hang` (never answers),
    `cut` (forwarded, but the answer is cut off after its first 64 KiB).
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.05)  # close() does not wake a blocked accept(): poll instead
        self.port = self._server.getsockname()[1]
        self._lock = threading.Lock()
        self._failures = 0
        self._mode = "503"
        self.connections = 0
        self.failed = 0
        self._closing = False
        self._open: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def fail_next(self, count: int, mode: str = "503") -> None:
        assert mode in MODES
        with self._lock:
            self._failures, self._mode = count, mode

    def __enter__(self) -> FaultyProxy:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._closing = True
        self._thread.join(timeout=5)
        self._server.close()
        for sock in list(self._open):
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            self._open.append(client)
            with self._lock:
                self.connections += 1
                mode = None
                if self._failures > 0:
                    self._failures -= 1
                    self.failed += 1
                    mode = self._mode
            threading.Thread(target=self._serve, args=(client, mode), daemon=True).start()

    def _serve(self, client: socket.socket, mode: str | None) -> None:
        if mode is None or mode == "cut":
            self._forward(client, cut_after=CUT_AFTER if mode == "cut" else None)
            return
        with client, contextlib.suppress(OSError):
            if mode == "hang":
                while client.recv(65536):  # read, never answer, until the client gives up
                    pass
                return
            client.recv(65536)  # the request line and headers
            if mode == "503":
                client.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\n"
                               b"Content-Length: " + str(len(SLOW_DOWN)).encode() +
                               b"\r\nConnection: close\r\n\r\n" + SLOW_DOWN)

    def _forward(self, client: socket.socket, *, cut_after: int | None) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        except OSError:
            client.close()
            return
        self._open.append(upstream)

        def pipe(source: socket.socket, sink: socket.socket, limit: int | None) -> None:
            sent = 0
            with contextlib.suppress(OSError):
                while data := source.recv(65536):
                    if limit is not None and sent + len(data) > limit:
                        sink.sendall(data[:limit - sent])
                        sink.shutdown(socket.SHUT_RDWR)  # the answer breaks off mid-body
                        source.shutdown(socket.SHUT_RDWR)
                        return
                    sink.sendall(data)
                    sent += len(data)
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

        back = threading.Thread(target=pipe, args=(upstream, client, cut_after), daemon=True)
        back.start()
        pipe(client, upstream, None)
        back.join()
        client.close()
        upstream.close()
