//! Translation of a decoded program into x86-64 machine code.
//!
//! Layout of the generated code, in order: the entry stub (saves the host's callee-saved
//! registers, loads the reserved registers and r1..r5, calls the main program), the body of every
//! instruction in slot order, one prologue per subprogram entry, one epilogue per function (every
//! `exit` jumps to its function's), the fault exit, and the out-of-line fault stubs.
//!
//! Register mapping (as the Linux x86-64 JIT): r0=rax, r1=rdi, r2=rsi, r3=rdx, r4=rcx, r5=r8,
//! r6=rbx, r7=r13, r8=r14, r9=r15, r10=rbp. Reserved: r9 holds the [`RunState`] pointer (its first
//! field is the terminate word), r12 the heap base; r10 and r11 are scratch.
//!
//! Native frame of every BPF function: return address, the caller's r6..r9 that this function
//! may change (see [`frames`]; rbp too when the program writes r10), padding, then `[rsp]` = this
//! frame's `may_goto` counter and `[rsp+8]` = the state pointer (reloaded into r9 after every host
//! call). The stack pointer is 16-byte aligned in every function body. rbp (BPF r10) moves one
//! frame stride down in each prologue and back in the epilogue.
//!
//! [`RunState`]: crate::state::RunState

mod alu;
mod encode;
mod flow;
mod frames;
mod map_call;
mod mem;
mod peephole;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use dynasmrt::x64::X64Relocation;
use dynasmrt::{DynamicLabel, DynasmApi, DynasmLabelApi, VecAssembler};
use kflex_isa::decode::{Instruction, Program};
use kflex_isa::op;

use crate::error::{JitError, JitFaultKind};
use crate::stack::STRIDE;
use crate::state::{
    DEEPEST_OFF, DEPTH_OFF, FAULT_CODE_OFF, FAULT_PC_OFF, FAULT_VALUE_OFF, FRAME_BASE_OFF,
    HEAP_BASE_OFF, SAVED_RSP_OFF, code, reg_slot,
};
use crate::termination::TerminationPlan;
use crate::{CtxAccess, JitOptions, MAY_GOTO_BUDGET};

/// The assembler the JIT emits into.
pub(crate) type Ops = VecAssembler<X64Relocation>;

/// Emits x86-64 code with dynasm.
macro_rules! x64 {
    ($ops:expr; $($t:tt)*) => {
        ::dynasmrt::dynasm!($ops ; .arch x64 ; $($t)*)
    };
}
pub(crate) use x64;

/// x86-64 register numbers.
pub(crate) mod x86 {
    pub const RAX: u8 = 0;
    pub const RCX: u8 = 1;
    pub const RDX: u8 = 2;
    pub const RBX: u8 = 3;
    pub const RBP: u8 = 5;
    pub const RSI: u8 = 6;
    pub const RDI: u8 = 7;
    pub const R8: u8 = 8;
    // r9 holds the `RunState` pointer, r10 is scratch, r12 the heap base.
    /// Scratch.
    pub const R11: u8 = 11;
    pub const R13: u8 = 13;
    pub const R14: u8 = 14;
    pub const R15: u8 = 15;
}

/// BPF register -> x86 register; indices 11..15 cannot occur in a decoded program and map to rax
/// so that no input can index out of bounds.
const REG_MAP: [u8; 16] = [
    x86::RAX,
    x86::RDI,
    x86::RSI,
    x86::RDX,
    x86::RCX,
    x86::R8,
    x86::RBX,
    x86::R13,
    x86::R14,
    x86::R15,
    x86::RBP,
    x86::RAX,
    x86::RAX,
    x86::RAX,
    x86::RAX,
    x86::RAX,
];

/// The x86 register holding BPF register `r`.
#[inline]
pub(crate) fn reg(r: u8) -> u8 {
    REG_MAP[usize::from(r & 15)]
}

/// BPF r1..r5 in x86 registers (the helper argument registers of both ABIs).
pub(crate) const ARG_REGS: [u8; 5] = [x86::RDI, x86::RSI, x86::RDX, x86::RCX, x86::R8];

