//! Liveness and readiness state: the checks `/ready` runs and the draining flag.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, join_all};
use serde::Serialize;
use utoipa::ToSchema;

/// How `/ready` looks at a dependency.
pub trait ReadinessCheck: Send + Sync {
    /// `Ok` carries a short note; `Err` says what is wrong. Never a secret.
    fn check(&self, deadline: Duration) -> BoxFuture<'_, Result<String, String>>;
}

/// A dependency `/ready` looks at, under its name in the answer.
pub struct Check {
    name: &'static str,
    /// A failing critical check makes the service unready (503); others only degrade it.
    critical: bool,
    check: Box<dyn ReadinessCheck>,
}

impl Check {
    pub fn critical(name: &'static str, check: impl ReadinessCheck + 'static) -> Self {
        let check = Box::new(check);
        Self {
            name,
            critical: true,
            check,
        }
    }

    pub fn optional(name: &'static str, check: impl ReadinessCheck + 'static) -> Self {
        Self {
            critical: false,
            ..Self::critical(name, check)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Ok,
    Degraded,
    Unhealthy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Ok,
    Failed,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CheckResult {
    pub status: CheckStatus,
    pub latency_ms: u64,
    pub message: String,
}

/// The platform's health document, for both `/health` and `/ready`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"status": "ok", "checks": {"auth": {"status": "ok", "latency_ms": 2, "message": "reachable"}}}))]
pub struct HealthReport {
    pub status: HealthStatus,
    pub checks: BTreeMap<String, CheckResult>,
}

pub struct Readiness {
    checks: Vec<Check>,
    deadline: Duration,
    reuse_for: Duration,
    /// The last dependency report and when it was made. The async lock also queues concurrent
    /// callers behind one run, so they share its result.
    last: tokio::sync::Mutex<Option<(Instant, HealthReport)>>,
    draining: AtomicBool,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.checks.iter().map(|c| c.name).collect();
        f.debug_struct("Readiness")
            .field("checks", &names)
            .field("draining", &self.is_draining())
            .finish()
    }
}

impl Readiness {
    /// `reuse_for`: how long a report is served again instead of re-running the checks. `/ready`
    /// needs no token, so this bounds the auth-service probes anyone can trigger.
    pub fn new(checks: Vec<Check>, deadline: Duration, reuse_for: Duration) -> Self {
        Self {
            checks,
            deadline,
            reuse_for,
            last: tokio::sync::Mutex::new(None),
            draining: AtomicBool::new(false),
        }
    }

    /// From now on `/ready` answers 503, so load balancers stop sending new traffic.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// The readiness report: dependency checks (fresh or reused), and draining, which is never
    /// reused so that a shutdown shows at once.
    pub async fn report(&self) -> HealthReport {
        let mut report = self.dependencies().await;
        if self.is_draining() {
            report.status = HealthStatus::Unhealthy;
            report.checks.insert(
                "shutdown".to_owned(),
                CheckResult {
                    status: CheckStatus::Failed,
                    latency_ms: 0,
                    message: "draining before shutdown".to_owned(),
                },
            );
        }
        let checks: Vec<(&str, bool)> = report
            .checks
            .iter()
            .filter(|(name, _)| name.as_str() != "shutdown")
            .map(|(name, result)| (name.as_str(), result.status == CheckStatus::Ok))
            .collect();
        crate::observability::metrics::record_readiness(
            report.status != HealthStatus::Unhealthy,
            &checks,
        );
        report
    }

    async fn dependencies(&self) -> HealthReport {
        let mut last = self.last.lock().await;
        if let Some((at, report)) = last.as_ref() {
            if at.elapsed() < self.reuse_for {
                return report.clone();
            }
        }
        let report = self.run_checks().await;
        *last = Some((Instant::now(), report.clone()));
        report
    }

    /// Runs every check in parallel, each bounded by the deadline.
    async fn run_checks(&self) -> HealthReport {
        let runs = self.checks.iter().map(|check| async move {
            let started = Instant::now();
            let outcome = tokio::time::timeout(self.deadline, check.check.check(self.deadline))
                .await
                .unwrap_or_else(|_| {
                    Err(format!("no answer within {} ms", self.deadline.as_millis()))
                });
            let latency_ms = started.elapsed().as_millis() as u64;
            let (status, message) = match outcome {
                Ok(note) => (CheckStatus::Ok, note),
                Err(problem) => (CheckStatus::Failed, problem),
            };
            (
                check,
                CheckResult {
                    status,
                    latency_ms,
                    message,
                },
            )
        });
        let mut status = HealthStatus::Ok;
        let mut checks = BTreeMap::new();
        for (check, result) in join_all(runs).await {
            if result.status == CheckStatus::Failed {
                status = match (check.critical, status) {
                    (true, _) | (false, HealthStatus::Unhealthy) => HealthStatus::Unhealthy,
                    (false, _) => HealthStatus::Degraded,
                };
            }
            checks.insert(check.name.to_owned(), result);
        }
        HealthReport { status, checks }
    }
}
