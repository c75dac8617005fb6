"""Real misbehaving HTTP servers on 127.0.0.1 for fault tests: they drip, stall or hang up."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def dripping_server(byte_interval_s: float = 0.5, body: bytes = b"") -> Iterator[str]:
    """Answers every request with headers (and `body`) sent one byte every `byte_interval_s`: each
    read sees data well within any per-read timeout, so only a total deadline stops it."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()
    payload = b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nX-Padding: " + b"a" * 4000 + b"\r\n\r\n" + body

    def drip(conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                for i in range(len(payload)):
                    if stop.is_set():
                        return
                    conn.sendall(payload[i : i + 1])
                    time.sleep(byte_interval_s)
            except OSError:
                return  # the client gave up: what we want

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=drip, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/image.png"
    finally:
        stop.set()
        thread.join(timeout=2)
        listener.close()
