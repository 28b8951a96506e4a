"""The dashboard's guard on requests as a browser sends them (starlette Requests built from ASGI scopes)."""

from __future__ import annotations

import pytest
from mcp.server.auth.provider import AccessToken
from starlette.applications import Starlette
from starlette.requests import Request

from vibe_jobs.server.http.guard import CSRF_COOKIE, Bearer, Guard, Refused, same_origin


def request(headers: dict[str, str], host: str = "127.0.0.1:8000") -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in {"host": host, **headers}.items()]
    return Request(
        {"type": "http", "method": "POST", "scheme": "http", "path": "/", "headers": raw, "query_string": b""}
    )


async def verify(token: str | AccessToken) -> Bearer | None:
    """s3cret: an admin's token; user: a valid token without scope admin; anything else: no token."""
    token = token if isinstance(token, str) else token.token
    return Bearer(True) if token == "s3cret" else Bearer(False) if token == "user" else None


def test_same_origin_is_the_host_itself() -> None:
    assert same_origin(request({"origin": "http://127.0.0.1:8000"}))
    assert same_origin(request({"referer": "http://127.0.0.1:8000/jobs/x"}))
    assert not same_origin(request({"origin": "http://127.0.0.1:8001"}))
    assert not same_origin(request({"origin": "https://127.0.0.1:8000"}))
    assert not same_origin(request({"origin": "null"}))
    assert not same_origin(request({}))
    assert not same_origin(request({"origin": "http://127.0.0.1:8000", "sec-fetch-site": "cross-site"}))


async def test_the_csrf_token_is_bound_to_the_cookie_and_the_process() -> None:
    guard = Guard()
    cookie = "a" * 32
    ok = {"origin": "http://127.0.0.1:8000", "cookie": f"{CSRF_COOKIE}={cookie}"}
    await guard.check_change(request(ok), guard.csrf_token(cookie))
    with pytest.raises(Refused) as refused:
        await guard.check_change(request(ok), guard.csrf_token("b" * 32))
    assert refused.value.status == 403 and "CSRF" in str(refused.value)
    with pytest.raises(Refused):
        await guard.check_change(request(ok), Guard().csrf_token(cookie))  # another process's secret


async def test_with_auth_configured_every_request_needs_the_bearer_token() -> None:
    guard = Guard(bearer=verify)
    with pytest.raises(Refused) as refused:
        await guard.check_read(request({}))
    assert refused.value.status == 401
    with pytest.raises(Refused) as refused:
        await guard.check_read(request({"authorization": "Bearer wrong"}))
    assert refused.value.status == 401
    with pytest.raises(Refused) as refused:
        await guard.check_read(request({"authorization": "Bearer user"}))
    assert refused.value.status == 403 and "admin" in str(refused.value)  # valid, but not for every job
    await guard.check_read(request({"authorization": "Bearer s3cret"}))
    await guard.check_read(request({"cookie": "vibe_jobs_token=s3cret"}))
    cookie = "c" * 32
    headers = {"origin": "http://127.0.0.1:8000", "cookie": f"{CSRF_COOKIE}={cookie}"}
    with pytest.raises(Refused) as refused:
        await guard.check_change(request(headers), guard.csrf_token(cookie))
    assert refused.value.status == 401
    await guard.check_change(request({**headers, "authorization": "Bearer s3cret"}), guard.csrf_token(cookie))


async def test_with_auth_configured_pages_and_events_answer_401_without_the_token() -> None:
    import httpx2 as httpx

    from vibe_jobs.manager import JobManager
    from vibe_jobs.server.http.dashboard import Dashboard
    from vibe_jobs.store import MemoryStore

    manager = JobManager(MemoryStore())
    app = Starlette(routes=Dashboard(manager, Guard(bearer=verify)).routes())
    async with manager, httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        job_id = await manager.create_job("t", {})
        for path in ("/", f"/jobs/{job_id}", "/events"):
            answer = await http.get(path)
            assert answer.status_code == 401, path
            assert job_id not in answer.text
        assert (await http.get("/", headers={"authorization": "Bearer s3cret"})).status_code == 200
        assert (await http.get("/healthz")).status_code == 200  # probes and /metrics stay open
        assert (await http.get("/metrics")).status_code == 200
