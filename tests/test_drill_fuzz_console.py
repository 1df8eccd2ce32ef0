"""Bad input drill: fuzzed console forms and filters (issue 14, item 4).

Every POST form (login, logout, approve and reject with a note, run retry) and every
query-string filter or id in a GET path gets random values: huge, unicode, NUL bytes, empty,
missing and duplicated fields, wrong and missing CSRF tokens, other content types, file
parts, bad ids and ids of other kinds. Properties: never a 500 or a traceback; a refusal is
a 4xx with a message (or the page again with its error); a refused form writes nothing
(the approval stays pending, the dead run stays dead, no decision is audited); and a value
carrying markup never comes back unescaped in an HTML page.

``CLOSEGUARD_FUZZ_EXAMPLES`` sets the examples per test (100 in CI; 1000 by hand).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx2 as httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import update
from starlette.testclient import TestClient

from closeguard.console import build_console
from closeguard.guardrails import Approvals, AuditLog
from closeguard.store.runs import RunRows
from closeguard.tools.catalog import classify
from tests._console import TOKEN, MergeOrg

EXAMPLES = int(os.environ.get("CLOSEGUARD_FUZZ_EXAMPLES") or 100)
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))

MARK = "cg_xss()"
"""Called by every markup value: it must never appear inside live markup."""
MARKUP = [
    f"<script>{MARK}</script>",
    f'"><img src=x onerror={MARK}>',
    f"' onmouseover='{MARK}",
    f'" autofocus onfocus="{MARK}',
]
LIVE = [
    re.compile(rf"<script>{re.escape(MARK)}"),
    re.compile(rf"<img src=x onerror={re.escape(MARK)}"),
    re.compile(rf"""=(["'])[^"']*\1 ?(onmouseover|autofocus onfocus)=["']?{re.escape(MARK)}"""),
]
TRACEBACK_MARKS = ("Traceback (most recent call last)", "Internal Server Error", 'File "/')

texts = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [*MARKUP, "", " ", "\x00", "a\x00b", "é" * 3000, "x" * 7000, "../..", "%00", "\\"]
    ),
    st.sampled_from(["appr_", "run_", "lead_", "appr_0000000000000000", "run_nope"]),
)
"""Field values: random text, markup, NUL bytes, huge text, and ids of the wrong kind."""


@dataclass
class World:
    """A console on a store with one pending approval and one dead run."""

    org: MergeOrg
    client: TestClient
    csrf: str
    approval_id: str
    call_hash: str
    dead_run: str

    def state(self) -> tuple[Any, ...]:
        """What a refused form must leave as it was."""
        approvals = [(a.id, a.status, a.note) for a in Approvals(self.org.store).list()]
        runs = [(r.id, r.status, r.attempts) for r in RunRows(self.org.store).list(limit=200)]
        decisions = [r for r in AuditLog(self.org.store).rows() if r["policy"] == "console"]
        return approvals, runs, len(decisions)


def _field(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]+)"', html)
    assert found, f"no {name} field"
    return found[1]


def _login(client: TestClient, name: str = "Fuzz Tester") -> httpx.Response:
    nonce = _field(client.get("/login").text, "csrf")
    return client.post(
        "/login", data={"token": TOKEN, "name": name, "csrf": nonce}, follow_redirects=False
    )


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    org = MergeOrg(tmp_path)
    waiting = asyncio.run(org.waiting())
    dead = asyncio.run(org.waiting())
    table = org.store.tables.runs
    with org.store.engine.begin() as conn:
        conn.execute(update(table).where(table.c.id == dead.id).values(status="dead"))
    with TestClient(build_console(org.config()), raise_server_exceptions=False) as client:
        assert _login(client).status_code == 303
        page = client.get("/approvals").text
        approval = Approvals(org.store).get(waiting.approval_id or "")
        assert approval is not None
        yield World(org, client, _field(page, "csrf"), approval.id, approval.call_hash, dead.id)
    org.store.dispose()


def check(answer: httpx.Response, shown: str) -> None:
    """Never a 500 or a traceback; an HTML page never carries a fuzzed value as markup."""
    assert answer.status_code < 500, (shown, answer.status_code, answer.text[:300])
    body = answer.text
    assert not any(mark in body for mark in TRACEBACK_MARKS), (shown, body[:300])
    if answer.headers.get("content-type", "").startswith("text/html"):
        for live in LIVE:
            assert not live.search(body), (shown, live.pattern)
    if 400 <= answer.status_code < 500:
        assert body.strip(), f"{shown}: a refusal with no message"


@st.composite
def form(draw: st.DrawFn, fields: dict[str, st.SearchStrategy[str]]) -> list[tuple[str, str]]:
    """Fields drawn from ``fields`` (each may be missing or sent twice) plus stray ones."""
    out: list[tuple[str, str]] = []
    for name, values in fields.items():
        for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2]))):
            out.append((name, draw(values)))
    out += draw(st.lists(st.tuples(st.text(max_size=8), texts), max_size=2))
    return out


def send(client: TestClient, path: str, fields: list[tuple[str, str]], how: str) -> httpx.Response:
    """POST ``fields`` as a form, a multipart form with file parts, JSON or plain text
    (redirects not followed)."""
    client.follow_redirects = False
    if how == "urlencoded":
        return client.post(path, data=_pairs(fields))
    if how == "multipart":
        files = [(k, (None, v)) for k, v in fields] or [("x", (None, ""))]
        return client.post(path, files=files)
    if how == "files":  # the tokens as text, every other field as an uploaded file
        parts: list[tuple[str, Any]] = [
            (k, (None, v) if k in ("csrf", "call_hash") else ("f.txt", v.encode()))
            for k, v in fields
        ]
        return client.post(path, files=parts or [("x", ("f.txt", b""))])
    if how == "json":
        return client.post(path, json=dict(fields))
    if how == "broken-multipart":
        headers = {"content-type": "multipart/form-data; boundary=zz"}
        return client.post(path, content=b"--zz\r\nContent-Disposition: form", headers=headers)
    body = "&".join(f"{k}={v}" for k, v in fields).encode("utf-8", "surrogatepass")
    return client.post(path, content=body, headers={"content-type": "text/plain"})


def _pairs(fields: list[tuple[str, str]]) -> Any:
    """httpx takes a dict of lists for repeated fields."""
    out: dict[str, list[str]] = {}
    for k, v in fields:
        out.setdefault(k, []).append(v)
    return out


HOW = st.sampled_from(
    [
        "urlencoded",
        "urlencoded",
        "urlencoded",
        "multipart",
        "files",
        "json",
        "text",
        "broken-multipart",
    ]
)
"""How a form is sent: mostly as browsers do, else as no browser would."""


def test_fuzzed_decisions_and_retries_never_500_and_write_nothing_when_refused(
    world: World,
) -> None:
    w = world
    right = st.sampled_from([w.csrf])
    csrf = right | texts
    call_hash = st.sampled_from([w.call_hash]) | texts
    approval = st.sampled_from([w.approval_id, w.dead_run]) | texts
    run = st.sampled_from([w.dead_run, w.approval_id]) | texts

    @SETTINGS
    @given(
        target=st.sampled_from(["approve", "reject", "other", "retry", "logout"]),
        the_id=approval | run,
        fields=form({"csrf": right | right | csrf, "call_hash": call_hash, "comment": texts}),
        how=HOW,
    )
    def run_one(target: str, the_id: str, fields: list[tuple[str, str]], how: str) -> None:
        given_csrf = [v for k, v in fields if k == "csrf"]
        given_hash = [v for k, v in fields if k == "call_hash"]
        writes = (
            how in ("urlencoded", "multipart", "files")
            and given_csrf[-1:] == [w.csrf]
            and (
                target == "logout"
                or (target == "retry" and the_id == w.dead_run)
                or (
                    target in ("approve", "reject")
                    and the_id == w.approval_id
                    and given_hash[-1:] == [w.call_hash]
                )
            )
        )
        if writes:  # the one right form for a target is the next test's business
            fields = [("csrf", "spoiled") if k == "csrf" else (k, v) for k, v in fields]
        path = {
            "retry": f"/runs/{quote(the_id, safe='')}/retry",
            "logout": "/logout",
        }.get(target, f"/approvals/{quote(the_id, safe='')}/{target}")
        before = w.state()
        answer = send(w.client, path, fields, how)
        shown = f"POST {path[:80]} {how} {[(k, v[:40]) for k, v in fields]}"
        check(answer, shown)
        assert 400 <= answer.status_code < 500, (shown, answer.status_code)
        assert w.state() == before, f"{shown}: a refused form wrote"

    run_one()
    assert w.client.get("/approvals", follow_redirects=False).status_code == 200, "still in"
    approval_now = Approvals(w.org.store).get(w.approval_id)
    assert approval_now is not None and approval_now.status == "pending"
    dead = RunRows(w.org.store).get(w.dead_run)
    assert dead is not None and dead.status == "dead"


def test_fuzzed_filters_and_ids_in_get_pages(world: World) -> None:
    w = world
    pages = st.sampled_from(
        ["/approvals", "/runs", "/audit", "/audit/export.jsonl", "/login", "/api/digest/"]
    )

    @SETTINGS
    @given(
        page=pages,
        query=st.lists(
            st.tuples(
                st.sampled_from(
                    ["actor", "endpoint", "decision", "since", "until", "partial", "next"]
                )
                | st.text(max_size=6),
                texts
                | st.sampled_from(["2026-11-27", "2026-11-27T16:05", "99999-01-01", "1", "0"]),
            ),
            max_size=4,
        ),
        the_id=texts,
    )
    def run_one(page: str, query: list[tuple[str, str]], the_id: str) -> None:
        if page == "/api/digest/":
            page = f"/api/digest/{quote(the_id, safe='')}"
        elif page == "/runs" and the_id:
            page = f"/runs/{quote(the_id, safe='')}"
        # No client sends a query past 64 KiB (httpx refuses to build it): not a case here.
        assume(len(urlencode(query)) < 60_000)
        before = w.state()
        answer = w.client.get(page, params=tuple(query), follow_redirects=False)
        shown = f"GET {page[:80]} {[(k, v[:40]) for k, v in query]}"
        check(answer, shown)
        assert w.state() == before, f"{shown}: a page wrote"

    run_one()


def test_fuzzed_logins_never_500_and_open_no_session_when_refused(world: World) -> None:
    w = world
    app = w.client.app

    @SETTINGS
    @given(
        fields=form({"token": st.sampled_from([TOKEN]) | texts, "name": texts, "next": texts}),
        nonce=st.sampled_from(["right", "wrong", "missing", "no-cookie"]),
        how=HOW,
    )
    def run_one(fields: list[tuple[str, str]], nonce: str, how: str) -> None:
        with TestClient(app, raise_server_exceptions=False) as fresh:
            cookie = _field(fresh.get("/login").text, "csrf")
            if nonce == "no-cookie":
                fresh.cookies.clear()
            if nonce != "missing":
                fields = [*fields, ("csrf", cookie if nonce == "right" else "wrong")]
            answer = send(fresh, "/login", fields, how)
            shown = f"POST /login {how} {nonce} {[(k, v[:40]) for k, v in fields]}"
            check(answer, shown)
            if answer.status_code == 303:
                assert answer.headers["location"].startswith("/")
                assert not answer.headers["location"].startswith("//")
                assert "cg_session" in fresh.cookies
            else:
                assert 400 <= answer.status_code < 500, (shown, answer.status_code)
                assert "cg_session" not in fresh.cookies, shown

    run_one()


def test_a_fuzzed_note_on_a_real_decision_is_kept_as_text_and_shown_escaped(
    world: World,
) -> None:
    """Valid decisions with random notes: 303, the note stored as one line of text (cut at
    2,000 characters), audited under the approver's name, and the page escapes it."""
    w = world
    approvals = Approvals(w.org.store)
    lead = next(iter(w.org.sim.state["leads"]))

    @SETTINGS
    @given(comment=texts, action=st.sampled_from(["approve", "reject"]), how=HOW)
    def run_one(comment: str, action: str, how: str) -> None:
        call = classify("PUT", f"/lead/{lead}/", {"name": f"n{os.urandom(6).hex()}"})
        pending = approvals.request(call, method="PUT", path=f"/lead/{lead}/")
        fields = [("csrf", w.csrf), ("call_hash", pending.call_hash), ("comment", comment)]
        answer = send(w.client, f"/approvals/{pending.id}/{action}", fields, how)
        shown = f"{action} {how} {comment[:60]!r}"
        check(answer, shown)
        decided = approvals.get(pending.id)
        assert decided is not None
        if how not in ("urlencoded", "multipart"):  # a file for a note is refused too
            assert answer.status_code in (400, 403), (shown, answer.status_code)
            assert decided.status == "pending", shown
            return
        assert answer.status_code == 303, (shown, answer.status_code)
        expected = " ".join(comment.split())[:2000] or None
        assert decided.status == ("approved" if action == "approve" else "rejected"), shown
        assert decided.note == expected, shown
        check(w.client.get("/approvals"), shown)
        check(w.client.get("/audit"), shown)

    run_one()


def test_a_retry_that_cannot_happen_is_a_4xx_and_changes_nothing(world: World) -> None:
    """Found by the fuzz: retrying a run that is not dead or failed, a missing run, or an
    approval's id answered 303 (as a retry that worked does), only a flash telling."""
    w = world
    waiting = next(r for r in RunRows(w.org.store).list() if r.status == "waiting_approval")
    before = w.state()
    for run_id, status, says in (
        (waiting.id, 409, "is not dead or failed: not retried"),
        ("run_nope", 404, "run_nope"),
        (w.approval_id, 404, w.approval_id),
    ):
        answer = send(w.client, f"/runs/{run_id}/retry", [("csrf", w.csrf)], "urlencoded")
        assert answer.status_code == status and says in answer.text, run_id
    assert w.state() == before
    done = send(w.client, f"/runs/{w.dead_run}/retry", [("csrf", w.csrf)], "urlencoded")
    assert done.status_code == 303 and done.headers["location"] == f"/runs/{w.dead_run}"


def test_a_file_where_the_console_expects_text_is_refused(world: World) -> None:
    """Found by the fuzz: an uploaded file as the note of a decision was taken, and its
    repr (``<starlette...UploadFile object at 0x...>``) stored as the approver's note; a
    file as the login name named the session so."""
    w = world
    fields = [("csrf", w.csrf), ("call_hash", w.call_hash), ("comment", "looks fine")]
    answer = send(w.client, f"/approvals/{w.approval_id}/approve", fields, "files")
    assert answer.status_code == 400 and "must be text, not files" in answer.text
    approval = Approvals(w.org.store).get(w.approval_id)
    assert approval is not None and approval.status == "pending" and approval.note is None

    with TestClient(w.client.app, raise_server_exceptions=False) as fresh:
        nonce = _field(fresh.get("/login").text, "csrf")
        files: list[tuple[str, Any]] = [
            ("token", (None, TOKEN)),
            ("csrf", (None, nonce)),
            ("name", ("n.txt", b"Eve")),
        ]
        login = fresh.post("/login", files=files, follow_redirects=False)
        assert login.status_code == 400 and "cg_session" not in fresh.cookies
