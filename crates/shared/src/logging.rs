//! Log setup for the binaries: INFO unless RUST_LOG says otherwise (the
//! EnvFilter default would be ERROR), text or JSON lines.

use tracing_subscriber::EnvFilter;

/// Installs the process's log subscriber, writing to stderr: JSON lines when
/// `format` is `json`, text otherwise. Does nothing if one is installed already.
pub fn init(format: &str) {
    let filter = EnvFilter::builder()
        .with_default_directive(tracing::Level::INFO.into())
        .from_env_lossy();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
