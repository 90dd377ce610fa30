//! How many round trips to PostgreSQL a request costs, counted on the wire by a TCP relay
//! between the API and the server, so that no later change adds one silently; and a database
//! restart under read load with no failed read once it is back.
//!
//! A round trip is a flight: the client sends (one or more messages), then waits for the
//! server. The relay counts a flight each time the client sends after the server last spoke.
//! Background jobs (the export worker, the deletion job) share the pool: over 40 requests they
//! add a fraction of a flight per request, hence the half-flight margin in the assertions.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Forwards TCP to `upstream` and counts the client's flights over all connections.
struct Relay {
    addr: SocketAddr,
    flights: Arc<AtomicU64>,
}

impl Relay {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let flights = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&flights);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let counter = Arc::clone(&counter);
                tokio::spawn(pump_pair(client, server, counter));
            }
        });
        Self { addr, flights }
    }

    fn take(&self) -> u64 {
        self.flights.swap(0, Ordering::SeqCst)
    }
}

/// Copies `from` to `to` until either side closes, calling `seen` before passing each read on.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut seen: impl FnMut(usize),
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        seen(n);
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

async fn pump_pair(client: TcpStream, server: TcpStream, flights: Arc<AtomicU64>) {
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    // Whether the server spoke last on this connection (true at start: the first send counts).
    let server_spoke = Arc::new(AtomicBool::new(true));
    let spoke = Arc::clone(&server_spoke);
    let upstream = pump(client_read, server_write, |_| {
        if spoke.swap(false, Ordering::SeqCst) {
            flights.fetch_add(1, Ordering::SeqCst);
        }
    });
    let downstream = pump(server_read, client_write, |_| {
        server_spoke.store(true, Ordering::SeqCst)
    });
    tokio::join!(upstream, downstream);
}

/// The database URL with its host and port replaced by `addr`.
fn through(url: &str, addr: SocketAddr) -> String {
    let (scheme_user, rest) = url.split_once('@').unwrap();
    let (_, path) = rest.split_once('/').unwrap();
    format!("{scheme_user}@{addr}/{path}")
}

fn host_port(url: &str) -> SocketAddr {
    let rest = url.split_once('@').unwrap().1;
    rest.split_once('/').unwrap().0.parse().unwrap()
}

/// Flights per request of `count` sequential requests, after the pool's release of the last.
async fn flights_per_request(
    relay: &Relay,
    count: u64,
    mut request: impl AsyncFnMut(u64) -> u16,
) -> f64 {
    relay.take();
    for i in 0..count {
        let status = request(i).await;
        assert!((200..300).contains(&status), "answered {status}");
    }
    // The pool takes a connection back after the response has gone out.
    tokio::time::sleep(Duration::from_millis(200)).await;
    relay.take() as f64 / count as f64
}

const ALL: u64 = ALL_PERMISSIONS;

/// Seeds `count` memories of `agent`; returns their ids.
async fn seed_memories(db: &TestDb, agent: uuid::Uuid, count: usize) -> Vec<uuid::Uuid> {
    let ids: Vec<uuid::Uuid> = (0..count).map(|_| uuid::Uuid::now_v7()).collect();
    let mut admin = db.admin().await;
    let sql = "INSERT INTO ibex_core.memories (id, org_id, agent_id, content, content_hash,
               category)
         SELECT id, $2, $3, 'remembered', encode(sha256('remembered'), 'hex'), 'factual' FROM UNNEST($1::uuid[]) AS s(id)";
    run_sql!(
        &mut admin,
        sql,
        &ids,
        ORG_ID.parse::<uuid::Uuid>().unwrap(),
        agent
    );
    ids
}

