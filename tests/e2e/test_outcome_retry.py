"""A job's outcome that the store refuses for a reason that is not transient (here: PostgreSQL's permission
to update the jobs table taken away while the job runs) is written once the store takes it again.

It was given up at the first refusal: the job stayed `running` for as long as its server lived, since that
server kept renewing its lease and nobody recovers a job whose owner is alive.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

import anyio
import asyncpg
import pytest
from mcp import Client

from tests.e2e.conftest import HttpServer, start_http
from tests.e2e.test_crash_recovery import error_text, read, submit, wait_for
from tests.pg import postgres_url, with_new_schema

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(90)]


@asynccontextmanager
async def writer_role(base: str) -> AsyncIterator[tuple[str, str, asyncpg.Connection]]:
    """A login role of its own with a schema of its own: (its store URL, the schema, an admin connection)."""
    role, schema = f"vj_writer_{os.urandom(4).hex()}", f"vj_perm_{os.urandom(4).hex()}"
    admin = await asyncpg.connect(base)
    try:
        database = await admin.fetchval("SELECT current_database()")
        await admin.execute(f'CREATE ROLE {role} LOGIN; GRANT CREATE ON DATABASE "{database}" TO {role}')
        parts = urlsplit(base)
        host = parts.netloc.rpartition("@")[2]
        url = urlunsplit(parts._replace(netloc=f"{role}@{host}", query=f"schema={schema}"))
        yield url, schema, admin
    finally:
        await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await admin.execute(
            f'REVOKE CREATE ON DATABASE "{database}" FROM {role}; DROP OWNED BY {role}; DROP ROLE {role}'
        )
        await admin.close()


async def logged(server: HttpServer, text: str, within: float) -> None:
    """Bounded polling of the server's log (nothing else tells a test that a write was refused)."""
    with anyio.fail_after(within):
        while True:
            server.errlog.seek(0)
            if text.encode() in server.errlog.read():
                return
            await anyio.sleep(0.05)


async def test_an_outcome_the_store_refused_is_written_once_the_store_takes_it_again() -> None:
    async with writer_role(postgres_url("the outcome retry test")) as (url, schema, admin):
        args = ["--store", url, "--tools", "tests.e2e.crash_tools"]
        with start_http("streamable-http", {"VIBE_JOBS_LOG_LEVEL": "info"}, args) as server:
            async with Client(server.url, mode="auto", read_timeout_seconds=60) as client:
                job_id = await submit(client, "slow_unsafe", {"seconds": 3.0, "tag": "refused"})
                await wait_for(client, job_id, ("running",), within=15)
                role = urlsplit(url).username
                await admin.execute(f"REVOKE UPDATE ON {schema}.jobs FROM {role}")
                await logged(server, "job.outcome_retry", within=15)  # the outcome was refused: permission
                await admin.execute(f"GRANT UPDATE ON {schema}.jobs TO {role}")
                done = await wait_for(client, job_id, within=15)
                assert done["status"] == "completed", done
                assert done["result"]["structuredContent"]["tag"] == "refused"
                assert (await read(client, job_id))["status"] == "completed"


def refusing_rule(name: str, when: str, message: str) -> str:
    """SQL (with `{schema}` to fill) for a rule of the database that refuses a jobs update `when` (a condition on
    NEW), not transiently (check_violation), with `message`."""
    return f"""
CREATE FUNCTION {{schema}}.{name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF {when} THEN
        RAISE EXCEPTION '{message}' USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER {name} BEFORE UPDATE ON {{schema}}.jobs FOR EACH ROW EXECUTE FUNCTION {{schema}}.{name}();
"""


REFUSE_POISON = refusing_rule(
    "refuse_poison", "NEW.progress_message LIKE '%poison%'", "refused by a rule of this database"
)


async def test_an_outcome_the_store_can_never_take_ends_the_job_failed_naming_why_and_frees_its_slot() -> None:
    """A value the store refuses for good (here a trigger refuses the failure's message). The job was left
    running; retried for ever, it would hold its slot (one here) and nothing else would run."""
    base = postgres_url("the outcome retry test")
    url = with_new_schema(base, "vj_refuse")
    schema = url.rpartition("schema=")[2]
    env = {"JOB_MANAGER_MAX_CONCURRENT": "1"}
    with start_http("streamable-http", env, ["--store", url, "--tools", "tests.e2e.nul_tools"]) as server:
        admin = await asyncpg.connect(base)
        try:
            await admin.execute(REFUSE_POISON.format(schema=schema))
            async with Client(server.url, mode="auto", read_timeout_seconds=60) as client:
                refused = await submit(client, "poison_fail", {})
                after = await submit(client, "quick", {})
                failed = await wait_for(client, refused, within=20)
                assert failed["status"] == "failed", failed
                text = error_text(failed)
                assert "could not be stored" in text and "refused by a rule of this database" in text, text
                assert (await wait_for(client, after, within=20))["status"] == "completed"
        finally:
            await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            await admin.close()


# A rule that refuses a job's first completion only: its count outlives the refused statement (nextval is not
# rolled back).
REFUSE_FIRST_COMPLETION = "CREATE SEQUENCE {schema}.completions;" + refusing_rule(
    "refuse_first",
    "NEW.status = 'completed' AND nextval('{schema}.completions') = 1",
    "refused once by a rule of this database",
)


async def test_an_outcome_refused_once_lands_when_the_store_takes_it_again_not_a_failure_in_its_place() -> None:
    """The store refuses the job's outcome (not transiently) and takes writes again at once (a permission given
    back, a rule lifted). The outcome is what lands: a plain failure ("could not be stored") is written only
    while the outcome itself is still refused. It was written at the first refusal's next step, so a store that
    came back in between (the permission test's GRANT, under load) ended a completed job failed."""
    base = postgres_url("the outcome retry test")
    url = with_new_schema(base, "vj_once")
    schema = url.rpartition("schema=")[2]
    with start_http(
        "streamable-http", {"VIBE_JOBS_LOG_LEVEL": "info"}, ["--store", url, "--tools", "tests.e2e.crash_tools"]
    ) as server:
        admin = await asyncpg.connect(base)
        try:
            await admin.execute(REFUSE_FIRST_COMPLETION.format(schema=schema))
            async with Client(server.url, mode="auto", read_timeout_seconds=60) as client:
                job_id = await submit(client, "slow_unsafe", {"seconds": 0.05, "tag": "once"})
                done = await wait_for(client, job_id, within=20)
                assert done["status"] == "completed", done
                assert done["result"]["structuredContent"]["tag"] == "once"
                assert await admin.fetchval(f"SELECT last_value FROM {schema}.completions") >= 2  # it was refused
        finally:
            await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            await admin.close()
