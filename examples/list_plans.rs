//! Filtered lists at production scale (issue 27, part 4): every filter combination the API
//! accepts on the memories, sessions and audit lists, first page and a page 50 pages deep, the
//! API's own statement (built by the same functions the handlers call) beside the best of
//! several hand-written statements on the same data. Prints, per combination, buffers and
//! execution time as ratios to that reference; a plan benchmark, never a test.
//!
//! ```sh
//! cargo run --release --example list_plans                      # 1 000 000 / 200 000 / 200 000
//! cargo run --release --example list_plans -- 100000 20000 20000   # a quicker look
//! ```
//!
//! The data (seeded in a throwaway PostgreSQL, as production skews it): one agent with
//! `memories` memories, 1 s apart; a `common` tag on half of them and a `rare` tag on one in
//! 3 333 (~300); statuses mostly `active`, 1% `pending_review`; categories and sources skewed
//! independently of each other
//! (`factual` 50% … `procedural` 2%, `extracted` 80% … `inferred` 2%). `sessions` sessions over
//! 20 agents, one agent holding half; statuses `completed` 90%, `error` 1%. `audit` events by 20
//! users, one of them behind 30%; actions skewed (`memory.delete` 0.5%).
//!
//! Every statement runs as the API runs it: in a transaction as `ibex_app` with the tenant set
//! (row-level security included), with its parameters bound (a custom plan, as the API's
//! connections force). Each is run five times; the median execution time and the buffers (shared
//! hits plus reads) of the last run are kept.

use std::str::FromStr;
use std::time::Instant;

use chrono::{DateTime, Duration as Span, Utc};
use ibex_api::db::Sql;
use ibex_api::devenv::postgres::TempPostgres;
use ibex_api::domains::audit::model::AuditFilters;
use ibex_api::domains::memories::model::Filters;
use ibex_api::domains::memories::repo::COLUMNS;
use ibex_api::domains::sessions::model::SessionFilters;
use ibex_api::wire::pagination::Position;
use serde_json::Value;
use tokio_postgres::{Client, NoTls};
use uuid::Uuid;

const ORG: &str = "0192f0c4-5d7e-7c3a-9f1e-2b3c4d5e6f70";
const AGENT: &str = "0192f0c4-5d7e-7c3a-9f1e-2b3c4d5e7001";
/// The API's page: 20 rows and one more to know whether another page follows.
const PAGE: i64 = 21;
/// "A page 50 pages deep": the cursor after the 1 000th row.
const DEPTH: i64 = 1000;
const RUNS: usize = 5;

/// How a statement did: median execution time (ms) and buffers touched.
#[derive(Debug, Clone, Copy)]
struct Cost {
    ms: f64,
    buffers: u64,
}

/// Builds a statement for a page after `after`.
type Build<'a> = Box<dyn Fn(Option<Position>) -> Sql + 'a>;

