//! CLI-level errors and exit codes.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | not found, or an operational failure (I/O, ...) |
//! | 2 | usage error or invalid input (bad flag value, invalid record, ambiguous id prefix, nothing to change, city already initialised) |
//! | 3 | the store is unavailable (no city, locked by another process, corrupt, newer version, key file permissions) |
//! | 4 | the edit would be rejected (this city is not authorized) |
//!
//! A broken pipe on stdout (`intercity practice list | head -1`) is not an error: exit 0.

use std::io::{self, Write};
use std::process::ExitCode;

use intercity_node::{CityError, StoreError};
use intercity_protocol::identity::IdentityError;
use intercity_protocol::record::RecordError;

/// Success.
pub const OK: u8 = 0;
/// Not found or operational failure.
pub const FAILURE: u8 = 1;
/// Usage error or invalid input.
pub const USAGE: u8 = 2;
/// The store, the daemon or the network unavailable.
pub const STORE: u8 = 3;
/// Edit rejected.
pub const REJECTED: u8 = 4;

/// Exit codes as shown in `intercity --help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  not found, or an operational failure
  2  usage error or invalid input (bad value, invalid record, ambiguous id prefix,
     nothing to change, city already initialised)
  3  unavailable: the store (no city, locked by a running node, corrupt, newer
     version, key file readable by others), the daemon, or the network
  4  rejected: this city is not authorized to make the edit, or the protocol's
     rules refuse the operation

Ids may be abbreviated to any unique prefix. Set RUST_LOG=debug for logs on stderr;
NO_COLOR=1 or --color never turns colours off.";

/// Errors found by the CLI itself (the library's errors pass through unchanged).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Nothing matches an id or prefix.
    #[error("no {what} matches `{prefix}`; {hint}")]
    NotFound {
        /// What was looked for ("agenda", "agenda item", ...).
        what: &'static str,
        /// What the user typed.
        prefix: String,
        /// Where to find valid ids.
        hint: String,
    },
    /// Several things match a prefix.
    #[error("{what} prefix `{prefix}` matches {} ({}); type more characters", .matches.len(), .matches.join(", "))]
    Ambiguous {
        /// What was looked for.
        what: &'static str,
        /// What the user typed.
        prefix: String,
        /// The candidates.
        matches: Vec<String>,
    },
    /// Several things have the name the user gave.
    #[error("`{name}` names {} {what}s: {}; give the id (or a unique prefix of it) instead", .matches.len(), .matches.join(", "))]
    AmbiguousName {
        /// What was looked for ("working group", "agenda", ...).
        what: &'static str,
        /// What the user typed.
        name: String,
        /// The candidates, as "name (id)".
        matches: Vec<String>,
    },
    /// A value or file the user gave is not acceptable.
    #[error("{0}")]
    Invalid(String),
}

/// The exit code for an error: the first error in the chain that we know decides.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<CityError>() {
            return city_code(e);
        }
        if let Some(e) = cause.downcast_ref::<CliError>() {
            return match e {
                CliError::NotFound { .. } => FAILURE,
                CliError::Ambiguous { .. }
                | CliError::AmbiguousName { .. }
                | CliError::Invalid(_) => USAGE,
            };
        }
        if let Some(e) = cause.downcast_ref::<StoreError>() {
            return if matches!(e, StoreError::Query(_)) {
                USAGE
            } else {
                STORE
            };
        }
        if cause.downcast_ref::<RecordError>().is_some()
            || cause.downcast_ref::<IdentityError>().is_some()
        {
            return USAGE;
        }
    }
    FAILURE
}

/// One table for both paths: an error made in this process and one the daemon sent back
/// (`CityError::Remote`) exit with the code of their category (issue #12).
fn city_code(e: &CityError) -> u8 {
    use intercity_node::control::Category;
    match e.category() {
        Category::NotFound => FAILURE,
        Category::Invalid => USAGE,
        Category::Unavailable => STORE,
        Category::Rejected => REJECTED,
        Category::Other => FAILURE,
    }
}

/// Whether the error is a broken pipe on output (the reader went away: not an error).
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// Errors whose message ends with "; <what to do>": that part is shown as a hint.
fn has_hint(err: &anyhow::Error) -> bool {
    err.downcast_ref::<CliError>()
        .is_some_and(|e| !matches!(e, CliError::Invalid(_)))
        || err.downcast_ref::<StoreError>().is_some()
        || err.downcast_ref::<CityError>().is_some_and(|e| {
            !matches!(
                e,
                CityError::Record(_)
                    | CityError::Rejected(_)
                    | CityError::Refused(_)
                    | CityError::Invalid(_)
                    | CityError::Doc(_)
            )
        })
}

/// Prints `error: <message>` (and `hint: ...`) to stderr and returns the exit code.
pub fn report(err: &anyhow::Error, color: bool, json: bool) -> ExitCode {
    if is_broken_pipe(err) {
        return ExitCode::from(OK);
    }
    let code = exit_code(err);
    let message = err.to_string();
    let (message, hint) = match message.rsplit_once("; ") {
        Some((m, h)) if has_hint(err) => (m.to_string(), Some(h.to_string())),
        _ => (message, None),
    };
    if json {
        // With JSON logs, the final error is a log line too (a collector reads every line).
        let causes: Vec<String> = err.chain().skip(1).map(ToString::to_string).collect();
        tracing::error!(
            target: "intercity",
            exit_code = code,
            hint = hint.as_deref().unwrap_or(""),
            causes = causes.join("; "),
            "{message}"
        );
        return ExitCode::from(code);
    }
    let (red, yellow, reset) = if color {
        ("\x1b[1;31m", "\x1b[1;33m", "\x1b[0m")
    } else {
        ("", "", "")
    };
    let mut stderr = io::stderr().lock();
    let _ = writeln!(stderr, "{red}error:{reset} {message}");
    for cause in err.chain().skip(1) {
        let _ = writeln!(stderr, "  caused by: {cause}");
    }
    if let Some(hint) = hint {
        let _ = writeln!(stderr, "{yellow}hint:{reset} {hint}");
    }
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn codes() {
        let e = |c: CityError| exit_code(&anyhow::Error::from(c));
        assert_eq!(e(CityError::NotFound("ab".into())), FAILURE);
        assert_eq!(e(CityError::Unchanged), USAGE);
        assert_eq!(e(CityError::Exists(PathBuf::from("/x"))), USAGE);
        assert_eq!(e(CityError::NoCity(PathBuf::from("/x"))), STORE);
        assert_eq!(
            e(CityError::Store(StoreError::Locked(PathBuf::from("/x")))),
            STORE
        );
        assert_eq!(e(CityError::Rejected("no".into())), REJECTED);
        let invalid = anyhow::Error::from(CliError::Invalid("x".into())).context("while reading");
        assert_eq!(exit_code(&invalid), USAGE);
        let pipe = anyhow::Error::from(io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(is_broken_pipe(&pipe));
    }
}
