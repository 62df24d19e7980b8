//! Structured JSON logs on stdout; the level comes from `RUST_LOG` (default `info`).

use tracing_subscriber::EnvFilter;

/// Install the global JSON subscriber (a second call is a no-op).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .try_init();
}
