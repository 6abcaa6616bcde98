//! Shared builders for the interpreter's integration tests.
#![allow(dead_code, unused_imports)]

use std::sync::Arc;

pub use kflex_interp::{Fault, FaultKind, Limits, Outcome, Vm, run};
pub use kflex_isa::decode::{
    AluOp, AtomicOp, EndianKind, Instruction, JmpOp, Operand, Program, Size, Width, encode_all,
};
use kflex_runtime::helpers::{ArgKind, RetKind};
pub use kflex_runtime::{
    ContextAccess, ExecEnv, HelperCall, HelperDef, HelperError, HelperRegistry, MemoryMap, Region,
    RegionKind, Signature,
};

pub use Instruction as I;
pub use Operand::{Imm, Reg};
pub use Width::{W32, W64};

/// Decodes a list of instructions (panics on a structurally invalid test program).
pub fn program(insns: &[Instruction]) -> Program {
    Program::decode(&encode_all(insns)).expect("test program decodes")
}

/// `dst = imm` (64-bit, sign-extended).
pub fn mov(dst: u8, imm: i32) -> Instruction {
    I::Mov {
        width: W64,
        dst,
        src: Imm(imm),
    }
}

/// `dst = src` (64-bit).
pub fn movr(dst: u8, src: u8) -> Instruction {
    I::Mov {
        width: W64,
        dst,
        src: Reg(src),
    }
}

/// `dst = imm64`.
pub fn lddw(dst: u8, imm: u64) -> Instruction {
    I::LoadImm64 {
        dst,
        pseudo: 0,
        imm,
    }
}

/// `dst op= src` at the given width.
pub fn alu(width: Width, op: AluOp, dst: u8, src: Operand) -> Instruction {
    I::Alu {
        width,
        op,
        dst,
        src,
    }
}

/// `*(size *)(dst + off) = src`.
pub fn st(size: Size, dst: u8, off: i16, src: Operand) -> Instruction {
    I::Store {
        size,
        dst,
        off,
        src,
    }
}

/// `dst = *(size *)(src + off)`.
pub fn ld(size: Size, dst: u8, src: u8, off: i16) -> Instruction {
    I::Load {
        size,
        dst,
        src,
        off,
        sign_extend: false,
    }
}

/// `if dst op src goto +off` (64-bit).
pub fn jmp(op: JmpOp, dst: u8, src: Operand, off: i16) -> Instruction {
    I::Jump {
        width: W64,
        op,
        dst,
        src,
        off,
    }
}

/// A helper with a permissive signature.
pub fn helper(
    id: u32,
    name: &str,
    f: impl Fn(&mut HelperCall<'_>) -> Result<u64, HelperError> + Send + Sync + 'static,
) -> HelperDef {
    HelperDef {
        id,
        name: name.to_string(),
        sig: Signature::new(&[ArgKind::Any; 5], RetKind::Scalar),
        func: Arc::new(f),
    }
}

/// Memory, helpers, environment and limits for a test run.
pub struct Harness {
    pub mem: MemoryMap,
    pub helpers: HelperRegistry,
    pub env: ExecEnv,
    pub limits: Limits,
}

impl Harness {
    pub fn new() -> Self {
        Harness {
            mem: MemoryMap::new(),
            helpers: HelperRegistry::empty(),
            env: ExecEnv::default(),
            limits: Limits::default(),
        }
    }

    pub fn with_helper(mut self, def: HelperDef) -> Self {
        self.helpers.register(def).expect("helper registers");
        self
    }

    /// Registers `buf` as a region of the given kind.
    pub fn map(&mut self, buf: &mut [u8], kind: RegionKind, writable: bool) -> u64 {
        let start = buf.as_mut_ptr() as u64;
        let region = Region {
            start,
            len: buf.len() as u64,
            kind,
            writable,
            elements: None,
        };
        // SAFETY: every test keeps `buf` alive, and does not touch it, until after the run that
        // uses the region; regions are removed (or the map dropped) before `buf` is read.
        unsafe { self.mem.insert(region) }.expect("region inserts");
        start
    }

    pub fn run(&mut self, insns: &[Instruction], args: [u64; 5]) -> Result<Outcome, Fault> {
        self.run_program(&program(insns), args, None)
    }

    pub fn run_program(
        &mut self,
        prog: &Program,
        args: [u64; 5],
        ctx: Option<&mut dyn ContextAccess>,
    ) -> Result<Outcome, Fault> {
        let mut vm = Vm {
            mem: &mut self.mem,
            ctx: ctx.map(|c| c as &mut dyn ContextAccess),
            helpers: &self.helpers,
            env: &mut self.env,
            limits: self.limits,
        };
        run(prog, args, &mut vm)
    }
}

/// Runs `insns` with no memory besides the stack and returns r0.
pub fn r0(insns: &[Instruction]) -> u64 {
    Harness::new()
        .run(insns, [0; 5])
        .expect("program runs")
        .retval
}

/// Runs `insns` and returns the fault.
pub fn fault(insns: &[Instruction]) -> Fault {
    Harness::new()
        .run(insns, [0; 5])
        .expect_err("program faults")
}
