//! The data map holds against what exists, and the public signing keys verify what the
//! service signs.
//!
//! The data map: every table of the database catalog and every bucket
//! of the object store is in it, nothing else is, and every table that carries an organization's
//! rows is covered by the organization's erasure.

use std::collections::BTreeSet;

use serde_json::Value;
use sqlx::Row;

use crate::common::*;

fn names(map: &Value, store: &str) -> BTreeSet<String> {
    map["stores"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["store"] == store)
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_data_map_is_the_catalog_and_the_buckets() {
    let (auth, s3, app) = TestApp::with_s3(&[]).await;
    let token = auth.token_for(ORG_ID.parse().unwrap(), 0);

    app.get("/v1/data-map", &[])
        .await
        .assert_error(401, "MISSING_TOKEN");
    let reply = app.read("/v1/data-map", &token).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let map = reply.json();

    let mut admin = app.db.admin().await;
    let rows = sqlx::query(
        "SELECT c.table_schema || '.' || c.table_name AS name,
                bool_or(col.column_name = 'org_id') AS org_scoped
         FROM information_schema.tables c
         JOIN information_schema.columns col
           ON col.table_schema = c.table_schema AND col.table_name = c.table_name
         WHERE c.table_schema = 'ibex_core' AND c.table_type = 'BASE TABLE'
         GROUP BY 1",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    let catalog: BTreeSet<String> = rows.iter().map(|r| r.get("name")).collect();
    assert!(catalog.len() >= 16, "{catalog:?}");
    assert_eq!(
        names(&map, "postgresql"),
        catalog,
        "every table is in the data map, and only tables that exist"
    );

    let buckets: BTreeSet<String> = std::fs::read_dir(s3.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names(&map, "object_store"), buckets);

    // What carries an organization's rows goes with the organization (its deletion record and
    // its data requests' receipts, which name no person, stay as their proof).
    for row in &rows {
        let (name, org_scoped): (String, bool) = (row.get("name"), row.get("org_scoped"));
        let entry = map["stores"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name.as_str())
            .unwrap();
        if org_scoped
            && !["ibex_core.org_deletions", "ibex_core.data_request_receipts"]
                .contains(&name.as_str())
        {
            assert!(
                entry["erasure"]
                    .as_array()
                    .unwrap()
                    .contains(&"organization".into()),
                "{name} is erased with the organization"
            );
        }
        assert!(!entry["subjects"].as_array().unwrap().is_empty(), "{name}");
        assert!(!entry["retention"].as_str().unwrap().is_empty(), "{name}");
    }

    // Whoever's personal data a table or the trace store holds can have it: an access request of
    // each subject kind that reaches it covers it. The exceptions: the idempotency records
    // (replays of answers, kept a day, whose content the other tables hold), and the data
    // requests about an end user (the controller's own record of them, read through
    // `GET /v1/data-requests`).
    for entry in map["stores"].as_array().unwrap() {
        let name = entry["name"].as_str().unwrap();
        if entry["personal_data"].as_array().unwrap().is_empty()
            || entry["store"] == "redis"
            || entry["store"] == "object_store"
            || name == "ibex_core.idempotency_keys"
        {
            continue;
        }
        for subject in entry["subjects"].as_array().unwrap() {
            if name == "ibex_core.data_requests" && subject == "end_user" {
                continue;
            }
            assert!(
                entry["access"].as_array().unwrap().contains(subject),
                "{name}: a {subject} access request does not cover it"
            );
        }
    }
    // The buckets: the archives reach the end user, every object the organization.
    let archives = map["stores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["store"] == "object_store" && s["holds"].as_str().unwrap().contains("archives"))
        .unwrap();
    assert_eq!(
        archives["access"],
        serde_json::json!(["organization", "end_user"])
    );
    assert_eq!(
        archives["erasure"],
        serde_json::json!(["organization", "end_user"])
    );
}

#[tokio::test]
async fn the_public_keys_verify_what_the_service_signs_across_a_rotation() {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};
    use ibex_api::signing::SigningKeys;

    let (new, old) = ([3u8; 32], [5u8; 32]);
    let keys = format!("{},{}", B64URL.encode(new), B64URL.encode(old));
    let (_auth, app) = TestApp::with_auth(&[("IBEX_API_SIGNING_KEYS", &keys)]).await;

    // No token needed; the new key first, the old one still listed.
    let reply = app.get("/.well-known/jwks.json", &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let set = reply.json();
    let published = set["keys"].as_array().unwrap();
    assert_eq!(published.len(), 2);
    for key in published {
        assert_eq!(
            (&key["kty"], &key["crv"], &key["alg"]),
            (&"OKP".into(), &"Ed25519".into(), &"EdDSA".into())
        );
    }

    // A document signed before the rotation (old key) and one after (new key) both verify with
    // the published keys alone, found by their kid.
    for (signer, which) in [
        (SigningKeys::new(&[old]), 1),
        (SigningKeys::new(&[new, old]), 0),
    ] {
        let jws = signer.sign(&serde_json::json!({"remaining": 0}));
        let header: Value =
            serde_json::from_slice(&B64URL.decode(jws.split('.').next().unwrap()).unwrap())
                .unwrap();
        let key = published
            .iter()
            .find(|k| k["kid"] == header["kid"])
            .expect("its kid is published");
        assert_eq!(key, &published[which]);
        let x: [u8; 32] = B64URL
            .decode(key["x"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let (input, signature) = jws.rsplit_once('.').unwrap();
        let signature = Signature::from_slice(&B64URL.decode(signature).unwrap()).unwrap();
        VerifyingKey::from_bytes(&x)
            .unwrap()
            .verify(input.as_bytes(), &signature)
            .expect("verifies with the published key");
    }
}