/// Largest number of `exit`s for which each gets its own copy of the epilogue (about 20 bytes).
const INLINE_EXITS_MAX: usize = 64;

/// Displacement of the state-pointer copy in every function frame.
pub(crate) const STATE_SLOT: i32 = 8;

/// Why an out-of-line stub stops the run.
enum StubKind {
    /// `fault_code` = this code.
    Code(u64),
    /// Bad `callx` target: the BPF register (x86 number) holding it.
    BadCallx(u8),
}

/// Everything compilation produces.
pub(crate) struct Compiled {
    /// Machine code (position independent; the entry stub is at offset 0).
    pub code: Vec<u8>,
    /// `(slot, code offset)` of every subprogram entry prologue.
    pub fn_entries: Vec<(usize, usize)>,
    /// `(code offset, slot)` of every instruction body, ascending.
    pub pc_map: Vec<(u32, u32)>,
    /// Faults indexed by `fault_code - STATIC_BASE`.
    pub static_faults: Vec<JitFaultKind>,
    /// The context rewrite table in trampoline index order.
    pub ctx_table: Vec<CtxAccess>,
    /// Code offset of the fault exit (where a caught memory fault resumes, with the state
    /// pointer in `r9`).
    pub fault_exit: usize,
    /// `(emitted, elided)` static SFI guard counts.
    pub guards: (usize, usize),
    /// True if any termination check was planned.
    pub has_termination_checks: bool,
    /// Number of map helper calls compiled against their map ([`map_call`]).
    pub map_calls: usize,
}

/// State of one compilation.
pub(crate) struct Emitter<'p> {
    pub ops: Ops,
    program: &'p Program,
    /// Body label per slot.
    labels: Vec<DynamicLabel>,
    /// Prologue label per subprogram entry slot.
    entries: BTreeMap<usize, DynamicLabel>,
    /// What each function's frame saves (see [`frames`]).
    frames: frames::FramePlan,
    /// The epilogue of each function, in [`frames::FramePlan::functions`] order.
    fn_exits: Vec<DynamicLabel>,
    /// Each `exit` gets a copy of its function's epilogue instead of a jump to it (programs
    /// with at most [`INLINE_EXITS_MAX`] exits).
    inline_exits: bool,
    /// Leaves the run after a fault was recorded.
    pub fault_exit: DynamicLabel,
    stubs: Vec<(DynamicLabel, usize, StubKind)>,
    static_faults: Vec<JitFaultKind>,
    ctx: CtxRewrites,
    /// Guard decisions per heap access (SFI).
    pub sfi: crate::sfi::Plan,
    /// Where termination checks go.
    termination: TerminationPlan,
    /// Map helper calls to compile against their map, by slot.
    map_calls: map_call::Sites,
    /// How many of them were compiled so.
    map_calls_compiled: usize,
}

/// `pc + 1 + off` if it names an instruction of `program`.
pub(crate) fn target(program: &Program, pc: usize, off: i64) -> Option<usize> {
    let t = i64::try_from(pc).ok()?.checked_add(1)?.checked_add(off)?;
    let t = usize::try_from(t).ok()?;
    program.get(t).map(|_| t)
}

/// Slots where a function starts: slot 0, every BPF-to-BPF call target and every `PSEUDO_FUNC`
/// address taken.
fn function_entries(program: &Program) -> Result<BTreeSet<usize>, JitError> {
    let mut set = BTreeSet::from([0usize]);
    for (pc, insn) in program.iter() {
        let off = match *insn {
            Instruction::CallLocal { imm } => i64::from(imm),
            Instruction::LoadImm64 { pseudo, imm, .. } if pseudo == op::PSEUDO_FUNC => {
                i64::from(imm as u32 as i32)
            }
            _ => continue,
        };
        let t = target(program, pc, off).ok_or_else(|| JitError::Instruction {
            pc,
            reason: format!("call target {off:+} is outside the program"),
        })?;
        set.insert(t);
    }
    Ok(set)
}

impl<'p> Emitter<'p> {
    /// The body label of slot `t`.
    pub fn label(&self, t: usize) -> DynamicLabel {
        // `t` always comes from `target`, which only returns slots of the program.
        self.labels[t]
    }

