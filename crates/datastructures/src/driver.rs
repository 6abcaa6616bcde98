//! [`Driver`]: one running instance of a structure on some engine.

use crate::protocol::{BATCH_MAX, Op, OpKind};

/// Why a batch could not be run.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// More ops than the mailbox holds.
    #[error("batch of {count} ops exceeds the mailbox ({max} ops)")]
    BatchTooLarge {
        /// Ops asked for.
        count: usize,
        /// Mailbox capacity.
        max: usize,
    },
    /// The engine could not run the program (or cancelled it).
    #[error("{engine}: {message}")]
    Engine {
        /// The engine's name.
        engine: String,
        /// What went wrong.
        message: String,
    },
}

impl DriverError {
    /// An engine failure.
    pub fn engine(engine: impl Into<String>, message: impl Into<String>) -> Self {
        DriverError::Engine {
            engine: engine.into(),
            message: message.into(),
        }
    }
}

/// Refuses a batch of more ops than the mailbox holds ([`DriverError::BatchTooLarge`]).
pub fn check_count(count: usize) -> Result<(), DriverError> {
    if count > BATCH_MAX {
        return Err(DriverError::BatchTooLarge {
            count,
            max: BATCH_MAX,
        });
    }
    Ok(())
}

/// A structure instance on one engine: initialised, with a mailbox shared with the program.
///
/// Write ops into [`Driver::mailbox`], then [`Driver::run`] the first `count` of them; results
/// (and lookup values) are read back from the same slice. The mailbox is the heap memory itself.
pub trait Driver {
    /// The engine's name (`native`, `kflex-jit`, `kflex-jit-perf`, `kflex-interp`, `linux`).
    fn engine(&self) -> &str;

    /// The mailbox: [`crate::protocol::BATCH_MAX`] ops.
    fn mailbox(&mut self) -> &mut [Op];

    /// Runs program `op` over mailbox ops `0..count`; returns the program's return value (the
    /// number of ops with a result > 0).
    fn run(&mut self, op: OpKind, count: usize) -> Result<i64, DriverError>;
}