/// Reads in at most two round trips and writes in at most three, in every domain that talks
/// to PostgreSQL (tokens live in the auth service, analytics in ClickHouse after the agent
/// check). A read: BEGIN with the tenant settings and the query in one flight, then its
/// ROLLBACK, sent without waiting. A write: BEGIN and its statement, what else it writes (the
/// outbox event), COMMIT. Statements are prepared once per connection (warm-up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_cost_two_round_trips_and_writes_three() {
    let auth = FakeAuth::start().await;
    let db = TestDb::create().await;
    let org: uuid::Uuid = ORG_ID.parse().unwrap();
    db.add_org(org).await;
    let agent = db.add_agent(org).await;
    let user = db.add_user(org, "member").await;
    let memories = seed_memories(&db, agent, 60).await;
    let session = uuid::Uuid::now_v7();
    let sql = "INSERT INTO ibex_core.sessions (id, org_id, agent_id) VALUES ($1, $2, $3)";
    run_sql!(&mut db.admin().await, sql, session, org, agent);
    let relay = Relay::start(host_port(&db.url)).await;
    let url = through(&db.url, relay.addr);
    let app = TestApp::start_on(
        config(
            auth.addr,
            &[
                ("IBEX_API_DATABASE_URL", &url),
                ("IBEX_API_DATABASE_MAX_CONNECTIONS", "1"),
            ],
        ),
        db,
    )
    .await;
    let token = auth.token_for(org, ALL);
    let directive = format!("/v1/agents/{agent}/directive");
    for content in ["first", "second"] {
        let body = json!({"content": content});
        let status = app.post(&directive, &token, body).await.status;
        assert!((200..300).contains(&status), "{status}");
    }

    let reads = [
        "/v1/agents".to_owned(),
        format!("/v1/agents/{agent}"),
        "/v1/users".to_owned(),
        format!("/v1/users/{user}"),
        format!("/v1/organizations/{ORG_ID}"),
        directive.clone(),
        format!("{directive}/versions"),
        format!("{directive}/versions/1"),
        format!("/v1/agents/{agent}/memories"),
        format!("/v1/agents/{agent}/memories/{}", memories[0]),
        "/v1/sessions".to_owned(),
        format!("/v1/sessions/{session}"),
    ];
    let mut report = Vec::new();
    for path in &reads {
        println!("measuring GET {path}");
        let read = async |_| app.read(path, &token).await.status;
        flights_per_request(&relay, 3, read).await; // warm-up
        let flights = flights_per_request(&relay, 20, read).await;
        report.push((format!("GET {path}"), flights, 2.0));
    }

    let agent_path = format!("/v1/agents/{agent}");
    let user_path = format!("/v1/users/{user}");
    let org_path = format!("/v1/organizations/{ORG_ID}");
    let rollback = format!("{directive}/rollback");
    let memory = |i: u64| format!("/v1/agents/{agent}/memories/{}", memories[i as usize]);
    type Write<'a> = (
        &'a str,
        Box<dyn Fn(u64) -> (String, Option<serde_json::Value>) + 'a>,
    );
    let writes: Vec<Write> = vec![
        (
            "POST",
            Box::new(|i| {
                (
                    "/v1/agents".into(),
                    Some(
                        json!({"name": "n", "slug": format!("s-{i}-{}", uuid::Uuid::now_v7().simple())}),
                    ),
                )
            }),
        ),
        (
            "PATCH",
            Box::new(|i| {
                (
                    agent_path.clone(),
                    Some(json!({"name": format!("renamed {i}")})),
                )
            }),
        ),
        (
            "PATCH",
            Box::new(|i| {
                (
                    user_path.clone(),
                    Some(json!({"name": format!("user {i}")})),
                )
            }),
        ),
        (
            "PATCH",
            Box::new(|i| (org_path.clone(), Some(json!({"name": format!("org {i}")})))),
        ),
        (
            "POST",
            Box::new(|i| {
                (
                    directive.clone(),
                    Some(json!({"content": format!("version {i}")})),
                )
            }),
        ),
        (
            "POST",
            Box::new(|i| (rollback.clone(), Some(json!({"version_num": 1 + i % 2})))),
        ),
        ("DELETE", Box::new(|i| (memory(i), None))),
    ];
    for (method, request) in &writes {
        println!("measuring {method} {}", request(0).0);
        let n = std::cell::Cell::new(0);
        let write = async |_| {
            n.set(n.get() + 1);
            let (path, body) = request(n.get());
            app.call(method, &path, &token, body).await.status
        };
        flights_per_request(&relay, 3, write).await; // warm-up
        let flights = flights_per_request(&relay, 20, write).await;
        report.push((format!("{method} {}", request(0).0), flights, 3.0));
    }
    for (operation, flights, _) in &report {
        println!("{flights:5.2} round trips: {operation}");
    }
    // Background jobs share the server and the relay: a fraction of a flight per request.
    let over: Vec<_> = report
        .iter()
        .filter(|(_, flights, bound)| *flights > bound + 0.5)
        .collect();
    assert!(over.is_empty(), "over the bound: {over:?}");
}

