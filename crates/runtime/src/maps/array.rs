//! `BPF_MAP_TYPE_ARRAY`, including the single-entry arrays that stand for global data.

use kflex_object::MapSpec;

use super::raw::RawBuf;
use super::{BPF_EXIST, BPF_NOEXIST, MapError, round_up8};

/// Largest value size accepted (Linux caps values at `KMALLOC_MAX_SIZE`).
pub(crate) const MAX_VALUE_SIZE: u32 = 1 << 22;

/// Checks an update's flags as Linux does for arrays and hashes (`BPF_F_LOCK` is not supported,
/// since no value holds a spin lock).
pub(crate) fn check_update_flags(flags: u64) -> Result<(), MapError> {
    if flags > BPF_EXIST {
        return Err(MapError::Invalid(format!("update flags {flags:#x}")));
    }
    Ok(())
}

/// Parses an array key (a little-endian `u32` index).
pub(crate) fn array_index(key: &[u8]) -> Result<u32, MapError> {
    let bytes: [u8; 4] = key.try_into().map_err(|_| MapError::KeySize {
        expected: 4,
        got: key.len(),
    })?;
    Ok(u32::from_le_bytes(bytes))
}

/// Checks the sizes shared by array-like maps.
pub(crate) fn check_array_spec(spec: &MapSpec) -> Result<(), MapError> {
    let bad = |reason: String| MapError::Create {
        name: spec.name.clone(),
        reason,
    };
    if spec.key_size != 4 {
        return Err(bad(format!(
            "key size {} (array keys are 4 bytes)",
            spec.key_size
        )));
    }
    if spec.value_size == 0 || spec.value_size > MAX_VALUE_SIZE {
        return Err(bad(format!("value size {}", spec.value_size)));
    }
    if spec.max_entries == 0 {
        return Err(bad("max_entries is 0".into()));
    }
    Ok(())
}

/// An array map: `max_entries` values, each padded to 8 bytes, preallocated and zeroed.
pub(crate) struct ArrayMap {
    value_size: u32,
    max_entries: u32,
    stride: u64,
    buf: RawBuf,
}

impl ArrayMap {
    /// Creates the array, copying `spec.initial_value` into element 0 for global data.
    pub(crate) fn new(spec: &MapSpec) -> Result<Self, MapError> {
        check_array_spec(spec)?;
        let stride = round_up8(spec.value_size as u64);
        let total =
            stride
                .checked_mul(spec.max_entries as u64)
                .ok_or_else(|| MapError::Create {
                    name: spec.name.clone(),
                    reason: "size overflows".into(),
                })?;
        let buf = RawBuf::zeroed(total).map_err(|reason| MapError::NoMemory {
            name: spec.name.clone(),
            reason,
        })?;
        if let Some(init) = &spec.initial_value {
            if init.len() > spec.value_size as usize {
                return Err(MapError::Create {
                    name: spec.name.clone(),
                    reason: format!(
                        "initial value is {} bytes, value size is {}",
                        init.len(),
                        spec.value_size
                    ),
                });
            }
            buf.write(0, init);
        }
        Ok(ArrayMap {
            value_size: spec.value_size,
            max_entries: spec.max_entries,
            stride,
            buf,
        })
    }

    /// Start of the value slab.
    pub(crate) fn base(&self) -> u64 {
        self.buf.addr()
    }

    /// Length of the value slab.
    pub(crate) fn slab_len(&self) -> u64 {
        self.buf.len() as u64
    }

    /// Distance between values.
    pub(crate) fn stride(&self) -> u64 {
        self.stride
    }

    /// Number of entries.
    pub(crate) fn max_entries(&self) -> u32 {
        self.max_entries
    }

    /// Address of the value at `key`, or `None` if the index is out of range.
    pub(crate) fn lookup_addr(&self, key: &[u8]) -> Result<Option<u64>, MapError> {
        let i = array_index(key)?;
        Ok((i < self.max_entries).then(|| self.base() + i as u64 * self.stride))
    }

