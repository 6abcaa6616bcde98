//! The Linux back end proper: the same ELF objects kflex runs, opened and loaded into the running
//! kernel by libbpf (through `libbpf-rs`, with the libbpf 1.7 that `libbpf-sys` bundles — the
//! distribution's older libbpf cannot open arena objects), run with `BPF_PROG_TEST_RUN`.
//!
//! * [`LinuxExtension::load`] opens and loads an object (verifier log in the error when a
//!   program is rejected), lists its [programs](LinuxExtension::programs) and
//!   [maps](LinuxExtension::maps), and exposes the [arena mapping](LinuxExtension::arena): the
//!   heap is mapped into this process at the addresses programs use, so a host (e.g. the SDK's
//!   `kflex_sdk::HeapAllocator`) can read, write and populate the heap directly.
//! * [`LinuxExtension::test_run`] runs a program on a packet and/or context
//!   ([`TestRunInput`] → [`TestRunOutput`]); [`LinuxExtension::run_syscall`] is the
//!   allocation-free path for repeated `syscall` programs.
//! * [`LinuxExtension::map_lookup`], [`map_update`](LinuxExtension::map_update),
//!   [`map_delete`](LinuxExtension::map_delete): map contents by key.
//! * [`backend_available`]: whether this process can use the back end, and if not, why.
//!
//! Where `__arena` globals go in the arena: the bundled libbpf puts them at the end on kernels that
//! accept `ld_imm64` offsets across the whole arena, at the start otherwise (on the Linux 6.18
//! machines kflex is developed on: the start); [`ArenaMapping::globals`] reports which, and the
//! data-structure objects report their addresses themselves, so nothing depends on it.
//!
//! Linux accepts `addr_space_cast` (any use of an `__arena` pointer) only in a program that
//! references the arena map itself, e.g. through an `__arena` global: a program that only follows
//! heap pointers it was given must still touch one.
//!
//! # Example
//!
//! ```no_run
//! use kflex_linux::backend::{LinuxExtension, TestRunInput, backend_available};
//!
//! # fn object_bytes() -> Vec<u8> { Vec::new() }
//! if let Err(why) = backend_available() {
//!     eprintln!("cannot run in the kernel: {why}");
//!     return;
//! }
//! let ext = LinuxExtension::load("xdp_firewall", &object_bytes()).unwrap();
//! let packet = [0u8; 64];
//! let input = TestRunInput { data_in: &packet, ctx_in: None, repeat: 1000 };
//! let out = ext.test_run("xdp_firewall", &input).unwrap();
//! println!("r0 = {}, {} ns/run", out.retval, out.duration_ns);
//! ```

mod arena;
mod error;
mod extension;
mod log;
mod probe;
mod run;

pub use arena::ArenaMapping;
pub use error::{BackendError, Result};
pub use extension::{LinuxExtension, MapInfo, ProgramInfo};
pub use probe::backend_available;
pub use run::{TestRunInput, TestRunOutput};
