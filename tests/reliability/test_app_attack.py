"""The labeling app under attack: schemathesis-generated requests (valid and invalid, with admin, annotator,
missing and forged tokens) against the app's own OpenAPI spec on a real uvicorn server never get a 5xx;
oversized bodies and very long rankings get a clear 4xx; tokens appear in no error body and no log line.

    .venv/bin/python -m pytest tests/reliability/test_app_attack.py -q      (~30 s; schemathesis optional)
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from contextlib import contextmanager

import httpx
import pytest
import uvicorn

from rlhfkit.feedback import app as app_module
from rlhfkit.feedback.app import create_app
from rlhfkit.feedback.store import Store
from tests.feedback.helpers import DROP_KINDS, drop_mid_request

MAX_BODY_BYTES = getattr(app_module, "MAX_BODY_BYTES", 1 << 20)


class Captured(logging.Handler):
    """Every log line the server (uvicorn access/error, the app, the store) writes while a test runs."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextmanager
def serve(app, handler: Captured):
    """uvicorn on a free loopback port with access logs on, logging into `handler`; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    # log_config=None: keep Python's logging as configured here, so every uvicorn record reaches `handler`.
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, log_level="debug", access_log=True))
    root = logging.getLogger()
    old_level = root.level
    # An earlier server in this process (default log_config) made uvicorn's loggers stop propagating and
    # raised their levels; undo that so their records reach the root handler.
    uv = {name: logging.getLogger(name) for name in ("uvicorn", "uvicorn.access", "uvicorn.error")}
    saved = {name: (lg.level, lg.propagate) for name, lg in uv.items()}
    for lg in uv.values():
        lg.setLevel(logging.NOTSET)
        lg.propagate = True
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not server.started:
        assert time.time() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        root.removeHandler(handler)
        root.setLevel(old_level)
        for name, (level, propagate) in saved.items():
            uv[name].setLevel(level)
            uv[name].propagate = propagate


@pytest.fixture
def site(tmp_path):
    """(url, tokens {"admin", "alice", "bob"}, captured logs, store) with 5 items of K=4, redundancy 2."""
    store = Store.open(tmp_path / "labels.db")
    tokens = {"admin": store.create_annotator("admin", is_admin=True)[1],
              "alice": store.create_annotator("alice")[1], "bob": store.create_annotator("bob")[1]}
    with store.transaction() as c:
        for i in range(5):
            store.add_item(c, f"prompt {i} <script>alert(1)</script>", [f"r{i}.{j}" for j in range(4)], "math")
    logs = Captured()
    # No rate limit: the fuzzer sends ~100 requests a second, and 429s would stand in for what the routes do
    # (test_limits.py tests the limit itself).
    with serve(create_app(store, redundancy=2, rate_limit=0), logs) as url:
        yield url, tokens, logs, store


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def no_token_leaks(tokens: dict[str, str], logs: Captured, bodies: list[str]) -> None:
    for name, tok in tokens.items():
        for line in logs.lines:
            assert tok not in line, f"{name}'s token in a log line: {line}"
        for body in bodies:
            assert tok not in body, f"{name}'s token in an error body: {body[:300]}"


# ---------------------------------------------------------------------------------------------- fuzzing


@pytest.mark.slow
def test_schemathesis_finds_no_server_error(site, record_property):
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    url, tokens, logs, store = site
    schema = schemathesis.openapi.from_dict(httpx.get(f"{url}/openapi.json").json())
    auth = st.sampled_from([bearer(tokens["admin"]), bearer(tokens["alice"]), {}, bearer("forged-token"),
                            {"Authorization": "Basic YTpi"}])
    served, errors, by_status = 0, [], {}
    with httpx.Client() as http:  # an assignment for alice, so some generated ids are real
        http.get(f"{url}/api/next", headers=bearer(tokens["alice"]))
    for result in schema.get_all_operations():
        op = result.ok()
        for mode in schemathesis.GenerationMode:

            @settings(max_examples=25, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(case=op.as_strategy(generation_mode=mode), headers=auth)
            def fuzz(case, headers):
                nonlocal served
                response = case.call(base_url=url, headers=headers, timeout=30)
                served += 1
                by_status[response.status_code] = by_status.get(response.status_code, 0) + 1
                assert response.status_code < 500, (f"{case.method} {case.formatted_path} -> "
                                                    f"{response.status_code}: {response.text[:500]}")
                if response.status_code >= 400:
                    errors.append(response.text)

            fuzz()
    record_property("schemathesis_requests", served)
    print(f"\nschemathesis: {served} requests, statuses {dict(sorted(by_status.items()))}, 5xx: 0")
    assert served > 200 and any(s < 300 for s in by_status) and any(400 <= s < 500 for s in by_status)
    no_token_leaks(tokens, logs, errors)


# ---------------------------------------------------------------------------------------------- limits


def test_oversized_bodies_are_refused_before_parsing(site):
    url, tokens, logs, store = site
    big = json.dumps({"assignment_id": 1, "ranking": list(range(MAX_BODY_BYTES // 2))})
    assert len(big) > MAX_BODY_BYTES
    with httpx.Client(headers=bearer(tokens["alice"])) as http:
        r = http.post(f"{url}/api/rankings", content=big, headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and "too large" in r.json()["detail"], r.text
        # Without Content-Length (chunked): counted while streaming, refused the same way.
        r = http.post(f"{url}/api/rankings", content=iter([big[i:i + 65536].encode()
                                                           for i in range(0, len(big), 65536)]),
                      headers={"Content-Type": "application/json"})
        assert r.status_code == 413, r.text
        r = http.post(f"{url}/api/login", json={"token": "x" * (MAX_BODY_BYTES + 1)})
        assert r.status_code == 413
        # The server is still fine, and a body just under the limit is judged on its content.
        item = http.get(f"{url}/api/next").json()["item"]
        r = http.post(f"{url}/api/rankings", json={"assignment_id": item["assignment_id"],
                                                   "ranking": [0, 1, 2, 3], "time_ms": 5})
        assert r.status_code == 200, r.text
    assert store.progress(2)["rankings"] == 1


@pytest.mark.parametrize("ranking, status", [
    (list(range(10_000)), 422),                # far more entries than K
    ([0] * 10_000, 422),                       # one index repeated
    ([[0, 1, 2, 3]] * 5_000, 422),             # a tie group repeated
    ([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 422),     # K > 9 entries
    ([0], 422),                                # K = 1
    ([1, 0, 3, 2.5], 422),                     # not an integer
    ([[]], 422),
])
def test_long_or_malformed_rankings_are_refused_and_nothing_is_stored(site, ranking, status):
    url, tokens, logs, store = site
    with httpx.Client(headers=bearer(tokens["alice"])) as http:
        item = http.get(f"{url}/api/next").json()["item"]
        r = http.post(f"{url}/api/rankings", json={"assignment_id": item["assignment_id"], "ranking": ranking})
        assert r.status_code == status, r.text
        assert len(r.text) < 2000, "the error echoes the request back"
    assert store.progress(2)["rankings"] == 0


def test_tokens_never_appear_in_error_bodies_or_logs(site):
    """Malformed requests that carry a real token (in the body or the header) get errors that do not echo it,
    and nothing logged while serving them contains it."""
    url, tokens, logs, store = site
    alice, admin = tokens["alice"], tokens["admin"]
    bodies = []
    with httpx.Client() as http:
        for body in ({"token": [alice]}, {"token": {"t": alice}}, {"tokn": alice}, {"token": alice, "x": 1},
                     {"token": alice + "\x00"}, {"token": alice[:-1]}):
            r = http.post(f"{url}/api/login", json=body)
            assert 400 <= r.status_code < 500, r.text
            bodies.append(r.text)
        r = http.post(f"{url}/api/login", content=b'{"token": "' + alice.encode() + b'"',  # truncated JSON
                      headers={"Content-Type": "application/json"})
        assert r.status_code == 422
        bodies.append(r.text)
        for headers in (bearer(alice + "x"), {"Authorization": alice}, bearer(admin)):
            r = http.post(f"{url}/api/rankings", headers=headers, json={"assignment_id": "1", "ranking": alice})
            assert 400 <= r.status_code < 500
            bodies.append(r.text)
        r = http.post(f"{url}/api/admin/annotators", headers=bearer(alice), json={"name": admin})
        assert r.status_code == 403
        bodies.append(r.text)
        r = http.post(f"{url}/api/admin/annotators", headers=bearer(admin), json={"name": "x" * 101})
        assert r.status_code == 400
        bodies.append(r.text)
    assert any("POST /api/login" in line for line in logs.lines), "access log not captured"
    no_token_leaks(tokens, logs, bodies)


def test_clients_that_leave_mid_request_cause_no_server_error(site):
    """Half a body then gone, a whole submit closed or reset unread: no traceback in the server's log, at most
    one ranking stored for the assignment, and the server answers the next request."""
    url, tokens, logs, store = site
    port = int(url.rsplit(":", 1)[1])
    with httpx.Client(headers=bearer(tokens["alice"])) as http:
        item = http.get(f"{url}/api/next").json()["item"]
        for kind in DROP_KINDS:
            drop_mid_request(port, tokens["alice"], item["assignment_id"], kind)
        time.sleep(0.5)  # the server notices each disconnect on its own
        assert http.get(f"{url}/api/progress").status_code == 200
    assert not any("Traceback" in line or "Exception" in line for line in logs.lines), logs.lines
    assert store.progress(2)["rankings"] <= 1
