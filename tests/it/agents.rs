//! Agents end to end over real HTTP, a real tonic auth server and a real PostgreSQL.

use std::collections::{HashMap, HashSet};

use crate::common::*;
use serde_json::{Value, json};
use uuid::Uuid;

struct Setup {
    _auth: FakeAuth,
    app: TestApp,
    /// Org A (the harness' ORG_ID): a writer and a read-only token.
    writer: String,
    reader: String,
    /// Org B: a writer.
    other: String,
    org_b: Uuid,
}

async fn setup() -> Setup {
    let auth = FakeAuth::start().await;
    // Room for the 64 KiB config cases (the harness default is 1 KiB).
    let app = TestApp::start(auth.addr, &[("IBEX_API_MAX_BODY_BYTES", "262144")]).await;
    let org_a: Uuid = ORG_ID.parse().unwrap();
    let org_b = Uuid::now_v7();
    app.db.add_org(org_b).await;
    Setup {
        writer: auth.token_for(org_a, ORG_SETTINGS_WRITE),
        reader: auth.token_for(org_a, MEMORY_READ),
        other: auth.token_for(org_b, ORG_SETTINGS_WRITE | MEMORY_READ),
        org_b,
        app,
        _auth: auth,
    }
}

async fn create(s: &Setup, token: &str, slug: &str) -> Value {
    let body = json!({"name": format!("Agent {slug}"), "slug": slug});
    let reply = s.app.post("/v1/agents", token, body).await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    reply.json()
}

/// A new agent of the writer's; its id.
async fn create_id(s: &Setup, slug: &str) -> String {
    let agent = create(s, &s.writer, slug).await;
    agent["id"].as_str().unwrap().to_owned()
}

/// The row as the database holds it, read as the superuser (no row-level security).
async fn row(s: &Setup, id: &str) -> Value {
    let sql = "SELECT to_jsonb(a) FROM ibex_core.agents a WHERE id = $1::uuid";
    s.app.db.admin().await.value(sql, id).await
}

/// A lifecycle action (`pause`, `activate`, `archive`) on the agent at `path`, as the writer.
async fn act(s: &Setup, path: &str, action: &str) -> Reply {
    let path = format!("{path}/{action}");
    s.app.call("POST", &path, &s.writer, None).await
}

#[tokio::test]
async fn lifecycle_end_to_end() {
    let s = setup().await;
    let reply = s
        .app
        .post("/v1/agents", &s.writer, json!({"name": "Support bot", "slug": "support-bot", "config": {"model": "m", "temperature": 0.2}}))
        .await;
    let agent = reply.assert_located(201, "/v1/agents");
    let id = agent["id"].as_str().unwrap().to_owned();
    assert_eq!(Uuid::parse_str(&id).unwrap().get_version_num(), 7);
    assert_eq!(agent["status"], "active");
    assert_eq!(agent["org_id"], ORG_ID);
    assert_eq!(agent["config"]["temperature"], 0.2);
    assert_eq!(agent["total_sessions"], 0);
    assert_eq!(agent["last_active_at"], Value::Null);
    let created_at = agent["created_at"].as_str().unwrap();
    assert!(
        created_at.ends_with('Z') && created_at.len() == 24,
        "{created_at}"
    );
    let keys: HashSet<&str> = agent
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let expected: HashSet<&str> = [
        "id",
        "org_id",
        "name",
        "slug",
        "status",
        "config",
        "total_sessions",
        "total_memories",
        "last_active_at",
        "created_at",
        "updated_at",
    ]
    .into();
    assert_eq!(keys, expected);

    let path = format!("/v1/agents/{id}");
    let got = s.app.read(&path, &s.reader).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json(), agent);

    let patched = s
        .app
        .patch(&path, &s.writer, json!({"name": "Renamed"}))
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text());
    assert_eq!(patched.json()["name"], "Renamed");
    assert_eq!(
        patched.json()["config"],
        agent["config"],
        "absent fields unchanged"
    );

    for (action, status) in [
        ("pause", "paused"),
        ("pause", "paused"), // no-op
        ("activate", "active"),
        ("archive", "archived"),
        ("archive", "archived"), // no-op
    ] {
        let reply = act(&s, &path, action).await;
        assert_eq!(reply.status, 200, "{action}: {}", reply.text());
        assert_eq!(reply.json()["status"], status);
    }
    for action in ["activate", "pause"] {
        let reply = act(&s, &path, action).await;
        reply.assert_error(409, "AGENT_STATUS_CONFLICT");
    }
    s.app
        .patch(&path, &s.writer, json!({"name": "x"}))
        .await
        .assert_error(409, "AGENT_STATUS_CONFLICT");

    let deleted = s.app.delete(&path, &s.writer).await;
    assert_eq!(deleted.status, 204);
    assert!(deleted.body.is_empty());
    s.app
        .read(&path, &s.reader)
        .await
        .assert_error(404, "NOT_FOUND");
    s.app
        .delete(&path, &s.writer)
        .await
        .assert_error(404, "NOT_FOUND");
    assert!(
        row(&s, &id).await["deleted_at"].is_string(),
        "soft delete keeps the row"
    );

    // The deleted agent freed its slug.
    create(&s, &s.writer, "support-bot").await;
    let body = json!({"name": "Dup", "slug": "support-bot"});
    s.app
        .post("/v1/agents", &s.writer, body)
        .await
        .assert_error(409, "AGENT_SLUG_CONFLICT");
    // Another organization may use the same slug.
    create(&s, &s.other, "support-bot").await;
}

