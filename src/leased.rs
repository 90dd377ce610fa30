//! The loop of every background worker that claims its jobs from a table under a lease (memory
//! exports, data requests): claim until nothing is left, wait for a wake-up or the poll
//! interval, again. What a job is, how it is claimed and run, is the worker's own.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::db::Database;

/// How often a worker looks for work without being woken (a job filed on another replica, a
/// lease that ran out).
pub const POLL: Duration = Duration::from_secs(2);

/// A claimed job; its id names it in the log.
pub trait Job: Send + 'static {
    fn id(&self) -> Uuid;
}

pub trait LeasedWorker: Clone + Send + Sync + 'static {
    type Job: Job;

    /// What the log calls a job ("export", "data request").
    const JOB: &'static str;

    /// The oldest job with work to do whose lease is over, now this worker's.
    fn claim(&self) -> impl Future<Output = Option<Self::Job>> + Send;

    fn run(&self, job: Self::Job) -> impl Future<Output = ()> + Send;

    /// Work of each round before claiming (the data requests' archive purge).
    fn before_claims(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// Runs `worker` for as long as the runtime lives; `wake` cuts a wait short (a job was filed).
pub fn spawn<W: LeasedWorker>(worker: W, wake: Arc<Notify>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            worker.before_claims().await;
            while let Some(job) = worker.claim().await {
                let id = job.id();
                let attempt = worker.clone();
                // Its own task: a panic ends this attempt (the lease runs out and the job is
                // taken up again), never the worker.
                if tokio::spawn(async move { attempt.run(job).await })
                    .await
                    .is_err()
                {
                    tracing::error!(job = W::JOB, %id, "attempt panicked; the job resumes once its lease runs out");
                }
            }
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    })
}

/// How a job's lease ended.
#[derive(Debug, PartialEq, Eq)]
pub enum LeaseEnd {
    /// Another worker claimed the job, or it is gone (deleted with its organization).
    Lost,
    /// Two renewals in a row could not reach the database: the lease may still hold, so the
    /// attempt gives up before it runs out.
    DatabaseAway,
}

/// Renews a claimed job's lease every third of it until the lease ends. `renew` sets
/// `lease_until = now() + make_interval(secs => $3)` where `id = $1 AND attempts = $2` and the job
/// is still in a claimed state, so an attempt that was overtaken renews nothing.
pub async fn keep(
    db: &Database,
    renew: &'static str,
    id: Uuid,
    attempt: i32,
    lease: Duration,
) -> LeaseEnd {
    let mut misses = 0;
    loop {
        tokio::time::sleep(lease / 3).await;
        let renewed = async {
            let mut conn = db.platform().await.ok()?;
            sqlx::query(renew)
                .bind(id)
                .bind(attempt)
                .bind(lease.as_secs_f64())
                .execute(&mut *conn)
                .await
                .ok()
                .map(|r| r.rows_affected() == 1)
        };
        match renewed.await {
            Some(true) => misses = 0,
            Some(false) => return LeaseEnd::Lost,
            None => {
                misses += 1;
                if misses >= 2 {
                    return LeaseEnd::DatabaseAway;
                }
            }
        }
    }
}
