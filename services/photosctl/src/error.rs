use std::process::ExitCode;

use photos_runtime::ErrorKind;

/// Exit statuses, documented in the README.
pub mod exit {
    pub const OK: u8 = 0;
    /// A job failed, or an unexpected error.
    pub const FAILED: u8 = 1;
    /// Bad usage (clap's own status).
    pub const USAGE: u8 = 2;
    /// Finished, but some items (files, photos, objects) failed.
    pub const PARTIAL: u8 = 3;
    /// The job was cancelled.
    pub const CANCELLED: u8 = 4;
    /// A service rejected the request: unknown id, invalid argument (EX_DATAERR).
    pub const REJECTED: u8 = 65;
    /// A service could not be reached or stayed unavailable (EX_UNAVAILABLE).
    pub const UNAVAILABLE: u8 = 69;
    /// The configuration is invalid (EX_USAGE, as every photos binary).
    pub const CONFIG: u8 = 64;
    /// Interrupted while following a job (the job goes on).
    pub const INTERRUPTED: u8 = 130;
}

#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("{service}: {message}")]
    Call {
        service: &'static str,
        kind: ErrorKind,
        message: String,
    },
    #[error("invalid upstream address: {0}")]
    Channel(#[from] photos_runtime::client::ChannelError),
    #[error("{0}")]
    Usage(String),
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("migration failed: {0}")]
    Migrate(String),
    #[error("interrupted; job {job} goes on (photosctl jobs show {job})")]
    Interrupted { job: String },
}

impl CtlError {
    pub fn call(service: &'static str, status: &tonic::Status) -> Self {
        CtlError::Call {
            service,
            kind: ErrorKind::of_status(status),
            message: status.message().to_owned(),
        }
    }

    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            CtlError::Call { kind, .. } => match kind {
                ErrorKind::Unavailable | ErrorKind::DeadlineExceeded => exit::UNAVAILABLE,
                ErrorKind::InvalidArgument
                | ErrorKind::Unprocessable
                | ErrorKind::NotFound
                | ErrorKind::AlreadyExists
                | ErrorKind::FailedPrecondition
                | ErrorKind::TooLarge => exit::REJECTED,
                _ => exit::FAILED,
            },
            CtlError::Channel(_) => exit::CONFIG,
            CtlError::Usage(_) => exit::USAGE,
            CtlError::Io { .. } => exit::REJECTED,
            CtlError::Migrate(_) => exit::FAILED,
            CtlError::Interrupted { .. } => exit::INTERRUPTED,
        })
    }
}
