//! kflex-linux: kflex's Linux back end — safe wrappers over the raw `bpf(2)` system call.
//!
//! The Linux kernel is kflex's reference: the differential tests load the same bytes into the
//! running kernel and compare the kernel verifier's verdict with kflex's, and the benchmarks put
//! the kernel's own verification time beside kflex's. This crate is the only place that talks to
//! the kernel; every `bpf(2)` command goes through one checked entry point, and descriptors are
//! [`OwnedFd`](std::os::fd::OwnedFd)s closed on drop.
//!
//! * [`map_create`] / [`LinuxMap::create`]: `BPF_MAP_CREATE` from a kflex [`MapSpec`](kflex_object::MapSpec)
//!   (array, per-CPU array, hash, LRU hash, ring buffer, arena with `BPF_F_MMAPABLE` and
//!   `map_extra`), with global-data initialisation and `.rodata` freezing like libbpf.
//! * [`prog_load`]: `BPF_PROG_LOAD` of kflex's unlinked instructions (map indices in `lddw`
//!   resolved to descriptors) returning the verifier log and its statistics, or a [`LoadError`]
//!   with the errno and log.
//! * [`test_run`] runs a loaded program once or many times (`BPF_PROG_TEST_RUN`).
//! * [`bpf_available`]: whether any of this works here, and if not, why.
//! * [`backend`]: the back end proper on libbpf-rs: whole ELF objects (the examples, the
//!   data-structure extensions) loaded into the kernel, their arena heap mapped into this process,
//!   programs test-run, maps read and written.
//!
//! # Example
//!
//! ```no_run
//! use kflex_isa::{Insn, op};
//! use kflex_linux::{bpf_available, prog_load, test_run, LOG_STATS};
//! use kflex_object::ProgType;
//! use std::os::fd::AsFd;
//!
//! if bpf_available().is_ok() {
//!     let insns = [
//!         Insn::new(op::ALU64 | op::MOV | op::K, 0, 0, 0, 2), // r0 = XDP_PASS
//!         Insn::new(op::JMP | op::EXIT, 0, 0, 0, 0),
//!     ];
//!     let prog = prog_load(ProgType::Xdp, &insns, &[], "GPL", LOG_STATS).unwrap();
//!     println!("kernel verified it in {:?} us", prog.verification_time_us);
//!     let out = test_run(prog.fd.as_fd(), &[0u8; 64], &[], 1).unwrap();
//!     assert_eq!(out.retval, 2);
//! }
//! ```

#![warn(missing_docs)]

pub mod backend;
mod error;
mod map;
mod probe;
mod prog;
mod sys;
mod test_run;

pub use error::{BpfError, Result};
pub use map::{BPF_ANY, LinuxMap, map_create, map_freeze};
pub use probe::bpf_available;
pub use prog::{
    LOG_LEVEL_1, LOG_LEVEL_2, LOG_STATS, LoadError, LoadedProg, parse_stats, prog_load,
};
pub use test_run::{TestRunOut, test_run};
