//! [`Engines`]: the benchmark's [`DriverFactory`] over the real engines — the native build of
//! `kflex-datastructures`, kflex's JIT (default SFI and writes-only) and interpreter, and the
//! Linux kernel through the libbpf back end.

use std::collections::BTreeMap;

use kflex_datastructures::native::NativeInstance;
use kflex_datastructures::{Driver, Structure};

use super::engine_kind::EngineKind;
use super::report::ProgramGuards;
use super::runner::DriverFactory;
use crate::datastructures::{GuardStats, KflexDriver};
use crate::engine::{Engine, SfiMode};

/// Opens structure instances on the real engines, and remembers the guard sites of each
/// structure's programs as compiled for `kflex-jit`.
#[derive(Debug, Default)]
pub struct Engines {
    guards: BTreeMap<Structure, Vec<GuardStats>>,
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
            EngineKind::Linux => Err("the Linux driver is not built yet".into()),
        }
    }

    fn open(
        &mut self,
        structure: Structure,
        engine: EngineKind,
    ) -> Result<Box<dyn Driver>, String> {
        if !structure.is_available() {
            return Err(format!("{structure} is not part of this build"));
        }
        if let Some((kflex_engine, sfi)) = Engines::kflex_mode(engine) {
            let driver =
                KflexDriver::new(structure, kflex_engine, sfi).map_err(|e| e.to_string())?;
            if engine == EngineKind::KflexJit {
                self.guards.insert(structure, driver.guard_stats());
            }
            return Ok(Box::new(driver));
        }
        match engine {
            EngineKind::Native => NativeInstance::new(structure)
                .map(|d| Box::new(d) as Box<dyn Driver>)
                .map_err(|e| e.to_string()),
            other => Err(format!("{other} is not available")),
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
