//! Conditions of the world that stop the store — disk full, I/O errors, a lock
//! held past the deadline, a read-only file system, a database that cannot be
//! opened — told apart from bugs in ONE place, so that every caller answers
//! them the same way (HTTP 503 with `Retry-After`, `/healthz` red).

use std::error::Error;
use std::fmt;

use rusqlite::ErrorCode;

use super::StoreError;

/// A condition of the world (not a bug) that keeps the store from working.
/// Retrying later may succeed; nothing was committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SQLITE_FULL or ENOSPC: the disk (or a quota) is full.
    DiskFull,
    /// SQLITE_IOERR or another operating-system I/O error.
    Io,
    /// Another connection held the database lock until the request's deadline.
    Locked,
    /// The write waited for the writer connection until its deadline.
    DeadlinePassed,
    /// SQLITE_READONLY or EROFS: the database or its file system is read-only.
    ReadOnly,
    /// The database file cannot be opened (missing, permissions, unmounted),
    /// or the database server cannot be reached (down, restarting, failing
    /// over, refusing our credentials).
    Unreachable,
    /// The writer is shutting down.
    WriterStopped,
}

impl Fault {
    /// A stable name for logs, metrics and `/healthz`.
    pub fn name(self) -> &'static str {
        match self {
            Fault::DiskFull => "disk_full",
            Fault::Io => "io_error",
            Fault::Locked => "locked",
            Fault::DeadlinePassed => "deadline",
            Fault::ReadOnly => "read_only",
            Fault::Unreachable => "unreachable",
            Fault::WriterStopped => "stopping",
        }
    }

    /// What a person is told (no paths, no internal detail).
    pub fn message(self) -> &'static str {
        match self {
            Fault::DiskFull => "the CA's disk is full; nothing was written",
            Fault::Io => "the CA's storage reported an I/O error; nothing was written",
            Fault::Locked => "the CA's database was locked until the request's deadline",
            Fault::DeadlinePassed => "the CA was too busy to write before the request's deadline",
            Fault::ReadOnly => "the CA's database is read-only; nothing was written",
            Fault::Unreachable => "the CA's database cannot be opened or reached",
            Fault::WriterStopped => "the CA is shutting down",
        }
    }

    /// How long a client should wait before retrying, in seconds.
    pub fn retry_after_secs(self) -> u64 {
        match self {
            Fault::Locked | Fault::DeadlinePassed | Fault::WriterStopped => 2,
            Fault::DiskFull | Fault::Io | Fault::ReadOnly | Fault::Unreachable => 10,
        }
    }

    /// The fault behind `err` or any error in its `source()` chain, if it is
    /// a condition rather than a bug.
    pub fn find(err: &(dyn Error + 'static)) -> Option<Fault> {
        let mut current = Some(err);
        while let Some(e) = current {
            if let Some(fault) = Self::of_one(e) {
                return Some(fault);
            }
            current = e.source();
        }
        None
    }

    fn of_one(e: &(dyn Error + 'static)) -> Option<Fault> {
        if let Some(store) = e.downcast_ref::<StoreError>() {
            return match store {
                StoreError::Condition(fault) => Some(*fault),
                StoreError::Missing(_) => Some(Fault::Unreachable),
                StoreError::Sqlite(sqlite) => Self::of_sqlite(sqlite),
                StoreError::Postgres(pg) => Self::of_postgres(pg),
                StoreError::TooNew { .. }
                | StoreError::Corrupt(_)
                | StoreError::Aborted(_)
                | StoreError::Config(_) => None,
            };
        }
        if let Some(sqlite) = e.downcast_ref::<rusqlite::Error>() {
            return Self::of_sqlite(sqlite);
        }
        if let Some(pg) = e.downcast_ref::<postgres::Error>() {
            return Self::of_postgres(pg);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Self::of_io(io);
        }
        None
    }

    fn of_sqlite(e: &rusqlite::Error) -> Option<Fault> {
        let rusqlite::Error::SqliteFailure(failure, _) = e else {
            return None;
        };
        match failure.code {
            ErrorCode::DiskFull => Some(Fault::DiskFull),
            ErrorCode::SystemIoFailure => Some(Fault::Io),
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => Some(Fault::Locked),
            ErrorCode::ReadOnly => Some(Fault::ReadOnly),
            ErrorCode::CannotOpen | ErrorCode::PermissionDenied => Some(Fault::Unreachable),
            _ => None,
        }
    }

    /// PostgreSQL: by SQLSTATE class when the server answered, else by
    /// what the client saw of the connection (refused, reset, timed out,
    /// closed) — every failure to reach the server is a condition.
    fn of_postgres(e: &postgres::Error) -> Option<Fault> {
        if let Some(db) = e.as_db_error() {
            let code = db.code().code();
            return match code {
                // disk_full
                "53100" => Some(Fault::DiskFull),
                // serialization_failure, deadlock_detected, lock_not_available
                "40001" | "40P01" | "55P03" => Some(Fault::Locked),
                // query_canceled: the statement or lock timeout set from the deadline
                "57014" => Some(Fault::DeadlinePassed),
                // read_only_sql_transaction: a standby, or a primary being demoted
                "25006" => Some(Fault::ReadOnly),
                // admin_shutdown, crash_shutdown, cannot_connect_now (restart,
                // failover), database_dropped
                "57P01" | "57P02" | "57P03" | "57P04" => Some(Fault::Unreachable),
                // connection_exception, invalid authorization (a rotated password)
                _ if code.starts_with("08") || code.starts_with("28") => Some(Fault::Unreachable),
                // insufficient_resources (memory, too many connections), system_error
                _ if code.starts_with("53") || code.starts_with("58") => Some(Fault::Io),
                _ => None,
            };
        }
        let mut cause = std::error::Error::source(e);
        while let Some(c) = cause {
            if c.downcast_ref::<std::io::Error>().is_some() {
                return Some(Fault::Unreachable);
            }
            cause = c.source();
        }
        // The client's own kinds are not public; these are the ones that
        // mean the server could not be reached or went away.
        let text = e.to_string();
        let unreachable = e.is_closed()
            || [
                "error connecting to server",
                "error communicating with the server",
                "timeout waiting for server",
                "error performing TLS handshake",
                "connection closed",
            ]
            .iter()
            .any(|prefix| text.starts_with(prefix));
        unreachable.then_some(Fault::Unreachable)
    }

    fn of_io(e: &std::io::Error) -> Option<Fault> {
        use std::io::ErrorKind;
        match e.kind() {
            ErrorKind::StorageFull | ErrorKind::QuotaExceeded => Some(Fault::DiskFull),
            ErrorKind::ReadOnlyFilesystem => Some(Fault::ReadOnly),
            ErrorKind::NotFound | ErrorKind::PermissionDenied => None,
            _ if e.raw_os_error() == Some(rustix::io::Errno::IO.raw_os_error()) => Some(Fault::Io),
            _ => None,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

/// What can hide a [`Fault`]: the error types writes return.
pub trait MaybeFault {
    /// The fault behind this error, if it is a condition rather than a bug.
    fn fault(&self) -> Option<Fault>;
}

impl MaybeFault for anyhow::Error {
    fn fault(&self) -> Option<Fault> {
        Fault::find(self.as_ref())
    }
}

impl MaybeFault for StoreError {
    fn fault(&self) -> Option<Fault> {
        Fault::find(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite(code: i32) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None)
    }

    fn check(err: StoreError, expected: Option<Fault>) {
        assert_eq!(err.fault(), expected, "{err}");
        // The same answer through an anyhow chain with context.
        let wrapped = anyhow::Error::from(err).context("while writing");
        assert_eq!(wrapped.fault(), expected);
    }

    #[test]
    fn conditions_are_faults_and_bugs_are_not() {
        use rusqlite::ffi;
        check(
            StoreError::Sqlite(sqlite(ffi::SQLITE_FULL)),
            Some(Fault::DiskFull),
        );
        check(
            StoreError::Sqlite(sqlite(ffi::SQLITE_IOERR_WRITE)),
            Some(Fault::Io),
        );
        check(
            StoreError::Sqlite(sqlite(ffi::SQLITE_BUSY)),
            Some(Fault::Locked),
        );
        check(
            StoreError::Sqlite(sqlite(ffi::SQLITE_LOCKED)),
            Some(Fault::Locked),
        );
        check(
            StoreError::Sqlite(sqlite(ffi::SQLITE_READONLY)),
            Some(Fault::ReadOnly),
        );
        check(
            StoreError::Sqlite(sqlite(ffi::SQLITE_CANTOPEN)),
            Some(Fault::Unreachable),
        );
        check(StoreError::Missing("x".into()), Some(Fault::Unreachable));
        check(
            StoreError::Condition(Fault::DeadlinePassed),
            Some(Fault::DeadlinePassed),
        );
        // Bugs stay bugs: constraint violations, SQL errors, corrupt rows.
        check(
            StoreError::Sqlite(sqlite(ffi::SQLITE_CONSTRAINT_UNIQUE)),
            None,
        );
        check(
            StoreError::Sqlite(rusqlite::Error::QueryReturnedNoRows),
            None,
        );
        check(StoreError::Corrupt("bad row".into()), None);
        let full = std::io::Error::from(std::io::ErrorKind::StorageFull);
        assert_eq!(anyhow::Error::from(full).fault(), Some(Fault::DiskFull));
    }
}
