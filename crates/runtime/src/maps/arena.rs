//! `BPF_MAP_TYPE_ARENA`: the extension heap, `max_entries` pages of zeroed memory.

use kflex_object::MapSpec;

use super::MapError;
use super::raw::Mapping;

/// Largest arena accepted, in bytes (Linux arenas are limited to 4 GiB).
const MAX_ARENA_BYTES: u64 = 1 << 32;

/// An arena map.
pub(crate) struct Arena {
    mem: Mapping,
}

impl Arena {
    /// Maps `spec.max_entries` pages, at `spec.map_extra` if non-zero (never replacing an existing
    /// mapping), and copies `init` into its first bytes.
    pub(crate) fn new(
        spec: &MapSpec,
        page_size: u64,
        init: Option<&[u8]>,
    ) -> Result<Self, MapError> {
        let bad = |reason: String| MapError::Create {
            name: spec.name.clone(),
            reason,
        };
        if spec.key_size != 0 || spec.value_size != 0 {
            return Err(bad("arena key and value sizes must be 0".into()));
        }
        if spec.max_entries == 0 {
            return Err(bad("max_entries (pages) is 0".into()));
        }
        let len = spec.max_entries as u64 * page_size;
        if len > MAX_ARENA_BYTES {
            return Err(bad(format!("{len} bytes exceed the 4 GiB arena limit")));
        }
        if !spec.map_extra.is_multiple_of(page_size) {
            return Err(bad(format!(
                "address {:#x} is not page aligned",
                spec.map_extra
            )));
        }
        if let Some(init) = init
            && init.len() as u64 > len
        {
            return Err(bad(format!(
                "initial image of {} bytes is larger than the arena ({len} bytes)",
                init.len()
            )));
        }
        let mem = Mapping::anonymous(len, spec.map_extra).map_err(|reason| MapError::NoMemory {
            name: spec.name.clone(),
            reason,
        })?;
        if let Some(init) = init {
            mem.write(0, init);
        }
        Ok(Arena { mem })
    }

    /// Heap start.
    pub(crate) fn base(&self) -> u64 {
        self.mem.addr()
    }

    /// Heap length in bytes.
    pub(crate) fn len(&self) -> u64 {
        self.mem.len() as u64
    }

    /// Copies bytes out of the heap (host access).
    pub(crate) fn read(&self, off: u64, len: usize) -> Option<Vec<u8>> {
        self.mem.read(off, len)
    }

    /// Copies bytes into the heap (host access).
    pub(crate) fn write(&self, off: u64, data: &[u8]) -> bool {
        self.mem.write(off, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kflex_object::MapType;

    fn spec(pages: u32, extra: u64) -> MapSpec {
        MapSpec {
            name: "arena".into(),
            map_type: MapType::Arena,
            key_size: 0,
            value_size: 0,
            max_entries: pages,
            flags: 0x400,
            map_extra: extra,
            global: None,
            initial_value: None,
        }
    }

    #[test]
    fn zeroed_with_image() {
        let a = Arena::new(&spec(2, 0), 4096, Some(b"hello")).unwrap();
        assert_eq!(a.len(), 8192);
        assert_eq!(a.read(0, 6).unwrap(), b"hello\0".to_vec());
        assert_eq!(a.read(8190, 2).unwrap(), vec![0, 0]);
        assert!(a.read(8191, 2).is_none());
        assert!(a.write(8000, b"x"));
    }

    #[test]
    fn fixed_address_is_honoured_and_not_replaced() {
        let want = 0x7e00_0000_0000u64;
        let a = Arena::new(&spec(1, want), 4096, None).unwrap();
        assert_eq!(a.base(), want);
        // The same address again must fail instead of replacing the first arena.
        assert!(Arena::new(&spec(1, want), 4096, None).is_err());
    }

    #[test]
    fn bad_specs() {
        assert!(Arena::new(&spec(0, 0), 4096, None).is_err());
        assert!(Arena::new(&spec(1, 123), 4096, None).is_err());
        assert!(Arena::new(&spec(1, 0), 4096, Some(&[0; 4097])).is_err());
        let mut s = spec(1, 0);
        s.key_size = 4;
        assert!(Arena::new(&s, 4096, None).is_err());
    }
}
