//! Users end to end: invitations, roles, the last owner, tenancy.

use std::collections::HashMap;

use crate::common::*;
use serde_json::{Value, json};
use uuid::Uuid;

struct Setup {
    auth: FakeAuth,
    app: TestApp,
    owner: Uuid,
    owner_token: String,
    admin_token: String,
    reader: String,
}

async fn setup() -> Setup {
    let (auth, app) = TestApp::with_auth(&[]).await;
    let owner = app.db.add_user(org_a(), "owner").await;
    let admin = app.db.add_user(org_a(), "admin").await;
    Setup {
        owner_token: auth.token_for_user(org_a(), Some(owner), USER_MANAGE),
        admin_token: auth.token_for_user(org_a(), Some(admin), USER_MANAGE),
        reader: auth.token_for_user(org_a(), Some(admin), 1),
        owner,
        app,
        auth,
    }
}

async fn invite(s: &Setup, token: &str, body: Value) -> Value {
    let reply = s.app.post("/v1/users", token, body).await;
    reply.assert_located(201, "/v1/users")
}

#[tokio::test]
async fn invite_read_update_delete() {
    let s = setup().await;
    let user = invite(
        &s,
        &s.admin_token,
        json!({"email": "Ada@Example.com", "name": "Ada"}),
    )
    .await;
    assert_eq!(user["status"], "invited");
    assert_eq!(user["role"], "member");
    assert_eq!(user["email"], "Ada@Example.com");
    let path = format!("/v1/users/{}", user["id"].as_str().unwrap());
    assert_eq!(s.app.read(&path, &s.reader).await.json(), user);
    let list = s.app.read("/v1/users?limit=2", &s.reader).await.json();
    assert_eq!(list["items"][0]["id"], user["id"], "newest first");
    assert!(list["next_cursor"].is_string(), "three users, pages of two");

    let body = json!({"email": "ada@example.COM"});
    s.app
        .post("/v1/users", &s.admin_token, body)
        .await
        .assert_error(409, "USER_EMAIL_CONFLICT");

    let body = json!({"name": "Ada L.", "role": "viewer"});
    let patched = s.app.patch(&path, &s.admin_token, body).await;
    assert_eq!(patched.status, 200, "{}", patched.text());
    assert_eq!(patched.json()["role"], "viewer");
    assert_eq!(patched.json()["name"], "Ada L.");

    assert_eq!(s.app.delete(&path, &s.admin_token).await.status, 204);
    s.app
        .read(&path, &s.reader)
        .await
        .assert_error(404, "NOT_FOUND");
    let mut admin = s.app.db.admin().await;
    let status: String = admin
        .value(
            "SELECT status FROM ibex_core.users WHERE id = $1",
            Uuid::parse_str(user["id"].as_str().unwrap()).unwrap(),
        )
        .await;
    assert_eq!(status, "deactivated");
    // The address is free again.
    invite(&s, &s.admin_token, json!({"email": "ada@example.com"})).await;

    // Writes need the bit, whatever the id.
    for (method, path, body) in [
        (
            "POST",
            "/v1/users".to_owned(),
            Some(json!({"email": "x@y.example"})),
        ),
        ("PATCH", path.clone(), Some(json!({"name": "x"}))),
        ("DELETE", format!("/v1/users/{}", Uuid::now_v7()), None),
    ] {
        s.app
            .call(method, &path, &s.reader, body)
            .await
            .assert_error(403, "INSUFFICIENT_PERMISSIONS");
    }
}

#[tokio::test]
async fn bad_input_names_the_field() {
    let s = setup().await;
    let cases = [
        (json!({"email": "no-at-sign"}), "email"),
        (json!({"email": "two@@at.example"}), "email"),
        (json!({"email": "spa ce@x.example"}), "email"),
        (json!({"email": "nul\u{0}@x.example"}), "email"),
        (json!({"email": "a@nodot"}), "email"),
        (json!({"name": "no email"}), "email"),
        (json!({"email": "a@b.example", "role": "emperor"}), "role"),
        (json!({"email": "a@b.example", "role": null}), "role"),
        (
            json!({"email": "a@b.example", "status": "active"}),
            "status",
        ),
        (json!({"email": "a@b.example", "nmae": "typo"}), "nmae"),
        (
            json!({"email": "a@b.example", "name": "x".repeat(256)}),
            "name",
        ),
    ];
    for (body, field) in cases {
        let error = s
            .app
            .post("/v1/users", &s.admin_token, body.clone())
            .await
            .assert_error(400, "VALIDATION_ERROR");
        assert_eq!(error["error"]["field_errors"][0]["field"], field, "{body}");
    }
    let path = format!("/v1/users/{}", s.owner);
    for (body, field) in [
        (json!({"email": "new@x.example"}), "email"),
        (json!({"role": "god"}), "role"),
    ] {
        let error = s
            .app
            .call("PATCH", &path, &s.owner_token, Some(body))
            .await
            .assert_error(400, "VALIDATION_ERROR");
        assert_eq!(error["error"]["field_errors"][0]["field"], field);
    }
}

