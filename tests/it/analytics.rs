//! Analytics against a real ClickHouse (Debian's clickhouse-server, started by the harness): sums
//! against an independent computation over the inserted rows, percentiles within a stated
//! tolerance, UTC bucket edges, tenancy, bad and hostile parameters, the Redis cache, and
//! ClickHouse outages.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::common::*;
use chrono::{DateTime, TimeZone, Utc};
use ibex_api::devenv::clickhouse::TempClickHouse;
use serde_json::{Value, json};
use uuid::Uuid;

#[derive(Debug, Clone)]
struct Trace {
    org_id: Uuid,
    agent_id: Uuid,
    model: &'static str,
    provider: &'static str,
    input_tokens: u32,
    output_tokens: u32,
    proxy_overhead_ms: f32,
    ttfb_ms: f32,
    error_code: String,
    requested_at: DateTime<Utc>,
}

/// `/v1/analytics/{op}` over `[start, end)`, then `more` (`&name=value…`).
fn over(op: &str, start: DateTime<Utc>, end: DateTime<Utc>, more: &str) -> String {
    format!(
        "/v1/analytics/{op}?start={}&end={}{more}",
        iso(start),
        iso(end)
    )
}

/// The errors an error series counts over all its buckets.
fn errors_in(series: &Value) -> u64 {
    let buckets = series["buckets"].as_array().unwrap();
    buckets.iter().map(|b| b["errors"].as_u64().unwrap()).sum()
}

/// A new organization with one agent, and `n` requests of its spread over the day from `from`.
async fn tenant_with_traffic(
    app: &TestApp,
    url: &str,
    from: DateTime<Utc>,
    n: usize,
    seed: u64,
) -> (Uuid, Uuid) {
    let tenant = Uuid::now_v7();
    app.db.add_org(tenant).await;
    let agent = app.db.add_agent(tenant).await;
    insert(url, &traffic(tenant, &[agent], from, 86_400, n, seed)).await;
    (tenant, agent)
}

/// Inserts rows as the proxy would (JSONEachRow over HTTP).
async fn insert(url: &str, traces: &[Trace]) {
    let mut body = String::new();
    for t in traces {
        body.push_str(
            &serde_json::json!({
                "request_id": Uuid::new_v4().to_string(),
                "org_id": t.org_id.to_string(),
                "agent_id": t.agent_id.to_string(),
                "session_id": "",
                "model": t.model,
                "provider": t.provider,
                "input_tokens": t.input_tokens,
                "output_tokens": t.output_tokens,
                "total_tokens": t.input_tokens + t.output_tokens,
                "proxy_overhead_ms": t.proxy_overhead_ms,
                "ttfb_ms": t.ttfb_ms,
                "total_latency_ms": t.ttfb_ms + 100.0,
                "status_code": if t.error_code.is_empty() { 200 } else { 502 },
                "error_code": t.error_code,
                "requested_at": t.requested_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            })
            .to_string(),
        );
        body.push('\n');
    }
    let client = clickhouse::Client::default().with_url(url);
    let mut insert = client.insert_formatted_with("INSERT INTO ibex.llm_traces FORMAT JSONEachRow");
    insert.send(body.into_bytes().into()).await.unwrap();
    insert.end().await.unwrap();
}

/// A deterministic pseudo-random sequence (no dependency, same rows every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

/// `count` rows for `org` spread over `[from, from + span)`, with the given agents.
fn traffic(
    org: Uuid,
    agents: &[Uuid],
    from: DateTime<Utc>,
    span_secs: i64,
    count: usize,
    seed: u64,
) -> Vec<Trace> {
    const MODELS: [(&str, &str); 3] = [
        ("gpt-4o-mini", "openai"),
        ("claude-3-5-sonnet", "anthropic"),
        ("llama-3.1-70b", "groq"),
    ];
    const ERRORS: [&str; 4] = [
        "",
        "RATE_LIMITED",
        "UPSTREAM_TIMEOUT",
        "it's a \"quoted\" \\ code",
    ];
    let mut rng = Lcg(seed);
    (0..count)
        .map(|_| {
            let (model, provider) = MODELS[rng.next(3) as usize];
            let error = if rng.next(10) == 0 {
                ERRORS[1 + rng.next(3) as usize]
            } else {
                ERRORS[0]
            };
            Trace {
                org_id: org,
                agent_id: agents[rng.next(agents.len() as u64) as usize],
                model,
                provider,
                input_tokens: 1 + rng.next(5000) as u32,
                output_tokens: rng.next(2000) as u32,
                proxy_overhead_ms: (1 + rng.next(5000)) as f32 / 100.0,
                ttfb_ms: (50 + rng.next(2000)) as f32,
                error_code: error.to_owned(),
                requested_at: from + chrono::Duration::seconds(rng.next(span_secs as u64) as i64),
            }
        })
        .collect()
}

