"""`vibe-jobs dashboard` alone: beyond loopback only with authentication, admin tokens only when it is on, and the
store URL printed without its password."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
import pytest

from tests.cli.test_dashboard_cli import fill
from tests.e2e.conftest import ROOT, free_port, stop, wait_for_port
from tests.e2e.test_identity_e2e import ALICE, token_file
from tests.e2e.test_identity_e2e import ROOT as ROOT_TOKEN
from tests.pg import postgres_url, with_new_schema

pytestmark = pytest.mark.timeout(60)


@contextmanager
def dashboard(url: str, env: dict[str, str]) -> Iterator[tuple[str, tempfile._TemporaryFileWrapper[bytes]]]:
    port = free_port()
    cmd = [sys.executable, "-m", "vibe_jobs", "dashboard", "--store", url, "--port", str(port)]
    with tempfile.NamedTemporaryFile() as errlog:
        proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=errlog)
        try:
            wait_for_port(port, proc)
            yield f"http://127.0.0.1:{port}", errlog
        finally:
            stop(proc)


def test_beyond_loopback_without_authentication_it_refuses_to_start(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "vibe_jobs", "dashboard", "--store", "memory://", "--host", "0.0.0.0"]
    done = subprocess.run([*cmd, "--port", str(free_port())], cwd=ROOT, capture_output=True, timeout=30, check=False)
    assert done.returncode != 0 and b"--auth-tokens" in done.stderr, done.stderr


def test_with_tokens_only_an_admin_token_reads_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/jobs.db"
    (job_id,) = fill(url, 1)
    with dashboard(url, {"VIBE_JOBS_AUTH_TOKENS": str(token_file(tmp_path))}) as (base, _):
        refusals = [
            ({}, 401, "Bearer"),
            ({"Authorization": f"Bearer {ALICE}"}, 403, 'Bearer error="insufficient_scope", scope="admin"'),
            # the header as /mcp reads it (the SDK): what follows "Bearer " is the token, spaces too
            ({"Authorization": f"Bearer  {ROOT_TOKEN}"}, 401, "Bearer"),
        ]
        for headers, code, challenge in refusals:
            refused = httpx2.get(f"{base}/jobs/{job_id}", headers=headers, timeout=10)
            assert refused.status_code == code and job_id not in refused.text
            assert refused.headers.get("www-authenticate") == challenge, refused.headers  # RFC 6750: none before
            # the refusal is a page as every other: never framed, never cached (it had none of the page headers)
            assert refused.headers["x-frame-options"] == "DENY" and refused.headers["cache-control"] == "no-store"
        admin = httpx2.get(f"{base}/jobs/{job_id}", headers={"Authorization": f"Bearer {ROOT_TOKEN}"}, timeout=10)
        assert admin.status_code == 200 and job_id in admin.text and "hunter2" not in admin.text


@pytest.mark.postgres
def test_the_store_url_is_printed_without_its_password(tmp_path: Path) -> None:
    password = "pw-" + os.urandom(6).hex()
    base = postgres_url("the dashboard's PostgreSQL URL")
    url = re.sub(r"^(postgres(?:ql)?://)([^@/:]+)(?::[^@/]*)?@", rf"\g<1>\g<2>:{password}@", base)
    url = with_new_schema(url, "vj_dash")
    fill(url, 0)  # the store a server made: the dashboard shows an existing one only
    with dashboard(url, {}) as (_, errlog):
        printed = Path(errlog.name).read_text()
    assert "dashboard of postgresql://" in printed and password not in printed, printed
