"""Test helpers: items for a store, and the web app served by a real uvicorn on a free loopback port."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from contextlib import contextmanager

import uvicorn

from rlhfkit.feedback.store import Store

DROP_KINDS = ("half body", "no read", "reset")


def add_items(store: Store, n: int, k: int = 4, family: str = "math") -> list[int]:
    with store.transaction() as c:
        return [store.add_item(c, f"prompt {i}", [f"p{i} response {j}" for j in range(k)], family,
                               [f"model-{j}" for j in range(k)]) for i in range(n)]


def free_port() -> int:
    """A loopback TCP port nothing listens on right now (for a server started in another process)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def drop_mid_request(port: int, token: str, assignment_id: int, kind: str) -> None:
    """POST a K=4 ranking over a raw socket and go away without the answer: after half the body
    ("half body"), after all of it ("no read": close), or after all of it with an RST ("reset")."""
    body = json.dumps({"assignment_id": assignment_id, "ranking": [0, 1, 2, 3]}).encode()
    head = (f"POST /api/rankings HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(head + (body[: len(body) // 2] if kind == "half body" else body))
        if kind == "reset":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


@contextmanager
def running_server(app):
    """Serve `app` with uvicorn in a thread on a socket bound to 127.0.0.1:0; yields the base URL."""
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets that say they are TCP,
    # and without it every keep-alive response waits ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", limit_concurrency=None,
                                           timeout_keep_alive=5, backlog=256))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not server.started:
        assert time.time() < deadline, "uvicorn did not start within 10 s"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