    /// The prologue label of the subprogram starting at slot `t`.
    pub fn entry(&self, t: usize) -> Option<DynamicLabel> {
        self.entries.get(&t).copied()
    }

    /// Jump target `pc + 1 + off`, or an error naming the instruction.
    pub fn jump_target(&self, pc: usize, off: i64) -> Result<usize, JitError> {
        target(self.program, pc, off).ok_or_else(|| JitError::Instruction {
            pc,
            reason: format!("jump offset {off:+} leaves the program"),
        })
    }

    /// The context rewrite of slot `pc`, if any.
    pub fn ctx_access(&self, pc: usize) -> Option<(u64, CtxAccess)> {
        self.ctx.get(&pc).copied()
    }

    /// A stub that stops the run at `pc` with a statically known fault.
    pub fn static_fault(&mut self, pc: usize, kind: JitFaultKind) -> DynamicLabel {
        let index = self.static_faults.len() as u64;
        self.static_faults.push(kind);
        self.stub(pc, StubKind::Code(code::STATIC_BASE + index))
    }

    /// Where termination checks go.
    pub fn termination(&self) -> &TerminationPlan {
        &self.termination
    }

    /// A stub that stops the run at `pc` with fault code `c`.
    pub fn code_fault(&mut self, pc: usize, c: u64) -> DynamicLabel {
        self.stub(pc, StubKind::Code(c))
    }

    /// A stub that stops the run at `pc` because the call depth limit was reached.
    pub fn depth_fault(&mut self, pc: usize) -> DynamicLabel {
        self.stub(pc, StubKind::Code(code::CALL_DEPTH))
    }

    /// A stub that stops the run at `pc` because x86 register `r` is no `callx` target.
    pub fn callx_fault(&mut self, pc: usize, r: u8) -> DynamicLabel {
        self.stub(pc, StubKind::BadCallx(r))
    }

    fn stub(&mut self, pc: usize, kind: StubKind) -> DynamicLabel {
        let l = self.ops.new_dynamic_label();
        self.stubs.push((l, pc, kind));
        l
    }

    /// Emits the entry stub: `extern "sysv64" fn(state: *mut RunState) -> u64`.
    fn entry_stub(&mut self, main: DynamicLabel) {
        let ret = self.ops.new_dynamic_label();
        let fault_exit = self.fault_exit;
        x64!(self.ops
            ; push rbx ; push rbp ; push r12 ; push r13 ; push r14 ; push r15
            ; sub rsp, 8
            ; mov r9, rdi
            ; mov [r9 + SAVED_RSP_OFF], rsp
            ; mov r12, [r9 + HEAP_BASE_OFF]
        );
        // Segment SFI: save the host's GS base in the spare slot at [rsp], install the heap base.
        crate::sfi::segment::enter(self);
        if self.frames.relative_rbp {
            // Frame 0's position: each prologue moves rbp one stride down.
            x64!(self.ops ; mov rbp, [r9 + FRAME_BASE_OFF]);
        }
        x64!(self.ops
            ; mov rdi, [r9 + reg_slot(1)]
            ; mov rsi, [r9 + reg_slot(2)]
            ; mov rdx, [r9 + reg_slot(3)]
            ; mov rcx, [r9 + reg_slot(4)]
            ; mov r8, [r9 + reg_slot(5)]
            ; xor eax, eax ; xor ebx, ebx ; xor r13d, r13d ; xor r14d, r14d ; xor r15d, r15d
            ; call =>main
            ; =>ret
        );
        // Both exits pass here (the fault exit jumps to `ret`): restore the host's GS base.
        crate::sfi::segment::leave(self);
        x64!(self.ops
            ; add rsp, 8
            ; pop r15 ; pop r14 ; pop r13 ; pop r12 ; pop rbp ; pop rbx
            ; ret
            ; =>fault_exit
            ; mov rsp, [r9 + SAVED_RSP_OFF]
            ; jmp =>ret
        );
    }

