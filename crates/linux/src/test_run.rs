//! `BPF_PROG_TEST_RUN`: run a loaded program once (or `repeat` times) on given packet data and
//! context, as kflex's own test-run API models it.

use std::os::fd::BorrowedFd;

use crate::error::{BpfError, Result};
use crate::map::fd_u32;
use crate::sys;

/// Room beyond the input for programs that grow the packet (`bpf_xdp_adjust_tail` and friends).
const DATA_HEADROOM: usize = 4096;

/// What a test run returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRunOut {
    /// The program's return value (`r0`, truncated to 32 bits by the kernel).
    pub retval: u32,
    /// The packet after the run (empty for program types without packet data).
    pub data_out: Vec<u8>,
    /// The context after the run (empty when no context was passed in).
    pub ctx_out: Vec<u8>,
    /// Average duration of one run in nanoseconds, as the kernel measured it.
    pub duration_ns: u32,
}

/// Runs the program `prog` on `data_in` (packet bytes) and `ctx_in` (context bytes, e.g. a
/// `struct xdp_md`; empty for none), `repeat` times (0 means once).
///
/// With empty `data_in` the run takes the form `BPF_PROG_TYPE_SYSCALL` programs need: the kernel
/// runs the program once on a copy of `ctx_in` and writes the context back, which is returned as
/// `ctx_out`; `repeat` is ignored and `duration_ns` is 0 there (the kernel forbids both).
pub fn test_run(
    prog: BorrowedFd<'_>,
    data_in: &[u8],
    ctx_in: &[u8],
    repeat: u32,
) -> Result<TestRunOut> {
    let too_big =
        |what: &str| BpfError::invalid("BPF_PROG_TEST_RUN", format!("{what} is larger than 4 GiB"));
    let data_size_in = u32::try_from(data_in.len()).map_err(|_| too_big("data_in"))?;
    let ctx_size_in = u32::try_from(ctx_in.len()).map_err(|_| too_big("ctx_in"))?;
    if data_in.is_empty() {
        // Syscall form: the context is both input and output, no ctx_out, no repeat.
        let mut ctx = ctx_in.to_vec();
        let mut attr = sys::TestRunAttr {
            prog_fd: fd_u32(prog),
            ctx_size_in,
            ctx_in: if ctx.is_empty() {
                0
            } else {
                ctx.as_mut_ptr() as u64
            },
            ..Default::default()
        };
        sys::bpf(sys::BPF_PROG_TEST_RUN, &mut attr)
            .map_err(|errno| BpfError::kernel("BPF_PROG_TEST_RUN", errno))?;
        return Ok(TestRunOut {
            retval: attr.retval,
            data_out: Vec::new(),
            ctx_out: ctx,
            duration_ns: 0,
        });
    }
    let mut data_out = vec![0u8; data_in.len() + DATA_HEADROOM];
    let mut ctx_out = vec![0u8; ctx_in.len()];
    let mut attr = sys::TestRunAttr {
        prog_fd: fd_u32(prog),
        data_size_in,
        data_in: data_in.as_ptr() as u64,
        data_size_out: data_out.len() as u32,
        data_out: data_out.as_mut_ptr() as u64,
        ctx_size_in,
        ctx_in: ptr_or_null(ctx_in),
        ctx_size_out: ctx_out.len() as u32,
        ctx_out: if ctx_out.is_empty() {
            0
        } else {
            ctx_out.as_mut_ptr() as u64
        },
        repeat,
        ..Default::default()
    };
    sys::bpf(sys::BPF_PROG_TEST_RUN, &mut attr)
        .map_err(|errno| BpfError::kernel("BPF_PROG_TEST_RUN", errno))?;
    data_out.truncate(attr.data_size_out as usize);
    ctx_out.truncate(attr.ctx_size_out as usize);
    Ok(TestRunOut {
        retval: attr.retval,
        data_out,
        ctx_out,
        duration_ns: attr.duration,
    })
}

fn ptr_or_null(b: &[u8]) -> u64 {
    if b.is_empty() { 0 } else { b.as_ptr() as u64 }
}