async fn app_with(url: &str, extra: &[(&str, &str)]) -> (FakeAuth, TestApp) {
    let auth = FakeAuth::start().await;
    let mut settings = vec![("IBEX_API_CLICKHOUSE_URL", url)];
    settings.extend_from_slice(extra);
    let app = TestApp::start(auth.addr, &settings).await;
    (auth, app)
}

fn floor(t: DateTime<Utc>, granularity: &str) -> i64 {
    let secs = t.timestamp();
    match granularity {
        "hour" => secs - secs.rem_euclid(3600),
        "day" => secs - secs.rem_euclid(86_400),
        _ => {
            let day = secs.div_euclid(86_400);
            // chrono, independently: days since the Monday of that week.
            let weekday = Utc.timestamp_opt(secs, 0).unwrap().format("%u").to_string();
            (day - (weekday.parse::<i64>().unwrap() - 1)) * 86_400
        }
    }
}

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Exact percentile by nearest rank, for the tolerance check.
fn nearest_rank(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let rank = ((p / 100.0) * values.len() as f64).ceil().max(1.0) as usize;
    values[rank - 1]
}

#[tokio::test]
async fn sums_buckets_and_percentiles_match_an_independent_computation() {
    let ch = clickhouse();
    let (auth, app) = app_with(&ch.url(), &[]).await;
    let org_b = Uuid::now_v7();
    app.db.add_org(org_b).await;
    let (a1, a2) = (
        app.db.add_agent(org_a()).await,
        app.db.add_agent(org_a()).await,
    );
    let b1 = app.db.add_agent(org_b).await;
    // Tests share the server: a fresh organization id for the trace rows of this test.
    let tenant = org_a();
    let from = at("2026-03-02T00:00:00Z"); // a Monday
    let mut rows = traffic(tenant, &[a1, a2], from, 21 * 86_400, 4000, 7);
    // Edges: the first and last second of days and of a week, and just outside the range.
    for t in [
        "2026-03-02T00:00:00Z",
        "2026-03-08T23:59:59Z",
        "2026-03-09T00:00:00Z",
        "2026-03-15T12:00:00Z",
        "2026-03-01T23:59:59Z",
        "2026-03-23T00:00:00Z",
    ] {
        let mut edge = rows[0].clone();
        edge.requested_at = at(t);
        rows.push(edge);
    }
    // Another organization's traffic, interleaved in the same table and time.
    let theirs = traffic(org_b, &[b1], from, 21 * 86_400, 3000, 8);
    // Rows of the organization under another id must also never count: same agent ids.
    let mut impostor = traffic(Uuid::now_v7(), &[a1], from, 21 * 86_400, 500, 9);
    impostor.iter_mut().for_each(|t| t.agent_id = a1);
    insert(&ch.url(), &rows).await;
    insert(&ch.url(), &theirs).await;
    insert(&ch.url(), &impostor).await;
    let token = auth.token_for(tenant, TRACE_READ);
    let (start, end) = (at("2026-03-02T00:00:00Z"), at("2026-03-23T00:00:00Z"));
    let inside: Vec<&Trace> = rows
        .iter()
        .filter(|t| t.requested_at >= start && t.requested_at < end)
        .collect();

    for granularity in ["day", "week"] {
        let path = over("usage", start, end, &format!("&granularity={granularity}"));
        let reply = app.read(&path, &token).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let body = reply.json();
        let mut expected: BTreeMap<i64, [u64; 4]> = BTreeMap::new();
        for t in &inside {
            let e = expected
                .entry(floor(t.requested_at, granularity))
                .or_default();
            e[0] += 1;
            e[1] += u64::from(t.input_tokens);
            e[2] += u64::from(t.output_tokens);
            e[3] += u64::from(t.input_tokens + t.output_tokens);
        }
        let buckets = body["buckets"].as_array().unwrap();
        assert_eq!(buckets.len(), if granularity == "day" { 21 } else { 3 });
        for bucket in buckets {
            let start: DateTime<Utc> = bucket["start"].as_str().unwrap().parse().unwrap();
            let e = expected
                .get(&start.timestamp())
                .copied()
                .unwrap_or_default();
            let got = [
                bucket["requests"].as_u64().unwrap(),
                bucket["input_tokens"].as_u64().unwrap(),
                bucket["output_tokens"].as_u64().unwrap(),
                bucket["total_tokens"].as_u64().unwrap(),
            ];
            assert_eq!(got, e, "{granularity} bucket {start}");
        }
        if granularity == "week" {
            assert_eq!(
                buckets[0]["start"], "2026-03-02T00:00:00.000Z",
                "weeks start on Monday"
            );
        }
    }

    // One agent, hourly, a range starting and ending mid-bucket: only rows inside count.
    let (s, e) = (at("2026-03-08T22:30:00Z"), at("2026-03-09T01:15:00Z"));
    let reply = app
        .read(
            &over("usage", s, e, &format!("&granularity=hour&agent_id={a1}")),
            &token,
        )
        .await;
    let body = reply.json();
    let buckets = body["buckets"].as_array().unwrap();
    assert_eq!(
        buckets.len(),
        4,
        "22:00 (from 22:30), 23:00, 00:00, 01:00 (to 01:15)"
    );
    let total: u64 = buckets
        .iter()
        .map(|b| b["requests"].as_u64().unwrap())
        .sum();
    let expected = rows
        .iter()
        .filter(|t| t.agent_id == a1 && t.requested_at >= s && t.requested_at < e)
        .count() as u64;
    assert_eq!(total, expected);

    // Per model, descending by total tokens.
    let reply = app.read(&over("models", start, end, ""), &token).await;
    let models = reply.json()["models"].as_array().unwrap().clone();
    let mut expected: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for t in &inside {
        let e = expected.entry(t.model).or_default();
        e.0 += 1;
        e.1 += u64::from(t.input_tokens + t.output_tokens);
    }
    assert_eq!(models.len(), expected.len());
    for pair in models.windows(2) {
        assert!(pair[0]["total_tokens"].as_u64() >= pair[1]["total_tokens"].as_u64());
    }
    for m in &models {
        let (requests, tokens) = expected[m["model"].as_str().unwrap()];
        assert_eq!(
            (
                m["requests"].as_u64().unwrap(),
                m["total_tokens"].as_u64().unwrap()
            ),
            (requests, tokens)
        );
    }

    // Errors per bucket and code; a code with quotes and a backslash is matched exactly.
    let tricky = "it's a \"quoted\" \\ code";
    let encoded: String = url_encode(tricky);
    let path = over("errors", start, end, &format!("&error_code={encoded}"));
    let reply = app.read(&path, &token).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let counted = errors_in(&reply.json());
    assert_eq!(
        counted,
        inside.iter().filter(|t| t.error_code == tricky).count() as u64
    );
    let reply = app.read(&over("errors", start, end, ""), &token).await;
    let body = reply.json();
    let mut expected: BTreeMap<(i64, String), u64> = BTreeMap::new();
    for t in inside.iter().filter(|t| !t.error_code.is_empty()) {
        *expected
            .entry((floor(t.requested_at, "day"), t.error_code.clone()))
            .or_default() += 1;
    }
    let mut got: BTreeMap<(i64, String), u64> = BTreeMap::new();
    for bucket in body["buckets"].as_array().unwrap() {
        let start: DateTime<Utc> = bucket["start"].as_str().unwrap().parse().unwrap();
        let mut sum = 0;
        for code in bucket["codes"].as_array().unwrap() {
            let n = code["count"].as_u64().unwrap();
            sum += n;
            got.insert(
                (
                    start.timestamp(),
                    code["error_code"].as_str().unwrap().to_owned(),
                ),
                n,
            );
        }
        assert_eq!(bucket["errors"].as_u64().unwrap(), sum);
    }
    assert_eq!(got, expected);

    // Percentiles: within 1 % (or 0.5 ms) of the exact nearest-rank value, per day.
    for p in [50.0, 95.0, 99.0] {
        let path = over("latency", start, end, &format!("&percentile={p}"));
        let reply = app.read(&path, &token).await;
        let body = reply.json();
        assert_eq!(body["percentile"], p as u64);
        for bucket in body["buckets"].as_array().unwrap() {
            let day: DateTime<Utc> = bucket["start"].as_str().unwrap().parse().unwrap();
            let mut overhead: Vec<f64> = inside
                .iter()
                .filter(|t| floor(t.requested_at, "day") == day.timestamp())
                .map(|t| f64::from(t.proxy_overhead_ms))
                .collect();
            let mut ttfb: Vec<f64> = inside
                .iter()
                .filter(|t| floor(t.requested_at, "day") == day.timestamp())
                .map(|t| f64::from(t.ttfb_ms))
                .collect();
            assert_eq!(
                bucket["requests"].as_u64().unwrap() as usize,
                overhead.len()
            );
            for (got, values) in [
                (&bucket["proxy_overhead_ms"], &mut overhead),
                (&bucket["ttfb_ms"], &mut ttfb),
            ] {
                // Tolerance: within two ranks of the exact nearest-rank value (ClickHouse's
                // `quantile` interpolates between neighbouring order statistics).
                let exact = nearest_rank(values, p);
                let n = values.len();
                let rank = ((p / 100.0) * n as f64).ceil() as usize;
                let (lo, hi) = (
                    values[rank.saturating_sub(3)],
                    values[(rank + 1).min(n - 1)],
                );
                let got = got.as_f64().unwrap();
                assert!(
                    got >= lo - 1e-3 && got <= hi + 1e-3,
                    "p{p} on {day}: {got} vs exact {exact} (window {lo}..{hi})"
                );
            }
        }
    }

    // No traffic: every bucket present, all zero (latency null).
    let empty = [
        ("usage", "2025-01-08", "", 7, "total_tokens", json!(0)),
        (
            "latency",
            "2025-01-02",
            "&granularity=hour",
            24,
            "ttfb_ms",
            Value::Null,
        ),
    ];
    for (op, end, more, count, field, nothing) in empty {
        let (start, end) = (at("2025-01-01T00:00:00Z"), at(&format!("{end}T00:00:00Z")));
        let body = app.read(&over(op, start, end, more), &token).await.json();
        let buckets = body["buckets"].as_array().unwrap();
        assert_eq!(buckets.len(), count, "{op}");
        let zero = |b: &&Value| b["requests"] == 0 && b[field] == nothing;
        assert!(buckets.iter().all(|b| zero(&b)), "{op}: {body}");
    }

    // Errors of one agent, with and without a code: only that agent's requests count.
    for code in [None, Some(tricky)] {
        let mut path = over("errors", start, end, &format!("&agent_id={a1}"));
        if let Some(code) = code {
            path.push_str(&format!("&error_code={}", url_encode(code)));
        }
        let reply = app.read(&path, &token).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let counted = errors_in(&reply.json());
        let expected = inside
            .iter()
            .filter(|t| t.agent_id == a1 && !t.error_code.is_empty())
            .filter(|t| code.is_none_or(|c| t.error_code == c))
            .count() as u64;
        assert_eq!(counted, expected, "errors of agent a1, code {code:?}");
        let all_agents = inside
            .iter()
            .filter(|t| !t.error_code.is_empty())
            .filter(|t| code.is_none_or(|c| t.error_code == c))
            .count() as u64;
        assert!(
            expected > 0 && expected < all_agents,
            "the filter is visible"
        );
    }

    // Another organization's agent: 404 like an unknown one, in every operation; its traces
    // never counted (above).
    for op in ["usage", "latency", "models", "errors"] {
        for agent in [b1, Uuid::now_v7()] {
            app.read(&over(op, start, end, &format!("&agent_id={agent}")), &token)
                .await
                .assert_error(404, "AGENT_NOT_FOUND");
        }
    }
    // Without trace:read: 403.
    app.read(&over("usage", start, end, ""), &auth.token_for(tenant, 1))
        .await
        .assert_error(403, "INSUFFICIENT_PERMISSIONS");
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn bad_and_hostile_parameters_are_400s_or_correct_empty_answers() {
    let ch = clickhouse();
    let (auth, app) = app_with(&ch.url(), &[]).await;
    let token = auth.token_for(org_a(), TRACE_READ);
    let ok = "start=2026-01-01T00:00:00Z&end=2026-01-02T00:00:00Z";
    for (path, query, field) in [
        ("usage", "end=2026-01-02T00:00:00Z".to_owned(), "start"),
        ("usage", "start=2026-01-01T00:00:00Z".to_owned(), "end"),
        (
            "usage",
            "start=2026-01-02T00:00:00Z&end=2026-01-01T00:00:00Z".to_owned(),
            "start",
        ),
        (
            "usage",
            "start=2026-01-01T00:00:00Z&end=2026-01-01T00:00:00Z".to_owned(),
            "start",
        ),
        (
            "usage",
            "start=2026-01-01&end=2026-01-02T00:00:00Z".to_owned(),
            "start",
        ),
        (
            "usage",
            "start=2026-01-01T00:00:00Z&end=2026-04-02T00:00:00Z".to_owned(),
            "end",
        ),
        ("usage", format!("{ok}&granularity=minute"), "granularity"),
        (
            "latency",
            "start=2026-01-01T00:00:00Z&end=2026-01-08T00:00:01Z&granularity=hour".to_owned(),
            "end",
        ),
        ("latency", format!("{ok}&percentile=90"), "percentile"),
        ("latency", format!("{ok}&percentile=95.0"), "percentile"),
        (
            "models",
            format!("{ok}&agent_id=1%20OR%201%3D1"),
            "agent_id",
        ),
        ("errors", format!("{ok}&error_code="), "error_code"),
    ] {
        let reply = app
            .read(&format!("/v1/analytics/{path}?{query}"), &token)
            .await;
        let body = reply.assert_error(400, "VALIDATION_ERROR");
        assert_eq!(
            body["error"]["field_errors"][0]["field"], field,
            "{path}?{query}"
        );
        assert!(!reply.text().to_lowercase().contains("clickhouse"));
    }
    // Injection attempts in the one free-text parameter: a correct, empty answer.
    for attempt in [
        "'",
        "\\",
        "--",
        ") OR 1=1",
        "' OR '1'='1",
        "x'); DROP TABLE llm_traces; --",
    ] {
        let reply = app
            .read(
                &format!(
                    "/v1/analytics/errors?{ok}&error_code={}",
                    url_encode(attempt)
                ),
                &token,
            )
            .await;
        assert_eq!(reply.status, 200, "{attempt}: {}", reply.text());
        let body = reply.json();
        assert!(
            body["buckets"]
                .as_array()
                .unwrap()
                .iter()
                .all(|b| b["errors"] == 0),
            "{attempt}"
        );
    }
}

#[tokio::test]
async fn the_cache_serves_repeats_and_redis_down_changes_nothing() {
    use redis::AsyncCommands;
    let ch = clickhouse();
    // A redis-server of its own: this test takes it away, and the shared one serves
    // every other test of the run.
    let mut own_redis = TempRedis::start().unwrap();
    let redis_at = own_redis.url();
    let (auth, app) = app_with(&ch.url(), &[("IBEX_API_REDIS_URL", redis_at.as_str())]).await;
    let from = at("2026-05-04T00:00:00Z");
    let (tenant, agent) = tenant_with_traffic(&app, &ch.url(), from, 100, 11).await;
    let token = auth.token_for(tenant, TRACE_READ);
    let path = "/v1/analytics/usage?start=2026-05-04T00:00:00Z&end=2026-05-05T00:00:00Z";
    let total = |body: &Value| body["buckets"][0]["requests"].as_u64().unwrap();
    let first = app.read(path, &token).await.json();
    assert_eq!(total(&first), 100);
    // More traffic: the cached answer is served until it expires.
    insert(&ch.url(), &traffic(tenant, &[agent], from, 86_400, 10, 12)).await;
    let second = app.read(path, &token).await.json();
    assert_eq!(second, first, "served from the cache");
    let mut conn = redis::Client::open(redis_at.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = conn.keys("analytics:*").await.unwrap();
    assert!(!keys.is_empty());
    for key in &keys {
        assert_eq!(key.len(), "analytics:".len() + 64, "SHA-256 hex");
        let ttl: i64 = conn.ttl(key).await.unwrap();
        assert!((1..=300).contains(&ttl), "{ttl}");
    }
    let weekly =
        "/v1/analytics/usage?start=2026-05-04T00:00:00Z&end=2026-05-11T00:00:00Z&granularity=week";
    app.read(weekly, &token).await;
    let keys_after: Vec<String> = conn.keys("analytics:*").await.unwrap();
    let week_key = keys_after.iter().find(|k| !keys.contains(k)).unwrap();
    let ttl: i64 = conn.ttl(week_key).await.unwrap();
    assert!((61..=300).contains(&ttl), "week answers live 300 s: {ttl}");

    // Redis down: fresh, correct answers, no error, no hang.
    own_redis.stop();
    let started = Instant::now();
    let other =
        "/v1/analytics/usage?start=2026-05-04T00:00:00Z&end=2026-05-04T12:00:00Z&granularity=hour";
    let reply = app.read(other, &token).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(started.elapsed() < Duration::from_secs(2));
    let fresh = app.read(path, &token).await.json();
    assert_eq!(total(&fresh), 110, "straight from ClickHouse");
    // An outage of some seconds with requests arriving: the client's own reconnection gives up.
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(app.read(path, &token).await.status, 200);
    }
    own_redis.restart().unwrap();

    // Redis back: once the skip after the failure (5 s) is over, the cache serves again at once
    // (regression, found by the chaos soak: the broken connection was kept, and every request
    // after each skip waited out the 150-ms deadline for about two minutes).
    tokio::time::sleep(Duration::from_millis(5_200)).await;
    let later =
        "/v1/analytics/usage?start=2026-05-04T00:00:00Z&end=2026-05-04T06:00:00Z&granularity=hour";
    let before = app.read(later, &token).await.json();
    insert(&ch.url(), &traffic(tenant, &[agent], from, 3_600, 7, 13)).await;
    let again = app.read(later, &token).await.json();
    assert_eq!(again, before, "served from the cache again");
}

/// Regression (the chaos soak: analytics answers of 160-475 ms five seconds into a Redis
/// outage). Requests that queued behind the cache's connect to Redis each tried again in turn once
/// it failed, so the queue's last one waited one 150-ms deadline per request ahead of it. Now a
/// failed connect makes the whole queue skip the cache: a burst costs about one deadline.
#[tokio::test]
async fn a_burst_during_a_redis_that_hangs_waits_one_deadline_not_one_per_request() {
    let ch = clickhouse();
    // A "Redis" that accepts connections and never answers.
    let hanging = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let redis_at = format!("redis://{}", hanging.local_addr().unwrap());
    let _held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = hanging.accept().await {
            open.push(socket);
        }
    });
    let (auth, app) = app_with(
        &ch.url(),
        &[
            ("IBEX_API_REDIS_URL", redis_at.as_str()),
            // Only the cache talks to Redis on the request path here.
            ("IBEX_API_RATE_LIMIT_ENABLED", "false"),
        ],
    )
    .await;
    let from = at("2026-06-01T00:00:00Z");
    let (tenant, _) = tenant_with_traffic(&app, &ch.url(), from, 50, 21).await;
    let token = auth.token_for(tenant, TRACE_READ);
    let path = "/v1/analytics/usage?start=2026-06-01T00:00:00Z&end=2026-06-02T00:00:00Z";
    // Without Redis in the way, for comparison (the skip after a failure lasts 5 s).
    let warm = app.read(path, &token).await;
    assert_eq!(warm.status, 200, "{}", warm.text());
    tokio::time::sleep(Duration::from_millis(5_200)).await;

    // Twenty at once, all arriving while the first connect waits out its deadline. Serialized
    // retries would take 20 x 150 ms = 3 s; one deadline plus twenty ClickHouse queries is far
    // below the bound.
    let started = Instant::now();
    let replies = futures_util::future::join_all((0..20).map(|_| app.read(path, &token))).await;
    let took = started.elapsed();
    for reply in &replies {
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.json()["buckets"][0]["requests"].as_u64(), Some(50));
    }
    assert!(
        took < Duration::from_millis(1_500),
        "20 requests behind a hanging Redis took {took:?}"
    );
}

