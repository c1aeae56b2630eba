"""The audit log keeps query strings without the credentials sent in them by mistake."""

from __future__ import annotations

from hub.api.audit import AuditEntry, entries, record
from tests.unit.api.conftest import Api


def test_audit_does_not_keep_a_key_sent_in_a_query(api: Api) -> None:
    """A key pasted into a URL's query (here into a filter) is stored with its secret masked,
    whatever the parameter; the request itself is audited as it was refused."""
    leaked = api.keys["operator"]
    api.client.get(f"/api/v1/devices?district={leaked}", headers=api.auth("viewer"))
    stored = entries(api.ctx.conn, limit=1)[0]
    assert stored.path == "/api/v1/devices"
    assert stored.query.startswith("district=")
    dump = "\n".join(
        " ".join(map(str, row)) for row in api.ctx.conn.execute("SELECT * FROM audit_log")
    )
    assert leaked not in dump
    assert leaked.rsplit("_", 1)[1] not in dump


def test_audit_record_redacts_whatever_calls_it(api: Api) -> None:
    """record() itself redacts, so no caller can store a credential by forgetting to."""
    record(
        api.ctx.conn,
        AuditEntry(
            ts_ms=1,
            key_id=None,
            key_name=None,
            role=None,
            client="127.0.0.1",
            method="GET",
            path="/api/v1/alerts",
            query="password=hunter2&state=firing&X-Auth-Token=t0k",
            status=401,
            rows=None,
        ),
        b"k" * 32,
    )
    assert entries(api.ctx.conn, limit=1)[0].query == "password=***&state=firing&X-Auth-Token=***"
