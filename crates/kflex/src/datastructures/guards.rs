//! Static SFI guard sites of the programs of an extension.

use kflex_verify::HeapAccess;

use crate::extension::Extension;

/// Heap access sites of one program: guarded or not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuardStats {
    /// The program.
    pub program: String,
    /// Heap accesses the verifier wants guarded.
    pub emitted: u64,
    /// Heap accesses the verifier proved inside the heap and its guard zone (no guard).
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

/// Guard sites of every loaded program, as the verifier decided them (reachable heap accesses
/// needing a guard or proved safe); a program loaded without verification reports none.
pub fn of_extension(ext: &Extension) -> Vec<GuardStats> {
    ext.programs()
        .filter_map(Result::ok)
        .map(|p| {
            let (emitted, elided) = p.verified.as_ref().map_or((0, 0), |v| {
                v.insns
                    .iter()
                    .filter(|f| f.reachable)
                    .fold((0, 0), |(g, e), f| match f.heap {
                        Some(HeapAccess::Guard { .. }) => (g + 1, e),
                        Some(HeapAccess::Elided { .. }) => (g, e + 1),
                        None => (g, e),
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
