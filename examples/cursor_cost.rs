//! What a signed cursor costs per request (issue 27, part 2): issuing one (`finish`, as the last
//! page row becomes `next_cursor`) and checking one (`resolve`, as the next request arrives), beside
//! the same work without the tag (base64 of the position and back, the unsigned format's work),
//! measured in the same run. A benchmark, never a test: `cargo run --release --example cursor_cost`.

use std::hint::black_box;
use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use ibex_api::wire::pagination::{CursorKeys, ListScope, Page, Position};
use uuid::Uuid;

const ROUNDS: u32 = 200_000;

fn main() {
    let keys = CursorKeys::new(&[
        "the current key, at least thirty-two characters",
        "the previous key, at least thirty-two characters",
    ]);
    let org = Uuid::now_v7();
    let at = Position {
        created_at: Utc::now(),
        id: Uuid::now_v7(),
    };
    let scope = || {
        ListScope::new("memories")
            .filter("agent_id", Some("0192f0c4-5d7e-7c3a-9f1e-2b3c4d5e7001"))
            .filter("status", Some("active"))
            .filter("tag", None)
    };
    // Each round: scope a list, issue a cursor, then scope the next request and check it.
    let signed = || {
        let first = Page::new(20, None, keys.clone(), org)
            .resolve(&scope())
            .unwrap();
        let cursor = first.finish(vec![0u8; 21], |_| at).next_cursor.unwrap();
        let next = Page::new(20, Some(cursor), keys.clone(), org)
            .resolve(&scope())
            .unwrap();
        black_box(next.after)
    };
    let unsigned = || {
        let _ = black_box(scope());
        let mut bytes = Vec::with_capacity(25);
        bytes.push(1u8);
        bytes.extend_from_slice(&at.created_at.timestamp_micros().to_be_bytes());
        bytes.extend_from_slice(at.id.as_bytes());
        let cursor = URL_SAFE_NO_PAD.encode(&bytes);
        let _ = black_box(scope());
        black_box(URL_SAFE_NO_PAD.decode(cursor).unwrap())
    };
    for _ in 0..3 {
        let signed_ns = time(signed);
        let unsigned_ns = time(unsigned);
        println!(
            "issue + check one cursor: signed {signed_ns:.0} ns, unsigned {unsigned_ns:.0} ns, \
             the tag adds {:.0} ns ({:.2}x)",
            signed_ns - unsigned_ns,
            signed_ns / unsigned_ns
        );
    }
}

fn time<T>(mut work: impl FnMut() -> T) -> f64 {
    for _ in 0..1000 {
        black_box(work());
    }
    let started = Instant::now();
    for _ in 0..ROUNDS {
        black_box(work());
    }
    started.elapsed().as_nanos() as f64 / f64::from(ROUNDS)
}
