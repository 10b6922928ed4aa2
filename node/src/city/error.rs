//! The city's error type, [`CityError`], and the [`Category`] the control socket and the
//! CLI's exit codes are derived from (moves only, issue #12 step 1).

use super::*;

/// Errors of local city operations. Each message says what to do next.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CityError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A key or id problem.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// `init` on a directory that already holds a city.
    #[error(
        "{0} already holds a city; use another --data-dir, or delete it only if you have a backup of city.key"
    )]
    Exists(PathBuf),
    /// No city in the data directory.
    #[error("no city in {0}; run `intercity init --city NAME` (or pass --data-dir)")]
    NoCity(PathBuf),
    /// The key file is readable by others.
    #[error("{path} has mode {mode:o}; the secret key must be private: run `chmod 600 {path}`")]
    KeyPermissions {
        /// The key file.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// The data directory is writable by other users.
    #[error(
        "the data directory {path} has mode {mode:o}: other users could replace its files; run `chmod 700 {path}`"
    )]
    DirPermissions {
        /// The data directory.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// Which file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file has unexpected content.
    #[error("{path} is damaged: {detail}")]
    BadFile {
        /// Which file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// No record has this id.
    #[error(
        "no record with id `{0}`; `intercity practice list` (or project/group list) shows the ids"
    )]
    NotFound(String),
    /// Something other than a record (an invitation, a waiting join) does not exist.
    #[error("{0}")]
    Missing(String),
    /// An invitation cannot be created, accepted or redeemed.
    #[error("{0}")]
    Invitation(String),
    /// Refused for now; the same request may succeed later.
    #[error("{0}")]
    Busy(String),
    /// Another daemon already serves this data directory.
    #[error(
        "a daemon already runs for {dir}{} (or is stopping); stop it first (one daemon per data directory)",
        .pid.as_ref().map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    DaemonRunning {
        /// The data directory.
        dir: PathBuf,
        /// The running daemon's process id, as it wrote it in `daemon.lock`.
        pid: Option<String>,
    },
    /// Several records match an id prefix.
    #[error("id prefix `{prefix}` matches {} records ({}); type more characters", .matches.len(), .matches.join(", "))]
    Ambiguous {
        /// The prefix typed.
        prefix: String,
        /// The ids it matches.
        matches: Vec<String>,
    },
    /// The record is of another kind than the command expects.
    #[error("record {id} is a {found}, not a {expected}")]
    WrongKind {
        /// The record.
        id: String,
        /// What the command works on.
        expected: Kind,
        /// What it is.
        found: Kind,
    },
    /// The record would be invalid.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// Automerge mapping failed (an invalid record is [`CityError::Record`]).
    #[error(transparent)]
    Doc(DocError),
    /// The edit would be rejected by every node (not authorized, invalid).
    #[error("this edit would be rejected: {0}")]
    Rejected(String),
    /// An operation the protocol's rules refuse (a key that passed on, a statement or a
    /// recovery not accepted): the message says why.
    #[error("{0}")]
    Refused(String),
    /// A request that cannot be carried out as given (the message says what is wrong).
    #[error("{0}")]
    Invalid(String),
    /// The network could not start or be reached.
    #[error("the network failed: {0}")]
    Network(String),
    /// Something that should not happen did (a bug).
    #[error("{0}; this is a bug in intercity: please report it")]
    Internal(String),
    /// The pipeline refused the entry.
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// The edit changes nothing.
    #[error("nothing to change: the record already has these values")]
    Unchanged,
    /// The running daemon reported an error.
    #[error("{message}")]
    Remote {
        /// Its category.
        category: Category,
        /// Its message.
        message: String,
    },
}

impl From<DocError> for CityError {
    fn from(e: DocError) -> Self {
        match e {
            DocError::Record(r) => CityError::Record(r),
            e => CityError::Doc(e),
        }
    }
}

/// An error category, so the CLI can choose its exit code.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Something named does not exist.
    NotFound,
    /// Invalid input.
    Invalid,
    /// The store or daemon is unavailable.
    Unavailable,
    /// The edit would be rejected by the network's rules.
    Rejected,
    /// Anything else.
    Other,
}

impl CityError {
    /// The category of this error.
    pub fn category(&self) -> Category {
        use crate::store::StoreError;
        match self {
            CityError::NotFound(_) | CityError::Missing(_) | CityError::WrongKind { .. } => {
                Category::NotFound
            }
            // A stored document Automerge cannot read: the store's problem, not the user's.
            CityError::Record(RecordError::Unreadable(_)) => Category::Unavailable,
            CityError::Record(_)
            | CityError::Ambiguous { .. }
            | CityError::Unchanged
            | CityError::Exists(_)
            | CityError::Store(StoreError::Query(_))
            | CityError::Identity(IdentityError::BadCityId(_)) => Category::Invalid,
            CityError::Store(_)
            | CityError::NoCity(_)
            | CityError::KeyPermissions { .. }
            | CityError::DirPermissions { .. }
            | CityError::BadFile { .. } => Category::Unavailable,
            CityError::Rejected(_) | CityError::Refused(_) | CityError::Invitation(_) => {
                Category::Rejected
            }
            CityError::Invalid(_) => Category::Invalid,
            // A store read in the pipeline failed.
            CityError::Ingest(IngestError::Ledger(_)) => Category::Unavailable,
            CityError::Busy(_) | CityError::DaemonRunning { .. } | CityError::Network(_) => {
                Category::Unavailable
            }
            CityError::Remote { category, .. } => *category,
            _ => Category::Other,
        }
    }
}

impl From<LedgerError> for CityError {
    fn from(e: LedgerError) -> Self {
        CityError::Ingest(IngestError::Ledger(e))
    }
}
