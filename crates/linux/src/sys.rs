//! The raw `bpf(2)` system call: command numbers, the `union bpf_attr` variants kflex uses (laid
//! out exactly as in `include/uapi/linux/bpf.h`) and the one function that enters the kernel.

use std::os::fd::{FromRawFd, OwnedFd};

/// `BPF_MAP_CREATE`.
pub const BPF_MAP_CREATE: u32 = 0;
/// `BPF_MAP_LOOKUP_ELEM`.
pub const BPF_MAP_LOOKUP_ELEM: u32 = 1;
/// `BPF_MAP_UPDATE_ELEM`.
pub const BPF_MAP_UPDATE_ELEM: u32 = 2;
/// `BPF_PROG_LOAD`.
pub const BPF_PROG_LOAD: u32 = 5;
/// `BPF_PROG_TEST_RUN`.
pub const BPF_PROG_TEST_RUN: u32 = 10;
/// `BPF_MAP_FREEZE`.
pub const BPF_MAP_FREEZE: u32 = 22;

/// `BPF_F_SLEEPABLE` program flag (required for `BPF_PROG_TYPE_SYSCALL`).
pub const BPF_F_SLEEPABLE: u32 = 1 << 4;

/// `BPF_OBJ_NAME_LEN`.
pub const OBJ_NAME_LEN: usize = 16;

/// The `BPF_MAP_CREATE` part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
pub(crate) struct MapCreateAttr {
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub map_flags: u32,
    pub inner_map_fd: u32,
    pub numa_node: u32,
    pub map_name: [u8; OBJ_NAME_LEN],
    pub map_ifindex: u32,
    pub btf_fd: u32,
    pub btf_key_type_id: u32,
    pub btf_value_type_id: u32,
    pub btf_vmlinux_value_type_id: u32,
    pub map_extra: u64,
}

/// The `BPF_MAP_*_ELEM` part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
pub struct MapElemAttr {
    pub map_fd: u32,
    pub pad: u32,
    pub key: u64,
    pub value: u64,
    pub flags: u64,
}

/// The `BPF_PROG_LOAD` part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
pub struct ProgLoadAttr {
    pub prog_type: u32,
    pub insn_cnt: u32,
    pub insns: u64,
    pub license: u64,
    pub log_level: u32,
    pub log_size: u32,
    pub log_buf: u64,
    pub kern_version: u32,
    pub prog_flags: u32,
    pub prog_name: [u8; OBJ_NAME_LEN],
    pub prog_ifindex: u32,
    pub expected_attach_type: u32,
    pub prog_btf_fd: u32,
    pub func_info_rec_size: u32,
    pub func_info: u64,
    pub func_info_cnt: u32,
    pub line_info_rec_size: u32,
    pub line_info: u64,
    pub line_info_cnt: u32,
    pub attach_btf_id: u32,
    pub attach_prog_fd: u32,
    pub core_relo_cnt: u32,
    pub fd_array: u64,
    pub core_relos: u64,
    pub core_relo_rec_size: u32,
    pub log_true_size: u32,
}

/// The `BPF_PROG_TEST_RUN` part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
pub struct TestRunAttr {
    pub prog_fd: u32,
    pub retval: u32,
    pub data_size_in: u32,
    pub data_size_out: u32,
    pub data_in: u64,
    pub data_out: u64,
    pub repeat: u32,
    pub duration: u32,
    pub ctx_size_in: u32,
    pub ctx_size_out: u32,
    pub ctx_in: u64,
    pub ctx_out: u64,
    pub flags: u32,
    pub cpu: u32,
    pub batch_size: u32,
    pub pad: u32,
}

/// Marker for the attribute structs above: plain `repr(C)` data the kernel may read and write.
///
/// # Safety
/// Implementors must be `repr(C)` structs of integers and byte arrays only, laid out as a prefix
/// of `union bpf_attr` for the command they are used with.
pub unsafe trait Attr {}
// SAFETY: all four are repr(C) structs of integers/byte arrays mirroring `union bpf_attr`.
unsafe impl Attr for MapCreateAttr {}
// SAFETY: as above.
unsafe impl Attr for MapElemAttr {}
// SAFETY: as above.
unsafe impl Attr for ProgLoadAttr {}
// SAFETY: as above.
unsafe impl Attr for TestRunAttr {}

