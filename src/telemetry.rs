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
    let filter = EnvFilter::builder().parse_lossy(level);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true)
        .with_writer(writer);
    let installed = match format {
        LogFormat::Json => builder
            .fmt_fields(JsonFields)
            .event_format(JsonLines)
            .try_init(),
        LogFormat::Text => builder
            .with_ansi(false)
            .event_format(TextLines::default())
            .try_init(),
    };
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