struct Case<'a> {
    list: &'static str,
    name: String,
    ours: Build<'a>,
    /// Hand-written alternatives, each walking another access path; the best is the reference.
    references: Vec<(String, Build<'a>)>,
    /// The position column and id column of the statement's rows.
    position: (&'static str, &'static str),
}

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("counts: MEMORIES SESSIONS AUDIT"))
        .collect();
    let memories = args.first().copied().unwrap_or(1_000_000);
    let sessions = args.get(1).copied().unwrap_or(200_000);
    let audit = args.get(2).copied().unwrap_or(200_000);

    let postgres = TempPostgres::start().expect("a throwaway PostgreSQL");
    let admin = connect(&postgres.url("postgres")).await;
    admin.batch_execute("CREATE DATABASE plans").await.unwrap();
    let url = postgres.url("plans");
    ibex_api::db::migrate::run(&url).await.expect("migrations");
    let db = connect(&url).await;
    let seeding = Instant::now();
    seed(&db, memories, sessions, audit).await;
    eprintln!(
        "seeded {memories} memories, {sessions} sessions, {audit} audit events in {:.0} s",
        seeding.elapsed().as_secs_f64()
    );

    let now = now(&db).await;
    let actor: Uuid = db
        .query_one(
            "SELECT id FROM ibex_core.users WHERE email = 'u1@plans.example'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    ACTOR.set(actor).unwrap();
    let cases = cases(now);
    println!(
        "| list | filters | page | ours: buffers | reference: buffers | buffers ratio | time ratio | reference walks |"
    );
    println!("|---|---|---|---:|---:|---:|---:|---|");
    let mut worst: (f64, f64) = (0.0, 0.0);
    let only = std::env::var("PLANS_ONLY").unwrap_or_default();
    for case in cases
        .iter()
        .filter(|c| format!("{} {}", c.list, c.name).contains(&only))
    {
        let deep = position_at(&db, case, DEPTH).await;
        for (page, after) in [("first", None), ("deep", deep)] {
            if page == "deep" && after.is_none() {
                continue;
            }
            let ours = cost(&db, &(case.ours)(after)).await;
            let mut best: Option<(Cost, &str)> = None;
            for (name, build) in &case.references {
                let c = cost(&db, &build(after)).await;
                if best.is_none_or(|(b, _)| score(c) < score(b)) {
                    best = Some((c, name));
                }
            }
            let (reference, walk) = best.expect("at least one reference");
            let buffers = ours.buffers as f64 / reference.buffers.max(1) as f64;
            let time = ours.ms / reference.ms.max(0.001);
            worst = (worst.0.max(buffers), worst.1.max(time));
            println!(
                "| {} | {} | {page} | {} | {} | {buffers:.2} | {time:.2} | {walk} |",
                case.list, case.name, ours.buffers, reference.buffers
            );
        }
    }
    println!();
    println!(
        "worst ratio over every combination and page: buffers {:.2}x, time {:.2}x",
        worst.0, worst.1
    );
    postgres.stop();
}

/// Buffers first (what a cold cache pays), time to break ties.
fn score(c: Cost) -> (u64, u64) {
    (c.buffers, (c.ms * 1000.0) as u64)
}

async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

async fn now(db: &Client) -> DateTime<Utc> {
    db.query_one("SELECT max(created_at) FROM ibex_core.memories", &[])
        .await
        .unwrap()
        .get::<_, Option<DateTime<Utc>>>(0)
        .unwrap_or_else(Utc::now)
}

