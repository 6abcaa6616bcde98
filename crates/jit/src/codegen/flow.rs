//! Control flow: jumps, `may_goto`, helper calls, BPF-to-BPF calls, `callx` and `exit`.

use dynasmrt::{DynasmApi, DynasmLabelApi};
use kflex_isa::decode::{JmpOp, Operand, Width};

use super::mem::{restore_r1_r5, save_r1_r5};
use super::{Emitter, STATE_SLOT, reg, x64};
use crate::error::JitError;
use crate::state::{DEPTH_OFF, ENTRIES_LEN_OFF, ENTRIES_OFF, FAULT_CODE_OFF, MAX_DEPTH_OFF};
use crate::trampoline;

/// `goto pc + 1 + off`.
pub(super) fn ja(e: &mut Emitter<'_>, pc: usize, off: i32) -> Result<(), JitError> {
    let t = e.jump_target(pc, i64::from(off))?;
    crate::termination::back_edge(e, pc, t);
    if t != pc + 1 {
        let l = e.label(t);
        x64!(e.ops ; jmp =>l);
    }
    Ok(())
}

/// Conditional jump: `cmp`/`test` at the jump's width, then the matching `jcc`.
pub(super) fn jump(
    e: &mut Emitter<'_>,
    pc: usize,
    width: Width,
    op: JmpOp,
    dst: u8,
    src: Operand,
    off: i16,
) -> Result<(), JitError> {
    let t = e.jump_target(pc, i64::from(off))?;
    crate::termination::back_edge(e, pc, t);
    let l = e.label(t);
    let d = reg(dst);
    if let (false, Operand::Imm(i)) = (op == JmpOp::Set, src) {
        super::peephole::cmp_imm(e, width, d, i);
    }
    let o = &mut e.ops;
    match (op == JmpOp::Set, width, src) {
        (false, _, Operand::Imm(_)) => {}
        (false, Width::W64, Operand::Reg(s)) => x64!(o ; cmp Rq(d), Rq(reg(s))),
        (false, Width::W32, Operand::Reg(s)) => x64!(o ; cmp Rd(d), Rd(reg(s))),
        (true, Width::W64, Operand::Reg(s)) => x64!(o ; test Rq(d), Rq(reg(s))),
        (true, Width::W64, Operand::Imm(i)) => x64!(o ; test Rq(d), i),
        (true, Width::W32, Operand::Reg(s)) => x64!(o ; test Rd(d), Rd(reg(s))),
        (true, Width::W32, Operand::Imm(i)) => x64!(o ; test Rd(d), i),
    }
    match op {
        JmpOp::Eq => x64!(o ; je =>l),
        JmpOp::Ne => x64!(o ; jne =>l),
        JmpOp::Set => x64!(o ; jnz =>l),
        JmpOp::Gt => x64!(o ; ja =>l),
        JmpOp::Ge => x64!(o ; jae =>l),
        JmpOp::Lt => x64!(o ; jb =>l),
        JmpOp::Le => x64!(o ; jbe =>l),
        JmpOp::Sgt => x64!(o ; jg =>l),
        JmpOp::Sge => x64!(o ; jge =>l),
        JmpOp::Slt => x64!(o ; jl =>l),
        JmpOp::Sle => x64!(o ; jle =>l),
    }
    Ok(())
}

/// `may_goto`: jump once the frame's counter (at `[rsp]`) is exhausted, else count down.
pub(super) fn may_goto(e: &mut Emitter<'_>, pc: usize, off: i16) -> Result<(), JitError> {
    let t = e.jump_target(pc, i64::from(off))?;
    let l = e.label(t);
    crate::termination::may_goto(e, pc, l);
    x64!(e.ops
        ; cmp QWORD [rsp], 0
        ; je =>l
        ; sub QWORD [rsp], 1
    );
    Ok(())
}

/// Where a helper call takes the helper number from.
pub(super) enum HelperId {
    /// The call's immediate.
    Imm(i32),
    /// r11 (a `callx` target).
    R11,
}

/// Calls a helper through the trampoline: r1..r5 are saved to the state block (the trampoline
/// reads them as arguments and they are reloaded afterwards, so they survive the call), r0 gets
/// the result, and a recorded fault leaves the run.
pub(super) fn helper_call(e: &mut Emitter<'_>, pc: usize, id: HelperId) {
    save_r1_r5(e);
    let f = trampoline::helper as *const () as usize as i64;
    let pc = i32::try_from(pc).unwrap_or(i32::MAX);
    let fault_exit = e.fault_exit;
    let o = &mut e.ops;
    match id {
        HelperId::Imm(i) => x64!(o ; mov rsi, i),
        HelperId::R11 => x64!(o ; mov rsi, r11),
    }
    x64!(o
        ; mov rdi, r9
        ; mov edx, pc
        ; mov rax, QWORD f
        ; call rax
        ; mov r9, [rsp + STATE_SLOT]
    );
    restore_r1_r5(e);
    x64!(e.ops
        ; cmp QWORD [r9 + FAULT_CODE_OFF], 0
        ; jne =>fault_exit
    );
}

/// Stops the run at `pc` if another frame would exceed the limit.
fn depth_check(e: &mut Emitter<'_>, pc: usize) {
    let stub = e.depth_fault(pc);
    x64!(e.ops
        ; mov r10, [r9 + DEPTH_OFF]
        ; cmp r10, [r9 + MAX_DEPTH_OFF]
        ; jae =>stub
    );
}

/// BPF-to-BPF call: a native call of the callee's prologue.
pub(super) fn call_local(e: &mut Emitter<'_>, pc: usize, imm: i32) -> Result<(), JitError> {
    let t = e.jump_target(pc, i64::from(imm))?;
    let entry = e.entry(t).ok_or_else(|| JitError::Instruction {
        pc,
        reason: "call target has no function entry".into(),
    })?;
    depth_check(e, pc);
    x64!(e.ops ; call =>entry);
    Ok(())
}

/// `callx reg`: a subprogram address (interpreter code-address encoding, looked up in the entry
/// table) is called natively, a value up to `u32::MAX` is a helper number, anything else faults.
pub(super) fn callx(e: &mut Emitter<'_>, pc: usize, bpf_reg: u8) {
    let r = reg(bpf_reg);
    let bad = e.callx_fault(pc, r);
    let tag = (crate::CODE_ADDRESS_BASE >> 32) as u32 as i32;
    x64!(e.ops
        ; mov r11, Rq(r)
        ; mov r10, r11
        ; shr r10, 32
        ; cmp r10d, tag
        ; jne >not_code
        ; test r11b, 7
        ; jnz =>bad
        ; shr r11d, 3
        ; cmp r11, [r9 + ENTRIES_LEN_OFF]
        ; jae =>bad
        ; mov r10, [r9 + ENTRIES_OFF]
        ; mov r11, [r10 + r11 * 8]
        ; test r11, r11
        ; jz =>bad
    );
    depth_check(e, pc);
    x64!(e.ops
        ; call r11
        ; jmp >done
        ; not_code:
        ; test r10, r10
        ; jnz =>bad
    );
    helper_call(e, pc, HelperId::R11);
    x64!(e.ops ; done:);
}
