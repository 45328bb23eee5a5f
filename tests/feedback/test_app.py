"""The web app over real HTTP: a uvicorn server on a free loopback port, driven with httpx."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def new_annotator(url: str, admin_token: str, name: str) -> str:
    r = httpx.post(f"{url}/api/admin/annotators", json={"name": name}, headers=auth(admin_token))
    assert r.status_code == 201, r.text
    return r.json()["token"]


def test_sign_in_next_item_submit_and_progress(served):
    url, store, admin = served
    tok = new_annotator(url, admin, "alice")
    assert httpx.post(f"{url}/api/login", json={"token": tok}).json() == {"name": "alice", "is_admin": False}
    assert httpx.post(f"{url}/api/login", json={"token": "wrong"}).status_code == 401

    nxt = httpx.get(f"{url}/api/next", headers=auth(tok)).json()
    item = nxt["item"]
    assert nxt["progress"]["done"] == 0 and nxt["progress"]["available"] == 6
    assert len(item["responses"]) == 4 and item["prompt"].startswith("prompt ")
    r = httpx.post(f"{url}/api/rankings", headers=auth(tok),
                   json={"assignment_id": item["assignment_id"], "ranking": [3, 1, 0, 2], "time_ms": 2500,
                         "flags": {"1": ["nonsense"]}})
    assert r.status_code == 200, r.text
    assert r.json()["progress"]["done"] == 1
    row = store.ranking_rows()[0]
    # The stored ranking is the shown one mapped to candidate indices via the display order.
    shown = [row["responses"].index(t) for t in item["responses"]]
    assert row["display_order"] == shown
    assert row["ranking"] == [shown[3], shown[1], shown[0], shown[2]]
    assert row["flags"] == {str(shown[1]): ["nonsense"]} and row["time_ms"] == 2500
    assert httpx.get(f"{url}/api/progress", headers=auth(tok)).json()["done"] == 1


def test_redundancy_and_never_twice_over_http(served):
    url, store, admin = served  # 6 items, redundancy 2
    tokens = [new_annotator(url, admin, f"a{i}") for i in range(3)]
    seen = {t: [] for t in tokens}
    for _ in range(6):
        for t in tokens:
            item = httpx.get(f"{url}/api/next", headers=auth(t)).json()["item"]
            if item is None:
                continue
            seen[t].append(item["prompt"])
            r = httpx.post(f"{url}/api/rankings", headers=auth(t),
                           json={"assignment_id": item["assignment_id"], "ranking": [0, 1, 2, 3]})
            assert r.status_code == 200
    assert all(len(v) == len(set(v)) for v in seen.values())
    counts = {}
    for v in seen.values():
        for p in v:
            counts[p] = counts.get(p, 0) + 1
    assert sorted(counts.values()) == [2] * 6
    last = httpx.get(f"{url}/api/next", headers=auth(tokens[0])).json()
    assert last["item"] is None and last["progress"]["available"] == 0


def test_unauthenticated_and_non_admin_requests_are_refused(served):
    url, store, admin = served
    tok = new_annotator(url, admin, "bob")
    for method, path in [("GET", "/api/next"), ("GET", "/api/progress"), ("POST", "/api/rankings"),
                         ("GET", "/api/admin/quality")]:
        assert httpx.request(method, url + path, json={}).status_code == 401, path
        assert httpx.request(method, url + path, json={}, headers=auth("forged")).status_code == 401, path
    admin_routes = [("POST", "/api/admin/annotators", {"name": "eve"}), ("GET", "/api/admin/quality", None),
                    ("GET", "/api/admin/export", None), ("POST", "/api/admin/gold", {"prompt_id": 1, "best": 0}),
                    ("GET", "/api/admin/progress", None), ("GET", "/api/admin/items", None),
                    ("GET", "/api/admin/annotators", None), ("GET", "/api/admin/quality.html", None)]
    for method, path, body in admin_routes:
        r = httpx.request(method, url + path, json=body, headers=auth(tok))
        assert r.status_code == 403, (path, r.text)
        assert httpx.request(method, url + path, json=body).status_code == 401
    assert [a["name"] for a in store.annotators()] == ["admin", "bob"]
    assert store.items()[0]["gold_best"] is None


@pytest.mark.parametrize("ranking", [
    [0, 1, 2], [0, 1, 2, 4], [0, 1, 1, 2], [0, 1, 2, -1], [], "0123", [0, 1, 2, 3.5], [0, 1, 2, "3"],
    [0, 1, [2], [3, 3]], None,
])
def test_malformed_rankings_get_4xx_and_nothing_is_stored(served, ranking):
    url, store, admin = served
    tok = new_annotator(url, admin, "carol")
    item = httpx.get(f"{url}/api/next", headers=auth(tok)).json()["item"]
    r = httpx.post(f"{url}/api/rankings", headers=auth(tok),
                   json={"assignment_id": item["assignment_id"], "ranking": ranking})
    assert 400 <= r.status_code < 500 and r.json()["detail"], r.text
    assert store.ranking_rows() == []


def test_other_bad_submissions_get_clear_4xx(served):
    url, store, admin = served
    t1, t2 = new_annotator(url, admin, "d1"), new_annotator(url, admin, "d2")
    item = httpx.get(f"{url}/api/next", headers=auth(t1)).json()["item"]
    aid = item["assignment_id"]
    r = httpx.post(f"{url}/api/rankings", headers=auth(t2), json={"assignment_id": aid, "ranking": [0, 1, 2, 3]})
    assert r.status_code == 404 and "not one of yours" in r.json()["detail"]
    r = httpx.post(f"{url}/api/rankings", headers=auth(t1),
                   json={"assignment_id": aid, "ranking": [0, 1, 2, 3], "flags": {"9": ["harmful"]}})
    assert r.status_code == 422 and "out of range" in r.json()["detail"]
    r = httpx.post(f"{url}/api/rankings", headers=auth(t1),
                   json={"assignment_id": aid, "ranking": [0, 1, 2, 3], "extra": 1})
    assert r.status_code == 422
    r = httpx.post(f"{url}/api/rankings", headers={**auth(t1), "Content-Type": "application/json"},
                   content=b"{not json")
    assert r.status_code == 422
    assert store.ranking_rows() == []
    ok = httpx.post(f"{url}/api/rankings", headers=auth(t1), json={"assignment_id": aid, "ranking": [0, 1, 2, 3]})
    assert ok.status_code == 200
    dup = httpx.post(f"{url}/api/rankings", headers=auth(t1), json={"assignment_id": aid, "ranking": [0, 1, 2, 3]})
    assert dup.status_code == 409 and len(store.ranking_rows()) == 1


def test_admin_gold_quality_and_export(served):
    url, store, admin = served
    tokens = [new_annotator(url, admin, f"<b>e{i}</b>") for i in range(2)]
    r = httpx.post(f"{url}/api/admin/gold", headers=auth(admin), json={"prompt_id": 1, "best": 7})
    assert r.status_code == 400 and "out of range" in r.json()["detail"]
    assert httpx.post(f"{url}/api/admin/gold", headers=auth(admin), json={"prompt_id": 1, "best": 2}).status_code == 200
    for t in tokens:
        while (item := httpx.get(f"{url}/api/next", headers=auth(t)).json()["item"]) is not None:
            n = item["prompt"].split()[-1]  # rank candidates 0 > 1 > 2 > 3, whatever order they are shown in
            shown = [item["responses"].index(f"p{n} response {c}") for c in range(4)]
            httpx.post(f"{url}/api/rankings", headers=auth(t),
                       json={"assignment_id": item["assignment_id"], "ranking": shown})
    exported = [json.loads(line) for line in
                httpx.get(f"{url}/api/admin/export", headers=auth(admin)).text.splitlines()]
    assert len(exported) == 12
    assert all(rec["ranking"] == [0, 1, 2, 3] for rec in exported)  # mapped back to candidate indices
    assert {rec["annotator"] for rec in exported} == {"<b>e0</b>", "<b>e1</b>"}
    assert all(0.0 <= rec["weight"] <= 1.0 for rec in exported)
    q = httpx.get(f"{url}/api/admin/quality", headers=auth(admin)).json()
    # Gold is candidate 2 on item 1; ranked third, it beats one of its three rivals.
    assert q["annotators"]["<b>e0</b>"]["gold_accuracy"] == pytest.approx(1 / 3)
    assert q["annotators"]["<b>e0</b>"]["gold_pairs"] == 3
    page = httpx.get(f"{url}/api/admin/quality.html", headers=auth(admin))
    assert "&lt;b&gt;e0&lt;/b&gt;" in page.text and "<b>e0</b>" not in page.text
    progress = httpx.get(f"{url}/api/admin/progress", headers=auth(admin)).json()
    assert progress["complete_items"] == 6 and progress["rankings"] == 12


def test_pages_static_files_headers_and_openapi(served):
    url, _, _ = served
    page = httpx.get(url + "/")
    assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
    assert httpx.get(url + "/admin").status_code == 200
    assert httpx.get(url + "/static/app.js").status_code == 200
    paths = httpx.get(url + "/openapi.json").json()["paths"]
    for p in ["/api/login", "/api/next", "/api/rankings", "/api/progress", "/api/admin/annotators",
              "/api/admin/quality", "/api/admin/export", "/api/admin/gold"]:
        assert p in paths


def test_the_app_module_does_not_import_torch():
    code = "import sys, rlhfkit.feedback.app, rlhfkit.feedback.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_admin_items_offset_beyond_sqlite_integers_is_a_4xx(served):
    """Found by the schemathesis fuzz: an offset past 2**63 - 1 overflowed SQLite's INTEGER (500)."""
    url, _, admin = served
    page = httpx.get(f"{url}/api/admin/items", headers=auth(admin), params={"offset": 2**63 - 1})
    assert page.status_code == 200 and page.json() == []
    r = httpx.get(f"{url}/api/admin/items", headers=auth(admin), params={"offset": 2**63})
    assert r.status_code == 422
