//! Conditional requests from outside: every changeable resource (agent, organization, user,
//! directive) answers with a strong `ETag` that changes with every change; `If-Match` on a
//! write applies it only when it matches (else 412 and nothing changed), checked in the write
//! itself so that two writers with the same tag cannot both win; `If-None-Match` on a read
//! answers 304.

use std::sync::Arc;

use crate::common::*;
use serde_json::json;
use uuid::Uuid;

const DIRECTIVE_ALL: u64 = (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11);

fn etag(reply: &Reply) -> String {
    reply.header("etag").expect("an ETag").to_owned()
}

#[tokio::test]
async fn an_agent_edited_with_a_stale_tag_is_refused_and_left_alone() {
    let (auth, app) = TestApp::with_auth(&[]).await;
    let token = auth.token_for(ORG_ID.parse().unwrap(), ORG_SETTINGS_WRITE);
    let created = app.post_agent(&token, "a").await;
    assert_eq!(created.status, 201);
    let id = created.json()["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/agents/{id}");

    let read = app.read(&path, &token).await;
    let first = etag(&read);
    assert!(
        first.starts_with('"') && first.ends_with('"'),
        "strong: {first}"
    );

    // Unchanged: 304, the tag again, no body, the request id.
    let cached = app.if_none_match(&path, &token, &first).await;
    assert_eq!(cached.status, 304);
    assert_eq!(etag(&cached), first);
    assert!(cached.body.is_empty());
    assert!(cached.header("x-request-id").is_some());
    // A weak form of the same tag still means "unchanged" for a read.
    let weak = format!("W/{first}");
    let cached = app.if_none_match(&path, &token, &weak).await;
    assert_eq!(cached.status, 304);

    // A change with the current tag applies and moves the tag.
    let renamed = app
        .if_match("PATCH", &path, &token, &first, Some(json!({"name": "b"})))
        .await;
    assert_eq!(renamed.status, 200);
    let second = etag(&renamed);
    assert_ne!(second, first);
    assert_eq!(etag(&app.read(&path, &token).await), second);
    // The old copy is stale for reads now.
    let stale_read = app.if_none_match(&path, &token, &first).await;
    assert_eq!(stale_read.status, 200);

    // A change with the old tag: 412 in the envelope, nothing changed.
    let refused = app
        .if_match("PATCH", &path, &token, &first, Some(json!({"name": "c"})))
        .await;
    let body = refused.assert_error(412, "PRECONDITION_FAILED");
    assert_eq!(body["error"]["request_id"], refused.request_id());
    let now = app.read(&path, &token).await;
    assert_eq!(now.json()["name"], "b");
    assert_eq!(etag(&now), second);

    // Strong comparison for writes: a weak tag, a foreign one, garbage: all 412.
    for tag in [
        format!("W/{second}"),
        "\"nope\"".to_owned(),
        "garbage".to_owned(),
    ] {
        let refused = app
            .if_match("PATCH", &path, &token, &tag, Some(json!({"name": "d"})))
            .await;
        refused.assert_error(412, "PRECONDITION_FAILED");
    }
    // `*` only asks that it exist; a list matches if any member does.
    let any = app
        .if_match("PATCH", &path, &token, "*", Some(json!({"name": "e"})))
        .await;
    assert_eq!(any.status, 200);
    let third = etag(&any);
    let list = format!("{first}, {third}");
    let listed = app
        .if_match("PATCH", &path, &token, &list, Some(json!({"name": "f"})))
        .await;
    assert_eq!(listed.status, 200);
    let fourth = etag(&listed);

    // DELETE: a stale tag leaves the agent, the current one deletes it.
    let refused = app.if_match("DELETE", &path, &token, &third, None).await;
    refused.assert_error(412, "PRECONDITION_FAILED");
    assert_eq!(app.read(&path, &token).await.status, 200);
    let deleted = app.if_match("DELETE", &path, &token, &fourth, None).await;
    assert_eq!(deleted.status, 204);
    // Gone: 404, whatever the tag says.
    let gone = app
        .if_match("PATCH", &path, &token, &fourth, Some(json!({"name": "g"})))
        .await;
    gone.assert_error(404, "NOT_FOUND");
}

