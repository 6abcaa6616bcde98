//! The typed helper registry: every function an extension may call, with its signature and its
//! implementation. The verifier checks calls against the signatures; engines dispatch through it.

pub mod builtin;
mod map_helpers;
pub mod printk;
mod ringbuf_helpers;
pub mod signature;
pub mod spin_lock;

use std::collections::BTreeMap;
use std::sync::Arc;

use thiserror::Error;

use crate::env::ExecEnv;
use crate::memory::{AccessError, MemoryMap};
pub use builtin::{ids, linux_helpers};
pub use signature::{ArgKind, ResourceKind, RetKind, Signature};

/// Everything a helper implementation can see during one call.
pub struct HelperCall<'a> {
    /// r1..r5 at the call.
    pub args: [u64; 5],
    /// The invocation's memory; helpers access extension memory only through it.
    pub mem: &'a mut MemoryMap,
    /// Maps, CPU number, trace output, random state, held resources.
    pub env: &'a mut ExecEnv,
}

/// Why a helper call failed in a way that must stop the program (not a Linux-style negative errno,
/// which helpers return as an ordinary value).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HelperError {
    /// A pointer argument did not point at memory the program may access.
    #[error("bad memory argument: {0}")]
    Memory(#[from] AccessError),
    /// An argument broke the helper's contract (e.g. not a map pointer).
    #[error("bad argument r{arg}: {reason}")]
    BadArgument {
        /// Register number (1..5).
        arg: u8,
        /// What was wrong.
        reason: String,
    },
    /// The helper exists but cannot be used in this context.
    #[error("{0}")]
    Unavailable(String),
}

/// A helper implementation.
pub type HelperFn = dyn Fn(&mut HelperCall<'_>) -> Result<u64, HelperError> + Send + Sync;

/// One registered helper.
#[derive(Clone)]
pub struct HelperDef {
    /// Helper number (Linux numbering for Linux helpers; hosts pick free numbers for their own).
    pub id: u32,
    /// Name as in `linux/bpf.h` without the `bpf_` prefix removed (e.g. `bpf_map_lookup_elem`).
    pub name: String,
    /// Typed signature.
    pub sig: Signature,
    /// Implementation.
    pub func: Arc<HelperFn>,
}

impl std::fmt::Debug for HelperDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HelperDef")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("sig", &self.sig)
            .finish_non_exhaustive()
    }
}

/// Why a helper could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RegistryError {
    /// The number is taken.
    #[error("helper #{id} is already registered as {existing}")]
    Duplicate {
        /// The number.
        id: u32,
        /// Name of the helper holding it.
        existing: String,
    },
    /// The signature is malformed (too many arguments, size argument pointing nowhere, ...).
    #[error("helper {name}: bad signature: {reason}")]
    BadSignature {
        /// Helper name.
        name: String,
        /// What is wrong.
        reason: String,
    },
}

/// The set of helpers an extension may call, keyed by number.
#[derive(Clone, Default, Debug)]
pub struct HelperRegistry {
    helpers: BTreeMap<u32, HelperDef>,
}

impl HelperRegistry {
    /// An empty registry.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Looks a helper up by number.
    pub fn get(&self, id: u32) -> Option<&HelperDef> {
        self.helpers.get(&id)
    }

    /// All helpers, by number.
    pub fn iter(&self) -> impl Iterator<Item = &HelperDef> {
        self.helpers.values()
    }

    /// The helper that releases a resource of `kind` when the extension is cancelled holding it:
    /// `bpf_spin_unlock` for locks, `bpf_ringbuf_discard` for ringbuf samples (a cancelled
    /// extension must not publish a half-written record), and for other kinds the lowest-numbered
    /// helper whose signature releases a `Ref(kind)` argument (e.g. a host's release helper).
    pub fn release_helper(&self, kind: ResourceKind) -> Option<u32> {
        let preferred = match kind {
            ResourceKind::Lock => Some(ids::SPIN_UNLOCK),
            ResourceKind::RingbufSample => Some(ids::RINGBUF_DISCARD),
            ResourceKind::Host(_) => None,
        };
        if let Some(id) = preferred.filter(|id| self.helpers.contains_key(id)) {
            return Some(id);
        }
        self.helpers
            .values()
            .find(|h| {
                h.sig
                    .releases
                    .and_then(|r| h.sig.args.get(r as usize))
                    .is_some_and(|a| *a == ArgKind::Ref(kind))
            })
            .map(|h| h.id)
    }

    /// Registers a helper after checking its signature is well formed.
    pub fn register(&mut self, def: HelperDef) -> Result<(), RegistryError> {
        validate_signature(&def)?;
        if let Some(existing) = self.helpers.get(&def.id) {
            return Err(RegistryError::Duplicate {
                id: def.id,
                existing: existing.name.clone(),
            });
        }
        self.helpers.insert(def.id, def);
        Ok(())
    }
}

fn validate_signature(def: &HelperDef) -> Result<(), RegistryError> {
    let bad = |reason: String| RegistryError::BadSignature {
        name: def.name.clone(),
        reason,
    };
    let args = &def.sig.args;
    if args.len() > 5 {
        return Err(bad(format!("{} arguments, at most 5 allowed", args.len())));
    }
    for (i, a) in args.iter().enumerate() {
        if let ArgKind::MemRead { size_arg } | ArgKind::MemWrite { size_arg } = a {
            match args.get(*size_arg as usize) {
                Some(ArgKind::MemSize { .. }) => {}
                _ => {
                    return Err(bad(format!(
                        "argument {i}'s size argument {size_arg} is not a MemSize"
                    )));
                }
            }
        }
        if matches!(a, ArgKind::MapKey | ArgKind::MapValue) && !args.contains(&ArgKind::MapPtr) {
            return Err(bad(format!(
                "argument {i} refers to a map but no argument is a MapPtr"
            )));
        }
    }
    if let Some(r) = def.sig.releases
        && !matches!(args.get(r as usize), Some(ArgKind::Ref(_)))
    {
        return Err(bad(format!(
            "releases argument {r}, which is not a reference"
        )));
    }
    if let RetKind::MemOrNull { size_arg } = def.sig.ret
        && args.get(size_arg as usize).is_none()
    {
        return Err(bad(format!(
            "return size argument {size_arg} does not exist"
        )));
    }
    Ok(())
}
