"""50 annotators hitting the server at once over loopback: no ranking lost, none duplicated."""

from __future__ import annotations

import threading
import time
from collections import Counter

import httpx

from rlhfkit.feedback.app import create_app

from .helpers import add_items, running_server

N_CLIENTS, N_ITEMS, REDUNDANCY = 50, 60, 3


def test_fifty_concurrent_clients_lose_and_duplicate_nothing(store, record_property):
    add_items(store, N_ITEMS, k=4)
    tokens = [store.create_annotator(f"c{i}")[1] for i in range(N_CLIENTS)]
    barrier = threading.Barrier(N_CLIENTS)
    accepted: list[tuple[str, int, str]] = []  # (annotator, ranking id, prompt) per 200 answer
    errors: list[str] = []
    lock = threading.Lock()

    def client(i: int) -> None:
        with clients[i] as http:
            first = True
            while True:
                item = http.get("/api/next").json()["item"]
                if first:
                    barrier.wait()  # every client submits its first ranking at the same moment
                    first = False
                if item is None:
                    return
                r = http.post("/api/rankings", json={"assignment_id": item["assignment_id"], "ranking": [3, 2, 1, 0]})
                with lock:
                    if r.status_code == 200:
                        accepted.append((f"c{i}", r.json()["ranking_id"], item["prompt"]))
                    else:
                        errors.append(r.text)

    with running_server(create_app(store, redundancy=REDUNDANCY)) as url:
        # Built before the clock starts: each httpx.Client loads a CA bundle (~40 ms of CPU).
        clients = [httpx.Client(base_url=url, headers={"Authorization": f"Bearer {t}"}, timeout=60) for t in tokens]
        threads = [threading.Thread(target=client, args=(i,)) for i in range(N_CLIENTS)]
        start, cpu_start = time.perf_counter(), time.process_time()
        [t.start() for t in threads]
        [t.join(timeout=120) for t in threads]
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    assert not any(t.is_alive() for t in threads), "a client hung"
    assert errors == []
    rows = store.ranking_rows()
    assert len(rows) == len(accepted) == N_ITEMS * REDUNDANCY                  # none lost
    assert sorted(r["ranking_id"] for r in rows) == sorted(a[1] for a in accepted)
    assert Counter(r["prompt_id"] for r in rows) == {p: REDUNDANCY for p in range(1, N_ITEMS + 1)}
    assert len({(r["prompt_id"], r["annotator"]) for r in rows}) == len(rows)  # none duplicated
    rate = len(rows) / elapsed
    record_property("rankings_per_s", round(rate, 1))
    record_property("cpu_ms_per_ranking", round(1000 * cpu / len(rows), 2))
    # Clients and server share this process, so CPU per ranking (both sides, next + submit) is
    # the figure that does not depend on what else the machine is running.
    print(f"\n{len(rows)} rankings from {N_CLIENTS} concurrent clients in {elapsed:.2f} s: {rate:.0f} rankings/s; "
          f"{1000 * cpu / len(rows):.1f} ms CPU per ranking (server and clients)")
    assert elapsed < 60
