//! The single table from error kind to gRPC code and HTTP status. Services map their own
//! thiserror enums onto a kind at the edge; the gateway maps a downstream status back to HTTP
//! with the same table, so an error means the same thing on every hop.

use tonic::{Code, Status};

/// Metadata key carrying the kind across a gRPC hop, so the gateway can tell e.g. "bad image"
/// (422) from other invalid arguments (400) even though both travel as INVALID_ARGUMENT.
pub const ERROR_KIND_METADATA: &str = "photos-error-kind";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    InvalidArgument,
    /// Well-formed input that cannot be processed, e.g. a corrupt image.
    Unprocessable,
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    /// Too large or over a quota.
    TooLarge,
    Unauthenticated,
    PermissionDenied,
    Unavailable,
    DeadlineExceeded,
    Unimplemented,
    Internal,
}

impl ErrorKind {
    const ALL: [ErrorKind; 12] = [
        ErrorKind::InvalidArgument,
        ErrorKind::Unprocessable,
        ErrorKind::NotFound,
        ErrorKind::AlreadyExists,
        ErrorKind::FailedPrecondition,
        ErrorKind::TooLarge,
        ErrorKind::Unauthenticated,
        ErrorKind::PermissionDenied,
        ErrorKind::Unavailable,
        ErrorKind::DeadlineExceeded,
        ErrorKind::Unimplemented,
        ErrorKind::Internal,
    ];

    pub fn grpc_code(self) -> Code {
        match self {
            ErrorKind::InvalidArgument | ErrorKind::Unprocessable => Code::InvalidArgument,
            ErrorKind::NotFound => Code::NotFound,
            ErrorKind::AlreadyExists => Code::AlreadyExists,
            ErrorKind::FailedPrecondition => Code::FailedPrecondition,
            ErrorKind::TooLarge => Code::ResourceExhausted,
            ErrorKind::Unauthenticated => Code::Unauthenticated,
            ErrorKind::PermissionDenied => Code::PermissionDenied,
            ErrorKind::Unavailable => Code::Unavailable,
            ErrorKind::DeadlineExceeded => Code::DeadlineExceeded,
            ErrorKind::Unimplemented => Code::Unimplemented,
            ErrorKind::Internal => Code::Internal,
        }
    }

    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::InvalidArgument => 400,
            ErrorKind::Unprocessable => 422,
            ErrorKind::NotFound => 404,
            ErrorKind::AlreadyExists => 409,
            ErrorKind::FailedPrecondition => 409,
            ErrorKind::TooLarge => 413,
            ErrorKind::Unauthenticated => 401,
            ErrorKind::PermissionDenied => 403,
            ErrorKind::Unavailable => 503,
            ErrorKind::DeadlineExceeded => 504,
            ErrorKind::Unimplemented => 501,
            ErrorKind::Internal => 500,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "invalid_argument",
            ErrorKind::Unprocessable => "unprocessable",
            ErrorKind::NotFound => "not_found",
            ErrorKind::AlreadyExists => "already_exists",
            ErrorKind::FailedPrecondition => "failed_precondition",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::DeadlineExceeded => "deadline_exceeded",
            ErrorKind::Unimplemented => "unimplemented",
            ErrorKind::Internal => "internal",
        }
    }

    /// The kind of a status received from a downstream service: the kind it carried if any,
    /// else the nearest kind for its code.
    pub fn of_status(status: &Status) -> ErrorKind {
        if let Some(kind) = status
            .metadata()
            .get(ERROR_KIND_METADATA)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| ErrorKind::ALL.into_iter().find(|k| k.as_str() == s))
        {
            return kind;
        }
        match status.code() {
            Code::InvalidArgument | Code::OutOfRange => ErrorKind::InvalidArgument,
            Code::NotFound => ErrorKind::NotFound,
            Code::AlreadyExists => ErrorKind::AlreadyExists,
            Code::FailedPrecondition | Code::Aborted => ErrorKind::FailedPrecondition,
            Code::ResourceExhausted => ErrorKind::TooLarge,
            Code::Unauthenticated => ErrorKind::Unauthenticated,
            Code::PermissionDenied => ErrorKind::PermissionDenied,
            Code::Unavailable | Code::Cancelled => ErrorKind::Unavailable,
            Code::DeadlineExceeded => ErrorKind::DeadlineExceeded,
            Code::Unimplemented => ErrorKind::Unimplemented,
            Code::Ok | Code::Unknown | Code::Internal | Code::DataLoss => ErrorKind::Internal,
        }
    }

    /// A status of this kind; the kind travels in metadata for the next hop.
    pub fn status(self, message: impl Into<String>) -> Status {
        let mut status = Status::new(self.grpc_code(), message);
        status.metadata_mut().insert(
            ERROR_KIND_METADATA,
            tonic::metadata::MetadataValue::from_static(self.as_str()),
        );
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_a_status() {
        for kind in ErrorKind::ALL {
            let status = kind.status("boom");
            assert_eq!(ErrorKind::of_status(&status), kind);
            assert_eq!(status.code(), kind.grpc_code());
        }
    }

    #[test]
    fn bare_codes_map_to_the_table() {
        let cases = [
            (Code::NotFound, 404),
            (Code::InvalidArgument, 400),
            (Code::ResourceExhausted, 413),
            (Code::Unavailable, 503),
            (Code::Unknown, 500),
        ];
        for (code, http) in cases {
            assert_eq!(
                ErrorKind::of_status(&Status::new(code, "x")).http_status(),
                http
            );
        }
    }
}
