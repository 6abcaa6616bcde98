//! Map errors, each carrying the Linux errno a helper returns for it.

use thiserror::Error;

/// Why a map operation or map creation failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MapError {
    /// The element does not exist (`ENOENT`).
    #[error("no such element")]
    NotFound,
    /// The element exists and `BPF_NOEXIST` was given (`EEXIST`).
    #[error("element already exists")]
    Exists,
    /// The map is full, or an array index is out of range on update (`E2BIG`).
    #[error("map is full or index out of range")]
    Full,
    /// Bad flags or an operation the map type defines as invalid (`EINVAL`).
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// A key of the wrong size (`EINVAL`).
    #[error("key is {got} bytes, map keys are {expected}")]
    KeySize {
        /// The map's key size.
        expected: u32,
        /// The size passed.
        got: usize,
    },
    /// A value of the wrong size (`EINVAL`).
    #[error("value is {got} bytes, expected {expected}")]
    ValueSize {
        /// The expected size.
        expected: usize,
        /// The size passed.
        got: usize,
    },
    /// The operation does not exist for this map type (`EOPNOTSUPP`); from a program this is a
    /// contract violation rather than an errno.
    #[error("{op} is not supported on {map_type} maps")]
    NotSupported {
        /// The operation.
        op: &'static str,
        /// The map type name.
        map_type: &'static str,
    },
    /// No map with this index in the table.
    #[error("no map #{0}")]
    NoSuchMap(usize),
    /// The map could not be created from its spec.
    #[error("cannot create map '{name}': {reason}")]
    Create {
        /// Map name.
        name: String,
        /// What was wrong.
        reason: String,
    },
    /// Memory for the map could not be obtained (`ENOMEM`).
    #[error("cannot allocate memory for map '{name}': {reason}")]
    NoMemory {
        /// Map name.
        name: String,
        /// What failed.
        reason: String,
    },
}

impl MapError {
    /// The positive Linux errno for this error.
    pub fn errno(&self) -> i32 {
        match self {
            MapError::NotFound | MapError::NoSuchMap(_) => libc::ENOENT,
            MapError::Exists => libc::EEXIST,
            MapError::Full => libc::E2BIG,
            MapError::Invalid(_)
            | MapError::KeySize { .. }
            | MapError::ValueSize { .. }
            | MapError::Create { .. } => libc::EINVAL,
            MapError::NotSupported { .. } => libc::EOPNOTSUPP,
            MapError::NoMemory { .. } => libc::ENOMEM,
        }
    }

    /// The value a helper returns in r0 for this error: `-errno` as a 64-bit register value.
    pub fn to_r0(&self) -> u64 {
        (-(self.errno() as i64)) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_values_match_linux() {
        assert_eq!(MapError::NotFound.errno(), 2);
        assert_eq!(MapError::Exists.errno(), 17);
        assert_eq!(MapError::Full.errno(), 7);
        assert_eq!(MapError::Invalid(String::new()).errno(), 22);
        assert_eq!(MapError::Exists.to_r0(), (-17i64) as u64);
    }
}
