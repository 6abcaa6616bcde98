//! `BPF_MAP_TYPE_ARENA`: the extension heap, `max_entries` pages rounded up to a power of two,
//! backed by a [`Heap`] (size-aligned base, guard zones, memfd, lazily populated).

use kflex_object::MapSpec;

use super::MapError;
use crate::heap::{DEFAULT_GUARD, Heap, HeapConfig, HeapError, HeapShare};

/// An arena map.
pub(crate) struct Arena {
    heap: Heap,
}

impl Arena {
    /// Creates a heap of `spec.max_entries` pages rounded up to a power of two, with the default
    /// guard zones, at `spec.map_extra` if non-zero (which must then be aligned to the heap size;
    /// an existing mapping there is never replaced), and copies `init` into its first bytes.
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
        // max_entries is a u32 and the page size at most a few MiB: no overflow.
        let pages = u64::from(spec.max_entries).next_power_of_two();
        let size = pages
            .checked_mul(page_size)
            .ok_or_else(|| bad(format!("{pages} pages of {page_size} bytes overflow")))?;
        if spec.map_extra != 0 && !spec.map_extra.is_multiple_of(size) {
            return Err(bad(format!(
                "address {:#x} is not aligned to the heap size {size:#x} ({} pages rounded up to {pages})",
                spec.map_extra, spec.max_entries
            )));
        }
        let config = HeapConfig {
            size,
            guard: DEFAULT_GUARD,
            address: (spec.map_extra != 0).then_some(spec.map_extra),
            init,
        };
        let heap = Heap::create(config).map_err(|e| match e {
            HeapError::Config(reason) => bad(reason),
            e @ HeapError::AddressTaken { .. } => bad(e.to_string()),
            e => MapError::NoMemory {
                name: spec.name.clone(),
                reason: e.to_string(),
            },
        })?;
        Ok(Arena { heap })
    }

    /// Heap start.
    pub(crate) fn base(&self) -> u64 {
        self.heap.base()
    }

    /// Heap length in bytes.
    pub(crate) fn len(&self) -> u64 {
        self.heap.size()
    }

    /// Copies bytes out of the heap (host access).
    pub(crate) fn read(&self, off: u64, len: usize) -> Option<Vec<u8>> {
        // Check before allocating the output buffer.
        if off
            .checked_add(len as u64)
            .is_none_or(|end| end > self.len())
        {
            return None;
        }
        let mut out = vec![0u8; len];
        self.heap.read(off, &mut out).ok()?;
        Some(out)
    }

    /// Copies bytes into the heap (host access).
    pub(crate) fn write(&self, off: u64, data: &[u8]) -> bool {
        self.heap.write(off, data).is_ok()
    }

    /// The heap's memfd, base and size, for mapping it in another process.
    pub(crate) fn share(&self) -> HeapShare<'_> {
        self.heap.share_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kflex_object::MapType;

    fn spec(pages: u32, extra: u64) -> MapSpec {
        MapSpec {
            map_extra: extra,
            ..MapSpec::new("arena", MapType::Arena, 0, 0, pages).with_flags(0x400)
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
    fn size_is_rounded_to_a_power_of_two_and_aligned() {
        let a = Arena::new(&spec(3, 0), 4096, None).unwrap();
        assert_eq!(a.len(), 4 * 4096);
        assert_eq!(a.base() % a.len(), 0);
        assert!(a.write(4 * 4096 - 1, b"x"));
        assert!(a.read(4 * 4096 - 1, 2).is_none());
        assert!(a.read(0, usize::MAX).is_none());
    }

    #[test]
    fn heaps_above_4_gib_are_accepted() {
        // 2^21 pages of 4 KiB = 8 GiB of address space, populated lazily.
        let a = Arena::new(&spec(1 << 21, 0), 4096, None).unwrap();
        assert_eq!(a.len(), 1 << 33);
        assert_eq!(a.base() % a.len(), 0);
        assert!(a.write((1 << 33) - 8, &7u64.to_le_bytes()));
        assert_eq!(
            a.read((1 << 33) - 8, 8).unwrap(),
            7u64.to_le_bytes().to_vec()
        );
    }

    #[test]
    fn fixed_address_must_be_size_aligned() {
        // 4 pages (16 KiB): a page-aligned but not 16 KiB-aligned address is refused clearly.
        let err = Arena::new(&spec(4, 0x7e10_0000_1000), 4096, None)
            .err()
            .unwrap();
        assert!(err.to_string().contains("not aligned"), "{err}");
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
