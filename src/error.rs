//! The library's one error type. Every message names the file, key or value involved and, where
//! there is one, what the user can do about it; the binary prints the chain once.

use std::path::PathBuf;

/// Everything that can go wrong in the library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // The message carries the cause's text, so it is not chained as a source as well: `{:#}`
    // would print it twice ("x: not found: not found").
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },

    #[error("{path}: cannot decode image: {reason}")]
    Image { path: PathBuf, reason: String },

    #[error("{path}: not a torch weights file this reader understands: {reason}")]
    Pth { path: PathBuf, reason: String },

    #[error("{path}: the weights do not fit torchvision's MobileNetV2: {reason}")]
    WeightsShape { path: PathBuf, reason: String },

    #[error("{path}: not a dlib model this reader understands: {reason}; delete the file to fetch it again")]
    DlibModel { path: PathBuf, reason: String },

    #[error("{path}: sha256 is {actual}, expected {expected}; delete the file or point --weights/FACELAB_WEIGHTS at a good copy")]
    WeightsChecksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },

    #[error("could not obtain the MobileNetV2 weights; tried:\n{attempts}\nPut mobilenet_v2-b0353104.pth under models/ or pass --weights PATH (or set FACELAB_WEIGHTS)")]
    WeightsUnavailable { attempts: String },

    /// A bad experiment file: exit code 2 at the binary's edge.
    #[error("{}: {key}: {message}", location(path, *line))]
    Config {
        path: PathBuf,
        line: Option<usize>,
        key: String,
        message: String,
    },

    #[error("{path}: {message}")]
    Dataset { path: PathBuf, message: String },

    #[error("run store {path}: {cause}{}", disk_hint(cause))]
    Store {
        path: PathBuf,
        cause: rusqlite::Error,
    },

    #[error("run store {url}: {message}; check that the server is up and the URL (FACELAB_STORE or --store) is right")]
    StoreServer { url: String, message: String },

    #[error("no run matches '{0}'; `facelab runs` lists them")]
    RunNotFound(String),

    #[error("'{prefix}' matches several runs ({matches}); give more of the id")]
    RunAmbiguous { prefix: String, matches: String },

    #[error("{path}: trained head is unreadable: {reason}")]
    Head { path: PathBuf, reason: String },

    #[error("training cancelled")]
    Cancelled,

    /// A sweep's pruner stopped the trial: it was doing worse than earlier trials.
    #[error("pruned at epoch {epoch}: worse than the median of earlier trials at that epoch")]
    Pruned { epoch: usize },

    /// The loss stopped being a number: the learning rate is too high for this head and data.
    #[error("loss became {value} at epoch {epoch}, step {step}: training diverged; lower train.optimizer.lr")]
    Diverged {
        value: f64,
        epoch: usize,
        step: usize,
    },

    #[error("{0}")]
    InvalidArgument(String),
}

/// SQLite reports a write that found no room as "disk I/O error" as often as "disk is full".
fn disk_hint(cause: &rusqlite::Error) -> &'static str {
    use rusqlite::ffi::ErrorCode;
    match cause.sqlite_error_code() {
        Some(ErrorCode::DiskFull | ErrorCode::SystemIoFailure) => {
            "; the disk may be full: free some space on it and try again"
        }
        _ => "",
    }
}

fn location(path: &std::path::Path, line: Option<usize>) -> String {
    match line {
        Some(line) => format!("{}:{line}", path.display()),
        None => path.display().to_string(),
    }
}

impl Error {
    /// The message without the file it is about, for lists that name the file already
    /// ("skipped: PATH: REASON").
    pub fn reason(&self) -> String {
        match self {
            Error::Io { cause, .. } => cause.to_string(),
            Error::Image { reason, .. } => format!("cannot decode image: {reason}"),
            other => other.to_string(),
        }
    }

    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            cause: source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