    /// Emits the prologue of function `f` (index into the frame plan), whose body starts at
    /// slot `pc`: saves what the function may change, reserves the `may_goto` counter and the
    /// state-pointer slot (keeping rsp 16-byte aligned), counts the depth (a leaf function only
    /// records the deepest frame) and moves rbp to this frame.
    fn prologue(&mut self, f: usize, pc: usize) {
        let body = self.label(pc);
        let budget = MAY_GOTO_BUDGET as i32;
        let stride = STRIDE as i32;
        let relative = self.frames.relative_rbp;
        let saved = self.frames.functions[f].1.clone();
        for &r in &saved {
            x64!(self.ops ; push Rq(r));
        }
        if !relative {
            x64!(self.ops ; push rbp);
        }
        let reserve = frame_reserve(saved.len() + usize::from(!relative));
        x64!(self.ops
            ; sub rsp, reserve
            ; mov QWORD [rsp], budget
            ; mov [rsp + STATE_SLOT], r9
            ; mov r11, [r9 + DEPTH_OFF]
            ; add r11, 1
        );
        if !self.frames.leaf[f] {
            x64!(self.ops ; mov [r9 + DEPTH_OFF], r11);
        }
        x64!(self.ops
            ; cmp r11, [r9 + DEEPEST_OFF]
            ; jbe >shallow
            ; mov [r9 + DEEPEST_OFF], r11
            ; shallow:
        );
        if relative {
            x64!(self.ops ; sub rbp, stride);
        } else {
            x64!(self.ops
                ; imul r11, r11, stride
                ; mov rbp, [r9 + FRAME_BASE_OFF]
                ; sub rbp, r11
            );
        }
        x64!(self.ops ; jmp =>body);
    }

    /// Emits the epilogue of function `f`, which every `exit` of its body jumps to.
    fn epilogue(&mut self, f: usize) {
        let l = self.fn_exits[f];
        x64!(self.ops ; =>l);
        self.epilogue_body(f);
    }

    /// The instructions of function `f`'s epilogue, ending in `ret` (inlined at an `exit`, or
    /// behind the function's epilogue label).
    fn epilogue_body(&mut self, f: usize) {
        let relative = self.frames.relative_rbp;
        let saved = self.frames.functions[f].1.clone();
        let reserve = frame_reserve(saved.len() + usize::from(!relative));
        if !self.frames.leaf[f] {
            x64!(self.ops ; sub QWORD [r9 + DEPTH_OFF], 1);
        }
        x64!(self.ops ; add rsp, reserve);
        if relative {
            x64!(self.ops ; add rbp, STRIDE as i32);
        } else {
            x64!(self.ops ; pop rbp);
        }
        for &r in saved.iter().rev() {
            x64!(self.ops ; pop Rq(r));
        }
        x64!(self.ops ; ret);
    }

    /// Emits the out-of-line fault stubs.
    fn emit_stubs(&mut self) {
        let stubs = std::mem::take(&mut self.stubs);
        let fault_exit = self.fault_exit;
        for (label, pc, kind) in stubs {
            let pc = i32::try_from(pc).unwrap_or(i32::MAX);
            x64!(self.ops ; =>label);
            let code = match kind {
                StubKind::Code(c) => c,
                StubKind::BadCallx(r) => {
                    x64!(self.ops ; mov [r9 + FAULT_VALUE_OFF], Rq(r));
                    code::BAD_CALLX
                }
            };
            let code = i32::try_from(code).unwrap_or(i32::MAX);
            x64!(self.ops
                ; mov QWORD [r9 + FAULT_PC_OFF], pc
                ; mov QWORD [r9 + FAULT_CODE_OFF], code
                ; jmp =>fault_exit
            );
        }
    }