/// Two operators save the same agent at the same moment, both from the same version: exactly
/// one wins, the other gets 412, every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_with_the_same_tag_never_both_win() {
    let auth = FakeAuth::start().await;
    let app =
        Arc::new(TestApp::start(auth.addr, &[("IBEX_API_DATABASE_MAX_CONNECTIONS", "8")]).await);
    let token = auth.token_for(ORG_ID.parse().unwrap(), ORG_SETTINGS_WRITE);
    let created = app.post_agent(&token, "race").await;
    let path = format!("/v1/agents/{}", created.json()["id"].as_str().unwrap());
    for round in 0..30 {
        let tag = etag(&app.read(&path, &token).await);
        let write = |name: String| {
            let (app, token, path, tag) =
                (Arc::clone(&app), token.clone(), path.clone(), tag.clone());
            tokio::spawn(async move {
                app.if_match("PATCH", &path, &token, &tag, Some(json!({"name": name})))
                    .await
            })
        };
        let (a, b) = (write(format!("a{round}")), write(format!("b{round}")));
        let (a, b) = (a.await.unwrap(), b.await.unwrap());
        let mut statuses = [a.status, b.status];
        statuses.sort();
        assert_eq!(statuses, [200, 412], "round {round}");
        let winner = if a.status == 200 { &a } else { &b };
        let now = app.read(&path, &token).await;
        assert_eq!(now.json()["name"], winner.json()["name"], "round {round}");
        assert_eq!(etag(&now), etag(winner));
    }
}

#[tokio::test]
async fn users_the_organization_and_directives_carry_tags_too() {
    let (auth, app) = TestApp::with_auth(&[]).await;
    let org: Uuid = ORG_ID.parse().unwrap();
    // An owner's token: inviting grants a role, which needs a user in the role order.
    let owner = app.db.add_user(org, "owner").await;
    let token = auth.token_for_user(
        org,
        Some(owner),
        ORG_SETTINGS_WRITE | USER_MANAGE | DIRECTIVE_ALL,
    );

    // The organization and a user: the same rules, one table.
    let invited = app
        .post(
            "/v1/users",
            &token,
            json!({"email": "u@x.example", "role": "member"}),
        )
        .await;
    assert_eq!(invited.status, 201);
    let user_path = format!("/v1/users/{}", invited.json()["id"].as_str().unwrap());
    let org_path = format!("/v1/organizations/{ORG_ID}");
    for (path, stale_delete) in [(&org_path, false), (&user_path, true)] {
        let tag = etag(&app.read(path, &token).await);
        assert_eq!(
            app.if_none_match(path, &token, &tag).await.status,
            304,
            "{path}"
        );
        let changed = app
            .if_match("PATCH", path, &token, &tag, Some(json!({"name": "N"})))
            .await;
        assert_eq!(changed.status, 200, "{path}");
        assert_ne!(etag(&changed), tag, "{path}: the tag moves");
        let stale = Some(json!({"name": "M"}));
        app.if_match("PATCH", path, &token, &tag, stale)
            .await
            .assert_error(412, "PRECONDITION_FAILED");
        if stale_delete {
            app.if_match("DELETE", path, &token, &tag, None)
                .await
                .assert_error(412, "PRECONDITION_FAILED");
        }
        let now = app.read(path, &token).await.json();
        assert_eq!(now["name"], "N", "{path}: a stale write changed nothing");
    }

    // A directive: set, roll back and deactivate honour If-Match; its tag moves with each.
    let agent = app.create_agent(&token, "a").await;
    let directive = format!("/v1/agents/{agent}/directive");
    // No directive yet: there is no version the caller could have seen.
    app.if_match(
        "POST",
        &directive,
        &token,
        "\"1\"",
        Some(json!({"content": "one"})),
    )
    .await
    .assert_error(412, "PRECONDITION_FAILED");
    assert_eq!(app.read(&directive, &token).await.status, 404);
    let first = app
        .post(&directive, &token, json!({"content": "one"}))
        .await;
    assert_eq!(first.status, 201);
    let v1 = etag(&first);
    assert_eq!(etag(&app.read(&directive, &token).await), v1);
    let second = app
        .if_match(
            "POST",
            &directive,
            &token,
            &v1,
            Some(json!({"content": "two"})),
        )
        .await;
    assert_eq!(second.status, 200);
    let v2 = etag(&second);
    assert_ne!(v1, v2);
    app.if_match(
        "POST",
        &directive,
        &token,
        &v1,
        Some(json!({"content": "three"})),
    )
    .await
    .assert_error(412, "PRECONDITION_FAILED");
    let rollback = format!("{directive}/rollback");
    app.if_match(
        "POST",
        &rollback,
        &token,
        &v1,
        Some(json!({"version_num": 1})),
    )
    .await
    .assert_error(412, "PRECONDITION_FAILED");
    app.if_match("DELETE", &directive, &token, &v1, None)
        .await
        .assert_error(412, "PRECONDITION_FAILED");
    let now = app.read(&directive, &token).await.json();
    assert_eq!(
        (now["version_num"].as_i64(), now["content"].as_str()),
        (Some(2), Some("two"))
    );
    let rolled = app
        .if_match(
            "POST",
            &rollback,
            &token,
            &v2,
            Some(json!({"version_num": 1})),
        )
        .await;
    assert_eq!(rolled.status, 200);
    assert_eq!(rolled.json()["version_num"], 1);
    let cached = app.if_none_match(&directive, &token, &etag(&rolled)).await;
    assert_eq!(cached.status, 304);
}