/// Calls `bpf(cmd, attr, sizeof(*attr))`; returns the non-negative result or the errno.
///
/// Pointers stored inside `attr` (as `u64`) must point to memory that stays valid, with the sizes
/// stated in `attr`, for the duration of the call; the safe wrappers in this crate guarantee that.
pub fn bpf<A: Attr>(cmd: u32, attr: &mut A) -> Result<i64, i32> {
    let size = std::mem::size_of::<A>();
    // SAFETY: `attr` is a live, exclusively borrowed repr(C) prefix of `union bpf_attr` (trait
    // `Attr`), `size` is its exact size, and every pointer embedded in it is kept valid by the
    // caller for the duration of the call (documented contract of this private module).
    let ret = unsafe { libc::syscall(libc::SYS_bpf, cmd as libc::c_long, attr as *mut A, size) };
    if ret < 0 {
        Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EINVAL))
    } else {
        Ok(ret)
    }
}

/// Calls `bpf` for a command that returns a new file descriptor and takes ownership of it.
pub fn bpf_fd<A: Attr>(cmd: u32, attr: &mut A) -> Result<OwnedFd, i32> {
    let fd = bpf(cmd, attr)?;
    let fd = i32::try_from(fd).map_err(|_| libc::EBADF)?;
    // SAFETY: the kernel just returned this descriptor for a newly created object; nothing else
    // in the process owns it, so `OwnedFd` may close it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Copies `name` into a kernel object name: at most 15 bytes of `[A-Za-z0-9_.]` (others become
/// `_`), NUL terminated, as the kernel's `bpf_obj_name_cpy` requires.
pub fn obj_name(name: &str) -> [u8; OBJ_NAME_LEN] {
    let mut out = [0u8; OBJ_NAME_LEN];
    for (slot, b) in out.iter_mut().zip(name.bytes().take(OBJ_NAME_LEN - 1)) {
        *slot = if b.is_ascii_alphanumeric() || b == b'_' || b == b'.' {
            b
        } else {
            b'_'
        };
    }
    out
}

/// The text of an errno (`EPERM: Operation not permitted`).
pub fn errno_text(errno: i32) -> String {
    let msg = std::io::Error::from_raw_os_error(errno).to_string();
    let name = match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::E2BIG => "E2BIG",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EINVAL => "EINVAL",
        libc::ENOSPC => "ENOSPC",
        libc::ENOSYS => "ENOSYS",
        libc::ENOMEM => "ENOMEM",
        libc::EBADF => "EBADF",
        524 => "ENOTSUPP",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        _ => return msg,
    };
    format!("{name}: {msg}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_sizes_match_uapi() {
        // Offsets of the last field used, from include/uapi/linux/bpf.h (x86-64 and arm64 alike).
        assert_eq!(std::mem::size_of::<MapCreateAttr>(), 72);
        assert_eq!(std::mem::offset_of!(MapCreateAttr, map_extra), 64);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, log_buf), 32);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, fd_array), 120);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, log_true_size), 140);
        assert_eq!(std::mem::offset_of!(TestRunAttr, ctx_out), 56);
        assert_eq!(std::mem::offset_of!(TestRunAttr, batch_size), 72);
        assert_eq!(std::mem::size_of::<MapElemAttr>(), 32);
    }

    #[test]
    fn object_names_are_sanitised_and_truncated() {
        assert_eq!(&obj_name("a-b.c")[..6], b"a_b.c\0");
        let long = obj_name("a_very_long_map_name_indeed");
        assert_eq!(long[15], 0);
        assert_eq!(&long[..15], b"a_very_long_map");
    }

    #[test]
    fn errno_names() {
        assert!(errno_text(libc::EPERM).starts_with("EPERM: "));
        assert!(errno_text(libc::EACCES).starts_with("EACCES: "));
    }
}