    /// Emits the body of one instruction.
    fn instruction(&mut self, pc: usize, insn: &Instruction) -> Result<(), JitError> {
        match *insn {
            Instruction::Alu {
                width,
                op,
                dst,
                src,
            } => alu::alu(self, width, op, dst, src),
            Instruction::Neg { width, dst } => alu::neg(self, width, dst),
            Instruction::Mov { width, dst, src } => alu::mov(self, width, dst, src),
            Instruction::MovSx {
                width,
                dst,
                src,
                bits,
            } => alu::movsx(self, width, dst, src, bits),
            Instruction::AddrSpaceCast { dst, src, .. } => alu::mov(
                self,
                kflex_isa::decode::Width::W64,
                dst,
                kflex_isa::decode::Operand::Reg(src),
            ),
            Instruction::Endian { dst, bits, kind } => alu::endian(self, dst, bits, kind),
            Instruction::LoadImm64 { dst, pseudo, imm } => {
                alu::load_imm64(self, pc, dst, pseudo, imm)?
            }
            Instruction::Load {
                size,
                dst,
                src,
                off,
                sign_extend,
            } => mem::load(self, pc, size, dst, src, off, sign_extend),
            Instruction::Store {
                size,
                dst,
                off,
                src,
            } => mem::store(self, pc, size, dst, off, src),
            Instruction::Atomic {
                size,
                op,
                fetch,
                dst,
                src,
                off,
            } => mem::atomic(self, pc, size, op, fetch, dst, src, off),
            Instruction::LoadAcquire {
                size,
                dst,
                src,
                off,
            } => mem::load(self, pc, size, dst, src, off, false),
            Instruction::StoreRelease {
                size,
                dst,
                src,
                off,
            } => mem::store(
                self,
                pc,
                size,
                dst,
                off,
                kflex_isa::decode::Operand::Reg(src),
            ),
            Instruction::Ja { off } => flow::ja(self, pc, off)?,
            Instruction::Jump {
                width,
                op,
                dst,
                src,
                off,
            } => flow::jump(self, pc, width, op, dst, src, off)?,
            Instruction::MayGoto { off } => flow::may_goto(self, pc, off)?,
            Instruction::Call { helper } => {
                if !map_call::emit(self, pc, helper) {
                    flow::helper_call(self, pc, flow::HelperId::Imm(helper))
                }
            }
            Instruction::CallLocal { imm } => flow::call_local(self, pc, imm)?,
            Instruction::CallKfunc { btf_id } => {
                let stub = self.static_fault(pc, JitFaultKind::Kfunc { btf_id });
                x64!(self.ops ; jmp =>stub);
            }
            Instruction::Callx { reg } => flow::callx(self, pc, reg),
            Instruction::Exit => {
                let f = self.frames.function_of(pc);
                if self.inline_exits {
                    self.epilogue_body(f);
                } else {
                    let l = self.fn_exits[f];
                    x64!(self.ops ; jmp =>l);
                }
            }
        }
        Ok(())
    }
}

/// Context rewrites by slot: (trampoline index, access).
type CtxRewrites = HashMap<usize, (u64, CtxAccess)>;

/// Checks the context rewrite table against the program.
fn ctx_table(
    program: &Program,
    options: &JitOptions,
) -> Result<(CtxRewrites, Vec<CtxAccess>), JitError> {
    let mut map = HashMap::new();
    let mut table = Vec::new();
    for a in &options.ctx_accesses {
        let bad = |reason: String| JitError::Instruction { pc: a.pc, reason };
        let ok_kind = match program.get(a.pc) {
            Some(Instruction::Load { .. } | Instruction::LoadAcquire { .. }) => !a.write,
            Some(Instruction::Store { .. } | Instruction::StoreRelease { .. }) => a.write,
            Some(_) => {
                return Err(bad(
                    "context rewrite of an instruction that is not a load or store".into(),
                ));
            }
            None => return Err(bad("context rewrite of a slot with no instruction".into())),
        };
        if !ok_kind {
            return Err(bad(format!(
                "context rewrite says {} but the instruction {}",
                if a.write { "write" } else { "read" },
                if a.write { "loads" } else { "stores" }
            )));
        }
        if !matches!(a.size, 1 | 2 | 4 | 8) {
            return Err(bad(format!(
                "context access size {} is not 1, 2, 4 or 8",
                a.size
            )));
        }
        if map.insert(a.pc, (table.len() as u64, *a)).is_some() {
            return Err(bad("two context rewrites for one instruction".into()));
        }
        table.push(*a);
    }
    Ok((map, table))
}

/// Bytes reserved below a function's saved registers (`pushed` of them): the `may_goto` counter,
/// the state-pointer slot and padding that keeps rsp 16-byte aligned in the body (the return
/// address and the pushes come first).
fn frame_reserve(pushed: usize) -> i32 {
    if pushed.is_multiple_of(2) { 24 } else { 16 }
}

