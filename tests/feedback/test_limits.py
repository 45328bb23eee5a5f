"""The per-annotator rate limit: token buckets on a fake clock, and over real HTTP a burst past the limit
gets 429s with a clear detail and Retry-After while other annotators carry on, and waiting lets it back in."""

from __future__ import annotations

import time

import httpx
import pytest

from rlhfkit.feedback import limits
from rlhfkit.feedback.app import create_app
from rlhfkit.feedback.cli import main
from rlhfkit.feedback.limits import RateLimiter

from .helpers import add_items, running_server

RATE = 5.0  # per second; bursts of 2 * RATE


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_a_burst_then_the_rate():
    clock = Clock()
    lim = RateLimiter(RATE, clock=clock)
    key = ("annotator", "1")
    assert [lim.wait(key) for _ in range(int(lim.burst))] == [0.0] * int(lim.burst)
    assert lim.wait(key) == pytest.approx(1 / RATE)      # empty: one request's worth of refill to wait
    assert lim.wait(("annotator", "2")) == 0.0             # another key has its own bucket
    clock.now += 1.0
    allowed = sum(lim.wait(key) == 0.0 for _ in range(3 * int(RATE)))
    assert allowed == int(RATE)                            # one second refilled RATE requests
    assert RateLimiter(0).wait(key) == 0.0 and all(RateLimiter(0).wait(key) == 0.0 for _ in range(1000))
    with pytest.raises(ValueError, match="requests per second"):
        RateLimiter(-1)


def test_idle_buckets_are_forgotten_past_max_keys(monkeypatch):
    monkeypatch.setattr(limits, "MAX_KEYS", 10)
    clock = Clock()
    lim = RateLimiter(RATE, clock=clock)
    for i in range(10):
        lim.wait(("client address", f"10.0.0.{i}"))
    clock.now += lim.burst / RATE  # all ten have refilled
    lim.wait(("client address", "10.0.0.99"))
    assert list(lim._buckets) == [("client address", "10.0.0.99")]


def burst(http: httpx.Client, url: str, n: int) -> list[httpx.Response]:
    return [http.get(f"{url}/api/progress") for _ in range(n)]


def test_a_burst_past_the_limit_gets_429_others_do_not_and_waiting_lets_it_back(store):
    add_items(store, 4)
    alice, bob = (store.create_annotator(n)[1] for n in ("alice", "bob"))
    with running_server(create_app(store, redundancy=2, rate_limit=RATE)) as url, \
            httpx.Client(headers={"Authorization": f"Bearer {alice}"}) as a, \
            httpx.Client(headers={"Authorization": f"Bearer {bob}"}) as b:
        start = time.monotonic()
        answers = burst(a, url, int(6 * RATE))
        elapsed = time.monotonic() - start
        ok = sum(r.status_code == 200 for r in answers)
        refused = [r for r in answers if r.status_code == 429]
        assert ok + len(refused) == len(answers)
        # The burst allowance, plus what refilled while the burst was being sent; the rest refused.
        assert 2 * RATE <= ok <= 2 * RATE + RATE * elapsed + 1, (ok, elapsed)
        detail = refused[0].json()["detail"]
        assert f"at most {RATE:g} requests per second per annotator" in detail and "retry in" in detail
        retry_after = int(refused[-1].headers["Retry-After"])
        assert retry_after >= 1
        # Bob is not slowed down by alice: his own whole burst goes through.
        assert [r.status_code for r in burst(b, url, int(2 * RATE))] == [200] * int(2 * RATE)
        time.sleep(retry_after)
        r = a.post(f"{url}/api/rankings", json={"assignment_id": 0, "ranking": [0, 1]})
        assert r.status_code == 404, r.text  # judged on its content again, not refused
        assert a.get(f"{url}/api/next").status_code == 200


def test_forged_tokens_share_their_address_bucket(store):
    real = store.create_annotator("alice")[1]
    with running_server(create_app(store, rate_limit=RATE)) as url, httpx.Client() as http:
        codes = [http.get(f"{url}/api/next", headers={"Authorization": f"Bearer forged-{i}"}).status_code
                 for i in range(int(4 * RATE))]
        assert codes[0] == 401 and codes[-1] == 429 and set(codes) == {401, 429}
        assert http.post(f"{url}/api/login", json={"token": real}).status_code == 429  # same address
        assert http.get(f"{url}/api/next", headers={"Authorization": f"Bearer {real}"}).status_code == 200


def test_rate_limit_zero_is_off(store):
    tok = store.create_annotator("alice")[1]
    with running_server(create_app(store, rate_limit=0)) as url, \
            httpx.Client(headers={"Authorization": f"Bearer {tok}"}) as http:
        assert {r.status_code for r in burst(http, url, 100)} == {200}


def test_serve_passes_rate_limit_and_refuses_a_bad_one(tmp_path, monkeypatch, capsys):
    seen = {}
    monkeypatch.setattr("rlhfkit.feedback.app.serve", lambda *a: seen.update(args=a))
    db = str(tmp_path / "l.db")
    assert main(["serve", "--db", db, "--rate-limit", "3.5"]) == 0
    assert seen["args"][-1] == 3.5
    assert main(["serve", "--db", db]) == 0 and seen["args"][-1] == limits.DEFAULT_RATE
    assert main(["serve", "--db", db, "--rate-limit", "-1"]) == 2
    assert "--rate-limit: expected requests per second >= 0" in capsys.readouterr().err
