//! The engines the benchmark compares.

use std::fmt;
use std::str::FromStr;

/// An engine a structure runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EngineKind {
    /// The same C code built with gcc -O2 into this process (the baseline).
    Native,
    /// kflex's JIT with its default SFI mode.
    KflexJit,
    /// kflex's JIT in performance mode (writes-only SFI).
    KflexJitPerf,
    /// kflex's reference interpreter.
    KflexInterp,
    /// The Linux kernel through the libbpf back end (`BPF_PROG_TEST_RUN`).
    Linux,
}

impl EngineKind {
    /// Every engine, in column order.
    pub const ALL: [EngineKind; 5] = [
        EngineKind::Native,
        EngineKind::KflexJit,
        EngineKind::KflexJitPerf,
        EngineKind::KflexInterp,
        EngineKind::Linux,
    ];

    /// The name used on the command line, in the table and in the JSON.
    pub const fn name(self) -> &'static str {
        match self {
            EngineKind::Native => "native",
            EngineKind::KflexJit => "kflex-jit",
            EngineKind::KflexJitPerf => "kflex-jit-perf",
            EngineKind::KflexInterp => "kflex-interp",
            EngineKind::Linux => "linux",
        }
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for EngineKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EngineKind::ALL
            .into_iter()
            .find(|e| e.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = EngineKind::ALL.iter().map(|e| e.name()).collect();
                format!("unknown engine {s:?} (one of {})", names.join(", "))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for e in EngineKind::ALL {
            assert_eq!(e.name().parse::<EngineKind>(), Ok(e));
        }
        assert!("jit".parse::<EngineKind>().is_err());
    }
}