/// True if SFI guard instructions may mask base registers in place (the modes with guards; the
/// segment mode has none).
fn guards_write_bases(options: &JitOptions) -> bool {
    match (options.sfi, options.heap) {
        (crate::SfiMode::None, _) | (_, None) => false,
        (m, Some(h)) => crate::sfi::effective(m, h) != crate::SfiMode::Segment,
    }
}

/// Compiles `program`.
pub(crate) fn compile(program: &Program, options: &JitOptions) -> Result<Compiled, JitError> {
    let entry_slots = function_entries(program)?;
    let (ctx, ctx_table) = ctx_table(program, options)?;
    let sfi = crate::sfi::Plan::new(program, options.sfi, options.heap, &options.heap_facts)?;
    let map_calls = map_call::sites(program, options)?;
    let mut ops = Ops::new(0);
    let labels = (0..program.len())
        .map(|_| ops.new_dynamic_label())
        .collect();
    let entries = entry_slots
        .iter()
        .map(|&pc| (pc, ops.new_dynamic_label()))
        .collect();
    let frames = frames::FramePlan::new(program, &entry_slots, guards_write_bases(options));
    let fn_exits = frames
        .functions
        .iter()
        .map(|_| ops.new_dynamic_label())
        .collect();
    let fault_exit = ops.new_dynamic_label();
    let mut e = Emitter {
        ops,
        program,
        labels,
        entries,
        frames,
        fn_exits,
        inline_exits: program
            .iter()
            .filter(|(_, i)| matches!(i, Instruction::Exit))
            .count()
            <= INLINE_EXITS_MAX,
        fault_exit,
        stubs: Vec::new(),
        static_faults: Vec::new(),
        ctx,
        sfi,
        termination: TerminationPlan::new(options.termination, &options.termination_points, |pc| {
            matches!(program.get(pc), Some(Instruction::MayGoto { .. }))
        })
        .with_injection(options.inject_cancel_at),
        map_calls,
        map_calls_compiled: 0,
    };
    let main = e.entries[&0];
    e.entry_stub(main);
    let mut pc_map = Vec::with_capacity(program.len());
    for (pc, insn) in program.iter() {
        let offset = e.ops.offset().0;
        pc_map.push((
            u32::try_from(offset)
                .map_err(|_| JitError::Assembler("code larger than 4 GiB".into()))?,
            u32::try_from(pc).map_err(|_| JitError::Instruction {
                pc,
                reason: "slot index too large".into(),
            })?,
        ));
        let l = e.labels[pc];
        x64!(e.ops ; =>l);
        e.instruction(pc, insn)?;
    }
    let mut fn_offsets = Vec::new();
    for (&pc, &l) in &e.entries.clone() {
        fn_offsets.push((pc, l));
        x64!(e.ops ; =>l);
        e.prologue(e.frames.function_of(pc), pc);
    }
    for f in 0..e.fn_exits.len() {
        e.epilogue(f);
    }
    e.emit_stubs();
    e.ops
        .commit()
        .map_err(|err| JitError::Assembler(err.to_string()))?;
    let fn_entries = fn_offsets
        .into_iter()
        .map(|(pc, l)| {
            e.ops
                .labels()
                .resolve_dynamic(l)
                .map(|o| (pc, o.0))
                .map_err(|err| JitError::Assembler(err.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let fault_exit = e
        .ops
        .labels()
        .resolve_dynamic(e.fault_exit)
        .map(|o| o.0)
        .map_err(|err| JitError::Assembler(err.to_string()))?;
    let static_faults = e.static_faults;
    let guards = (e.sfi.emitted, e.sfi.elided);
    let has_termination_checks = e.termination.has_checks();
    let map_calls = e.map_calls_compiled;
    let code = e
        .ops
        .finalize()
        .map_err(|err| JitError::Assembler(err.to_string()))?;
    Ok(Compiled {
        code,
        fn_entries,
        pc_map,
        static_faults,
        ctx_table,
        fault_exit,
        guards,
        has_termination_checks,
        map_calls,
    })
}