async fn seed(db: &Client, memories: usize, sessions: usize, audit: usize) {
    let sql = format!(
        r#"
        INSERT INTO ibex_core.organizations (id, name, slug) VALUES ('{ORG}', 'Plans', 'plans');
        INSERT INTO ibex_core.agents (id, org_id, name, slug)
            SELECT CASE WHEN n = 1 THEN '{AGENT}'::uuid ELSE gen_random_uuid() END, '{ORG}',
                   'agent ' || n, 'agent-' || n
            FROM generate_series(1, 20) n;
        INSERT INTO ibex_core.users (id, org_id, email, name, role, status)
            SELECT gen_random_uuid(), '{ORG}', 'u' || n || '@plans.example', 'U', 'member', 'active'
            FROM generate_series(1, 20) n;

        INSERT INTO ibex_core.memories (id, org_id, agent_id, content, content_hash, category,
                                        source, status, created_at)
        SELECT gen_random_uuid(), '{ORG}', '{AGENT}', 'memory ' || n, md5(n::text) || md5(n::text),
               CASE WHEN n % 100 < 50 THEN 'factual' WHEN n % 100 < 75 THEN 'preference'
                    WHEN n % 100 < 90 THEN 'behavioral' WHEN n % 100 < 98 THEN 'episodic'
                    ELSE 'procedural' END,
               CASE WHEN s < 40 THEN 'extracted' WHEN s < 46 THEN 'user_provided'
                    WHEN s < 49 THEN 'imported' ELSE 'inferred' END,
               CASE WHEN t = 0 THEN 'pending_review' WHEN t < 4 THEN 'superseded'
                    WHEN t < 6 THEN 'archived' ELSE 'active' END,
               now() - make_interval(secs => {memories} - n)
        -- Source and status drawn independently of the category (and of each other).
        FROM generate_series(1, {memories}) n,
             LATERAL (SELECT abs(hashtext(n || 's')) % 50 AS s,
                             abs(hashtext(n || 't')) % 100 AS t) draws;
        INSERT INTO ibex_core.memory_tags (memory_id, org_id, tag)
            SELECT id, org_id, 'common' FROM ibex_core.memories WHERE hashtext(id::text) % 2 = 0;
        INSERT INTO ibex_core.memory_tags (memory_id, org_id, tag)
            SELECT id, org_id, 'rare' FROM ibex_core.memories WHERE hashtext(id::text) % 3333 = 1;

        INSERT INTO ibex_core.sessions (id, org_id, agent_id, status, created_at)
        SELECT gen_random_uuid(), '{ORG}',
               CASE WHEN n % 2 = 0 THEN '{AGENT}'::uuid
                    ELSE (SELECT id FROM ibex_core.agents a
                          WHERE a.slug = 'agent-' || (2 + n % 19)) END,
               CASE WHEN n % 100 = 0 THEN 'error' WHEN n % 100 < 5 THEN 'active'
                    WHEN n % 100 < 10 THEN 'abandoned' ELSE 'completed' END,
               now() - make_interval(secs => ({sessions} - n) * 5)
        FROM generate_series(1, {sessions}) n;

        INSERT INTO ibex_core.audit_events (id, org_id, occurred_at, actor_user_id, action,
                                            target_type, target_id, request_id)
        SELECT gen_random_uuid(), '{ORG}', now() - make_interval(secs => ({audit} - n) * 5),
               (SELECT id FROM ibex_core.users u
                WHERE u.email = 'u' || (CASE WHEN n % 10 < 3 THEN 1 ELSE 2 + n % 19 END) || '@plans.example'),
               CASE WHEN n % 200 = 0 THEN 'memory.delete' WHEN n % 10 < 4 THEN 'agent.update'
                    WHEN n % 10 < 7 THEN 'directive.set' ELSE 'user.update' END,
               CASE WHEN n % 10 < 4 THEN 'agent' WHEN n % 10 < 7 THEN 'directive' ELSE 'user' END,
               'target-' || (n % 5000), gen_random_uuid()::text
        FROM generate_series(1, {audit}) n;
    "#
    );
    db.batch_execute(&sql).await.expect("seeding");
    // Its own statement: VACUUM refuses a multi-statement batch (an implicit transaction).
    db.batch_execute("VACUUM ANALYZE").await.expect("vacuum");
}

/// Runs `sql` as the API does (tenant transaction, `ibex_app`, parameters bound), `RUNS` times.
async fn cost(db: &Client, sql: &Sql) -> Cost {
    let explain = format!("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {}", sql.text());
    let mut times = Vec::with_capacity(RUNS);
    let mut buffers = 0;
    for _ in 0..RUNS {
        db.batch_execute(&format!(
            "BEGIN; SET LOCAL ROLE ibex_app; SELECT set_config('app.current_org_id', '{ORG}', true)"
        ))
        .await
        .unwrap();
        let row = db
            .query_one(&explain, &sql.params())
            .await
            .unwrap_or_else(|e| panic!("{e}: {}", sql.text()));
        db.batch_execute("ROLLBACK").await.unwrap();
        let plan: Value = row.get(0);
        if std::env::var_os("PLANS_DEBUG").is_some() {
            eprintln!(
                "{}\n{}",
                sql.text(),
                serde_json::to_string_pretty(&plan).unwrap()
            );
        }
        let top = &plan[0];
        times.push(top["Execution Time"].as_f64().unwrap_or(0.0));
        let node = &top["Plan"];
        buffers = node["Shared Hit Blocks"].as_u64().unwrap_or(0)
            + node["Shared Read Blocks"].as_u64().unwrap_or(0);
    }
    times.sort_by(f64::total_cmp);
    Cost {
        ms: times[RUNS / 2],
        buffers,
    }
}