#[tokio::test]
async fn clickhouse_down_is_a_fast_503_and_recovers_without_a_restart() {
    let mut ch = TempClickHouse::start().unwrap();
    create_table(&ch.url()).await;
    let (auth, app) = app_with(
        &ch.url(),
        &[("IBEX_API_CLICKHOUSE_QUERY_TIMEOUT_MS", "1000")],
    )
    .await;
    let token = auth.token_for(org_a(), TRACE_READ | (1 << 35));
    let path = "/v1/analytics/models?start=2026-01-01T00:00:00Z&end=2026-01-02T00:00:00Z";
    assert_eq!(app.read(path, &token).await.status, 200);
    ch.stop();
    let started = Instant::now();
    let reply = app.read(path, &token).await;
    reply.assert_error(503, "ANALYTICS_UNAVAILABLE");
    assert_eq!(reply.header("retry-after"), Some("2"));
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "within the query timeout"
    );
    // The rest of the API is unaffected.
    assert_eq!(app.read("/v1/agents", &token).await.status, 200);
    let ready = app.get("/ready", &[]).await;
    assert_eq!(ready.status, 200, "not critical");
    assert_eq!(ready.json()["checks"]["clickhouse"]["status"], "failed");
    ch.restart().unwrap();
    app.read_until_ok(path, &token, Duration::from_secs(10))
        .await;
}