#[tokio::test]
async fn suspended_agents_only_archive_and_agents_with_sessions_cannot_be_deleted() {
    let s = setup().await;
    let id = create_id(&s, "busy").await;
    let mut admin = s.app.db.admin().await;
    admin
        .run(
            "UPDATE ibex_core.agents SET status = 'suspended' WHERE id = $1::uuid",
            &id,
        )
        .await;
    // The sessions table decides, not the counter.
    admin
        .run(
            "INSERT INTO ibex_core.sessions (id, org_id, agent_id)
         SELECT gen_random_uuid(), org_id, id FROM ibex_core.agents WHERE id = $1::uuid",
            &id,
        )
        .await;
    let path = format!("/v1/agents/{id}");
    for action in ["activate", "pause"] {
        let reply = act(&s, &path, action).await;
        reply.assert_error(409, "AGENT_STATUS_CONFLICT");
    }
    s.app
        .delete(&path, &s.writer)
        .await
        .assert_error(409, "AGENT_HAS_SESSIONS");
    let archived = act(&s, &path, "archive").await;
    assert_eq!(archived.json()["status"], "archived");
    assert_eq!(row(&s, &id).await["deleted_at"], Value::Null);
}

#[tokio::test]
async fn writes_need_org_settings_write_whatever_the_id() {
    let s = setup().await;
    let id = create_id(&s, "guarded").await;
    let before = row(&s, &id).await;
    let missing = Uuid::now_v7();
    for target in [id.clone(), missing.to_string()] {
        let path = format!("/v1/agents/{target}");
        let cases: Vec<(&str, String, Option<Value>)> = vec![
            ("PATCH", path.clone(), Some(json!({"name": "nope"}))),
            ("DELETE", path.clone(), None),
            ("POST", format!("{path}/pause"), None),
            ("POST", format!("{path}/activate"), None),
            ("POST", format!("{path}/archive"), None),
        ];
        for (method, path, body) in cases {
            s.app
                .call(method, &path, &s.reader, body)
                .await
                .assert_error(403, "INSUFFICIENT_PERMISSIONS");
        }
    }
    s.app
        .post_agent(&s.reader, "n")
        .await
        .assert_error(403, "INSUFFICIENT_PERMISSIONS");
    // The bit before the body: whatever a caller without it sends is a 403, never a 400 that
    // would tell it the body's rules.
    let bearer = format!("Bearer {}", s.reader);
    let headers = [
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/json"),
    ];
    for body in [&b"{\"name\":"[..], b"{\"name\": 1, \"name\": 2}", b"[]"] {
        request(s.app.addr, "POST", "/v1/agents", &headers, body)
            .await
            .assert_error(403, "INSUFFICIENT_PERMISSIONS");
    }
    assert_eq!(row(&s, &id).await, before);
    // Reads need no bit.
    assert_eq!(s.app.read("/v1/agents", &s.reader).await.status, 200);
}

