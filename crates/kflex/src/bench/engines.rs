//! [`Engines`]: the benchmark's [`DriverFactory`] over the real engines — the native build of
//! `kflex-datastructures`, kflex's JIT (default SFI and writes-only) and interpreter, and the
//! Linux kernel through the libbpf back end.

use kflex_datastructures::native::NativeInstance;
use kflex_datastructures::{Driver, Structure};

use super::engine_kind::EngineKind;
use super::report::ProgramGuards;
use super::runner::DriverFactory;

/// Opens structure instances on the real engines.
#[derive(Debug, Default)]
pub struct Engines {
    _private: (),
}

impl Engines {
    /// The factory.
    pub fn new() -> Self {
        Engines::default()
    }
}

impl DriverFactory for Engines {
    fn probe(&mut self, engine: EngineKind) -> Result<(), String> {
        match engine {
            EngineKind::Native => Ok(()),
            EngineKind::KflexJit | EngineKind::KflexJitPerf if !crate::Engine::JIT_SUPPORTED => {
                Err("kflex's JIT runs on x86-64 Linux only".into())
            }
            EngineKind::KflexJit | EngineKind::KflexJitPerf | EngineKind::KflexInterp => {
                Err("the kflex driver is not built yet".into())
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
        match engine {
            EngineKind::Native => NativeInstance::new(structure)
                .map(|d| Box::new(d) as Box<dyn Driver>)
                .map_err(|e| e.to_string()),
            other => Err(format!("{other} is not available")),
        }
    }

    fn guards(&mut self, _structure: Structure) -> Result<Vec<ProgramGuards>, String> {
        Err("the kflex driver is not built yet".into())
    }
}
