//! Logging set-up shared by the Lambda functions and the local server.

/// Logs as JSON lines (CloudWatch) or human-readable text, filtered by `RUST_LOG`.
pub fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let result = if json {
        builder
            .json()
            .with_current_span(false)
            .without_time()
            .try_init()
    } else {
        // Local mode: logs on stderr, leaving stdout to what the server prints for its user.
        builder
            .with_target(false)
            .with_writer(std::io::stderr)
            .try_init()
    };
    // A second init (tests) is harmless.
    drop(result);
}