/// The position after the `depth`-th row of the list, if it has that many.
async fn position_at(db: &Client, case: &Case<'_>, depth: i64) -> Option<Position> {
    // The first page's statement with `depth` rows instead of a page (the limit is its last
    // parameter), and the last of them.
    let rows = {
        db.batch_execute(&format!(
            "BEGIN; SET LOCAL ROLE ibex_app; SELECT set_config('app.current_org_id', '{ORG}', true)"
        ))
        .await
        .unwrap();
        let deep = (case.ours)(None);
        let text = deep.text().replacen(
            &format!("LIMIT ${}", deep.params().len()),
            &format!("LIMIT {depth}"),
            1,
        );
        let rows = db
            .query(
                &format!("SELECT * FROM ({text}) page OFFSET {} LIMIT 1", depth - 1),
                &deep.params()[..deep.params().len() - 1],
            )
            .await
            .unwrap_or_else(|e| panic!("{e}: {text}"));
        db.batch_execute("ROLLBACK").await.unwrap();
        rows
    };
    rows.first().map(|row| Position {
        created_at: row.get(case.position.0),
        id: row.get(case.position.1),
    })
}

fn agent() -> Uuid {
    Uuid::from_str(AGENT).unwrap()
}

fn org() -> Uuid {
    Uuid::from_str(ORG).unwrap()
}

/// Appends the cursor condition and the order on `(at, id)`.
fn finish(mut sql: Sql, at: &str, id: &str, after: Option<Position>) -> Sql {
    if let Some(after) = after {
        sql.push(&format!(" AND ({at}, {id}) < ("))
            .push_bind(after.created_at)
            .push(", ")
            .push_bind(after.id)
            .push(")");
    }
    sql.push(&format!(" ORDER BY {at} DESC, {id} DESC LIMIT "))
        .push_bind(PAGE);
    sql
}

/// `col = value`, or, to keep the planner off that column's index, `col || '' = value`.
fn eq(sql: &mut Sql, column: &str, value: String, indexed: bool) {
    if indexed {
        sql.push(&format!(" AND {column} = ")).push_bind(value);
    } else {
        sql.push(&format!(" AND {column} || '' = "))
            .push_bind(value);
    }
}

fn cases(now: DateTime<Utc>) -> Vec<Case<'static>> {
    let mut cases = Vec::new();
    let window = (now - Span::days(2), now - Span::hours(12));

    // Memories: tag x status x category x source x created range.
    for tag in [None, Some("common"), Some("rare")] {
        for status in ["active", "pending_review"] {
            for category in [None, Some("factual"), Some("procedural")] {
                for source in [None, Some("extracted"), Some("inferred")] {
                    for range in [None, Some(window)] {
                        let filters = Filters {
                            category,
                            status,
                            source,
                            tag: tag.map(str::to_owned),
                            created_after: range.map(|r| r.0),
                            created_before: range.map(|r| r.1),
                        };
                        let name = format!(
                            "tag={} status={status} category={} source={} range={}",
                            tag.unwrap_or("-"),
                            category.unwrap_or("-"),
                            source.unwrap_or("-"),
                            if range.is_some() { "yes" } else { "-" }
                        );
                        cases.push(memories_case(name, filters));
                    }
                }
            }
        }
    }

    // Sessions: agent x status x started range.
    for agent_filter in [None, Some(agent())] {
        for status in [None, Some("completed"), Some("error")] {
            for range in [None, Some(window)] {
                let filters = SessionFilters {
                    agent_id: agent_filter,
                    status,
                    started_after: range.map(|r| r.0),
                    started_before: range.map(|r| r.1),
                };
                let name = format!(
                    "agent={} status={} range={}",
                    if agent_filter.is_some() { "big" } else { "-" },
                    status.unwrap_or("-"),
                    if range.is_some() { "yes" } else { "-" }
                );
                cases.push(sessions_case(name, filters));
            }
        }
    }

    // Audit: every subset of actor, action, target type, target id and a range.
    for mask in 0u8..32 {
        let has = |bit: u8| mask & (1 << bit) != 0;
        let filters = AuditFilters {
            actor_id: None, // filled below: the actor's id is known only in the database
            action: has(1).then(|| "memory.delete".to_owned()),
            target_type: has(2).then(|| "agent".to_owned()),
            target_id: has(3).then(|| "target-40".to_owned()),
            since: has(4).then_some(window.0),
            until: has(4).then_some(window.1),
        };
        let name = format!(
            "actor={} action={} target_type={} target_id={} range={}",
            if has(0) { "busiest" } else { "-" },
            filters.action.as_deref().unwrap_or("-"),
            filters.target_type.as_deref().unwrap_or("-"),
            filters.target_id.as_deref().unwrap_or("-"),
            if has(4) { "yes" } else { "-" }
        );
        cases.push(audit_case(name, filters, has(0)));
    }
    cases
}

