"""A local TCP proxy that can stop forwarding while keeping every socket open.

It stands in for a broker whose connection went half-open (a dead peer, a silent
firewall, a hung node): the client's writes succeed, nothing comes back, and no FIN or
RST ever tells it so. With a ``delay`` it is a long link instead: bytes that arrive while
a delay runs go out together after it, so messages in flight together share one round
trip and messages sent one at a time each pay their own. Threads and blocking sockets only.
"""

from __future__ import annotations

import socket
import threading
import time


class TcpProxy:
    """Listens on 127.0.0.1:<port> and forwards each connection to ``target``.

    ``stop_forwarding()`` makes it read and drop every byte in both directions (sockets
    stay open); ``resume_forwarding()`` forwards again, on old and new connections alike.
    """

    def __init__(self, target: tuple[str, int], *, delay: float = 0.0) -> None:
        self.target = target
        self.delay = delay
        self._forwarding = threading.Event()
        self._forwarding.set()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, name="tcp-proxy-accept", daemon=True).start()

    def stop_forwarding(self) -> None:
        self._forwarding.clear()

    def resume_forwarding(self) -> None:
        self._forwarding.set()

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            try:
                sock.close()
            except OSError:
                pass

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(
                    target=self._pipe, args=(source, sink), name="tcp-proxy-pipe", daemon=True
                ).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        while not self._closed.is_set():
            try:
                data = source.recv(65536)
            except OSError:
                break
            if not data:
                break
            if not self._forwarding.is_set():
                continue  # dropped: the sender's write succeeded, the peer never hears of it
            if self.delay:
                time.sleep(self.delay)
            try:
                sink.sendall(data)
            except OSError:
                break
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
