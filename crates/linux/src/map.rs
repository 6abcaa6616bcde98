//! Maps: `BPF_MAP_CREATE` from a [`MapSpec`], element access, freezing, and creation with the
//! initial contents of global-data maps (as libbpf does for `.data`/`.rodata`/`.bss`).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use kflex_object::{GlobalKind, MapSpec, MapType};

use crate::error::{BpfError, Result};
use crate::sys;

/// `BPF_ANY` update flag: create or replace.
pub const BPF_ANY: u64 = 0;

/// Creates a map in the kernel as `spec` describes (type, sizes, entries, flags, `map_extra`).
///
/// Arena maps need `BPF_F_MMAPABLE`; it is added when the spec lacks it, since the kernel rejects
/// arenas without it. The map starts empty; see [`LinuxMap::create`] for global data.
pub fn map_create(spec: &MapSpec) -> Result<OwnedFd> {
    let mut flags = spec.flags;
    if spec.map_type == MapType::Arena {
        flags |= kflex_object::BPF_F_MMAPABLE;
    }
    let mut attr = sys::MapCreateAttr {
        map_type: spec.map_type.linux_id(),
        key_size: spec.key_size,
        value_size: spec.value_size,
        max_entries: spec.max_entries,
        map_flags: flags,
        map_name: sys::obj_name(&spec.name),
        map_extra: spec.map_extra,
        ..Default::default()
    };
    sys::bpf_fd(sys::BPF_MAP_CREATE, &mut attr).map_err(|errno| {
        BpfError::kernel(
            format!(
                "BPF_MAP_CREATE of {} map {:?}",
                spec.map_type.name(),
                spec.name
            ),
            errno,
        )
    })
}

/// A kernel map together with the sizes it was created with, so that element access can check
/// buffer sizes before the kernel reads or writes them.
#[derive(Debug)]
pub struct LinuxMap {
    /// The map's descriptor.
    pub fd: OwnedFd,
    /// The spec it was created from.
    pub spec: MapSpec,
    /// For arena maps: the user-space mapping of the heap (the kernel requires the arena's user
    /// address to be fixed before a program using it is loaded).
    arena: Option<ArenaMapping>,
}

impl LinuxMap {
    /// Creates the map ([`map_create`]) and, for global-data maps, stores their initial value and
    /// freezes `.rodata` (so that the kernel verifier may treat its contents as constants, as
    /// libbpf arranges).
    pub fn create(spec: &MapSpec) -> Result<LinuxMap> {
        let mut map = LinuxMap {
            fd: map_create(spec)?,
            spec: spec.clone(),
            arena: None,
        };
        if spec.map_type == MapType::Arena {
            let arena = ArenaMapping::new(map.fd.as_fd(), spec)?;
            if let Some(init) = &spec.initial_value {
                arena
                    .write(0, init)
                    .map_err(|d| BpfError::invalid("arena initial image", d))?;
            }
            map.arena = Some(arena);
        }
        if spec.global.is_some() && spec.map_type == MapType::Array {
            let size = spec.value_size as usize;
            let mut value = vec![0u8; size];
            if let Some(init) = &spec.initial_value {
                let n = init.len().min(size);
                value[..n].copy_from_slice(&init[..n]);
            }
            map.update(&0u32.to_ne_bytes(), &value, BPF_ANY)?;
            if spec.global == Some(GlobalKind::Rodata) {
                map_freeze(map.fd.as_fd())?;
            }
        }
        Ok(map)
    }

    /// The descriptor, borrowed (for [`crate::prog_load`]'s map list).
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// For arena maps: the user-space address of the heap.
    pub fn arena_addr(&self) -> Option<u64> {
        self.arena.as_ref().map(|a| a.ptr as u64)
    }

    /// `BPF_MAP_UPDATE_ELEM` on a hash, LRU hash or array map.
    pub fn update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<()> {
        self.check_sizes("BPF_MAP_UPDATE_ELEM", key, value.len())?;
        let mut attr = sys::MapElemAttr {
            map_fd: fd_u32(self.as_fd()),
            key: key.as_ptr() as u64,
            value: value.as_ptr() as u64,
            flags,
            ..Default::default()
        };
        sys::bpf(sys::BPF_MAP_UPDATE_ELEM, &mut attr)
            .map(|_| ())
            .map_err(|errno| BpfError::kernel("BPF_MAP_UPDATE_ELEM", errno))
    }

