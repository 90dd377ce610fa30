//! The client of the platform's memory service, which owns the embeddings and ranks an agent's
//! memories for a query: `POST {url}/internal/memories/search`. One connection pool for the
//! process, a deadline per call, the request id and trace context passed on. Whatever goes
//! wrong there (down, slow, an error status, garbage) is one answer to the caller, 503
//! MEMORY_SERVICE_UNAVAILABLE, and nothing the service said is echoed.

use std::time::Duration;

use http::HeaderMap;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::model::SearchRequest;
use crate::config::MemoryServiceConfig;
use crate::error::ApiError;

/// Most results a well-behaved service returns is the request's limit (at most 50); more than
/// this is garbage, refused before anything is read from the database.
const MAX_RESULTS: usize = 50;
/// Largest answer read (50 results are ~4 KB).
const MAX_BODY_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone)]
pub struct MemoryService {
    client: reqwest::Client,
    /// `None`: search is off.
    search_url: Option<String>,
    timeout: Duration,
}

#[derive(Debug, Deserialize)]
struct Answer {
    results: Vec<Ranked>,
}

#[derive(Debug, Deserialize)]
struct Ranked {
    memory_id: Uuid,
    score: f64,
}

impl MemoryService {
    pub fn from_config(config: &MemoryServiceConfig) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .connect_timeout(config.timeout.min(Duration::from_secs(1)))
            .pool_idle_timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|_| "cannot build the memory service client".to_owned())?;
        Ok(Self {
            client,
            search_url: config
                .url
                .as_ref()
                .map(|url| format!("{url}/internal/memories/search")),
            timeout: config.timeout,
        })
    }

    /// The service's ranking, best first: (memory id, score).
    pub async fn search(
        &self,
        org_id: Uuid,
        agent_id: Uuid,
        request: &SearchRequest,
    ) -> Result<Vec<(Uuid, f64)>, ApiError> {
        let Some(url) = &self.search_url else {
            return Err(ApiError::MemoryServiceUnavailable);
        };
        let mut filters = serde_json::Map::new();
        if let Some(category) = request.category {
            filters.insert("category".into(), json!(category));
        }
        if !request.tags.is_empty() {
            filters.insert("tags".into(), json!(request.tags));
        }
        if let Some(min) = request.min_confidence {
            filters.insert("min_confidence".into(), json!(min));
        }
        let body = json!({
            "org_id": org_id,
            "agent_id": agent_id,
            "query": request.query,
            "limit": request.limit,
            "filters": filters,
        });
        let mut headers = HeaderMap::new();
        if let Some(id) = crate::request_id::current() {
            headers.insert("x-request-id", id.header_value());
        }
        let span = crate::observability::traces::client_span("memory.search");
        span.in_scope(|| crate::observability::traces::inject_headers(&mut headers));
        let call = async {
            let response = self
                .client
                .post(url)
                .headers(headers)
                .json(&body)
                .send()
                .await
                .map_err(|e| problem("unreachable", e.is_timeout()))?;
            if !response.status().is_success() {
                return Err(problem("error status", false));
            }
            if response
                .content_length()
                .is_some_and(|n| n > MAX_BODY_BYTES as u64)
            {
                return Err(problem("answer too large", false));
            }
            let bytes = response
                .bytes()
                .await
                .map_err(|e| problem("answer unreadable", e.is_timeout()))?;
            if bytes.len() > MAX_BODY_BYTES {
                return Err(problem("answer too large", false));
            }
            let answer: Answer =
                serde_json::from_slice(&bytes).map_err(|_| problem("answer malformed", false))?;
            if answer.results.len() > MAX_RESULTS
                || answer.results.iter().any(|r| !r.score.is_finite())
            {
                return Err(problem("answer malformed", false));
            }
            Ok(answer
                .results
                .into_iter()
                .map(|r| (r.memory_id, r.score))
                .collect())
        };
        let call = tracing::Instrument::instrument(call, span);
        tokio::time::timeout(self.timeout, call)
            .await
            .unwrap_or_else(|_| Err(problem("no answer within the deadline", true)))
    }
}

/// Logs what went wrong (never the service's own words) and answers 503.
fn problem(what: &'static str, timeout: bool) -> ApiError {
    tracing::warn!(problem = what, timeout, "memory service call failed");
    ApiError::MemoryServiceUnavailable
}
