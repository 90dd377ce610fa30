//! A throwaway `clickhouse-server` on loopback ports (Debian's `clickhouse-server` package), for
//! `--dev` and the tests: its own data folder (removed on drop), UTC, tied to this process like
//! the PostgreSQL cluster. Also the trace table's schema, and the development traffic.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::postgres::{free_port, is_alive, kill_and_wait, spawn_tied_to_this_process};

#[derive(Debug)]
pub struct TempClickHouse {
    dir: PathBuf,
    http_port: u16,
    tcp_port: u16,
    pid: u32,
}

/// `clickhouse-server` on PATH or in Debian's location.
pub fn server_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("clickhouse-server"))
            .find(|bin| bin.is_file())
    });
    on_path.or_else(|| {
        let debian = PathBuf::from("/usr/bin/clickhouse-server");
        debian.is_file().then_some(debian)
    })
}

/// The platform's trace table, in SQL that ClickHouse 18.16 and current releases both accept.
pub const TRACES_DDL: &[&str] = &[
    "CREATE DATABASE IF NOT EXISTS ibex",
    "CREATE TABLE IF NOT EXISTS ibex.llm_traces (
        request_id String,
        org_id String,
        agent_id String,
        session_id String,
        model String,
        provider String,
        input_tokens UInt32,
        output_tokens UInt32,
        total_tokens UInt32,
        proxy_overhead_ms Float32,
        ttfb_ms Float32,
        total_latency_ms Float32,
        status_code UInt16,
        error_code String,
        requested_at DateTime
    ) ENGINE = MergeTree()
    PARTITION BY toYYYYMM(requested_at)
    ORDER BY (org_id, requested_at)",
];

