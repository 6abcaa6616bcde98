//! The dispatch loop: one `match` on the decoded instruction per step, no allocation per
//! instruction.

use kflex_isa::decode::{AtomicOp, Instruction, Operand, Program};
use kflex_isa::op;
use kflex_runtime::HelperCall;

use crate::access;
use crate::alu;
use crate::code_addr;
use crate::cond;
use crate::fault::FaultKind;
use crate::scratch;
use crate::stack::StackBuffer;
use crate::{Outcome, Vm};

/// Initial value of each frame's `may_goto` counter (Linux `BPF_MAX_LOOPS`).
pub const MAY_GOTO_BUDGET: u64 = 8 * 1024 * 1024;

/// What a BPF-to-BPF call saved in its caller's frame.
#[derive(Clone, Copy)]
pub(crate) struct Frame {
    /// Where `exit` resumes the caller.
    return_pc: usize,
    /// The caller's r6..r10.
    saved: [u64; 5],
    /// The caller's `may_goto` counter.
    may_goto: u64,
}

/// The state of one run.
pub(crate) struct Machine<'r, 'v, 'a> {
    program: &'r Program,
    vm: &'v mut Vm<'a>,
    stack: &'r mut StackBuffer,
    /// Return records of the calls in progress (empty at the start of a run).
    callers: &'r mut Vec<Frame>,
    /// r0..r10; indexed with `reg & 15` so a register number can never index out of bounds.
    regs: [u64; 16],
    may_goto: u64,
    executed: u64,
}

/// Resolves an operand to a 64-bit value (immediates sign-extended; 32-bit operations use the
/// low half, which is the immediate itself).
macro_rules! operand {
    ($regs:expr, $src:expr) => {
        match $src {
            Operand::Reg(r) => $regs[usize::from(r & 15)],
            Operand::Imm(i) => i64::from(i) as u64,
        }
    };
}

/// Reborrows the context hook for one access (shortening the trait object's lifetime).
macro_rules! ctx {
    ($self:ident) => {
        match $self.vm.ctx {
            Some(ref mut c) => Some(&mut **c as &mut dyn kflex_runtime::ContextAccess),
            None => None,
        }
    };
}

/// `pc + 1 + off`, wrapping: a target outside the program is reported by the next fetch.
#[inline]
fn relative(pc: usize, off: i64) -> usize {
    pc.wrapping_add(1).wrapping_add_signed(off as isize)
}

impl<'r, 'v, 'a> Machine<'r, 'v, 'a> {
    /// Prepares a run: r1..r5 = `args`, frame 0 registered, r10 = its top.
    pub(crate) fn new(
        program: &'r Program,
        vm: &'v mut Vm<'a>,
        stack: &'r mut StackBuffer,
        callers: &'r mut Vec<Frame>,
        args: [u64; 5],
    ) -> Result<Self, FaultKind> {
        callers.clear();
        let mut regs = [0u64; 16];
        regs[1..6].copy_from_slice(&args);
        regs[10] = stack.push(vm.mem)?;
        Ok(Machine {
            program,
            vm,
            stack,
            regs,
            callers,
            may_goto: MAY_GOTO_BUDGET,
            executed: 0,
        })
    }

