//! PostgreSQL: one throwaway cluster per test binary, a migrated template, a database per test.

use std::sync::OnceLock;

use ibex_api::devenv::postgres::TempPostgres;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use super::*;

const TEMPLATE: &str = "ibex_template";

struct Cluster {
    postgres: TempPostgres,
    /// CREATE DATABASE … TEMPLATE fails while another copy of the template is being made.
    create_lock: tokio::sync::Mutex<()>,
}

fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    started_once(&CLUSTER, async || {
        let postgres = TempPostgres::start().expect("start PostgreSQL for the tests");
        let mut admin = PgConnection::connect(&postgres.url("postgres"))
            .await
            .unwrap();
        run_sql!(&mut admin, &format!("CREATE DATABASE {TEMPLATE}"));
        ibex_api::db::migrate::run(&postgres.url(TEMPLATE))
            .await
            .expect("migrate the template");
        Cluster {
            postgres,
            create_lock: tokio::sync::Mutex::new(()),
        }
    })
}

/// A fresh database of the tests' cluster, migrated (a copy of the template) unless asked not to.
pub struct TestDb {
    pub url: String,
    pub name: String,
}

impl TestDb {
    pub async fn create() -> Self {
        Self::create_from(Some(TEMPLATE)).await
    }

    /// An empty database: no schema at all.
    pub async fn create_unmigrated() -> Self {
        Self::create_from(None).await
    }

    async fn create_from(template: Option<&str>) -> Self {
        let cluster = cluster();
        let name = format!("test_{}", Uuid::new_v4().simple());
        let _one_at_a_time = cluster.create_lock.lock().await;
        let mut admin = PgConnection::connect(&cluster.postgres.url("postgres"))
            .await
            .unwrap();
        let template = template
            .map(|t| format!(" TEMPLATE {t}"))
            .unwrap_or_default();
        sqlx::query(&format!("CREATE DATABASE {name}{template}"))
            .execute(&mut admin)
            .await
            .unwrap();
        let _ = admin.close().await;
        Self {
            url: cluster.postgres.url(&name),
            name,
        }
    }

    /// A superuser connection: bypasses row-level security, to set up and inspect.
    pub async fn admin(&self) -> PgConnection {
        PgConnection::connect(&self.url).await.unwrap()
    }

    /// An active user of `org_id` with `role`; returns its id.
    pub async fn add_user(&self, org_id: Uuid, role: &str) -> Uuid {
        let id = Uuid::now_v7();
        let mut admin = self.admin().await;
        sqlx::query(
            "INSERT INTO ibex_core.users (id, org_id, email, name, role, status)
             VALUES ($1, $2, $3, 'Seeded', $4, 'active')",
        )
        .bind(id)
        .bind(org_id)
        .bind(format!("{}@seed.example", id.simple()))
        .bind(role)
        .execute(&mut admin)
        .await
        .unwrap();
        id
    }

    /// A live agent of `org_id`; returns its id.
    pub async fn add_agent(&self, org_id: Uuid) -> Uuid {
        let id = Uuid::now_v7();
        let mut admin = self.admin().await;
        sqlx::query(
            "INSERT INTO ibex_core.agents (id, org_id, name, slug) VALUES ($1, $2, 'a', $3)",
        )
        .bind(id)
        .bind(org_id)
        .bind(format!("a-{}", id.simple()))
        .execute(&mut admin)
        .await
        .unwrap();
        id
    }

    pub async fn add_org(&self, id: Uuid) {
        let mut admin = self.admin().await;
        sqlx::query(
            "INSERT INTO ibex_core.organizations (id, name, slug) VALUES ($1, 'Org', $2)
             ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(format!("org-{}", id.simple()))
        .execute(&mut admin)
        .await
        .unwrap();
    }
}

/// A PostgreSQL server of the test's own (for tests that stop or restart it), migrated, with the
/// organization `ORG_ID`; and its URL.
pub async fn own_postgres_with_org() -> (TempPostgres, String) {
    let postgres = tokio::task::spawn_blocking(TempPostgres::start)
        .await
        .unwrap()
        .unwrap();
    let url = postgres.url("postgres");
    ibex_api::db::migrate::run(&url).await.unwrap();
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    sqlx::query("INSERT INTO ibex_core.organizations (id, name, slug) VALUES ($1, 'A', 'a')")
        .bind(Uuid::parse_str(ORG_ID).unwrap())
        .execute(&mut admin)
        .await
        .unwrap();
    (postgres, url)
}

/// One-statement reads and writes on a superuser connection, so a test states only its SQL.
#[allow(async_fn_in_trait)]
pub trait Admin {
    /// Runs `sql` with `arg` as `$1`.
    async fn run<A>(&mut self, sql: &str, arg: A)
    where
        A: for<'q> sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send;

    /// The one value `sql` selects with `arg` as `$1`.
    async fn value<T, A>(&mut self, sql: &str, arg: A) -> T
    where
        (T,): for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
        T: Send + Unpin,
        A: for<'q> sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send;
}

impl Admin for PgConnection {
    async fn run<A>(&mut self, sql: &str, arg: A)
    where
        A: for<'q> sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send,
    {
        sqlx::query(sql)
            .bind(arg)
            .execute(self)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    async fn value<T, A>(&mut self, sql: &str, arg: A) -> T
    where
        (T,): for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
        T: Send + Unpin,
        A: for<'q> sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send,
    {
        sqlx::query_scalar(sql)
            .bind(arg)
            .fetch_one(self)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}