#[tokio::test]
async fn only_owners_move_the_owner_role_and_the_last_owner_stays() {
    let s = setup().await;
    // An admin cannot make or unmake owners.
    let body = json!({"email": "o@x.example", "role": "owner"});
    s.app
        .post("/v1/users", &s.admin_token, body)
        .await
        .assert_error(403, "ROLE_NOT_GRANTABLE");
    let member = invite(&s, &s.admin_token, json!({"email": "m@x.example"})).await;
    let member_path = format!("/v1/users/{}", member["id"].as_str().unwrap());
    s.app
        .patch(&member_path, &s.admin_token, json!({"role": "owner"}))
        .await
        .assert_error(403, "ROLE_NOT_GRANTABLE");
    // Nor step the owner down or delete them; the only owner cannot either (itself).
    let owner_path = format!("/v1/users/{}", s.owner);
    for (token, refusal) in [
        (&s.admin_token, (403, "ROLE_NOT_GRANTABLE")),
        (&s.owner_token, (409, "LAST_OWNER_PROTECTED")),
    ] {
        let (status, code) = refusal;
        let step_down = json!({"role": "admin"});
        let reply = s.app.patch(&owner_path, token, step_down).await;
        reply.assert_error(status, code);
        let reply = s.app.delete(&owner_path, token).await;
        reply.assert_error(status, code);
    }
    // Renaming the last owner is fine, so is keeping the role.
    let body = json!({"name": "Boss", "role": "owner"});
    let renamed = s.app.patch(&owner_path, &s.owner_token, body).await;
    assert_eq!(renamed.status, 200, "{}", renamed.text());

    // With a second owner, the first may step down.
    let promoted = s
        .app
        .patch(&member_path, &s.owner_token, json!({"role": "owner"}))
        .await;
    assert_eq!(promoted.json()["role"], "owner");
    let stepped_down = s
        .app
        .patch(&owner_path, &s.owner_token, json!({"role": "admin"}))
        .await;
    assert_eq!(stepped_down.status, 200, "{}", stepped_down.text());
}

/// Two requests demoting the last two owners at once: exactly one succeeds.
#[tokio::test]
async fn concurrent_demotions_keep_one_owner() {
    let s = setup().await;
    for round in 0..8 {
        let mut admin = s.app.db.admin().await;
        admin
            .run(
                "UPDATE ibex_core.users SET role = 'member' WHERE org_id = $1",
                org_a(),
            )
            .await;
        let first = s.app.db.add_user(org_a(), "owner").await;
        let second = s.app.db.add_user(org_a(), "owner").await;
        let first_token = s.auth.token_for_user(org_a(), Some(first), USER_MANAGE);
        let second_token = s.auth.token_for_user(org_a(), Some(second), USER_MANAGE);
        let (path_a, path_b) = (format!("/v1/users/{first}"), format!("/v1/users/{second}"));
        let demote = Some(json!({"role": "member"}));
        let (a, b) = if round % 2 == 0 {
            tokio::join!(
                s.app.call("PATCH", &path_a, &second_token, demote.clone()),
                s.app.call("PATCH", &path_b, &first_token, demote.clone()),
            )
        } else {
            tokio::join!(
                s.app.delete(&path_a, &second_token),
                s.app.delete(&path_b, &first_token),
            )
        };
        let mut statuses: HashMap<u16, usize> = HashMap::new();
        for reply in [&a, &b] {
            *statuses.entry(reply.status).or_default() += 1;
        }
        // The loser either hits the last-owner rule or (its caller just lost the role) is no
        // longer an owner.
        assert_eq!(statuses.values().sum::<usize>(), 2);
        assert_eq!(
            statuses
                .iter()
                .filter(|(s, _)| (200..300).contains(*s))
                .map(|(_, n)| n)
                .sum::<usize>(),
            1,
            "round {round}: {} / {}",
            a.text(),
            b.text()
        );
        let owners = "SELECT count(*) FROM ibex_core.users
                      WHERE org_id = $1 AND role = 'owner' AND deleted_at IS NULL";
        let owners: i64 = admin.value(owners, org_a()).await;
        assert_eq!(owners, 1, "round {round}");
    }
}

#[tokio::test]
async fn another_organizations_users_are_not_found() {
    let s = setup().await;
    let org_b = Uuid::now_v7();
    s.app.db.add_org(org_b).await;
    let theirs = s.app.db.add_user(org_b, "member").await;
    let path = format!("/v1/users/{theirs}");
    for (method, body) in [
        ("GET", None),
        ("PATCH", Some(json!({"name": "x"}))),
        ("DELETE", None),
    ] {
        s.app
            .call(method, &path, &s.owner_token, body)
            .await
            .assert_error(404, "NOT_FOUND");
    }
    let list = s.app.read("/v1/users", &s.reader).await.json();
    assert!(
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["org_id"] == ORG_ID)
    );
    let mut admin = s.app.db.admin().await;
    let (name, status): (String, String) =
        sqlx::query_as("SELECT name, status FROM ibex_core.users WHERE id = $1")
            .bind(theirs)
            .fetch_one(&mut admin)
            .await
            .unwrap();
    assert_eq!((name.as_str(), status.as_str()), ("Seeded", "active"));
}
