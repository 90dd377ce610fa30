//! Open-loop load at a fixed rate, for latency at a given load rather than throughput.
//!
//! Request `i` is due at `start + i / rate`, sent at that moment whether or not earlier ones have
//! answered, and its latency counts from when it was due, not from when it left: a stall shows
//! up in every request it delayed (the correction for coordinated omission that a closed-loop
//! tool like wrk cannot make). Prints one JSON line with the percentiles in milliseconds.
//!
//! `open_loop URL TOKEN RATE SECONDS [WARMUP_SECONDS]`

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (url, token) = (args[1].clone(), args[2].clone());
    let rate: f64 = args[3].parse().expect("RATE: requests per second");
    let seconds: f64 = args[4].parse().expect("SECONDS");
    let warmup: f64 = args
        .get(5)
        .map_or(1.0, |w| w.parse().expect("WARMUP_SECONDS"));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    let total = ((warmup + seconds) * rate) as u64;
    let measured_from = (warmup * rate) as u64;
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(total as usize)));
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due).await;
        let (client, url, token) = (client.clone(), url.clone(), token.clone());
        let (latencies, errors) = (Arc::clone(&latencies), Arc::clone(&errors));
        tasks.push(tokio::spawn(async move {
            let answer = client.get(&url).bearer_auth(&token).send().await;
            let ok = match answer {
                Ok(reply) => reply.status().is_success() && reply.bytes().await.is_ok(),
                Err(_) => false,
            };
            if i >= measured_from {
                if ok {
                    latencies.lock().await.push(due.elapsed());
                } else {
                    errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }));
    }
    let sent_in = start.elapsed();
    for task in tasks {
        let _ = task.await;
    }
    let mut latencies = latencies.lock().await.clone();
    latencies.sort();
    let at = |q: f64| {
        let index = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len());
        latencies[index - 1].as_secs_f64() * 1000.0
    };
    // The schedule fell behind if sending took noticeably longer than planned.
    let behind = sent_in.as_secs_f64() - (warmup + seconds);
    println!(
        "{{\"rate\": {rate}, \"requests\": {}, \"errors\": {}, \"p50_ms\": {:.3}, \"p90_ms\": {:.3}, \
         \"p99_ms\": {:.3}, \"p999_ms\": {:.3}, \"max_ms\": {:.3}, \"schedule_behind_s\": {behind:.3}}}",
        latencies.len(),
        errors.load(std::sync::atomic::Ordering::Relaxed),
        at(0.50),
        at(0.90),
        at(0.99),
        at(0.999),
        at(1.0),
    );
}
