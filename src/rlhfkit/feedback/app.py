"""The ranking web app: annotators rank K responses per prompt, admins manage annotators, watch
quality and export (`rlhfkit label serve --db labels.db --port 8000`; API docs at /docs).

Auth is `Authorization: Bearer TOKEN` on every /api route except login. All prompt and response
text is untrusted: the JSON API returns it as data, the pages render it with `textContent`, the one
server-rendered page (quality.html) escapes it, and a Content-Security-Policy forbids inline script.
Each annotator's request rate is limited (limits.py; `--rate-limit`), and request bodies are capped.
This module must not import torch: the labeling server runs on machines without it.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Annotated, Any, Callable, Optional, Union

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from rlhfkit.feedback.export import export_records
from rlhfkit.feedback.limits import DEFAULT_RATE, RateLimiter
from rlhfkit.feedback.quality import assess
from rlhfkit.feedback.store import LabelerAccount, Store, StoreError

STATIC = Path(__file__).parent / "static"
# /docs and /redoc load Swagger/ReDoc assets from a CDN with inline script, so they get no CSP.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
# The largest request body read: a K=9 ranking with flags is under 1 KB; this only stops memory abuse.
MAX_BODY_BYTES = 1 << 20
SQLITE_MAX_INT = 2**63 - 1  # a larger offset cannot be bound to SQLite (it raised OverflowError: a 500)
RATE_LIMITED: dict[int | str, dict[str, Any]] = {
    429: {"description": "over the request-rate limit; the detail says when to retry (also Retry-After)"}}


class BodyLimit:
    """ASGI middleware: answer 413 to a request body over `limit` bytes, declared (Content-Length) or
    streamed (chunked), before the app parses any of it. Bodies under the limit are buffered and replayed."""

    def __init__(self, app, limit: int = MAX_BODY_BYTES):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.limit:
            return await self._too_large(scope, receive, send)
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                # The client went away mid-body. Nobody reads the answer, but _headers (outside) needs
                # one: without it starlette raises "No response returned." and logs a traceback.
                return await self._answer(scope, receive, send, 400, "request body incomplete: the client "
                                                                     "closed the connection mid-body")
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:
                return await self._too_large(scope, receive, send)
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()  # after the body: wait for a disconnect, as the server would
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        return await self.app(scope, replay, send)

    async def _too_large(self, scope, receive, send):
        await self._answer(scope, receive, send, 413, f"request body too large; the limit is {self.limit} bytes")

    @staticmethod
    async def _answer(scope, receive, send, status: int, detail: str):
        """Answer without running the app, and close the connection (the rest of the body is not read)."""
        response = JSONResponse({"detail": detail}, status_code=status, headers={"Connection": "close"})
        await response(scope, receive, send)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Every integer a client sends is stored or looked up in SQLite, whose INTEGER is 64-bit signed.
DbInt = Annotated[StrictInt, Field(ge=0, le=2**63 - 1)]


class LoginIn(Strict):
    token: str = Field(description="the token printed when the annotator was created")


class LoginOut(BaseModel):
    name: str
    is_admin: bool


class Item(BaseModel):
    assignment_id: int
    prompt: str
    family: str
    responses: list[str] = Field(description="in display order; rank by these positions 0..K-1")


class NextOut(BaseModel):
    item: Optional[Item] = Field(description="null when nothing is left for this annotator")
    progress: dict[str, int]


class RankingIn(Strict):
    assignment_id: DbInt
    ranking: list[Union[DbInt, list[DbInt]]] = Field(
        description="display positions best->worst, each of 0..K-1 once; a nested list is a tie",
        examples=[[2, 0, 3, 1]])
    time_ms: Optional[DbInt] = Field(None, description="time the annotator spent, in milliseconds")
    flags: Optional[dict[str, list[str]]] = Field(
        None, description='per display position, e.g. {"2": ["harmful"]}; kinds: harmful, nonsense')


class RankingOut(BaseModel):
    ranking_id: int
    progress: dict[str, int]


class NewAnnotatorIn(Strict):
    name: str
    is_admin: bool = False


class NewAnnotatorOut(BaseModel):
    id: int
    name: str
    token: str = Field(description="shown once; only its hash is stored")


class GoldIn(Strict):
    prompt_id: DbInt
    best: Optional[DbInt] = Field(description="candidate index (file order) of the best response; null clears")


def create_app(db: Store | str | Path, redundancy: int = 3, lease_s: float = 1800.0,
               rate_limit: float = DEFAULT_RATE) -> FastAPI:
    """The FastAPI app over the store at `db`; each item goes to `redundancy` annotators, and each
    annotator (or, unauthenticated, each client address) may send `rate_limit` requests per second
    with bursts of twice that (0 = no limit)."""
    store = db if isinstance(db, Store) else Store.open(db)
    limiter = RateLimiter(rate_limit)
    app = FastAPI(title="rlhfkit labeling", version="1",
                  description="Rank K responses per prompt; admins manage annotators, quality and export.")
    bearer = HTTPBearer(auto_error=False)

    def user(request: Request, creds: Optional[HTTPAuthorizationCredentials] = Depends(bearer)) -> LabelerAccount:
        """The signed-in caller. Every request first spends from a rate-limit bucket: the annotator's,
        or the client address's when the token is missing or wrong (so forged tokens share one)."""
        who = creds and store.authenticate(creds.credentials)
        limiter.check(("annotator", str(who.id)) if who else client_key(request))
        if creds is None:
            raise HTTPException(401, "missing 'Authorization: Bearer TOKEN' header",
                                headers={"WWW-Authenticate": "Bearer"})
        if who is None:
            raise HTTPException(401, "unknown token", headers={"WWW-Authenticate": "Bearer"})
        return who

    def admin(who: LabelerAccount = Depends(user)) -> LabelerAccount:
        if not who.is_admin:
            raise HTTPException(403, "this route needs an admin token")
        return who

    @app.exception_handler(StoreError)
    def _store_error(request: Request, exc: StoreError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Where and what, without pydantic's echo of the bad value ("input"): a malformed login body
        # would otherwise send the token back in the error (and into any log that keeps error bodies).
        errors = [{k: e[k] for k in ("type", "loc", "msg") if k in e} for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    app.add_middleware(BodyLimit)  # added before _headers, so it runs inside it: a 413 gets the headers too

    @app.middleware("http")
    async def _headers(request: Request, call_next):
        response = await call_next(request)
        if request.url.path not in ("/docs", "/redoc", "/docs/oauth2-redirect"):
            response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        if request.url.path.startswith("/api/"):
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/admin", include_in_schema=False)
    def admin_page() -> FileResponse:
        return FileResponse(STATIC / "admin.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    app.include_router(annotator_routes(store, user, limiter, redundancy, lease_s))
    app.include_router(admin_routes(store, admin, redundancy))
    return app


def client_key(request: Request) -> tuple[str, str]:
    """The rate-limit key of an unauthenticated request: the client's address."""
    return ("client address", request.client.host if request.client else "unknown")


def annotator_routes(store: Store, user: Callable, limiter: RateLimiter, redundancy: int,
                     lease_s: float) -> APIRouter:
    """Sign-in, next item, submit and progress: what an annotator's page calls."""
    r = APIRouter(tags=["annotator"], responses=RATE_LIMITED)

    @r.post("/api/login", response_model=LoginOut)
    def login(body: LoginIn, request: Request) -> LoginOut:
        """Check a token; the client then sends it as a Bearer token."""
        limiter.check(client_key(request))
        who = store.authenticate(body.token)
        if who is None:
            raise HTTPException(401, "unknown token")
        return LoginOut(name=who.name, is_admin=who.is_admin)

    @r.get("/api/next", response_model=NextOut)
    def next_item(who: LabelerAccount = Depends(user)) -> NextOut:
        """The caller's unfinished item, else a new one (responses shuffled per assignment)."""
        a = store.next_assignment(who.id, redundancy, lease_s=lease_s)
        item = a and Item(assignment_id=a.id, prompt=a.prompt, family=a.family, responses=a.responses)
        return NextOut(item=item, progress=store.progress(redundancy, who.id))

    @r.post("/api/rankings", response_model=RankingOut)
    def submit(body: RankingIn, who: LabelerAccount = Depends(user)) -> RankingOut:
        """Submit a ranking of the caller's assignment; rejected (4xx, nothing stored) unless valid."""
        rid = store.submit_ranking(who.id, body.assignment_id, body.ranking, body.time_ms, body.flags)
        return RankingOut(ranking_id=rid, progress=store.progress(redundancy, who.id))

    @r.get("/api/progress")
    def progress(who: LabelerAccount = Depends(user)) -> dict[str, int]:
        return store.progress(redundancy, who.id)

    return r


def admin_routes(store: Store, admin: Callable, redundancy: int) -> APIRouter:
    """Annotators, progress, items and gold, quality and export: admin tokens only."""
    r = APIRouter(tags=["admin"], responses=RATE_LIMITED)

    @r.post("/api/admin/annotators", response_model=NewAnnotatorOut, status_code=201)
    def new_annotator(body: NewAnnotatorIn, _: LabelerAccount = Depends(admin)) -> NewAnnotatorOut:
        aid, token = store.create_annotator(body.name, body.is_admin)
        return NewAnnotatorOut(id=aid, name=body.name.strip(), token=token)

    @r.get("/api/admin/annotators")
    def list_annotators(_: LabelerAccount = Depends(admin)) -> list[dict[str, Any]]:
        return store.annotators()

    @r.get("/api/admin/progress")
    def admin_progress(_: LabelerAccount = Depends(admin)) -> dict[str, Any]:
        return {**store.progress(redundancy), "annotators": store.annotators()}

    @r.get("/api/admin/items")
    def items(offset: int = Query(0, ge=0, le=SQLITE_MAX_INT), limit: int = Query(50, ge=1, le=500),
              _: LabelerAccount = Depends(admin)) -> list[dict[str, Any]]:
        return store.items(offset, limit)

    @r.post("/api/admin/gold")
    def gold(body: GoldIn, _: LabelerAccount = Depends(admin)) -> dict[str, Any]:
        """Mark (or clear) the known-best candidate of a prompt, used to score annotators."""
        store.set_gold(body.prompt_id, body.best)
        return {"prompt_id": body.prompt_id, "gold_best": body.best}

    @r.get("/api/admin/quality")
    def quality(_: LabelerAccount = Depends(admin)) -> dict[str, Any]:
        """Agreement, reliability and flags per annotator (see `rlhfkit label quality`)."""
        records = export_records(store, weights=False)
        if not records:
            return {"n_records": 0, "annotators": {}, "flagged": []}
        report = assess(records)
        report.pop("weights")
        return report

    @r.get("/api/admin/quality.html", response_class=HTMLResponse)
    def quality_html(_: LabelerAccount = Depends(admin)) -> HTMLResponse:
        """The quality table as a standalone page (every value escaped)."""
        return HTMLResponse(render_quality_html(quality(_)))

    @r.get("/api/admin/export")
    def export(weights: bool = True, _: LabelerAccount = Depends(admin)) -> Response:
        """All rankings as K-way ranking JSONL (candidate indices), weighted by reliability."""
        body = "".join(json.dumps(rec, ensure_ascii=False) + "\n" for rec in export_records(store, weights))
        return Response(body, media_type="application/x-ndjson",
                        headers={"Content-Disposition": 'attachment; filename="rankings.jsonl"'})

    return r


def render_quality_html(report: dict[str, Any]) -> str:
    """Server-side rendering of the quality table; annotator names are untrusted, so escape all."""
    esc = html.escape
    rows = []
    for name, s in sorted(report.get("annotators", {}).items()):
        cells = [name, s["n_rankings"], s["reliability"], s["loo_agreement"], s["gold_accuracy"],
                 s["position_bias"], s["length_bias"], ", ".join(s["flags"])]
        rows.append("<tr>" + "".join(f"<td>{esc(_fmt(c))}</td>" for c in cells) + "</tr>")
    alpha = report.get("alpha", {})
    head = "".join(f"<th>{h}</th>" for h in ("annotator", "rankings", "reliability", "LOO agreement",
                                              "gold accuracy", "position bias", "length bias", "flags"))
    return ("<!doctype html><html><head><meta charset='utf-8'><title>rlhfkit quality</title></head><body>"
            f"<h1>LabelerAccount quality</h1><p>{esc(_fmt(report.get('n_records', 0)))} rankings; "
            f"Krippendorff's alpha ({esc(_fmt(alpha.get('metric')))}) = {esc(_fmt(alpha.get('value')))}</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></body></html>")


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    return f"{x:.3f}" if isinstance(x, float) else str(x)


def serve(db: str | Path, host: str = "127.0.0.1", port: int = 8000, redundancy: int = 3,
          rate_limit: float = DEFAULT_RATE) -> None:
    import uvicorn

    uvicorn.run(create_app(db, redundancy, rate_limit=rate_limit), host=host, port=port, log_level="info")