#[tokio::test]
async fn gdpr_deletion_removes_the_orgs_traces_and_waits_for_clickhouse() {
    let mut ch = TempClickHouse::start().unwrap();
    create_table(&ch.url()).await;
    let (auth, app) = app_with(&ch.url(), &[]).await;
    let org_b = Uuid::now_v7();
    app.db.add_org(org_b).await;
    let owner = app.db.add_user(org_a(), "owner").await;
    let from = at("2026-06-01T00:00:00Z");
    let agent = Uuid::now_v7();
    insert(
        &ch.url(),
        &traffic(org_a(), &[agent], from, 86_400, 200, 21),
    )
    .await;
    insert(&ch.url(), &traffic(org_b, &[agent], from, 86_400, 150, 22)).await;
    let client = clickhouse::Client::default()
        .with_url(ch.url())
        .with_validation(false);
    let count = |org: Uuid| {
        let client = client.clone();
        async move {
            client
                .query("SELECT count() FROM ibex.llm_traces WHERE org_id = ?")
                .bind(org.to_string())
                .fetch_one::<u64>()
                .await
                .unwrap()
        }
    };
    assert_eq!(count(org_a()).await, 200);

    ch.stop();
    let token = auth.token_for_user(org_a(), Some(owner), 1 << 35);
    let mine = format!("/v1/organizations/{ORG_ID}");
    assert_eq!(app.delete(&mine, &token).await.status, 202);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let org = app.read(&mine, &token).await.json();
    assert_eq!(
        org["deletion"]["state"], "running",
        "waits for ClickHouse: {org}"
    );

    ch.restart().unwrap();
    let deadline = Deadline::after(Duration::from_secs(30)).every(Duration::from_millis(200));
    let mut admin = app.db.admin().await;
    loop {
        let left: i64 = admin
            .value(
                "SELECT count(*) FROM ibex_core.organizations WHERE id = $1",
                org_a(),
            )
            .await;
        if left == 0 {
            break;
        }
        deadline.tick("the deletion did not finish").await;
    }
    // The mutation is applied in the background; it must get there.
    let deadline = Deadline::after(Duration::from_secs(20)).every(Duration::from_millis(200));
    while count(org_a()).await > 0 {
        deadline.tick("traces left behind").await;
    }
    assert_eq!(
        count(org_b).await,
        150,
        "the other organization's traces stay"
    );
}
