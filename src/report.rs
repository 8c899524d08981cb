//! What the engine tells its operator: error chains as one line (errors keep their cause as
//! `source()` instead of formatting it into their own message; logs and the CLI print the
//! whole chain), and the log output.

use std::error::Error;
use std::fmt;

/// Displays `error` and its sources joined by `: `, skipping a cause whose text the line
/// already holds.
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&chain(self.0))
    }
}

/// `error` and its sources as one line (see [`Chain`]).
pub fn chain(error: &(dyn Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut cause = error.source();
    while let Some(err) = cause {
        let text = err.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = err.source();
    }
    out
}

/// Log to stderr with the given filter; `RUST_LOG` wins when set. delta-rs logs every commit
/// at info (and an expected "no files in log segment" error per table it creates): it is held
/// to warnings unless the filter names it.
pub fn init_logging(level: &str) {
    use tracing_subscriber::EnvFilter;
    let level = match level.contains("delta") || level.contains("kernel") {
        true => level.to_owned(),
        false => format!("{level},deltalake_core=warn,buoyant_kernel=off,delta_kernel=off"),
    };
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only on a terminal: piped logs stay greppable.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot commit to Delta table public.t")]
    struct Outer(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("the sink failed")]
    struct Top(#[source] Outer);

    #[test]
    fn the_whole_chain_once() {
        let err = Top(Outer(std::io::Error::other("disk full")));
        assert_eq!(
            chain(&err),
            "the sink failed: cannot commit to Delta table public.t: disk full"
        );
        assert_eq!(Chain(&err).to_string(), chain(&err));
    }
}
