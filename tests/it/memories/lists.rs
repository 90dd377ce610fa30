//! List filters and pagination: every filter and pair of filters, page by page.

use super::*;

#[tokio::test]
async fn every_filter_and_pair_of_filters_pages_each_match_exactly_once() {
    let (auth, app) = TestApp::with_auth(&[]).await;
    let agent = app.db.add_agent(org_a()).await;
    let other_agent = app.db.add_agent(org_a()).await;
    let org_b = Uuid::now_v7();
    app.db.add_org(org_b).await;
    let agent_b = app.db.add_agent(org_b).await;
    let mine: Vec<Seed> = (0..90).map(|n| Seed::new(org_a(), agent, n)).collect();
    let mut all = mine.clone();
    all.extend((0..20).map(|n| Seed::new(org_a(), other_agent, n)));
    all.extend((0..20).map(|n| Seed::new(org_b, agent_b, n)));
    seed(&app.db, &all).await;
    // One deleted memory that would match everything.
    soft_delete(&app.db, mine[0].id).await;
    let token = auth.token_for(org_a(), MEMORY_READ);

    let t1 = mine[20].created_at;
    let t2 = mine[70].created_at;
    type Check = Box<dyn Fn(&Seed) -> bool>;
    let filters: Vec<(String, Check)> = vec![
        (
            "category=factual".into(),
            Box::new(|m: &Seed| m.category == "factual"),
        ),
        (
            "status=archived".into(),
            Box::new(|m: &Seed| m.status == "archived"),
        ),
        (
            "source=imported".into(),
            Box::new(|m: &Seed| m.source == "imported"),
        ),
        (
            "tag=vip".into(),
            Box::new(|m: &Seed| m.tags.iter().any(|t| t == "vip")),
        ),
        (
            format!("created_after={}", rfc3339(t1)),
            Box::new(move |m: &Seed| m.created_at >= t1),
        ),
        (
            format!("created_before={}", rfc3339(t2)),
            Box::new(move |m: &Seed| m.created_at < t2),
        ),
    ];
    let mut combinations: Vec<Vec<usize>> = vec![vec![]];
    for i in 0..filters.len() {
        combinations.push(vec![i]);
        for j in i + 1..filters.len() {
            combinations.push(vec![i, j]);
        }
    }
    assert_eq!(combinations.len(), 22);
    let base = format!("/v1/agents/{agent}/memories");
    for combination in combinations {
        let query: Vec<String> = combination
            .iter()
            .map(|&i| filters[i].0.replace('+', "%2B"))
            .collect();
        let has_status = combination
            .iter()
            .any(|&i| filters[i].0.starts_with("status"));
        let mut expected: Vec<&Seed> = mine[1..]
            .iter()
            .filter(|m| has_status || m.status == "active")
            .filter(|m| combination.iter().all(|&i| (filters[i].1)(m)))
            .collect();
        expected.sort_by_key(|m| std::cmp::Reverse((m.created_at, m.id)));
        let expected: Vec<Uuid> = expected.iter().map(|m| m.id).collect();
        let path = if query.is_empty() {
            base.clone()
        } else {
            format!("{base}?{}", query.join("&"))
        };
        let seen = app.page_through(&token, &path, 4).await;
        assert_eq!(seen, expected, "{path}");
    }

    // A memory carries its tags; a cursor is bound to its filters.
    let page = app
        .read(&format!("{base}?tag=vip&limit=2"), &token)
        .await
        .json();
    assert!(
        page["items"][0]["tags"]
            .as_array()
            .unwrap()
            .contains(&json!("vip"))
    );
    assert_eq!(page["items"][0]["metadata"]["note"], "SECRET-METADATA");
    let cursor = page["next_cursor"].as_str().unwrap();
    for other in [
        format!("{base}?cursor={cursor}"),
        format!("{base}?tag=t1&cursor={cursor}"),
        format!("/v1/agents/{other_agent}/memories?tag=vip&cursor={cursor}"),
    ] {
        let reply = app.read(&other, &token).await;
        let body = reply.assert_error(400, "INVALID_CURSOR");
        assert_eq!(
            body["error"]["field_errors"][0]["field"], "cursor",
            "{other}"
        );
    }
    // Bad filters name their parameter.
    for (query, field) in [
        ("category=facts", "category"),
        ("status=deleted", "status"),
        ("source=guess", "source"),
        ("created_after=yesterday", "created_after"),
        ("created_before=2026-13-01T00:00:00Z", "created_before"),
        (
            "created_after=2026-02-01T00:00:00Z&created_before=2026-01-01T00:00:00Z",
            "created_after",
        ),
        (
            "created_after=2026-01-01T00:00:00Z&created_before=2026-01-01T00:00:00Z",
            "created_after",
        ),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
    ] {
        let reply = app.read(&format!("{base}?{query}"), &token).await;
        let body = reply.assert_error(400, "VALIDATION_ERROR");
        assert_eq!(body["error"]["field_errors"][0]["field"], field, "{query}");
    }
}
