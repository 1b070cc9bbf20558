"""A loopback TCP forwarder standing in for an endpoint that moves, such as ElastiCache's
*primary endpoint* (a DNS name AWS points at the promoted replica on failover).

    with TcpForwarder.start(primary.port) as endpoint:
        url = f"rediss://127.0.0.1:{endpoint.port}/0"   # TLS passes through untouched
        ...
        endpoint.retarget(replica.port)                   # the DNS move: new connections go there,
                                                          # existing ones are dropped

``hold()`` stops the bytes (they wait in the forwarder and the kernel's buffers, as on a
slow link) until ``release()``; dropping the connections meanwhile loses them. On a
replication link that makes a replica lag behind its primary.

Each accepted connection opens one to the current target and two threads copy bytes both
ways until either side closes; then both sides are closed. A connection that cannot reach
its target (a dead primary) is closed at once, as a refused connection would be.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import threading

from .processes import Stoppable

LOOPBACK = "127.0.0.1"


@dataclasses.dataclass(eq=False)
class _Pair:
    client: socket.socket
    upstream: socket.socket
    _closed: bool = False

    def close(self) -> None:
        """Close both sides; shutdown() first wakes the other copying thread out of recv()
        (a plain close() would not, and the socket would stay open under it)."""
        if self._closed:
            return
        self._closed = True
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):  # already reset by the peer
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class TcpForwarder(Stoppable):
    """Forward 127.0.0.1:<port> to 127.0.0.1:<target port>; retarget() moves it."""

    def __init__(self, target_port: int, *, connect_timeout: float = 1.0):
        self.target_port = target_port
        self.connect_timeout = connect_timeout
        self.accepted = 0  # connections accepted so far (for tests and reports)
        self.forwarded: dict[int, int] = {}  # target port: connections that reached it
        self._listener = socket.create_server((LOOPBACK, 0))
        self._listener.settimeout(0.2)  # the accept loop checks for stop() this often
        self._pairs: set[_Pair] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._flowing = threading.Event()
        self._flowing.set()
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept_loop, name="tcp-forwarder-accept",
                                          daemon=True)

    @classmethod
    def start(cls, target_port: int, **options) -> TcpForwarder:
        forwarder = cls(target_port, **options)
        forwarder._acceptor.start()
        return forwarder

    @property
    def port(self) -> int:
        return self._listener.getsockname()[1]

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._pairs)

    def retarget(self, target_port: int, *, drop_existing: bool = True) -> int:
        """New connections go to *target_port*; returns how many existing ones were dropped."""
        self.target_port = target_port
        return self.drop_connections() if drop_existing else 0

    def drop_connections(self) -> int:
        """Close every forwarded connection, as a failover does to clients of the old primary."""
        with self._lock:
            pairs, self._pairs = list(self._pairs), set()
        for pair in pairs:
            pair.close()
        return len(pairs)

    def hold(self) -> None:
        """Stop copying bytes (both ways) until release()."""
        self._flowing.clear()

    def release(self) -> None:
        self._flowing.set()

    def stop(self) -> None:
        self._stopping.set()
        self._flowing.set()  # a held copying thread must see its closed sockets and end
        if self._acceptor.is_alive():
            self._acceptor.join(5)
        self._listener.close()
        self.drop_connections()
        for thread in self._threads:
            thread.join(5)
        self._threads = [thread for thread in self._threads if thread.is_alive()]

    # -- the copying ------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                raise
            client.settimeout(None)  # accepted sockets inherit the listener's timeout otherwise
            self.accepted += 1
            target = self.target_port
            try:
                upstream = socket.create_connection((LOOPBACK, target), timeout=self.connect_timeout)
            except OSError:
                client.close()  # the target is down: the client sees its connection closed
                continue
            upstream.settimeout(None)
            for sock in (client, upstream):  # relay small writes at once: Nagle would add ~40 ms waits
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.forwarded[target] = self.forwarded.get(target, 0) + 1
            pair = _Pair(client, upstream)
            with self._lock:
                self._pairs.add(pair)
            self._threads = [thread for thread in self._threads if thread.is_alive()]
            for source, sink in ((client, upstream), (upstream, client)):
                thread = threading.Thread(target=self._copy, args=(pair, source, sink), daemon=True,
                                          name="tcp-forwarder-copy")
                thread.start()
                self._threads.append(thread)

    def _copy(self, pair: _Pair, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                self._flowing.wait()
                sink.sendall(data)
        except OSError:
            pass  # either side closed or reset: the connection is over, both ends are closed below
        with self._lock:
            self._pairs.discard(pair)
        pair.close()
