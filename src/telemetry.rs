//! Log output: JSON lines in production, readable text in development.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber and a panic hook that logs through it.
pub fn init(format: LogFormat, level: &str) {
    let filter = EnvFilter::builder().parse_lossy(level);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true);
    let installed = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    if installed.is_err() {
        return; // Already installed (tests start several apps in one process).
    }
    // One structured line, inside the request's span (so with its request id), instead of the
    // default multi-line stderr text. The payload is left out: it may quote request data.
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()));
        tracing::error!(location = location.as_deref().unwrap_or("unknown"), "panic");
    }));
}
