//! etcdctl's failures: an exit code and the line printed as `Error: <msg>`.

use tonic::{Code, Status};

pub const EXIT_ERROR: i32 = 1;
pub const EXIT_BAD_CONNECTION: i32 = 2;
pub const EXIT_INVALID_INPUT: i32 = 3;
pub const EXIT_BAD_FEATURE: i32 = 4;
pub const EXIT_INTERRUPTED: i32 = 5;
pub const EXIT_IO: i32 = 6;
pub const EXIT_BAD_ARGS: i32 = 128;

#[derive(Debug)]
pub struct CtlError {
    pub code: i32,
    pub msg: String,
    /// Already reported on stderr: exit with `code`, print nothing more.
    pub silent: bool,
}

pub type Result<T> = std::result::Result<T, CtlError>;

impl CtlError {
    pub fn new(code: i32, msg: impl Into<String>) -> CtlError {
        CtlError { code, msg: msg.into(), silent: false }
    }

    /// A failure already reported.
    pub fn silent(code: i32) -> CtlError {
        CtlError { code, msg: String::new(), silent: true }
    }

    pub fn bad_args(msg: impl Into<String>) -> CtlError {
        CtlError::new(EXIT_BAD_ARGS, msg)
    }

    pub fn error(msg: impl Into<String>) -> CtlError {
        CtlError::new(EXIT_ERROR, msg)
    }
}

impl From<Status> for CtlError {
    fn from(s: Status) -> CtlError {
        CtlError::error(status_text(&s))
    }
}

impl From<std::io::Error> for CtlError {
    fn from(e: std::io::Error) -> CtlError {
        CtlError::new(EXIT_IO, e.to_string())
    }
}

/// How clientv3 shows a gRPC error: etcd's own errors by their text alone, anything else as gRPC's
/// `rpc error: code = ... desc = ...`; deadlines as Go's context error.
pub fn status_text(s: &Status) -> String {
    let msg = s.message();
    if msg.starts_with("etcdserver: ") {
        return msg.to_string();
    }
    // clientv3 retries a call whose connection failed until the command's deadline. A connection
    // the server drops (say, after a TLS handshake without the client certificate it requires)
    // shows up as "transport error" or, depending on timing, as h2's cancellation.
    let transport = (s.code() == Code::Unknown && msg == "transport error")
        || (s.code() == Code::Cancelled && msg == "operation was canceled")
        || (s.code() == Code::Unavailable && (msg.contains("error trying to connect") || msg.contains("tcp connect")));
    if s.code() == Code::DeadlineExceeded || msg.contains("Timeout expired") || transport {
        return "context deadline exceeded".to_string();
    }
    format!("rpc error: code = {} desc = {}", code_name(s.code()), msg)
}

/// gRPC-Go's names of the status codes.
pub fn code_name(c: Code) -> &'static str {
    match c {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_connections_read_as_deadlines_and_server_errors_as_sent() {
        for s in [
            Status::cancelled("operation was canceled"),
            Status::unknown("transport error"),
            Status::deadline_exceeded("x"),
        ] {
            assert_eq!(status_text(&s), "context deadline exceeded", "{s:?}");
        }
        assert_eq!(
            status_text(&Status::invalid_argument("etcdserver: key is not provided")),
            "etcdserver: key is not provided"
        );
        assert_eq!(
            status_text(&Status::unimplemented("unknown service")),
            "rpc error: code = Unimplemented desc = unknown service"
        );
    }
}