fn memories_case(name: String, filters: Filters) -> Case<'static> {
    let ours_filters = filters.clone();
    let ours: Build = Box::new(move |after| {
        ibex_api::domains::memories::repo::list_statement(
            org(),
            agent(),
            &ours_filters,
            after,
            PAGE,
        )
    });
    let mut references: Vec<(String, Build)> = Vec::new();
    // The agent's memories, on the status, category or source index, the tag probed per row.
    for (walk, by_category, by_source) in [
        ("memories by status", false, false),
        ("memories by category", true, false),
        ("memories by source", false, true),
    ] {
        if (by_category && filters.category.is_none()) || (by_source && filters.source.is_none()) {
            continue;
        }
        let f = filters.clone();
        references.push((
            walk.to_owned(),
            Box::new(move |after| {
                let mut sql = Sql::new(format!(
                    "SELECT {COLUMNS} FROM ibex_core.memories m WHERE m.org_id = "
                ));
                sql.push_bind(org())
                    .push(" AND m.agent_id = ")
                    .push_bind(agent())
                    .push(" AND m.deleted_at IS NULL AND m.status = ")
                    .push_bind(f.status.to_owned());
                if let Some(c) = f.category {
                    eq(&mut sql, "m.category", c.to_owned(), by_category);
                }
                if let Some(s) = f.source {
                    eq(&mut sql, "m.source", s.to_owned(), by_source);
                }
                if let Some(tag) = &f.tag {
                    sql.push(
                        " AND EXISTS (SELECT 1 FROM ibex_core.memory_tags t \
                         WHERE t.memory_id = m.id AND t.org_id = m.org_id AND t.tag = ",
                    )
                    .push_bind(tag.clone())
                    .push(")");
                }
                range(&mut sql, "m.created_at", f.created_after, f.created_before);
                finish(sql, "m.created_at", "m.id", after)
            }),
        ));
    }
    // With a tag: the tag's memories first (primary-key probes), then the other filters.
    if filters.tag.is_some() {
        let f = filters.clone();
        references.push((
            "the tag's memories, then filters".to_owned(),
            Box::new(move |after| {
                let mut sql = Sql::new(format!(
                    "SELECT {COLUMNS} FROM ibex_core.memory_tags tg \
                     JOIN ibex_core.memories m ON m.id = tg.memory_id WHERE tg.org_id = "
                ));
                sql.push_bind(org())
                    .push(" AND tg.tag = ")
                    .push_bind(f.tag.clone().unwrap())
                    .push(" AND m.org_id = ")
                    .push_bind(org())
                    .push(" AND m.agent_id = ")
                    .push_bind(agent())
                    .push(" AND m.deleted_at IS NULL AND m.status = ")
                    .push_bind(f.status.to_owned());
                if let Some(c) = f.category {
                    sql.push(" AND m.category = ").push_bind(c.to_owned());
                }
                if let Some(s) = f.source {
                    sql.push(" AND m.source = ").push_bind(s.to_owned());
                }
                range(&mut sql, "m.created_at", f.created_after, f.created_before);
                finish(sql, "m.created_at", "m.id", after)
            }),
        ));
    }
    Case {
        list: "memories",
        name,
        ours,
        references,
        position: ("created_at", "id"),
    }
}

