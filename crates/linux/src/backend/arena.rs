//! The arena map's user-space mapping: where kflex's heap lives when an object runs in the
//! kernel.
//!
//! libbpf creates the arena map and `mmap`s it into this process (at the map's `map_extra`
//! address when the object asks for one, otherwise wherever the kernel places it); the kernel
//! then takes the mapping's address as the arena's `user_vm_start`, so a heap pointer has the
//! same value in a program and in this process. Touching a page of the mapping from user space
//! allocates it, which is how the host-side allocator populates pages before programs use them.
//!
//! # Where libbpf puts `__arena` globals
//!
//! Global variables declared `__arena` (ELF section `.addr_space.1`) are copied into the arena
//! when the map is created. The bundled libbpf (1.7, from `libbpf-sys` 1.7.0) places them at the
//! **end** of the arena (offset `size - round_up(globals, page)`) when the kernel accepts
//! `ld_imm64` map-value offsets across the whole arena (upstream commit "bpf/verifier: Do not
//! limit maximum direct offset into arena map"), and at the **start** (offset 0) otherwise, as
//! libbpf versions without that probe always do. On the Linux 6.18 kernels kflex is developed on
//! they are at the start. [`ArenaMapping::globals`] reports the range actually used, found with
//! the same kernel probe libbpf makes (`tests/backend_arena.rs` checks it against the addresses a
//! program reports).

use std::ops::Range;
use std::os::fd::AsFd;
use std::sync::OnceLock;

use kflex_isa::{Insn, op};
use kflex_object::{MapSpec, MapType, ProgType};

use crate::map::map_create;
use crate::prog::{LOG_LEVEL_1, prog_load};

/// The arena map of a loaded object, as mapped into this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArenaMapping {
    /// The arena map's name.
    pub map: String,
    /// User address of the first byte (identical in programs: the arena's `user_vm_start`).
    pub base: u64,
    /// Size in bytes (`max_entries` pages).
    pub size: u64,
    /// Addresses holding the object's `__arena` globals (empty when it has none).
    pub globals: Range<u64>,
}

impl ArenaMapping {
    /// The heap's address range.
    pub fn range(&self) -> Range<u64> {
        self.base..self.base + self.size
    }

    /// The first byte as a pointer (valid while the [`LinuxExtension`](super::LinuxExtension)
    /// that owns the mapping lives).
    pub fn as_mut_ptr(&self) -> *mut u8 {
        self.base as usize as *mut u8
    }

    /// Whether `addr .. addr + len` lies inside the arena.
    pub fn contains(&self, addr: u64, len: usize) -> bool {
        addr >= self.base
            && addr
                .checked_add(len as u64)
                .is_some_and(|end| end <= self.base + self.size)
    }
}

/// The system page size.
pub(crate) fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(v).ok().filter(|&v| v > 0).unwrap_or(4096)
}

/// Offset of the `__arena` globals (`globals_size` bytes) in an arena of `arena_size` bytes, as
/// libbpf placed them (see the module documentation).
pub(crate) fn globals_offset(arena_size: u64, globals_size: u64) -> u64 {
    if globals_size == 0 || !globals_at_end() {
        return 0;
    }
    let page = page_size();
    arena_size.saturating_sub(globals_size.div_ceil(page) * page)
}

/// Whether the kernel accepts map-value offsets of 1 GiB in `ld_imm64`: libbpf's probe for
/// placing arena globals at the end. Like libbpf, it loads `r1 = &array_value + (1 << 30)` and
/// reads the verifier's complaint: "direct value offset of ..." means the old limit applies.
fn globals_at_end() -> bool {
    static AT_END: OnceLock<bool> = OnceLock::new();
    *AT_END.get_or_init(|| {
        let spec = MapSpec::new("kflex_probe", MapType::Array, 4, 1, 1);
        let Ok(map) = map_create(&spec) else {
            return false;
        };
        let insns = [
            Insn::new(op::LD | op::IMM | op::DW, 1, op::PSEUDO_MAP_VALUE, 0, 0),
            Insn::new(0, 0, 0, 0, 1 << 30),
            Insn::new(op::JMP | op::EXIT, 0, 0, 0, 0),
        ];
        match prog_load(
            ProgType::SocketFilter,
            &insns,
            &[map.as_fd()],
            "GPL",
            LOG_LEVEL_1,
        ) {
            Ok(_) => false,
            Err(e) => {
                !e.log.contains("direct value offset of")
                    && e.log.contains("invalid access to map value pointer")
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping() -> ArenaMapping {
        ArenaMapping {
            map: "heap".into(),
            base: 0x1000_0000,
            size: 0x4000,
            globals: 0..0,
        }
    }

    #[test]
    fn containment_is_checked_at_both_ends_without_overflow() {
        let m = mapping();
        assert!(m.contains(0x1000_0000, 0x4000));
        assert!(m.contains(0x1000_3fff, 1));
        assert!(!m.contains(0x1000_3fff, 2));
        assert!(!m.contains(0x0fff_ffff, 1));
        assert!(!m.contains(u64::MAX, 2));
        assert_eq!(m.range(), 0x1000_0000..0x1000_4000);
    }

    #[test]
    fn no_globals_means_offset_zero() {
        assert_eq!(globals_offset(1 << 20, 0), 0);
    }
}
