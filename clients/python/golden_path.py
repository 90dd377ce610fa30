"""The golden path over all eight domains, driven through the client openapi-python-client
generated from the service's own OpenAPI document (clients/generate).

Every answer must parse into the generated model for its status (`raise_on_unexpected_status`
makes an undocumented status an exception), and no model may carry a property the document does
not declare (openapi-python-client keeps those in `additional_properties`): so the document and
the server cannot drift apart without this failing.

Usage: IBEX_BASE_URL=http://127.0.0.1:8010 IBEX_TOKEN=ibex_pat_... python golden_path.py
"""

import base64
import datetime
import enum
import hashlib
import io
import json
import os
import sys
import time
import uuid

import attrs
import httpx
import zipfile
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ibex_client import AuthenticatedClient
from ibex_client.api.agents import create_agent, get_agent, list_agents, update_agent
from ibex_client.api.analytics import usage
from ibex_client.api.data_requests import create_data_request, get_archive, get_data_request, get_receipt, jwks
from ibex_client.api.directives import get_directive, rollback_directive, set_directive
from ibex_client.api.memories import (
    export_memories,
    get_memory_export,
    list_memories,
    search_memories,
)
from ibex_client.api.sessions import list_sessions, replay_session
from ibex_client.api.tokens import create_token, delete_token, get_token
from ibex_client.models import (
    Agent,
    CreateAgent,
    CreatedToken,
    CreateToken,
    CursorPageAgent,
    CursorPageMemory,
    CursorPageSession,
    ArchiveLink,
    CreateDataRequest,
    DataRequest,
    DataRequestStatus,
    DataRequestSubject,
    DataRequestType,
    Directive,
    JwkSet,
    SignedReceipt,
    SubjectKind,
    ErrorResponse,
    ExportFormat,
    ExportJob,
    ExportMemories,
    ExportStatus,
    FreeFormObject,
    Granularity,
    PermissionName,
    Replay,
    RollbackDirective,
    SearchMemories,
    SearchResults,
    SessionStatus,
    SetDirective,
    Token,
    UpdateAgent,
    UsageSeries,
)

BASE = os.environ["IBEX_BASE_URL"]
TOKEN = os.environ["IBEX_TOKEN"]
# The agent `--dev` seeds with memories and sessions.
SEEDED_AGENT = uuid.UUID("0192f0c4-5d7e-7c3a-9f1e-2b3c4d5e7001")


def no_undeclared_properties(value, where="response"):
    """Walks a parsed model: a property the document does not declare is a failure, except
    in the free-form objects (an agent's config, a memory's metadata), which are declared so."""
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            no_undeclared_properties(item, f"{where}[{i}]")
        return
    if not attrs.has(type(value)):
        return
    declared = [f.name for f in attrs.fields(type(value)) if f.name != "additional_properties"]
    extra = getattr(value, "additional_properties", {})
    if declared and extra:
        raise AssertionError(f"{where}: undeclared properties {sorted(extra)}")
    for name in declared:
        no_undeclared_properties(getattr(value, name), f"{where}.{name}")


def ok(response, status, model):
    """The answer has this status and parsed into this generated model, nothing undeclared."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert isinstance(response.parsed, model), type(response.parsed)
    no_undeclared_properties(response.parsed, model.__name__)
    return response.parsed


def typed_error(response, status, code):
    """A failure parses into ErrorResponse with its code and the response's request id."""
    error = ok(response, status, ErrorResponse)
    assert error.error.code == code, (error.error.code, code)
    assert str(error.error.request_id) == response.headers["x-request-id"], error.error.request_id
    return error


