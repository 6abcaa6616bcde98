//! kflex: run eBPF extensions inside any Rust host.
//!
//! The embedding API: load an ELF object compiled by clang (`Extension::load`), which creates its
//! maps, verifies every program with `kflex-verify` (kernel-interface compliance, as the Linux
//! verifier; on by default, see `ExtensionOptions::verify`) and links and decodes it; test-run a program like Linux `BPF_PROG_TEST_RUN`
//! (`Extension::test_run`); read and write its maps from the host (`Extension::map`); offer the
//! extension host helpers with typed signatures (`ExtensionOptions::helpers`).
//!
//! ```no_run
//! use kflex::{Extension, ExtensionOptions, TestRunOptions};
//!
//! let ext = Extension::load_file("xdp_firewall.o", ExtensionOptions::default())?;
//! let frame = kflex::packet::udp4_frame([10, 0, 0, 1], [10, 0, 0, 2], 1234, 53, b"hi");
//! let result = ext.test_run("xdp_firewall", &TestRunOptions::packet(frame))?;
//! println!("verdict {} in {} ns", result.retval, result.ns_per_run);
//! # Ok::<(), kflex::Error>(())
//! ```
//!
//! Test-runs execute on the x86-64 JIT (`kflex-jit`) by default where it runs, or on the
//! reference interpreter ([`Engine`], [`ExtensionOptions::engine`], [`TestRunOptions::engine`]).
//!
//! Modules: [`extension`] (loading), [`engine`] (engine choice and JIT compilation), [`link`] (verification, map reference resolution and
//! decoding),
//! [`test_run`], [`maps`] (host map access), [`conformance`] (the bpf_conformance suite),
//! [`packet`] (test frame builders), [`hex`] (hex text), [`bench`](mod@bench) (`kflex bench datastructures`:
//! every data-structure extension on native code, kflex's engines and the Linux kernel).

#![warn(missing_docs)]

pub mod bench;
pub mod conformance;
pub mod datastructures;
pub mod engine;
pub mod error;
pub mod extension;
pub mod hex;
pub mod invoke;
pub mod link;
pub mod maps;
pub mod packet;
pub mod test_run;

pub use engine::Engine;
pub use error::{Error, Rejection, Result, RunFault};
pub use extension::{Extension, ExtensionOptions, RAW_PROGRAM_NAME};
pub use invoke::{Invocation, Invoker};
pub use link::LoadedProgram;
pub use maps::MapRef;
pub use test_run::{TestRunOptions, TestRunResult};

pub use kflex_interp::Limits;
pub use kflex_object::{MapSpec, MapType, ProgType};
pub use kflex_runtime::helpers::{ArgKind, HelperCall, HelperDef, HelperError, RetKind, Signature};