fn range(sql: &mut Sql, column: &str, after: Option<DateTime<Utc>>, before: Option<DateTime<Utc>>) {
    if let Some(after) = after {
        sql.push(&format!(" AND {column} >= ")).push_bind(after);
    }
    if let Some(before) = before {
        sql.push(&format!(" AND {column} < ")).push_bind(before);
    }
}

fn sessions_case(name: String, filters: SessionFilters) -> Case<'static> {
    let ours_filters = filters.clone();
    let ours: Build = Box::new(move |after| {
        ibex_api::domains::sessions::repo::list_statement(org(), &ours_filters, after, PAGE)
    });
    let mut references: Vec<(String, Build)> = Vec::new();
    for (walk, agent_indexed, status_indexed) in [
        ("sessions by agent and status", true, true),
        ("sessions by agent", true, false),
        ("sessions by status", false, true),
        ("sessions of the org", false, false),
    ] {
        let f = filters.clone();
        references.push((
            walk.to_owned(),
            Box::new(move |after| {
                let mut sql = Sql::new(
                    "SELECT * FROM ibex_core.sessions WHERE deleted_at IS NULL AND org_id = ",
                );
                sql.push_bind(org());
                if let Some(a) = f.agent_id {
                    if agent_indexed {
                        sql.push(" AND agent_id = ").push_bind(a);
                    } else {
                        sql.push(" AND agent_id::text = ").push_bind(a.to_string());
                    }
                }
                if let Some(s) = f.status {
                    eq(&mut sql, "status", s.to_owned(), status_indexed);
                }
                range(&mut sql, "created_at", f.started_after, f.started_before);
                finish(sql, "created_at", "id", after)
            }),
        ));
    }
    Case {
        list: "sessions",
        name,
        ours,
        references,
        position: ("created_at", "id"),
    }
}

fn audit_case(name: String, mut filters: AuditFilters, with_actor: bool) -> Case<'static> {
    // The busiest actor (30% of the events): the first user by email.
    if with_actor {
        filters.actor_id = Some(busiest_actor());
    }
    let ours_filters = filters.clone();
    let ours: Build = Box::new(move |after| {
        ibex_api::domains::audit::repo::list_statement(org(), &ours_filters, after, PAGE)
    });
    let mut references: Vec<(String, Build)> = Vec::new();
    // One walk per access path: the list's own, or one filter's index with the others checked
    // on the rows.
    for walk in ["list", "actor", "action", "target_type", "target_id"] {
        let present = match walk {
            "actor" => filters.actor_id.is_some(),
            "action" => filters.action.is_some(),
            "target_type" => filters.target_type.is_some(),
            "target_id" => filters.target_id.is_some(),
            _ => true,
        };
        if !present {
            continue;
        }
        let f = filters.clone();
        references.push((
            format!("events by {walk}"),
            Box::new(move |after| {
                let mut sql = Sql::new("SELECT * FROM ibex_core.audit_events WHERE org_id = ");
                sql.push_bind(org());
                if let Some(actor) = f.actor_id {
                    if walk == "actor" {
                        sql.push(" AND actor_user_id = ").push_bind(actor);
                    } else {
                        sql.push(" AND actor_user_id::text = ")
                            .push_bind(actor.to_string());
                    }
                }
                if let Some(v) = &f.action {
                    eq(&mut sql, "action", v.clone(), walk == "action");
                }
                if let Some(v) = &f.target_type {
                    eq(&mut sql, "target_type", v.clone(), walk == "target_type");
                }
                if let Some(v) = &f.target_id {
                    eq(&mut sql, "target_id", v.clone(), walk == "target_id");
                }
                range(&mut sql, "occurred_at", f.since, f.until);
                finish(sql, "occurred_at", "id", after)
            }),
        ));
    }
    Case {
        list: "audit",
        name,
        ours,
        references,
        position: ("occurred_at", "id"),
    }
}

/// Seeded users get random ids; the busiest is found once, after seeding, and kept.
static ACTOR: std::sync::OnceLock<Uuid> = std::sync::OnceLock::new();

fn busiest_actor() -> Uuid {
    *ACTOR.get().expect("looked up before the cases are built")
}
