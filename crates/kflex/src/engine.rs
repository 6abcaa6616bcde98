//! Execution engines: the x86-64 JIT (`kflex-jit`) and the reference interpreter
//! (`kflex-interp`), and how a program is compiled for the JIT from the verifier's facts.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use kflex_isa::decode::Program;
use kflex_jit::{CtxAccess, HeapLayout, JitError, JitOptions, JitProgram};
pub use kflex_jit::{SfiMode, TerminationMode};
use kflex_runtime::MapTable;
use kflex_verify::{HeapAccess, VerifiedProgram};

/// Which engine runs a program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Engine {
    /// Native code from the x86-64 JIT (verified programs only; unverified programs fall back to
    /// the interpreter, whose run-time checks they need).
    Jit,
    /// The reference interpreter.
    Interp,
}

impl Engine {
    /// True where the JIT can run: x86-64 Linux.
    pub const JIT_SUPPORTED: bool = cfg!(all(target_arch = "x86_64", target_os = "linux"));

    /// The engine's name as the CLI spells it (`jit`, `interp`).
    pub const fn name(self) -> &'static str {
        match self {
            Engine::Jit => "jit",
            Engine::Interp => "interp",
        }
    }
}

impl Default for Engine {
    /// The JIT on x86-64 Linux, the interpreter elsewhere.
    fn default() -> Self {
        if Engine::JIT_SUPPORTED {
            Engine::Jit
        } else {
            Engine::Interp
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Engine {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "jit" => Ok(Engine::Jit),
            "interp" | "interpreter" => Ok(Engine::Interp),
            other => Err(format!("unknown engine {other:?} (jit or interp)")),
        }
    }
}

/// How verified programs are compiled for the JIT.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JitConfig {
    /// How heap accesses the verifier could not prove safe are guarded (default segment, which
    /// compiles as and-mask where the heap or the CPU cannot use it).
    pub sfi: SfiMode,
    /// How loop back-edges and `may_goto` are checked for termination (default one load).
    pub termination: TerminationMode,
    /// Test-only: compile the termination point at this slot (of every program compiled with
    /// this config) as an unconditional cancellation ([`JitOptions::inject_cancel_at`]); see
    /// [`crate::Extension::recompile`] to target one program.
    pub inject_cancel_at: Option<usize>,
}

/// Parses an SFI mode name (`segment`, `and-mask`, `base`, `writes-only`, `none`).
pub fn parse_sfi(name: &str) -> Result<SfiMode, String> {
    match name {
        "segment" => Ok(SfiMode::Segment),
        "and-mask" => Ok(SfiMode::AndMask),
        "base" => Ok(SfiMode::Base),
        "writes-only" => Ok(SfiMode::WritesOnly),
        "none" => Ok(SfiMode::None),
        other => Err(format!(
            "unknown SFI mode {other:?} (segment, and-mask, base, writes-only or none)"
        )),
    }
}

/// JIT options for a verified program: every context access the verifier recorded becomes a call
/// of the run's context hook (so packet pointers come out exactly as the interpreter's), heap
/// accesses are guarded or not as the verifier's facts say, every termination point gets a
/// check, and every map helper call whose map the verifier knows is listed in
/// [`JitOptions::map_calls`] (compiled against the map when [`JitOptions::maps`] is set); runs
/// zero only the verifier's stack depth of each frame afterwards.
pub fn jit_options(
    verified: &VerifiedProgram,
    heap: Option<HeapLayout>,
    config: JitConfig,
) -> JitOptions {
    let mut options = JitOptions {
        sfi: config.sfi,
        heap,
        termination: config.termination,
        termination_points: verified.termination_points.iter().map(|t| t.pc).collect(),
        inject_cancel_at: config.inject_cancel_at,
        stack_depth: Some(verified.stack_depth),
        ..JitOptions::default()
    };
    for (pc, facts) in verified.insns.iter().enumerate() {
        if let Some(c) = facts.ctx {
            options.ctx_accesses.push(CtxAccess {
                pc,
                offset: c.offset,
                size: c.size,
                write: c.write,
            });
        }
        if let Some(h) = facts.heap {
            options.heap_facts.push((pc, h));
        }
        if let Some(m) = facts.map_call {
            options.map_calls.push((pc, m));
        }
    }
    options
}

/// Number of heap accesses the verifier wants guarded (reachable instructions only).
pub fn guards_required(verified: &VerifiedProgram) -> usize {
    verified
        .insns
        .iter()
        .filter(|f| f.reachable && matches!(f.heap, Some(HeapAccess::Guard { .. })))
        .count()
}

/// Compiles a verified program with the options its facts call for; `heap` is the extension's
/// heap (its arena map), if it has one; `maps` its map table, against which map helper calls
/// are compiled (inline array look-ups, direct hash map calls): runs of the result must then
/// use that table (`ExecEnv::maps`).
pub fn compile(
    code: &Program,
    verified: &VerifiedProgram,
    heap: Option<HeapLayout>,
    maps: Option<&Arc<MapTable>>,
    config: JitConfig,
) -> Result<JitProgram, JitError> {
    let mut options = jit_options(verified, heap, config);
    options.maps = maps.cloned();
    JitProgram::compile(code, &options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_names_round_trip() {
        for e in [Engine::Jit, Engine::Interp] {
            assert_eq!(e.name().parse::<Engine>(), Ok(e));
            assert_eq!(e.to_string(), e.name());
        }
        assert!("native".parse::<Engine>().is_err());
    }

    #[test]
    fn sfi_modes_parse_by_their_cli_names() {
        assert_eq!(parse_sfi("segment"), Ok(SfiMode::Segment));
        assert_eq!(parse_sfi("and-mask"), Ok(SfiMode::AndMask));
        assert_eq!(parse_sfi("base"), Ok(SfiMode::Base));
        assert_eq!(parse_sfi("writes-only"), Ok(SfiMode::WritesOnly));
        assert_eq!(parse_sfi("none"), Ok(SfiMode::None));
        assert!(parse_sfi("mask").is_err());
    }

    #[test]
    fn default_engine_is_the_jit_where_it_runs() {
        let expected = if cfg!(all(target_arch = "x86_64", target_os = "linux")) {
            Engine::Jit
        } else {
            Engine::Interp
        };
        assert_eq!(Engine::default(), expected);
    }
}
