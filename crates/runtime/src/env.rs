//! The execution environment helpers see: maps, CPU number, trace output, random state, resources.

/// Per-invocation environment passed to every helper call.
///
/// (The runtime work fills this in: map table, current CPU, trace sink, PRNG, held resources.)
#[derive(Default)]
pub struct ExecEnv {
    /// Number of the CPU the invocation is considered to run on (selects per-CPU map slots).
    pub cpu: u32,
}
