//! ClickHouse: one throwaway server per test binary (Debian's clickhouse-server), with the
//! platform's trace table; tests use their own organizations. Outage tests start their own.

use std::sync::OnceLock;

pub use ibex_api::devenv::clickhouse::TempClickHouse;

pub fn clickhouse() -> &'static TempClickHouse {
    static SERVER: OnceLock<TempClickHouse> = OnceLock::new();
    super::started_once(&SERVER, async || {
        let server = TempClickHouse::start().expect("start clickhouse-server for the tests");
        create_table(&server.url()).await;
        server
    })
}

/// The trace table on the server at `url`.
pub async fn create_table(url: &str) {
    let client = clickhouse::Client::default()
        .with_url(url)
        .with_validation(false);
    ibex_api::devenv::clickhouse::create_schema(&client)
        .await
        .unwrap();
}

/// Inserts JSON rows as the proxy would (JSONEachRow over HTTP).
pub async fn insert_json(url: &str, rows: &[serde_json::Value]) {
    let mut body = String::new();
    for row in rows {
        body.push_str(&row.to_string());
        body.push('\n');
    }
    let client = clickhouse::Client::default().with_url(url);
    let mut insert = client.insert_formatted_with("INSERT INTO ibex.llm_traces FORMAT JSONEachRow");
    insert.send(body.into_bytes().into()).await.unwrap();
    insert.end().await.unwrap();
}