    /// Runs to the final `exit`; on a fault returns the faulting slot with the reason.
    pub(crate) fn execute(&mut self) -> Result<Outcome, (usize, FaultKind)> {
        let limit = self.vm.limits.max_instructions;
        let mut pc = 0usize;
        macro_rules! tri {
            ($e:expr) => {
                match $e {
                    Ok(v) => v,
                    Err(kind) => return Err((pc, kind)),
                }
            };
        }
        loop {
            let Some(&insn) = self.program.get(pc) else {
                return Err((pc, FaultKind::InvalidPc(pc)));
            };
            if self.executed >= limit {
                return Err((pc, FaultKind::InstructionLimit { limit }));
            }
            self.executed += 1;
            let regs = &mut self.regs;
            match insn {
                Instruction::Alu {
                    width,
                    op,
                    dst,
                    src,
                } => {
                    let d = usize::from(dst & 15);
                    regs[d] = alu::alu(width, op, regs[d], operand!(regs, src));
                }
                Instruction::Neg { width, dst } => {
                    let d = usize::from(dst & 15);
                    regs[d] = alu::neg(width, regs[d]);
                }
                Instruction::Mov { width, dst, src } => {
                    regs[usize::from(dst & 15)] = alu::mov(width, operand!(regs, src));
                }
                Instruction::MovSx {
                    width,
                    dst,
                    src,
                    bits,
                } => {
                    regs[usize::from(dst & 15)] =
                        alu::movsx(width, regs[usize::from(src & 15)], bits);
                }
                Instruction::AddrSpaceCast { dst, src, .. } => {
                    // kflex maps the heap at the same address in the extension and in user
                    // space, so a cast in either direction keeps the pointer (0 stays 0).
                    regs[usize::from(dst & 15)] = regs[usize::from(src & 15)];
                }
                Instruction::Endian { dst, bits, kind } => {
                    let d = usize::from(dst & 15);
                    regs[d] = alu::endian(kind, bits, regs[d]);
                }
                Instruction::LoadImm64 { dst, pseudo, imm } => {
                    let value = match pseudo {
                        0 => imm,
                        op::PSEUDO_FUNC => {
                            code_addr::encode(relative(pc, i64::from(imm as u32 as i32)))
                        }
                        _ => return Err((pc, FaultKind::UnresolvedPseudo { pseudo, imm })),
                    };
                    regs[usize::from(dst & 15)] = value;
                    pc += 2;
                    continue;
                }
                Instruction::Load {
                    size,
                    dst,
                    src,
                    off,
                    sign_extend,
                } => {
                    let addr = regs[usize::from(src & 15)].wrapping_add(i64::from(off) as u64);
                    let bytes = size.bytes();
                    let v = tri!(access::load(self.vm.mem, ctx!(self), addr, bytes));
                    self.regs[usize::from(dst & 15)] = if sign_extend {
                        alu::sign_extend(v, bytes * 8)
                    } else {
                        v
                    };
                }
                Instruction::Store {
                    size,
                    dst,
                    off,
                    src,
                } => {
                    let addr = regs[usize::from(dst & 15)].wrapping_add(i64::from(off) as u64);
                    let value = operand!(regs, src);
                    tri!(access::store(
                        self.vm.mem,
                        ctx!(self),
                        addr,
                        size.bytes(),
                        value
                    ));
                }
                Instruction::Atomic {
                    size,
                    op,
                    fetch,
                    dst,
                    src,
                    off,
                } => {
                    let addr = regs[usize::from(dst & 15)].wrapping_add(i64::from(off) as u64);
                    let s = usize::from(src & 15);
                    let old = tri!(access::atomic_rmw(
                        self.vm.mem,
                        addr,
                        size.bytes(),
                        op,
                        regs[s],
                        regs[0]
                    ));
                    if op == AtomicOp::Cmpxchg {
                        regs[0] = old;
                    } else if fetch {
                        regs[s] = old;
                    }
                }
                Instruction::LoadAcquire {
                    size,
                    dst,
                    src,
                    off,
                } => {
                    let addr = regs[usize::from(src & 15)].wrapping_add(i64::from(off) as u64);
                    let v = tri!(access::load_acquire(
                        self.vm.mem,
                        ctx!(self),
                        addr,
                        size.bytes()
                    ));
                    self.regs[usize::from(dst & 15)] = v;
                }
                Instruction::StoreRelease {
                    size,
                    dst,
                    src,
                    off,
                } => {
                    let addr = regs[usize::from(dst & 15)].wrapping_add(i64::from(off) as u64);
                    let value = regs[usize::from(src & 15)];
                    tri!(access::store_release(
                        self.vm.mem,
                        ctx!(self),
                        addr,
                        size.bytes(),
                        value
                    ));
                }
                Instruction::Ja { off } => {
                    pc = relative(pc, i64::from(off));
                    continue;
                }
                Instruction::Jump {
                    width,
                    op,
                    dst,
                    src,
                    off,
                } => {
                    let d = regs[usize::from(dst & 15)];
                    if cond::taken(width, op, d, operand!(regs, src)) {
                        pc = relative(pc, i64::from(off));
                        continue;
                    }
                }
                Instruction::MayGoto { off } => {
                    if self.may_goto == 0 {
                        pc = relative(pc, i64::from(off));
                        continue;
                    }
                    self.may_goto -= 1;
                }
                Instruction::Call { helper } => {
                    tri!(self.call_helper(i64::from(helper) as u64));
                }
                Instruction::CallLocal { imm } => {
                    pc = tri!(self.call_local(pc, relative(pc, i64::from(imm))));
                    continue;
                }
                Instruction::CallKfunc { btf_id } => {
                    return Err((pc, FaultKind::Kfunc { btf_id }));
                }
                Instruction::Callx { reg } => {
                    let target = regs[usize::from(reg & 15)];
                    if code_addr::is_code(target) {
                        let Some(entry) = code_addr::decode(target, self.program) else {
                            return Err((pc, FaultKind::BadCallTarget(target)));
                        };
                        pc = tri!(self.call_local(pc, entry));
                        continue;
                    }
                    if target > u64::from(u32::MAX) {
                        return Err((pc, FaultKind::BadCallTarget(target)));
                    }
                    tri!(self.call_helper(target));
                }
                Instruction::Exit => match self.callers.pop() {
                    None => {
                        return Ok(Outcome {
                            retval: self.regs[0],
                            instructions: self.executed,
                        });
                    }
                    Some(frame) => {
                        self.stack.pop(self.vm.mem);
                        self.regs[6..11].copy_from_slice(&frame.saved);
                        self.may_goto = frame.may_goto;
                        pc = frame.return_pc;
                        continue;
                    }
                },
            }
            pc += 1;
        }
    }