    /// `BPF_MAP_LOOKUP_ELEM` on a hash, LRU hash or array map; `Ok(None)` when the key is absent.
    pub fn lookup(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let mut value = vec![0u8; self.spec.value_size as usize];
        self.check_sizes("BPF_MAP_LOOKUP_ELEM", key, value.len())?;
        let mut attr = sys::MapElemAttr {
            map_fd: fd_u32(self.as_fd()),
            key: key.as_ptr() as u64,
            value: value.as_mut_ptr() as u64,
            ..Default::default()
        };
        match sys::bpf(sys::BPF_MAP_LOOKUP_ELEM, &mut attr) {
            Ok(_) => Ok(Some(value)),
            Err(libc::ENOENT) => Ok(None),
            Err(errno) => Err(BpfError::kernel("BPF_MAP_LOOKUP_ELEM", errno)),
        }
    }

    /// The kernel reads `key_size` and reads or writes `value_size` bytes through the pointers it
    /// is given: make sure the buffers are exactly that large, and that the map has plain
    /// (not per-CPU) elements.
    fn check_sizes(&self, op: &str, key: &[u8], value_len: usize) -> Result<()> {
        let s = &self.spec;
        if !matches!(
            s.map_type,
            MapType::Hash | MapType::LruHash | MapType::Array
        ) {
            return Err(BpfError::invalid(
                op,
                format!(
                    "element access on a {} map is not supported",
                    s.map_type.name()
                ),
            ));
        }
        if key.len() != s.key_size as usize || value_len != s.value_size as usize {
            return Err(BpfError::invalid(
                op,
                format!(
                    "map {:?} has key size {} and value size {}, got {} and {}",
                    s.name,
                    s.key_size,
                    s.value_size,
                    key.len(),
                    value_len
                ),
            ));
        }
        Ok(())
    }
}

/// `BPF_MAP_FREEZE`: no more writes from user space.
pub fn map_freeze(map: BorrowedFd<'_>) -> Result<()> {
    let mut attr = sys::MapElemAttr {
        map_fd: fd_u32(map),
        ..Default::default()
    };
    sys::bpf(sys::BPF_MAP_FREEZE, &mut attr)
        .map(|_| ())
        .map_err(|errno| BpfError::kernel("BPF_MAP_FREEZE", errno))
}

/// A descriptor as the `__u32` the attribute structs hold (descriptors are never negative).
pub(crate) fn fd_u32(fd: BorrowedFd<'_>) -> u32 {
    fd.as_raw_fd() as u32
}

/// The shared user-space mapping of an arena map (`max_entries` pages), unmapped on drop.
#[derive(Debug)]
struct ArenaMapping {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is plain shared memory owned by this value; it is only written through
// `write`, which takes `&self` but copies into memory nobody in this process holds references to.
unsafe impl Send for ArenaMapping {}
// SAFETY: as above; concurrent `write`s race only on the bytes of the heap, like the kernel's own
// accesses, and never on Rust-visible data.
unsafe impl Sync for ArenaMapping {}

impl ArenaMapping {
    fn new(fd: BorrowedFd<'_>, spec: &MapSpec) -> Result<ArenaMapping> {
        let op = format!("mmap of arena map {:?}", spec.name);
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let page = usize::try_from(page).unwrap_or(4096);
        let len = (spec.max_entries as usize)
            .checked_mul(page)
            .filter(|&l| l > 0)
            .ok_or_else(|| BpfError::invalid(&op, "arena size is zero or overflows"))?;
        let (addr, flags) = if spec.map_extra != 0 {
            (
                spec.map_extra as *mut libc::c_void,
                libc::MAP_SHARED | libc::MAP_FIXED_NOREPLACE,
            )
        } else {
            (std::ptr::null_mut(), libc::MAP_SHARED)
        };
        // SAFETY: a new shared mapping of the arena descriptor; with MAP_FIXED_NOREPLACE the
        // kernel refuses (instead of replacing) any existing mapping at `map_extra`, so no memory
        // this process uses is affected. The result is checked for MAP_FAILED.
        let ptr = unsafe {
            libc::mmap(
                addr,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            let errno = std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EINVAL);
            return Err(BpfError::kernel(op, errno));
        }
        Ok(ArenaMapping { ptr, len })
    }

    /// Copies `bytes` to offset `at` of the heap (pages are allocated by the kernel on touch).
    fn write(&self, at: usize, bytes: &[u8]) -> std::result::Result<(), String> {
        let end = at
            .checked_add(bytes.len())
            .filter(|&e| e <= self.len)
            .ok_or_else(|| {
                format!(
                    "{} bytes at {at} do not fit the {}-byte arena",
                    bytes.len(),
                    self.len
                )
            })?;
        debug_assert!(end <= self.len);
        // SAFETY: [at, end) lies inside the live mapping (checked above), which is writable, and
        // `bytes` cannot overlap it (it is Rust-owned memory outside the mapping).
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.ptr.cast::<u8>().add(at),
                bytes.len(),
            );
        }
        Ok(())
    }
}

impl Drop for ArenaMapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe a mapping created in `new` and not unmapped since; no
        // references into it exist outside this value.
        unsafe {
            libc::munmap(self.ptr, self.len);
        }
    }
}