    /// Copies the value at `key` out.
    pub(crate) fn lookup(&self, key: &[u8]) -> Result<Option<Vec<u8>>, MapError> {
        let i = array_index(key)?;
        if i >= self.max_entries {
            return Ok(None);
        }
        Ok(self
            .buf
            .read(i as u64 * self.stride, self.value_size as usize))
    }

    /// Linux `array_map_update_elem`.
    pub(crate) fn update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<(), MapError> {
        check_update_flags(flags)?;
        let i = array_index(key)?;
        if i >= self.max_entries {
            return Err(MapError::Full);
        }
        if flags == BPF_NOEXIST {
            return Err(MapError::Exists);
        }
        if value.len() != self.value_size as usize {
            return Err(MapError::ValueSize {
                expected: self.value_size as usize,
                got: value.len(),
            });
        }
        self.buf.write(i as u64 * self.stride, value);
        Ok(())
    }

    /// Arrays cannot delete (`EINVAL`), as in Linux.
    pub(crate) fn delete(&self, key: &[u8]) -> Result<(), MapError> {
        array_index(key)?;
        Err(MapError::Invalid("array elements cannot be deleted".into()))
    }

    /// `PSEUDO_MAP_VALUE` address: element 0 + `offset` (Linux allows it on single-entry arrays).
    pub(crate) fn direct_value_addr(&self, offset: u64) -> Option<u64> {
        (self.max_entries == 1 && offset < self.value_size as u64).then(|| self.base() + offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kflex_object::MapType;

    pub(crate) fn spec(value_size: u32, max_entries: u32) -> MapSpec {
        MapSpec::new("a", MapType::Array, 4, value_size, max_entries)
    }

    fn k(i: u32) -> [u8; 4] {
        i.to_le_bytes()
    }

    #[test]
    fn update_flags_and_errnos() {
        let a = ArrayMap::new(&spec(4, 2)).unwrap();
        assert_eq!(a.lookup(&k(1)).unwrap(), Some(vec![0; 4]));
        assert_eq!(a.lookup(&k(2)).unwrap(), None);
        a.update(&k(1), &[1, 2, 3, 4], BPF_EXIST).unwrap();
        assert_eq!(a.lookup(&k(1)).unwrap(), Some(vec![1, 2, 3, 4]));
        assert_eq!(a.update(&k(1), &[0; 4], BPF_NOEXIST), Err(MapError::Exists));
        assert_eq!(a.update(&k(2), &[0; 4], 0), Err(MapError::Full));
        assert!(matches!(
            a.update(&k(0), &[0; 4], 3),
            Err(MapError::Invalid(_))
        ));
        assert!(matches!(
            a.update(&k(0), &[0; 3], 0),
            Err(MapError::ValueSize { .. })
        ));
        assert!(matches!(a.delete(&k(0)), Err(MapError::Invalid(_))));
        assert!(matches!(a.lookup(&[0; 8]), Err(MapError::KeySize { .. })));
    }

    #[test]
    fn stride_is_padded_and_direct_value_needs_single_entry() {
        let a = ArrayMap::new(&spec(5, 3)).unwrap();
        assert_eq!(a.stride(), 8);
        assert_eq!(a.lookup_addr(&k(2)).unwrap(), Some(a.base() + 16));
        assert_eq!(a.direct_value_addr(0), None);
        let mut s = spec(5, 1);
        s.initial_value = Some(vec![9, 8, 7]);
        let g = ArrayMap::new(&s).unwrap();
        assert_eq!(g.lookup(&k(0)).unwrap(), Some(vec![9, 8, 7, 0, 0]));
        assert_eq!(g.direct_value_addr(4), Some(g.base() + 4));
        assert_eq!(g.direct_value_addr(5), None);
    }

    #[test]
    fn bad_specs_are_refused() {
        assert!(ArrayMap::new(&spec(0, 1)).is_err());
        assert!(ArrayMap::new(&spec(4, 0)).is_err());
        let mut s = spec(4, 1);
        s.key_size = 8;
        assert!(ArrayMap::new(&s).is_err());
        s = spec(2, 1);
        s.initial_value = Some(vec![1, 2, 3]);
        assert!(ArrayMap::new(&s).is_err());
    }
}
