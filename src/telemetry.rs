//! Log output: JSON lines in production, readable text in development.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::LogFormat;
use crate::log_format::{JsonFields, JsonLines, TextLines};

/// Installs the global subscriber (writing to stdout) and a panic hook that logs through it.
pub fn init(format: LogFormat, level: &str) {
    init_with_writer(format, level, std::io::stdout);
}

/// As [`init`], with another destination (tests capture the production format this way).
///
/// Lines are written synchronously: measured on this service, a background writer thread cost
/// more (a context switch per line on a busy core) than the `write(2)` it saved.
pub fn init_with_writer<W>(format: LogFormat, level: &str, writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    use opentelemetry::trace::TracerProvider;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{Layer, Registry};

    // The embedded development S3 server (`--dev`, tests) logs every refused signature and
    // dumps requests at debug: its lines are not the API's. tokio-postgres logs every
    // statement's parameter values at debug and the server's notices at info (both can hold
    // row data): off at every level; the data layer logs what a failure means itself.
    let filter = EnvFilter::builder()
        .parse_lossy(level)
        .add_directive("s3s=off".parse().expect("a valid directive"))
        .add_directive("s3s_fs=off".parse().expect("a valid directive"))
        .add_directive("tokio_postgres=off".parse().expect("a valid directive"));
    let lines: Box<dyn Layer<Registry> + Send + Sync> = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_target(true)
            .with_writer(writer)
            .fmt_fields(JsonFields)
            .event_format(JsonLines)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(writer)
            .event_format(TextLines::default())
            .boxed(),
    };
    // Traces only when the standard OTEL_* variables name a collector.
    let provider = match crate::observability::traces::provider() {
        Ok(provider) => provider,
        Err(problem) => {
            eprintln!("ibex-api: traces are off: {problem}");
            None
        }
    };
    // Each output has its own filter: the log level must not decide which spans are traced.
    let otel = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("ibex-api"))
            .with_filter(
                tracing_subscriber::filter::Targets::new()
                    .with_target("ibex_api", tracing::Level::INFO),
            )
    });
    let installed = tracing_subscriber::registry()
        .with(lines.with_filter(filter))
        .with(otel)
        .try_init();
    if let Some(provider) = provider {
        crate::observability::traces::keep(provider);
    }
    if installed.is_err() {
        return; // Already installed (tests start several apps in one process).
    }
    // One structured line, stamped with the request id like every other line of the request,
    // instead of the default multi-line stderr text. The payload is left out: it may quote
    // request data.
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()));
        tracing::error!(location = location.as_deref().unwrap_or("unknown"), "panic");
    }));
}