    /// Calls helper `id` with r1..r5; the result goes to r0. r1..r5 keep their values (Linux
    /// leaves them undefined after a call and the verifier forbids reading them, so keeping them
    /// is not observable by a verified program).
    fn call_helper(&mut self, id: u64) -> Result<(), FaultKind> {
        let def = u32::try_from(id)
            .ok()
            .and_then(|n| self.vm.helpers.get(n))
            .ok_or(FaultKind::UnknownHelper(id))?;
        let mut args = [0u64; 5];
        args.copy_from_slice(&self.regs[1..6]);
        let mut call = HelperCall {
            args,
            mem: self.vm.mem,
            env: self.vm.env,
        };
        match (def.func)(&mut call) {
            Ok(v) => {
                self.regs[0] = v;
                Ok(())
            }
            Err(error) => Err(FaultKind::Helper {
                id: def.id,
                name: def.name.clone(),
                error,
            }),
        }
    }

    /// Enters the subprogram at `entry` from the call at `pc`: saves r6..r10 and the `may_goto`
    /// counter, registers a fresh stack frame and points r10 at its top. Returns the new pc.
    fn call_local(&mut self, pc: usize, entry: usize) -> Result<usize, FaultKind> {
        let top = self.stack.push(self.vm.mem)?;
        let mut saved = [0u64; 5];
        saved.copy_from_slice(&self.regs[6..11]);
        self.callers.push(Frame {
            return_pc: pc + 1,
            saved,
            may_goto: self.may_goto,
        });
        self.regs[10] = top;
        self.may_goto = MAY_GOTO_BUDGET;
        Ok(entry)
    }
}

/// Runs `program` on zeroed stack frames (from the thread's scratch cache, see [`scratch`]) and
/// removes every frame region afterwards.
pub(crate) fn run_with_frames(
    program: &Program,
    args: [u64; 5],
    vm: &mut Vm<'_>,
    frames: usize,
) -> Result<Outcome, (usize, FaultKind)> {
    let mut scratch = scratch::take(frames);
    let space = &mut *scratch;
    let result = match Machine::new(program, vm, &mut space.stack, &mut space.callers, args) {
        Ok(mut machine) => machine.execute(),
        Err(kind) => Err((0, kind)),
    };
    space.stack.pop_all(vm.mem);
    result
}
