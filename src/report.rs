//! Error chains as one line: errors keep their cause as `source()` instead of formatting it
//! into their own message, and logs and the CLI print the whole chain with this.

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