def main():
    client = AuthenticatedClient(base_url=BASE, token=TOKEN, raise_on_unexpected_status=True)
    suffix = uuid.uuid4().hex[:8]

    # Agents: create, update, page through the list with next_cursor.
    agent = ok(
        create_agent.sync_detailed(
            client=client,
            body=CreateAgent(
                name="SDK agent",
                slug=f"sdk-{suffix}",
                config=FreeFormObject.from_dict({"model": "gpt-4o-mini", "temperature": 0.2}),
            ),
        ),
        201,
        Agent,
    )
    assert agent.config.additional_properties["model"] == "gpt-4o-mini"
    agent = ok(
        update_agent.sync_detailed(agent.id, client=client, body=UpdateAgent(name="SDK agent v2")),
        200,
        Agent,
    )
    assert agent.name == "SDK agent v2"
    assert ok(get_agent.sync_detailed(agent.id, client=client), 200, Agent).name == "SDK agent v2"
    seen, cursor = [], None
    while True:
        page = ok(
            list_agents.sync_detailed(client=client, limit=2, **({"cursor": cursor} if cursor else {})),
            200,
            CursorPageAgent,
        )
        seen += [a.id for a in page.items]
        cursor = page.next_cursor
        if not cursor:
            break
    assert len(seen) == len(set(seen)) >= 4 and agent.id in seen, seen

    # Directives: set twice, roll back to the first.
    for content, status in [("Be brief.", 201), ("Be thorough.", 200)]:
        ok(set_directive.sync_detailed(agent.id, client=client, body=SetDirective(content=content)), status, Directive)
    rolled = ok(
        rollback_directive.sync_detailed(agent.id, client=client, body=RollbackDirective(version_num=1)),
        200,
        Directive,
    )
    assert rolled.content == "Be brief." and rolled.version_num == 1, rolled
    assert ok(get_directive.sync_detailed(agent.id, client=client), 200, Directive).content == "Be brief."

    # Memories: list, search, export and download the file from its URL.
    memories = ok(list_memories.sync_detailed(SEEDED_AGENT, client=client, limit=5), 200, CursorPageMemory)
    assert memories.items, "the seeded agent has memories"
    found = ok(
        search_memories.sync_detailed(SEEDED_AGENT, client=client, body=SearchMemories(query="refund")),
        200,
        SearchResults,
    )
    assert isinstance(found.items, list)
    job = ok(
        export_memories.sync_detailed(SEEDED_AGENT, client=client, body=ExportMemories(format_=ExportFormat.JSON)),
        202,
        ExportJob,
    )
    deadline = time.monotonic() + 60
    while job.status not in (ExportStatus.SUCCEEDED, ExportStatus.FAILED):
        assert time.monotonic() < deadline, "the export did not finish in 60 s"
        time.sleep(0.3)
        job = ok(get_memory_export.sync_detailed(SEEDED_AGENT, job.job_id, client=client), 200, ExportJob)
    assert job.status == ExportStatus.SUCCEEDED, job.error
    file = httpx.get(job.download_url)
    assert file.status_code == 200 and len(file.content) == job.size_bytes, file.status_code
    assert len(file.content.splitlines()) == job.row_count

    # Sessions: list and fetch a replay.
    sessions = ok(
        list_sessions.sync_detailed(client=client, agent_id=SEEDED_AGENT, status=SessionStatus.COMPLETED, limit=5),
        200,
        CursorPageSession,
    )
    assert sessions.items
    replay = None
    for session in sessions.items:
        answer = replay_session.sync_detailed(session.id, client=client)
        if answer.status_code == 200:
            replay = ok(answer, 200, Replay)
            break
        typed_error(answer, 409, "SESSION_NOT_ARCHIVED")  # archived a moment after completing
    assert replay is not None, "a seeded session has an archive"
    assert httpx.get(replay.url).status_code == 200

    # Analytics: usage over the last 30 days, one bucket a day.
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    series = ok(
        usage.sync_detailed(client=client, start=now - datetime.timedelta(days=30), end=now, granularity=Granularity.DAY),
        200,
        UsageSeries,
    )
    assert len(series.buckets) in (30, 31) and sum(b.requests for b in series.buckets) > 0

    # Tokens: create, revoke; the revoked one stays visible as revoked.
    created = ok(
        create_token.sync_detailed(
            client=client,
            body=CreateToken(name=f"sdk-{suffix}", permissions=[PermissionName.MEMORYREAD]),
        ),
        201,
        CreatedToken,
    )
    assert created.plaintext.startswith("ibex_pat_")
    answer = delete_token.sync_detailed(created.id, client=client)
    assert answer.status_code == 204, answer.status_code
    revoked = ok(get_token.sync_detailed(created.id, client=client), 200, Token)
    assert revoked.is_revoked and revoked.revoked_at is not None

    # Typed errors: a 404 and a 400 (an expiry in the past: no schema can say "in the future").
    typed_error(get_agent.sync_detailed(uuid.uuid4(), client=client), 404, "NOT_FOUND")
    error = typed_error(
        create_token.sync_detailed(
            client=client,
            body=CreateToken(
                name="late",
                permissions=[PermissionName.MEMORYREAD],
                expires_at=now - datetime.timedelta(days=1),
            ),
        ),
        400,
        "VALIDATION_ERROR",
    )
    assert error.error.field_errors[0].field == "expires_at"

    # Data requests: one person's access archive, its manifest verified with the public keys.
    filed = ok(
        create_data_request.sync_detailed(
            client=client,
            body=CreateDataRequest(
                type_=DataRequestType.ACCESS,
                subject=DataRequestSubject(kind=SubjectKind.END_USER, external_ids=["conv-1-1"]),
                reference=f"sdk-{suffix}",
            ),
        ),
        202,
        DataRequest,
    )
    request = filed
    deadline = time.monotonic() + 60
    while request.status != DataRequestStatus.SUCCEEDED:
        assert request.status not in (DataRequestStatus.REJECTED, DataRequestStatus.CANCELED), request.status
        assert time.monotonic() < deadline, "the access request did not finish in 60 s"
        time.sleep(0.3)
        request = ok(get_data_request.sync_detailed(filed.id, client=client), 200, DataRequest)
    link = ok(get_archive.sync_detailed(filed.id, client=client), 200, ArchiveLink)
    archive = httpx.get(link.url)
    assert archive.status_code == 200, archive.status_code
    assert hashlib.sha256(archive.content).hexdigest() == request.archive.sha256
    keys = ok(jwks.sync_detailed(client=client), 200, JwkSet)
    files = zipfile.ZipFile(io.BytesIO(archive.content))
    manifest = json.loads(files.read("manifest.json"))
    assert verified(files.read("manifest.jws").decode(), keys) == manifest
    for entry in manifest["files"]:
        assert hashlib.sha256(files.read(entry["path"])).hexdigest() == entry["sha256"], entry["path"]
    assert any(f["path"] == "postgresql/sessions.ndjson" and f["rows"] == 1 for f in manifest["files"])
    receipt = ok(get_receipt.sync_detailed(filed.id, client=client), 200, SignedReceipt)
    assert verified(receipt.jws, keys)["archive_sha256"] == request.archive.sha256

    print("python golden path: ok")


def verified(jws, keys):
    """The claims of a compact EdDSA JWS, checked with the key of its `kid` in the JWK Set."""
    def decode(part):
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))

    header, payload, signature = jws.split(".")
    head = json.loads(decode(header))
    assert head["alg"] == "EdDSA", head
    key = next(k for k in keys.keys if k.kid == head["kid"])
    Ed25519PublicKey.from_public_bytes(decode(key.x)).verify(decode(signature), f"{header}.{payload}".encode())
    return json.loads(decode(payload))


if __name__ == "__main__":
    try:
        main()
    except AssertionError as failure:
        print(f"python golden path FAILED: {failure!r}", file=sys.stderr)
        raise