#[tokio::test]
async fn another_organization_sees_nothing_and_changes_nothing() {
    let s = setup().await;
    let agent = create(&s, &s.writer, "private").await;
    let id = agent["id"].as_str().unwrap();
    let before = row(&s, id).await;
    let path = format!("/v1/agents/{id}");
    let unknown = format!("/v1/agents/{}", Uuid::now_v7());
    let cases: Vec<(&str, &str, Option<Value>)> = vec![
        ("GET", "", None),
        (
            "PATCH",
            "",
            Some(json!({"name": "stolen", "config": {"x": 1}})),
        ),
        ("DELETE", "", None),
        ("POST", "/pause", None),
        ("POST", "/activate", None),
        ("POST", "/archive", None),
    ];
    for (method, suffix, body) in cases {
        let theirs = s
            .app
            .call(method, &format!("{path}{suffix}"), &s.other, body.clone())
            .await;
        let body_of_theirs = theirs.assert_error(404, "NOT_FOUND");
        // Exactly like an id that exists nowhere.
        let nowhere = s
            .app
            .call(method, &format!("{unknown}{suffix}"), &s.other, body)
            .await;
        let body_of_nowhere = nowhere.assert_error(404, "NOT_FOUND");
        assert_eq!(
            body_of_theirs["error"]["message"], body_of_nowhere["error"]["message"],
            "{method} {suffix}"
        );
    }
    assert_eq!(row(&s, id).await, before, "the row is unchanged");
    let theirs = s.app.read("/v1/agents", &s.other).await.json();
    assert_eq!(theirs["items"], json!([]));
    let ours = s.app.read("/v1/agents", &s.reader).await.json();
    assert_eq!(ours["items"][0]["id"], id);
    let _ = s.org_b;
}

/// Row-level security holds on its own, without the queries' `WHERE org_id`.
#[tokio::test]
async fn row_level_security_is_independent_of_the_queries() {
    let s = setup().await;
    create(&s, &s.writer, "a-one").await;
    create(&s, &s.other, "b-one").await;
    let mut conn = s.app.db.admin().await;
    let count = |sql: &'static str| sqlx::query_scalar::<_, i64>(sql);

    sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
    sqlx::query("SET LOCAL ROLE ibex_app")
        .execute(&mut conn)
        .await
        .unwrap();
    for table in [
        "SELECT count(*) FROM ibex_core.agents",
        "SELECT count(*) FROM ibex_core.users",
        "SELECT count(*) FROM ibex_core.organizations",
    ] {
        assert_eq!(
            count(table).fetch_one(&mut conn).await.unwrap(),
            0,
            "no org set: {table}"
        );
    }
    conn.run("SELECT set_config('app.current_org_id', $1, true)", ORG_ID)
        .await;
    assert_eq!(
        count("SELECT count(*) FROM ibex_core.agents")
            .fetch_one(&mut conn)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        count("SELECT count(*) FROM ibex_core.organizations")
            .fetch_one(&mut conn)
            .await
            .unwrap(),
        1
    );
    let updated = sqlx::query("UPDATE ibex_core.agents SET name = 'x' WHERE slug = 'b-one'")
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        updated.rows_affected(),
        0,
        "org B's row is invisible to an update"
    );
    let refused = sqlx::query(
        "INSERT INTO ibex_core.agents (org_id, name, slug) VALUES ($1, 'intruder', 'intruder')",
    )
    .bind(s.org_b)
    .execute(&mut conn)
    .await
    .unwrap_err();
    let code = refused.as_database_error().and_then(|e| e.code()).unwrap();
    assert_eq!(code, "42501", "new row violates row-level security policy");
    sqlx::query("ROLLBACK").execute(&mut conn).await.unwrap();

    // ibex_app cannot hard-delete: only the platform's GDPR path may.
    sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
    sqlx::query("SET LOCAL ROLE ibex_app")
        .execute(&mut conn)
        .await
        .unwrap();
    let denied = sqlx::query("DELETE FROM ibex_core.agents")
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert_eq!(
        denied.as_database_error().and_then(|e| e.code()).unwrap(),
        "42501"
    );
    sqlx::query("ROLLBACK").execute(&mut conn).await.unwrap();
}

