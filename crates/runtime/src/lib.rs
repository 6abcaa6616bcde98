//! kflex-runtime: what an extension runs against.
//!
//! * [`memory`]: the checked region table through which every extension memory access goes.
//! * [`helpers`]: the typed helper registry.
//! * [`env`]: the environment helpers see during an invocation.
//! * [`exec`]: guarded stacks and fault-to-cancellation for native (JIT) code.
//! * [`heap`]: the size-aligned, guarded, memfd-backed extension heap.
//! * [`maps`]: maps with Linux semantics and the [`MapTable`] of one runtime instance.
//! * [`resources`]: acquired references and how to release them.

#![warn(missing_docs)]

pub mod env;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub mod exec;
pub mod heap;
pub mod helpers;
pub mod maps;
pub mod memory;
pub mod resources;

pub use env::ExecEnv;
pub use helpers::{HelperCall, HelperDef, HelperError, HelperFn, HelperRegistry, Signature};
pub use maps::{MapError, MapOptions, MapTable};
pub use memory::{Access, AccessError, ContextAccess, Elements, MemoryMap, Region, RegionKind};
pub use resources::ResourceTracker;