/// The relay counts what it claims: a client that sends twice, waiting in between, is two
/// flights; two sends without an answer in between are one.
#[tokio::test]
async fn the_relay_counts_flights() {
    let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_addr = echo.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut socket, _) = echo.accept().await.unwrap();
        let mut buf = [0u8; 16];
        while let Ok(n) = socket.read(&mut buf).await {
            if n == 0 || socket.write_all(b"ok").await.is_err() {
                break;
            }
        }
    });
    let relay = Relay::start(echo_addr).await;
    let mut client = TcpStream::connect(relay.addr).await.unwrap();
    let mut answer = [0u8; 2];
    for _ in 0..2 {
        client.write_all(b"ping").await.unwrap();
        client.read_exact(&mut answer).await.unwrap();
    }
    assert_eq!(relay.take(), 2);
    // Two writes back to back before reading: the echo may answer between them, so at most 2.
    client.write_all(b"a").await.unwrap();
    client.write_all(b"b").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let n = relay.take();
    assert!((1..=2).contains(&n), "{n}");
}

/// PostgreSQL killed and restarted while reads keep coming: during the outage they are fast
/// 503s, and from the moment it is back not one read fails, although every pooled connection
/// died with the old server (each dead one is found at its BEGIN and replaced, the read retried
/// once on a live one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_read_fails_once_a_restarted_database_is_back() {
    let (mut postgres, url) = own_postgres_with_org().await;
    let auth = FakeAuth::start().await;
    let token = auth.token_for(ORG_ID.parse().unwrap(), 1 << 35);
    let app = Arc::new(
        TestApp::start(
            auth.addr,
            &[
                ("IBEX_API_DATABASE_URL", &url),
                ("IBEX_API_DATABASE_MAX_CONNECTIONS", "4"),
            ],
        )
        .await,
    );
    // Four readers, so that all four pooled connections are open when the server dies.
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..4 {
        let (app, token, stop) = (Arc::clone(&app), token.clone(), Arc::clone(&stop));
        readers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let sent = Instant::now();
                let status = app.read("/v1/agents", &token).await.status;
                seen.push((sent, status));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            seen
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::task::block_in_place(|| postgres.kill());
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::task::block_in_place(|| postgres.restart()).unwrap();
    let back = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    let mut before = (0, 0);
    let mut after = Vec::new();
    for reader in readers {
        for (sent, status) in reader.await.unwrap() {
            if sent >= back {
                after.push(status);
            } else if status == 200 {
                before.0 += 1;
            } else {
                assert_eq!(status, 503, "an outage is a 503");
                before.1 += 1;
            }
        }
    }
    assert!(
        before.0 > 0 && before.1 > 0,
        "reads before and during: {before:?}"
    );
    assert!(after.len() > 20, "reads after: {}", after.len());
    let failed: Vec<_> = after.iter().filter(|s| **s != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} reads failed after the database was back: {failed:?}",
        failed.len(),
        after.len()
    );

    // A quiet moment instead: four connections open and idle when the server restarts, none
    // touched while it is down. Every one of them is dead; the first reads draw them.
    let warm: Vec<_> = (0..4)
        .map(|_| {
            let (app, token) = (Arc::clone(&app), token.clone());
            tokio::spawn(async move {
                for _ in 0..20 {
                    assert_eq!(app.read("/v1/agents", &token).await.status, 200);
                }
            })
        })
        .collect();
    for task in warm {
        task.await.unwrap();
    }
    tokio::task::block_in_place(|| {
        postgres.kill();
        postgres.restart()
    })
    .unwrap();
    let reads: Vec<_> = (0..4)
        .map(|_| {
            let (app, token) = (Arc::clone(&app), token.clone());
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for _ in 0..10 {
                    statuses.push(app.read("/v1/agents", &token).await.status);
                }
                statuses
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in reads {
        statuses.extend(task.await.unwrap());
    }
    assert!(
        statuses.iter().all(|s| *s == 200),
        "reads on connections that died idle: {statuses:?}"
    );
}