#[tokio::test]
async fn twenty_concurrent_creates_with_one_slug_give_one_agent() {
    let s = setup().await;
    let replies = futures_util::future::join_all((0..20).map(|i| {
        s.app.post(
            "/v1/agents",
            &s.writer,
            json!({"name": format!("racer {i}"), "slug": "contested"}),
        )
    }))
    .await;
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    for reply in &replies {
        *statuses.entry(reply.status).or_default() += 1;
        if reply.status == 409 {
            reply.assert_error(409, "AGENT_SLUG_CONFLICT");
        }
    }
    assert_eq!(statuses, HashMap::from([(201, 1), (409, 19)]));
}

#[tokio::test]
async fn concurrent_transitions_never_revive_an_archived_agent() {
    let s = setup().await;
    for round in 0..5 {
        let id = create_id(&s, &format!("race-{round}")).await;
        let actions = [
            "archive", "activate", "pause", "activate", "pause", "archive", "activate",
        ];
        let paths: Vec<String> = actions
            .iter()
            .map(|action| format!("/v1/agents/{id}/{action}"))
            .collect();
        let replies = futures_util::future::join_all(
            paths
                .iter()
                .map(|path| s.app.call("POST", path, &s.writer, None)),
        )
        .await;
        assert!(replies.iter().all(|r| r.status == 200 || r.status == 409));
        let archived_at = replies
            .iter()
            .filter(|r| r.status == 200 && r.json()["status"] == "archived")
            .count();
        assert!(archived_at >= 1, "archive cannot lose to anything");
        assert_eq!(
            row(&s, &id).await["status"],
            "archived",
            "archived is terminal"
        );
    }
}

#[tokio::test]
async fn paging_sees_every_existing_agent_once_while_others_are_created() {
    let s = setup().await;
    let mut admin = s.app.db.admin().await;
    // 250 agents with distinct and with equal creation times (ties broken by id).
    admin
        .run(
            "INSERT INTO ibex_core.agents (id, org_id, name, slug, created_at)
         SELECT gen_random_uuid(), $1, 'bulk ' || n, 'bulk-' || n,
                timestamptz '2026-01-01' + (n / 3) * interval '1 second'
         FROM generate_series(1, 250) AS n",
            Uuid::parse_str(ORG_ID).unwrap(),
        )
        .await;
    let existing: HashSet<String> =
        sqlx::query_scalar::<_, Uuid>("SELECT id FROM ibex_core.agents")
            .fetch_all(&mut admin)
            .await
            .unwrap()
            .into_iter()
            .map(|id| id.to_string())
            .collect();
    assert_eq!(existing.len(), 250);

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        // Someone creates an agent between every two pages.
        create(&s, &s.writer, &format!("during-{pages}")).await;
        let path = match &cursor {
            None => "/v1/agents?limit=7".to_owned(),
            Some(c) => format!("/v1/agents?limit=7&cursor={c}"),
        };
        let page = s.app.read(&path, &s.reader).await;
        assert_eq!(page.status, 200, "{}", page.text());
        let page = page.json();
        assert_eq!(page["total"], Value::Null);
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 7);
        seen.extend(items.iter().map(|a| a["id"].as_str().unwrap().to_owned()));
        pages += 1;
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no agent twice");
    for id in &existing {
        assert!(unique.contains(id), "{id} was skipped");
    }
    assert!(pages >= 36, "{pages}");
}

