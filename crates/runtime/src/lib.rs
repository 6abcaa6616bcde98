//! kflex-runtime: what an extension runs against.
//!
//! * [`memory`]: the checked region table through which every extension memory access goes.
//! * [`helpers`]: the typed helper registry.
//! * [`env`]: the environment helpers see during an invocation.

pub mod env;
pub mod helpers;
pub mod memory;

pub use env::ExecEnv;
pub use helpers::{HelperCall, HelperDef, HelperError, HelperFn, HelperRegistry, Signature};
pub use memory::{Access, AccessError, ContextAccess, Elements, MemoryMap, Region, RegionKind};
