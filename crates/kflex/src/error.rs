//! The errors the embedding API reports.

use std::path::PathBuf;

use thiserror::Error;

/// Why a program was refused at load time, with everything needed to find the culprit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Program name.
    pub program: String,
    /// Instruction (slot) index, when one instruction is to blame.
    pub pc: Option<usize>,
    /// The instruction as text (disassembly, or its raw fields if it does not decode).
    pub insn: Option<String>,
    /// The C source line from line info, as `file:line: text`, when known.
    pub source: Option<String>,
    /// What is wrong.
    pub reason: String,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "program {} rejected", self.program)?;
        if let Some(pc) = self.pc {
            write!(f, " at instruction {pc}")?;
        }
        if let Some(insn) = &self.insn {
            write!(f, " ({insn})")?;
        }
        write!(f, ": {}", self.reason)?;
        if let Some(src) = &self.source {
            write!(f, "\n  at {src}")?;
        }
        Ok(())
    }
}

/// A fault that stopped a running program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFault {
    /// Program name.
    pub program: String,
    /// Instruction index of the fault.
    pub pc: usize,
    /// The interpreter's description (`instruction N (disasm): reason`).
    pub message: String,
    /// The C source line from line info, as `file:line: text`, when known.
    pub source: Option<String>,
}

impl std::fmt::Display for RunFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "program {} faulted: {}", self.program, self.message)?;
        if let Some(src) = &self.source {
            write!(f, "\n  at {src}")?;
        }
        Ok(())
    }
}

/// Every error of the embedding API.
#[derive(Debug, Error)]
pub enum Error {
    /// An object file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The ELF object is malformed or uses something kflex does not support.
    #[error("cannot load object: {0}")]
    Object(#[from] kflex_object::LoadError),
    /// The object's maps could not be created.
    #[error("cannot create maps: {0}")]
    Maps(String),
    /// No program with this name.
    #[error("no program named {name:?} (programs: {})", available.join(", "))]
    NoSuchProgram {
        /// The name asked for.
        name: String,
        /// The programs that exist.
        available: Vec<String>,
    },
    /// No map with this name.
    #[error("no map named {name:?} (maps: {})", available.join(", "))]
    NoSuchMap {
        /// The name asked for.
        name: String,
        /// The maps that exist.
        available: Vec<String>,
    },
    /// A program failed to load (link or decode).
    #[error("{0}")]
    Rejected(Rejection),
    /// A program faulted while running.
    #[error("{0}")]
    Fault(RunFault),
    /// A test-run input or option is invalid (bad packet, bad context, no program type).
    #[error("invalid test-run input: {0}")]
    Input(String),
    /// A host helper could not be registered.
    #[error("cannot register helper: {0}")]
    Helper(#[from] kflex_runtime::helpers::RegistryError),
    /// A host-side map operation failed.
    #[error("map {map}: {reason}")]
    Map {
        /// Map name.
        map: String,
        /// What failed.
        reason: String,
    },
}

impl Error {
    /// True when the error is about the program itself (rejected at load or faulted while
    /// running), as opposed to bad input or usage. The CLI exits with status 1 for these, 2 else.
    pub fn is_program_error(&self) -> bool {
        matches!(self, Error::Rejected(_) | Error::Fault(_))
    }
}

/// Result alias of the embedding API.
pub type Result<T, E = Error> = std::result::Result<T, E>;