#[tokio::test]
async fn list_filters_and_cursors_belong_to_their_list() {
    let s = setup().await;
    for slug in ["f-1", "f-2", "f-3"] {
        create(&s, &s.writer, slug).await;
    }
    let paused = create(&s, &s.writer, "f-4").await;
    s.app
        .call(
            "POST",
            &format!("/v1/agents/{}/pause", paused["id"].as_str().unwrap()),
            &s.writer,
            None,
        )
        .await;
    let only_paused = s
        .app
        .read("/v1/agents?status=paused", &s.reader)
        .await
        .json();
    assert_eq!(only_paused["items"].as_array().unwrap().len(), 1);
    assert_eq!(only_paused["items"][0]["slug"], "f-4");
    let body = s
        .app
        .read("/v1/agents?status=sleeping", &s.reader)
        .await
        .assert_error(400, "VALIDATION_ERROR");
    assert_eq!(body["error"]["field_errors"][0]["field"], "status");

    let first = s.app.read("/v1/agents?limit=1", &s.reader).await.json();
    assert_eq!(first["items"][0]["slug"], "f-4", "newest first");
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = s
        .app
        .read(&format!("/v1/agents?limit=1&cursor={cursor}"), &s.reader)
        .await
        .json();
    assert_eq!(second["items"][0]["slug"], "f-3");
    // The cursor of the unfiltered list is not valid with a filter, nor truncated, nor altered.
    let mut altered = cursor.to_owned();
    altered.replace_range(20..21, if &cursor[20..21] == "A" { "B" } else { "A" });
    for bad in [
        format!("/v1/agents?status=active&cursor={cursor}"),
        format!("/v1/agents?cursor={}", &cursor[..30]),
        format!("/v1/agents?cursor={altered}"),
        "/v1/agents?cursor=%00%FF".to_owned(),
    ] {
        let body = s.app.read(&bad, &s.reader).await;
        let body = if body.status == 200 {
            // An altered position byte can still decode; it must then be a valid page.
            continue;
        } else {
            body.assert_error(400, "INVALID_CURSOR")
        };
        assert_eq!(body["error"]["field_errors"][0]["field"], "cursor", "{bad}");
    }
    for limit in ["0", "101", "-1", "abc", "1.5"] {
        let body = s
            .app
            .read(&format!("/v1/agents?limit={limit}"), &s.reader)
            .await
            .assert_error(400, "VALIDATION_ERROR");
        assert_eq!(body["error"]["field_errors"][0]["field"], "limit");
    }
    let full = s.app.read("/v1/agents", &s.reader).await.json();
    assert_eq!(full["items"].as_array().unwrap().len(), 4);
    assert_eq!(full["next_cursor"], Value::Null);
}

