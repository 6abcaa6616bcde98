//! [`Engines`]: the benchmark's [`DriverFactory`] over the real engines — the native build of
//! `kflex-datastructures`, kflex's JIT (default SFI and writes-only) and interpreter, and the
//! Linux kernel through the libbpf back end.

use std::collections::BTreeMap;

use kflex_datastructures::native::NativeInstance;
use kflex_datastructures::{Driver, Structure};

use super::engine_kind::EngineKind;
use super::report::ProgramGuards;
use super::runner::{DriverFactory, OpenError};
use crate::datastructures::linux::LinuxDriver;
use crate::datastructures::{GuardStats, KflexDriver};
use crate::engine::{Engine, SfiMode};

/// Opens structure instances on the real engines, and remembers the guard sites of each
/// structure's programs as compiled for `kflex-jit`.
#[derive(Debug, Default)]
pub struct Engines {
    guards: BTreeMap<Structure, Vec<GuardStats>>,
    /// Structures an engine refused (the kernel's verifier is deterministic: a refused object
    /// is not loaded again for the next key stream).
    refused: BTreeMap<(Structure, EngineKind), String>,
}

impl Engines {
    /// The factory.
    pub fn new() -> Self {
        Engines::default()
    }

    /// kflex's engine and SFI mode for a kflex engine kind.
    fn kflex_mode(engine: EngineKind) -> Option<(Engine, SfiMode)> {
        match engine {
            EngineKind::KflexJit => Some((Engine::Jit, SfiMode::default())),
            EngineKind::KflexJitPerf => Some((Engine::Jit, SfiMode::WritesOnly)),
            EngineKind::KflexInterp => Some((Engine::Interp, SfiMode::default())),
            EngineKind::Native | EngineKind::Linux => None,
        }
    }
}

impl DriverFactory for Engines {
    fn probe(&mut self, engine: EngineKind) -> Result<(), String> {
        match engine {
            EngineKind::Native | EngineKind::KflexInterp => Ok(()),
            EngineKind::KflexJit | EngineKind::KflexJitPerf => {
                if Engine::JIT_SUPPORTED {
                    Ok(())
                } else {
                    Err("kflex's JIT runs on x86-64 Linux only".into())
                }
            }
            EngineKind::Linux => kflex_linux::backend::backend_available(),
        }
    }

    fn open(
        &mut self,
        structure: Structure,
        engine: EngineKind,
    ) -> Result<Box<dyn Driver>, OpenError> {
        if !structure.is_available() {
            return Err(OpenError::Unsupported(format!(
                "{structure} is not part of this build"
            )));
        }
        if let Some(why) = self.refused.get(&(structure, engine)) {
            return Err(OpenError::Unsupported(why.clone()));
        }
        if let Some((kflex_engine, sfi)) = Engines::kflex_mode(engine) {
            let driver = KflexDriver::new(structure, kflex_engine, sfi)
                .map_err(|e| OpenError::Failed(e.to_string()))?;
            if engine == EngineKind::KflexJit {
                self.guards.insert(structure, driver.guard_stats());
            }
            return Ok(Box::new(driver));
        }
        match engine {
            EngineKind::Native => NativeInstance::new(structure)
                .map(|d| Box::new(d) as Box<dyn Driver>)
                .map_err(|e| OpenError::Failed(e.to_string())),
            EngineKind::Linux => match LinuxDriver::new(structure) {
                Ok(d) => Ok(Box::new(d)),
                // The kernel is not this project's code: a refusal is a finding to report
                // beside the table, not a broken run.
                Err(e) => {
                    let why = first_line(&e.to_string());
                    self.refused.insert((structure, engine), why.clone());
                    Err(OpenError::Unsupported(why))
                }
            },
            other => Err(OpenError::Failed(format!("{other} has no driver"))),
        }
    }

    fn guards(&mut self, structure: Structure) -> Result<Vec<ProgramGuards>, String> {
        let stats = match self.guards.get(&structure) {
            Some(stats) => stats.clone(),
            // kflex-jit was not measured: compile the object once just for its counts.
            None => KflexDriver::new(structure, Engine::Jit, SfiMode::default())
                .map_err(|e| e.to_string())?
                .guard_stats(),
        };
        Ok(stats
            .into_iter()
            .map(|g| ProgramGuards {
                structure: structure.name().into(),
                program: g.program,
                emitted: g.emitted,
                elided: g.elided,
            })
            .collect())
    }
}

/// The first line of a message, shortened (a kernel rejection carries its whole verifier log).
fn first_line(message: &str) -> String {
    let line = message.lines().next().unwrap_or_default();
    match line.char_indices().nth(300) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::first_line;

    #[test]
    fn first_line_keeps_the_message_and_drops_the_log() {
        assert_eq!(
            first_line("rejected: E2BIG\n0: r1 = 0\n1: exit"),
            "rejected: E2BIG"
        );
        let long = "x".repeat(400);
        let short = first_line(&long);
        assert_eq!(short.len(), 303);
        assert!(short.ends_with("..."));
        assert_eq!(first_line(""), "");
    }
}