impl TempClickHouse {
    pub fn start() -> Result<Self, String> {
        let bin = server_binary()
            .ok_or("clickhouse-server not found (Debian: apt-get install clickhouse-server)")?;
        let dir =
            std::env::temp_dir().join(format!("ibex-clickhouse-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(dir.join("tmp")).map_err(|e| e.to_string())?;
        let d = dir.display();
        let config = format!(
            "<yandex>
  <logger><level>warning</level><log>{d}/server.log</log><errorlog>{d}/error.log</errorlog><console>0</console></logger>
  <listen_host>127.0.0.1</listen_host>
  <path>{d}/</path>
  <tmp_path>{d}/tmp/</tmp_path>
  <user_files_path>{d}/user_files/</user_files_path>
  <format_schema_path>{d}/format_schemas/</format_schema_path>
  <mark_cache_size>268435456</mark_cache_size>
  <timezone>UTC</timezone>
  <max_concurrent_queries>100</max_concurrent_queries>
  <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default></default></quotas>
</yandex>
"
        );
        std::fs::write(dir.join("config.xml"), config).map_err(|e| e.to_string())?;
        let mut server = Self {
            dir,
            http_port: 0,
            tcp_port: 0,
            pid: 0,
        };
        let mut last_error = String::new();
        for _ in 0..5 {
            server.http_port = free_port()?;
            server.tcp_port = free_port()?;
            match server.launch(&bin) {
                Ok(()) => return Ok(server),
                Err(e) => last_error = e,
            }
        }
        Err(format!("clickhouse-server did not start: {last_error}"))
    }

    fn launch(&mut self, bin: &std::path::Path) -> Result<(), String> {
        let mut command = Command::new(bin);
        command
            .arg(format!("--config-file={}/config.xml", self.dir.display()))
            .arg("--")
            .arg(format!("--http_port={}", self.http_port))
            .arg(format!("--tcp_port={}", self.tcp_port))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.pid = spawn_tied_to_this_process(command)?;
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if self.ping() {
                return Ok(());
            }
            if !self.is_running() {
                return Err("the server exited".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.stop();
        Err("no answer within 30 s".into())
    }

    /// `GET /ping` answers `Ok.` once the server serves queries.
    fn ping(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.http_port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        if stream
            .write_all(b"GET /ping HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.contains("Ok.")
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    fn is_running(&self) -> bool {
        is_alive(self.pid)
    }

    /// Stops the server (for outage tests; [`TempClickHouse::restart`] brings it back).
    pub fn stop(&self) {
        kill_and_wait(self.pid);
    }

    /// Starts again on the same ports with the same data.
    pub fn restart(&mut self) -> Result<(), String> {
        let bin = server_binary().ok_or("clickhouse-server not found")?;
        let started = Instant::now();
        let mut last = String::new();
        while started.elapsed() < Duration::from_secs(30) {
            match self.launch(&bin) {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(format!("clickhouse-server did not restart: {last}"))
    }
}

impl Drop for TempClickHouse {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Creates the trace table (idempotent) through `client`.
pub async fn create_schema(client: &clickhouse::Client) -> Result<(), String> {
    for ddl in TRACES_DDL {
        client
            .query(ddl)
            .execute()
            .await
            .map_err(|e| format!("clickhouse schema: {e}"))?;
    }
    Ok(())
}

/// Inserts `rows` requests of plausible traffic for `org_id`'s `agents` over the `days` days
/// before `now` (Unix seconds): several models and providers, a daily rhythm (busier 08–20 UTC),
/// about 3 % errors. Generated by ClickHouse itself (`numbers()`), deterministic per row number.
pub async fn seed_traffic(
    client: &clickhouse::Client,
    org_id: &str,
    agents: &[String; 3],
    now: u32,
    days: u32,
    rows: u64,
) -> Result<(), String> {
    let span = u64::from(days) * 86_400;
    let sql = "INSERT INTO ibex.llm_traces
        SELECT request_id, org_id, agent_id, session_id, model, provider, input_tokens,
               output_tokens, total_tokens, proxy_overhead_ms, ttfb_ms, total_latency_ms,
               status_code, error_code, requested_at
        FROM (
            SELECT
                hex(sipHash64(number * 10 + 1)) AS request_id,
                ? AS org_id,
                arrayElement([?, ?, ?], 1 + number % 3) AS agent_id,
                '' AS session_id,
                arrayElement(['gpt-4o-mini', 'claude-3-5-sonnet', 'llama-3.1-70b', 'gpt-4o'], 1 + intDiv(number, 3) % 4) AS model,
                arrayElement(['openai', 'anthropic', 'groq', 'openai'], 1 + intDiv(number, 3) % 4) AS provider,
                toUInt32(200 + sipHash64(number * 10 + 2) % 1800) AS input_tokens,
                toUInt32(50 + sipHash64(number * 10 + 3) % 700) AS output_tokens,
                toUInt32(input_tokens + output_tokens) AS total_tokens,
                toFloat32(2 + (sipHash64(number * 10 + 4) % 1200) / 100) AS proxy_overhead_ms,
                toFloat32(120 + sipHash64(number * 10 + 5) % 900) AS ttfb_ms,
                toFloat32(ttfb_ms + 200 + sipHash64(number * 10 + 6) % 3000) AS total_latency_ms,
                toUInt16(if(sipHash64(number * 10 + 7) % 100 < 3, 502, 200)) AS status_code,
                if(status_code = 200, '', arrayElement(['UPSTREAM_TIMEOUT', 'RATE_LIMITED', 'PROVIDER_ERROR'], 1 + sipHash64(number * 10 + 8) % 3)) AS error_code,
                toDateTime(? - intDiv(number * ?, ?)) AS requested_at
            FROM system.numbers LIMIT ?
        )
        WHERE sipHash64(request_id) % 100 < if(toHour(requested_at) >= 8 AND toHour(requested_at) < 20, 90, 30)";
    client
        .query(sql)
        .bind(org_id)
        .bind(&agents[0])
        .bind(&agents[1])
        .bind(&agents[2])
        .bind(now)
        .bind(span)
        .bind(rows)
        .bind(rows)
        .execute()
        .await
        .map_err(|e| format!("clickhouse seed: {e}"))
}
