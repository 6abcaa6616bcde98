//! Errors of the host side.

use std::ops::Range;

/// Why [`crate::HeapAllocator::attach`] refused the memory it was given.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The state pointer is null or not 8-byte aligned.
    #[error("allocator state at {0:#x} is null or not 8-byte aligned")]
    MisalignedState(u64),
    /// The carve range is empty or too small for one block.
    #[error("carve range {0:x?} holds no block")]
    EmptyCarve(Range<u64>),
    /// The carve range overlaps the allocator state.
    #[error("carve range {carve:x?} overlaps the allocator state {state:x?}")]
    CarveOverlapsState {
        /// The carve range given.
        carve: Range<u64>,
        /// Where the state lies.
        state: Range<u64>,
    },
    /// The state or the carve range lies outside the configured heap range.
    #[error("{what} {range:x?} lies outside the heap {heap:x?}")]
    OutsideHeap {
        /// "state" or "carve range".
        what: &'static str,
        /// The offending range.
        range: Range<u64>,
        /// The heap range configured.
        heap: Range<u64>,
    },
    /// A configuration value is out of range.
    #[error("invalid allocator configuration: {0}")]
    Config(String),
}

/// Result of the host side.
pub type Result<T, E = Error> = std::result::Result<T, E>;