#[tokio::test]
async fn bad_input_is_a_400_naming_the_field_never_a_500() {
    let s = setup().await;
    let id = create_id(&s, "target").await;
    let big_config = json!({"blob": "x".repeat(64 * 1024)});
    let cases: Vec<(&str, Value, &str)> = vec![
        ("POST", json!({"name": "a\u{0}b", "slug": "ok"}), "name"),
        (
            "POST",
            json!({"name": "ok", "slug": "ok", "config": {"k\u{0}": 1}}),
            "config",
        ),
        (
            "POST",
            json!({"name": "ok", "slug": "ok", "config": {"deep": ["\u{0}"]}}),
            "config",
        ),
        (
            "POST",
            json!({"name": "ok", "slug": "ok", "config": [1, 2]}),
            "config",
        ),
        // PostgreSQL would store it, but print it as a 309-digit integer no JSON parser reads.
        (
            "PATCH",
            json!({"config": {"R": -1.7976931348623157e308}}),
            "config",
        ),
        (
            "POST",
            json!({"name": "ok", "slug": "ok", "config": "{}"}),
            "config",
        ),
        (
            "POST",
            json!({"name": "ok", "slug": "ok", "config": null}),
            "config",
        ),
        (
            "POST",
            json!({"name": "ok", "slug": "ok", "config": big_config}),
            "config",
        ),
        (
            "POST",
            json!({"name": "x".repeat(10_000), "slug": "ok"}),
            "name",
        ),
        ("POST", json!({"name": "", "slug": "ok"}), "name"),
        ("POST", json!({"name": 42, "slug": "ok"}), "name"),
        ("POST", json!({"slug": "ok"}), "name"),
        ("POST", json!({"name": "ok"}), "slug"),
        ("POST", json!({"name": "ok", "slug": "Upper"}), "slug"),
        ("POST", json!({"name": "ok", "slug": "ünïcode"}), "slug"),
        ("POST", json!({"name": "ok", "slug": "with space"}), "slug"),
        (
            "POST",
            json!({"name": "ok", "slug": "x".repeat(101)}),
            "slug",
        ),
        (
            "POST",
            json!({"name": "ok", "slug": "ok", "colour": "red"}),
            "colour",
        ),
        (
            "POST",
            json!({"name": "ok", "slug": "ok", "status": "paused"}),
            "status",
        ),
        ("PATCH", json!({"slug": "renamed"}), "slug"),
        ("PATCH", json!({"name": null}), "name"),
        ("PATCH", json!({"config": null}), "config"),
        ("PATCH", json!({"nmae": "typo"}), "nmae"),
        ("PATCH", json!({"status": "archived"}), "status"),
    ];
    for (method, body, field) in cases {
        let path = if method == "POST" {
            "/v1/agents".to_owned()
        } else {
            format!("/v1/agents/{id}")
        };
        let reply = s
            .app
            .call(method, &path, &s.writer, Some(body.clone()))
            .await;
        let error = reply.assert_error(400, "VALIDATION_ERROR");
        let fields: Vec<&str> = error["error"]["field_errors"]
            .as_array()
            .unwrap_or_else(|| panic!("{body}: {error}"))
            .iter()
            .map(|f| f["field"].as_str().unwrap())
            .collect();
        assert!(fields.contains(&field), "{method} {body}: {error}");
    }
    // The largest accepted numbers are stored and read back.
    let edge = json!({"config": {"big": 1e300, "small": -1e300, "tiny": 5e-324}});
    let patched = s
        .app
        .call("PATCH", &format!("/v1/agents/{id}"), &s.writer, Some(edge))
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text());
    let read = s.app.read(&format!("/v1/agents/{id}"), &s.writer).await;
    assert_eq!(read.json()["config"]["big"], 1e300);
    // Whole-body problems.
    for raw in [
        &b"[1]"[..],
        b"\"text\"",
        b"null",
        b"{\"name\": \"a\"",
        b"{\"name\": \"\\ud800\"}",
    ] {
        let (n, v) = ("Authorization", format!("Bearer {}", s.writer));
        let reply = request(
            s.app.addr,
            "POST",
            "/v1/agents",
            &[(n, v.as_str()), ("Content-Type", "application/json")],
            raw,
        )
        .await;
        reply.assert_error(400, "VALIDATION_ERROR");
    }
    // Exactly at the limits is fine: 255 characters (multi-byte), 100-character slug, 64 KiB config.
    let padding = 64 * 1024 - r#"{"blob":""}"#.len();
    let reply = s
        .app
        .post("/v1/agents", &s.writer, json!({"name": "é".repeat(255), "slug": "s".repeat(100), "config": {"blob": "y".repeat(padding)}}))
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let unchanged = row(&s, &id).await;
    assert_eq!(unchanged["name"], "Agent target");
}
