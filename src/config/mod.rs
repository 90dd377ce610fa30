//! Configuration from `IBEX_API_*` environment variables and an optional TOML file, by concern:
//! each concern's module declares its settings once ([`Setting`]: variable, default, bounds,
//! meaning, and the field of the concern's struct it fills), the struct and its reading are
//! generated from those lines, and the component it configures takes only that struct.
//! docs/configuration.md's table and `.env.example` are generated from the declarations
//! (`ibex-api config --markdown` / `--env`; a test keeps the committed ones in step).
//!
//! The `config` crate merges the sources (environment wins over the file); every value is then
//! parsed here by hand so that an error names the exact variable and what it expected, and the
//! process can refuse to start with one clear line. Unknown `IBEX_API_*` variables are errors too:
//! a typo must not silently leave a default in force.

/// Declares a concern's settings, each once: its doc comment is its meaning, the call its
/// variable, default and bounds (a call may go on with `.up_to(max)`). Makes a `Setting` const of
/// each and the concern's `SETTINGS`, in order, for the documentation.
///
/// Declared inside `pub struct XConfig { … }`, each setting also names the field it fills
/// (`=> field: Type`), read by the field's type ([`setting::FromSetting`]) or `by` a reader
/// function of the concern (`fn(&Values, &Setting) -> Result<Type, ConfigError>`); the struct, its
/// field docs (the settings' meanings) and its `read` are generated.
macro_rules! settings {
    (
        $(#[$meta:meta])*
        pub struct $concern:ident {
            $(
                $(#[doc = $doc:literal])+
                $name:ident = $kind:ident($($arg:expr),+ $(,)?) $(.$then:ident($($then_arg:expr),*))*
                    => $field:ident: $ty:ty $(, by $reader:path)?;
            )+
        }
    ) => {
        settings! {
            $($(#[doc = $doc])+ $name = $kind($($arg),+) $(.$then($($then_arg),*))*;)+
        }

        $(#[$meta])*
        #[derive(Debug, Clone)]
        pub struct $concern {
            $($(#[doc = $doc])+ pub $field: $ty,)+
        }

        impl $concern {
            pub(super) fn read(
                v: &super::setting::Values,
            ) -> Result<Self, super::ConfigError> {
                Ok(Self {
                    $($field: settings!(@read v, $name $(, $reader)?),)+
                })
            }
        }
    };
    (@read $v:ident, $name:ident) => {
        super::setting::FromSetting::from_setting($v, &$name)?
    };
    (@read $v:ident, $name:ident, $reader:path) => {
        $reader($v, &$name)?
    };
    ($($(#[doc = $doc:literal])+ $name:ident = $kind:ident($($arg:expr),+ $(,)?)
        $(.$then:ident($($then_arg:expr),*))*;)+) => {
        $(
            $(#[doc = $doc])+
            pub const $name: Setting =
                Setting::$kind($($arg),+, &[$($doc),+])$(.$then($($then_arg),*))*;
        )+

        /// This concern's settings, in the order the documentation lists them.
        pub const SETTINGS: &[Setting] = &[$($name),+];
    };
}

pub mod analytics;
pub mod auth;
pub mod database;
pub mod exports;
pub mod gdpr;
pub mod memory_service;
pub mod object_store;
pub mod observability;
pub mod rate_limits;
pub mod readiness;
pub mod redis;
pub mod requests;
pub mod retention;
mod secret;
pub mod server;
mod setting;
pub mod signing;

use std::collections::HashMap;
use std::time::Duration;

pub use analytics::ClickHouseConfig;
pub use auth::AuthConfig;
pub use database::DatabaseConfig;
pub use exports::ExportConfig;
pub use gdpr::GdprConfig;
pub use memory_service::MemoryServiceConfig;
pub use object_store::S3Config;
pub use observability::{LogFormat, ObservabilityConfig};
pub use rate_limits::{Limit, Limits, RateLimitConfig};
pub use readiness::ReadinessConfig;
pub use redis::RedisConfig;
pub use requests::RequestsConfig;
pub use retention::RetentionConfig;
pub use secret::{Secret, SecretUrl};
pub use server::ServerConfig;
use setting::Values;
pub use setting::{Bounds, Setting};
pub use signing::SigningConfig;

settings! {
    /// Optional TOML file with the same settings as lowercase keys without the prefix (port =
    /// 8010); environment variables override it.
    CONFIG_FILE = text("IBEX_API_CONFIG_FILE", "");
}

/// Every setting, concern by concern, in the order the documentation lists them.
pub fn settings() -> impl Iterator<Item = &'static Setting> {
    [
        SETTINGS,
        server::SETTINGS,
        observability::SETTINGS,
        auth::SETTINGS,
        database::SETTINGS,
        redis::SETTINGS,
        rate_limits::SETTINGS,
        requests::SETTINGS,
        signing::SETTINGS,
        gdpr::SETTINGS,
        retention::SETTINGS,
        memory_service::SETTINGS,
        object_store::SETTINGS,
        exports::SETTINGS,
        analytics::SETTINGS,
        readiness::SETTINGS,
    ]
    .into_iter()
    .flatten()
}

/// The configuration table of `docs/configuration.md`, made from the declarations.
pub fn markdown_table() -> String {
    let mut table = String::from("| Variable | Default | Bounds | Meaning |\n|---|---|---|---|\n");
    for setting in settings() {
        let default = if setting.default.is_empty() {
            "(empty)".to_owned()
        } else {
            format!("`{}`", setting.default)
        };
        let (name, bounds, meaning) = (setting.name, setting.bounds_text(), setting.meaning());
        table.push_str(&format!(
            "| `{name}` | {default} | {bounds} | {meaning} |\n"
        ));
    }
    table
}

/// `.env.example`, made from the declarations. A setting whose default is empty is shown
/// commented out.
pub fn env_example() -> String {
    let mut text = String::from(
        "# IBEX management API configuration. Every variable is optional; the values shown are the defaults.\n\
         # Copy to .env and export it (set -a; . ./.env; set +a) or set the variables in your deployment.\n",
    );
    for setting in settings() {
        let comment = if setting.default.is_empty() { "#" } else { "" };
        let bounds = match setting.bounds_text() {
            b if b.is_empty() => String::new(),
            b => format!(" ({b})"),
        };
        let (name, default, meaning) = (setting.name, setting.default, setting.meaning());
        text.push_str(&format!(
            "\n# {meaning}{bounds}\n{comment}{name}={default}\n"
        ));
    }
    text
}

/// The whole configuration: one struct per concern.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub observability: ObservabilityConfig,
    pub readiness: ReadinessConfig,
    pub auth: AuthConfig,
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub rate_limits: RateLimitConfig,
    pub requests: RequestsConfig,
    pub signing: SigningConfig,
    pub gdpr: GdprConfig,
    pub retention: RetentionConfig,
    pub memory_service: MemoryServiceConfig,
    /// `None` when no access key is set: the object store is off.
    pub object_store: Option<S3Config>,
    pub exports: ExportConfig,
    /// `None` turns analytics off (503).
    pub analytics: Option<ClickHouseConfig>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid configuration: {var}: {message}")]
pub struct ConfigError {
    pub var: String,
    pub message: String,
}

impl Default for Config {
    fn default() -> Self {
        Self::from_map(HashMap::new()).expect("defaults are valid")
    }
}

impl Config {
    /// Reads the process environment (and the file it names).
    pub fn load() -> Result<Self, ConfigError> {
        Self::load_from(
            std::env::vars()
                .filter(|(k, _)| k.starts_with("IBEX_API_"))
                .collect(),
        )
    }

    /// Reads the given variables (and the file they name) instead of the process environment.
    pub fn load_from(env: HashMap<String, String>) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder();
        if let Some(path) = env.get(CONFIG_FILE.name).filter(|p| !p.is_empty()) {
            builder = builder
                .add_source(config::File::new(path, config::FileFormat::Toml).required(true));
        }
        let merged = builder
            .add_source(
                config::Environment::with_prefix("IBEX_API")
                    .source(Some(env.into_iter().collect())),
            )
            .build()
            .and_then(|c| c.try_deserialize::<HashMap<String, String>>())
            .map_err(|e| CONFIG_FILE.error(e.to_string()))?;
        let vars = merged
            .into_iter()
            .map(|(key, value)| (format!("IBEX_API_{}", key.to_ascii_uppercase()), value))
            .collect();
        Self::from_map(vars)
    }

    fn from_map(vars: HashMap<String, String>) -> Result<Self, ConfigError> {
        if let Some(unknown) = vars.keys().find(|k| !settings().any(|s| s.name == *k)) {
            return Err(ConfigError {
                var: unknown.clone(),
                message: "unknown setting (see docs/configuration.md)".to_owned(),
            });
        }
        let v = Values(vars);
        let config = Self {
            server: ServerConfig::read(&v)?,
            observability: ObservabilityConfig::read(&v)?,
            readiness: ReadinessConfig::read(&v)?,
            auth: AuthConfig::read(&v)?,
            database: DatabaseConfig::read(&v)?,
            redis: RedisConfig::read(&v)?,
            rate_limits: RateLimitConfig::read(&v)?,
            requests: RequestsConfig::read(&v)?,
            signing: SigningConfig::read(&v)?,
            gdpr: GdprConfig::read(&v)?,
            retention: RetentionConfig::read(&v)?,
            memory_service: MemoryServiceConfig::read(&v)?,
            object_store: S3Config::read(&v)?,
            exports: ExportConfig::read(&v)?,
            analytics: ClickHouseConfig::read(&v)?,
        };
        config.check_deadlines()?;
        Ok(config)
    }

    /// A slow dependency must surface as its own 503, not as the request timeout: every
    /// dependency's deadline lies inside the request's.
    fn check_deadlines(&self) -> Result<(), ConfigError> {
        let called = |on: bool, deadline: Duration| if on { deadline } else { Duration::ZERO };
        let deadlines = [
            (&auth::TIMEOUT, self.auth.timeout),
            (&database::ACQUIRE_TIMEOUT, self.database.acquire_timeout),
            (
                &database::STATEMENT_TIMEOUT,
                self.database.statement_timeout,
            ),
            (
                &analytics::QUERY_TIMEOUT,
                self.analytics
                    .as_ref()
                    .map_or(Duration::ZERO, |c| c.query_timeout),
            ),
            // Only a service that is called needs its deadline inside the request's.
            (
                &memory_service::TIMEOUT,
                called(
                    self.memory_service.url.is_some(),
                    self.memory_service.timeout,
                ),
            ),
        ];
        for (setting, deadline) in deadlines {
            if deadline >= self.server.request_timeout {
                return Err(
                    setting.error(format!("must be below {}", server::REQUEST_TIMEOUT.name))
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::load_from(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn defaults_are_valid_and_documented() {
        let config = load(&[]).unwrap();
        assert_eq!(config.server.port, 8010);
        assert_eq!(config.server.host.to_string(), "0.0.0.0");
        assert_eq!(config.auth.grpc_addr, "http://127.0.0.1:9091");
        assert!(config.server.cors_allowed_origins.is_empty());
        assert_eq!(config.auth.cache_ttl, Duration::ZERO);
    }

    #[test]
    fn reads_prefixed_variables() {
        let config = load(&[
            ("IBEX_API_PORT", "9000"),
            (
                "IBEX_API_CORS_ALLOWED_ORIGINS",
                "https://a.example.com, http://localhost:3000",
            ),
            ("IBEX_API_LOG_FORMAT", "text"),
        ])
        .unwrap();
        assert_eq!(config.server.port, 9000);
        assert_eq!(config.server.cors_allowed_origins.len(), 2);
        assert_eq!(config.observability.log_format, Some(LogFormat::Text));
    }

    #[test]
    fn errors_name_the_variable() {
        let cases = [
            ("IBEX_API_PORT", "abc"),
            ("IBEX_API_PORT", "0"),
            ("IBEX_API_PORT", "70000"),
            ("IBEX_API_CORS_ALLOWED_ORIGINS", "*"),
            (
                "IBEX_API_CORS_ALLOWED_ORIGINS",
                "https://a.example.com/path",
            ),
            ("IBEX_API_CORS_ALLOWED_ORIGINS", "a.example.com"),
            ("IBEX_API_LOG_FORMAT", "xml"),
            ("IBEX_API_LOG_LEVEL", "info,[=="),
            ("IBEX_API_REQUEST_TIMEOUT_MS", "-5"),
            ("IBEX_API_AUTH_GRPC_ADDR", "localhost:9091"),
            ("IBEX_API_HOST", "example.com"),
            ("IBEX_API_PROT", "8010"),
            ("IBEX_API_DATABASE_URL", "mysql://root@db/ibex"),
            ("IBEX_API_DATABASE_URL", "postgres://u:pw@db:notaport/ibex"),
            ("IBEX_API_DATABASE_MAX_CONNECTIONS", "0"),
            ("IBEX_API_DATABASE_ACQUIRE_TIMEOUT_MS", "10000"),
            ("IBEX_API_DATABASE_STATEMENT_TIMEOUT_MS", "60000"),
            ("IBEX_API_REDIS_URL", "http://cache:6379"),
            ("IBEX_API_REDIS_URL", "redis://:pw@cache:notaport"),
            ("IBEX_API_GDPR_BATCH_SIZE", "0"),
            ("IBEX_API_RATE_LIMIT_ENABLED", "yes"),
            ("IBEX_API_RATE_LIMIT_ORG_BURST", "0"),
            ("IBEX_API_RATE_LIMIT_ORG_OVERRIDES", "not-a-uuid=1/2"),
            (
                "IBEX_API_RATE_LIMIT_ORG_OVERRIDES",
                "0192f0c4-5d7e-7c3a-9f1e-2b3c4d5e6f70=100",
            ),
            (
                "IBEX_API_RATE_LIMIT_ORG_OVERRIDES",
                "0192f0c4-5d7e-7c3a-9f1e-2b3c4d5e6f70=0/10",
            ),
            ("IBEX_API_EXPORT_RETRY_MAX_BACKOFF_MS", "5"),
            ("IBEX_API_SIGNING_KEYS", "dG9vLXNob3J0"),
            ("IBEX_API_SIGNING_KEYS", "not base64!"),
        ];
        for (var, value) in cases {
            let error = load(&[(var, value)]).expect_err(var);
            assert_eq!(error.var, var, "{value}: {error}");
        }
    }

    #[test]
    fn rate_limits_have_defaults_overrides_and_an_off_switch() {
        let limits = load(&[])
            .unwrap()
            .rate_limits
            .limits
            .expect("on by default");
        assert_eq!((limits.org.per_second, limits.org.burst), (100.0, 200));
        assert_eq!((limits.token.per_second, limits.token.burst), (50.0, 100));
        let org = Uuid::from_u128(7);
        let other = Uuid::from_u128(8);
        let overrides = format!(" {org}=500/1000 , {other}=1/1 ");
        let limits = load(&[("IBEX_API_RATE_LIMIT_ORG_OVERRIDES", &overrides)])
            .unwrap()
            .rate_limits
            .limits
            .unwrap();
        assert_eq!(limits.org_overrides[&org].burst, 1000);
        assert_eq!(limits.org_overrides[&other].per_second, 1.0);
        assert!(
            load(&[("IBEX_API_RATE_LIMIT_ENABLED", "false")])
                .unwrap()
                .rate_limits
                .limits
                .is_none()
        );
    }

    #[test]
    fn database_passwords_never_print() {
        let config = load(&[(
            "IBEX_API_DATABASE_URL",
            "postgres://ibex:s3cr%40t@db.internal:5432/ibex?sslmode=require",
        )])
        .unwrap();
        let printed = format!("{config:?} {}", config.database.url);
        assert!(!printed.contains("s3cr"), "{printed}");
        assert!(printed.contains("postgres://ibex:***@db.internal:5432/ibex?sslmode=require"));
        assert_eq!(
            SecretUrl::new("postgres://ibex@h/db").redacted(),
            "postgres://ibex@h/db"
        );
        let error = load(&[(
            "IBEX_API_DATABASE_URL",
            "postgres://u:hunter2@h:99999999/db",
        )])
        .unwrap_err();
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }

    #[test]
    fn auth_deadline_must_undercut_the_request_deadline() {
        let error = load(&[("IBEX_API_AUTH_TIMEOUT_MS", "10000")]).unwrap_err();
        assert_eq!(error.var, "IBEX_API_AUTH_TIMEOUT_MS");
    }

    #[test]
    fn a_file_is_read_and_the_environment_wins() {
        let path =
            std::env::temp_dir().join(format!("ibex-api-config-{}.toml", std::process::id()));
        std::fs::write(&path, "port = 9100\nrequest_timeout_ms = 20000\n").unwrap();
        let file = path.to_str().unwrap();
        let config = load(&[("IBEX_API_CONFIG_FILE", file), ("IBEX_API_PORT", "9200")]).unwrap();
        assert_eq!(config.server.port, 9200);
        assert_eq!(config.server.request_timeout, Duration::from_secs(20));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn the_object_store_needs_both_keys_and_never_prints_its_secret() {
        assert!(load(&[]).unwrap().object_store.is_none(), "off by default");
        let e = load(&[("IBEX_API_S3_ACCESS_KEY_ID", "AK")]).unwrap_err();
        assert_eq!(e.var, "IBEX_API_S3_SECRET_ACCESS_KEY");
        let config = load(&[
            ("IBEX_API_S3_ACCESS_KEY_ID", "AK"),
            ("IBEX_API_S3_SECRET_ACCESS_KEY", "TOP-SECRET-KEY"),
            ("IBEX_API_S3_ENDPOINT", "http://minio.svc:9000/"),
        ])
        .unwrap();
        let s3 = config.object_store.as_ref().unwrap();
        assert_eq!(s3.endpoint, "http://minio.svc:9000");
        assert_eq!(s3.public_endpoint, s3.endpoint, "defaults to the endpoint");
        assert_eq!(s3.presign_ttl, Duration::from_secs(900));
        assert!(!format!("{config:?}").contains("TOP-SECRET-KEY"));
        for (var, value) in [
            ("IBEX_API_EXPORT_BUCKET", "Bad_Bucket"),
            ("IBEX_API_S3_PUBLIC_ENDPOINT", "files.example.com"),
            ("IBEX_API_S3_PRESIGN_TTL_MS", "604800001"),
            ("IBEX_API_MEMORY_SERVICE_URL", "memory:8020"),
        ] {
            assert_eq!(load(&[(var, value)]).unwrap_err().var, var);
        }
        let e = load(&[("IBEX_API_MEMORY_SERVICE_TIMEOUT_MS", "20000")]).unwrap_err();
        assert_eq!(e.var, "IBEX_API_MEMORY_SERVICE_TIMEOUT_MS");
    }
}
