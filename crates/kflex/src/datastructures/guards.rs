//! Static SFI guard sites of the programs of an extension.

use kflex_verify::HeapAccess;

use crate::engine::Engine;
use crate::extension::Extension;

/// Heap access sites of one program: guarded or not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuardStats {
    /// The program.
    pub program: String,
    /// Heap accesses compiled with a guard sequence.
    pub emitted: u64,
    /// Heap accesses compiled without one (proved safe by the verifier, or loads in writes-only
    /// mode).
    pub elided: u64,
}

impl GuardStats {
    /// Share of sites elided (1.0 when the program has no heap access).
    pub fn elided_ratio(&self) -> f64 {
        let total = self.emitted + self.elided;
        if total == 0 {
            1.0
        } else {
            self.elided as f64 / total as f64
        }
    }
}

/// Guard sites of every loaded program: the JIT code's counts on the JIT, the verifier's facts
/// (reachable heap accesses needing a guard or not) on the interpreter.
pub fn of_extension(ext: &Extension, engine: Engine) -> Vec<GuardStats> {
    ext.programs()
        .filter_map(Result::ok)
        .map(|p| {
            let jit = match (engine, &p.jit) {
                (Engine::Jit, Some(Ok(jit))) => Some(jit.guards()),
                _ => None,
            };
            let (emitted, elided) = jit.unwrap_or_else(|| {
                p.verified.as_ref().map_or((0, 0), |v| {
                    v.insns
                        .iter()
                        .filter(|f| f.reachable)
                        .fold((0, 0), |(g, e), f| match f.heap {
                            Some(HeapAccess::Guard { .. }) => (g + 1, e),
                            Some(HeapAccess::Elided { .. }) => (g, e + 1),
                            None => (g, e),
                        })
                })
            });
            GuardStats {
                program: p.name.clone(),
                emitted,
                elided,
            }
        })
        .collect()
}
