//! Loads, stores and atomics.
//!
//! Accesses are plain x86 memory operands `[reg + off]` (safety comes from the verifier and the SFI
//! guards emitted before heap accesses), or, for heap accesses in segment SFI mode, `gs:[reg32 +
//! off]` operands (prefixes `0x65 0x67`: 32-bit effective address added to the heap base in GS).
//! Plain loads and stores are encoded in their shortest form by [`encode`].
//! Accesses listed in the context rewrite table become an inline access through the run's
//! context plan ([`crate::ctx_plan`]) where the plan has an address for them, and a call to the
//! context trampoline otherwise.

use dynasmrt::{DynasmApi, DynasmLabelApi};
use kflex_isa::decode::{AtomicOp, Operand, Size};

use super::encode::{self, Mem};
use super::{ARG_REGS, Emitter, STATE_SLOT, reg, x64, x86};
use crate::ctx_plan;
use crate::sfi::Addressing;
use crate::state::{CTX_PLAN_OFF, FAULT_CODE_OFF, reg_slot};
use crate::trampoline;

/// `dst = *(size *)(src + off)`, zero- or sign-extended.
pub(super) fn load(
    e: &mut Emitter<'_>,
    pc: usize,
    size: Size,
    dst: u8,
    src: u8,
    off: i16,
    sign_extend: bool,
) {
    let d = reg(dst);
    if let Some((index, _)) = e.ctx_access(pc) {
        let inline = !sign_extend && plan_word(e, index);
        if inline {
            let m = Mem {
                base: x86::R11,
                disp: 0,
                segment: false,
            };
            x64!(e.ops ; jz >slow);
            if size == Size::W {
                // Bit 0 set: an 8-byte pointer cell at the address without it (ctx_plan::WIDE).
                let wide = Mem { disp: -1, ..m };
                x64!(e.ops ; test r11b, 1 ; jnz >wide);
                encode::put(e, &encode::load_bytes(size, false, d, m));
                x64!(e.ops ; jmp >done ; wide:);
                encode::put(e, &encode::load_bytes(Size::DW, false, d, wide));
            } else {
                encode::put(e, &encode::load_bytes(size, false, d, m));
            }
            x64!(e.ops ; jmp >done ; slow:);
        }
        context_call(e, pc, index, None);
        if sign_extend {
            sign_extend_r11(e, size);
        }
        x64!(e.ops ; mov Rq(d), r11);
        if inline {
            x64!(e.ops ; done:);
        }
        return;
    }
    let addressing = crate::sfi::guard(e, pc, false);
    let m = Mem {
        base: reg(src),
        disp: i32::from(off),
        segment: addressing == Addressing::Segment,
    };
    encode::put(e, &encode::load_bytes(size, sign_extend, d, m));
}

/// Sign-extends the context value in r11 from the access size, as the interpreter does for a
/// sign-extending context load. Other context loads keep the hook's value unchanged: pointer
/// fields (`data`, `data_end`) are read with 4-byte loads but produce full 64-bit pointers.
fn sign_extend_r11(e: &mut Emitter<'_>, size: Size) {
    let o = &mut e.ops;
    match size {
        Size::B => x64!(o ; movsx r11, r11b),
        Size::H => x64!(o ; movsx r11, r11w),
        Size::W => x64!(o ; movsxd r11, r11d),
        Size::DW => {}
    }
}

/// `*(size *)(dst + off) = src`.
pub(super) fn store(e: &mut Emitter<'_>, pc: usize, size: Size, dst: u8, off: i16, src: Operand) {
    if let Some((index, _)) = e.ctx_access(pc) {
        let inline = plan_word(e, index);
        if inline {
            let m = Mem {
                base: x86::R11,
                disp: 0,
                segment: false,
            };
            x64!(e.ops ; jz >slow);
            let bytes = match src {
                Operand::Reg(s) => encode::store_reg_bytes(size, reg(s), m),
                Operand::Imm(i) => encode::store_imm_bytes(size, i, m),
            };
            encode::put(e, &bytes);
            x64!(e.ops ; jmp >done ; slow:);
        }
        context_call(e, pc, index, Some(src));
        if inline {
            x64!(e.ops ; done:);
        }
        return;
    }
    let addressing = crate::sfi::guard(e, pc, true);
    let m = Mem {
        base: reg(dst),
        disp: i32::from(off),
        segment: addressing == Addressing::Segment,
    };
    let bytes = match src {
        Operand::Reg(s) => encode::store_reg_bytes(size, reg(s), m),
        Operand::Imm(i) => encode::store_imm_bytes(size, i, m),
    };
    encode::put(e, &bytes);
}

/// For a context access compiled inline (its table `index` has a plan word, see
/// [`crate::ctx_plan`]): loads that word into r11 and tests it, leaving ZF set when the access
/// must take the trampoline. Returns false (emitting nothing) for entries past the plan.
fn plan_word(e: &mut Emitter<'_>, index: u64) -> bool {
    let Some(disp) = usize::try_from(index)
        .ok()
        .filter(|&i| i < ctx_plan::MAX_INLINE)
        .map(|i| 8 * i as i32)
    else {
        return false;
    };
    x64!(e.ops
        ; mov r11, [r9 + CTX_PLAN_OFF]
        ; mov r11, [r11 + disp]
        ; test r11, r11
    );
    true
}

/// Calls the context trampoline for rewrite `index` at `pc`; for a store `value` is the operand.
/// Leaves the loaded value in r11; r0..r5 keep their values.
fn context_call(e: &mut Emitter<'_>, pc: usize, index: u64, value: Option<Operand>) {
    save_r0_r5(e);
    let o = &mut e.ops;
    match value {
        Some(Operand::Reg(s)) => x64!(o ; mov r11, Rq(reg(s))),
        Some(Operand::Imm(i)) => x64!(o ; mov r11, i),
        None => x64!(o ; xor r11d, r11d),
    }
    let f = trampoline::context as *const () as usize as i64;
    let pc = i32::try_from(pc).unwrap_or(i32::MAX);
    let index = i32::try_from(index).unwrap_or(i32::MAX);
    let fault_exit = e.fault_exit;
    x64!(e.ops
        ; mov rdi, r9
        ; mov esi, pc
        ; mov edx, index
        ; mov rcx, r11
        ; mov rax, QWORD f
        ; call rax
        ; mov r11, rax
        ; mov r9, [rsp + STATE_SLOT]
        ; mov rax, [r9 + reg_slot(0)]
    );
    restore_r1_r5(e);
    x64!(e.ops
        ; cmp QWORD [r9 + FAULT_CODE_OFF], 0
        ; jne =>fault_exit
    );
}

/// Stores BPF r0..r5 into the state's save area.
pub(super) fn save_r0_r5(e: &mut Emitter<'_>) {
    x64!(e.ops ; mov [r9 + reg_slot(0)], rax);
    save_r1_r5(e);
}

/// Stores BPF r1..r5 into the state's save area.
pub(super) fn save_r1_r5(e: &mut Emitter<'_>) {
    for (i, &r) in ARG_REGS.iter().enumerate() {
        let slot = reg_slot(i as u8 + 1);
        x64!(e.ops ; mov [r9 + slot], Rq(r));
    }
}

/// Reloads BPF r1..r5 from the state's save area (r9 must hold the state pointer).
pub(super) fn restore_r1_r5(e: &mut Emitter<'_>) {
    for (i, &r) in ARG_REGS.iter().enumerate() {
        let slot = reg_slot(i as u8 + 1);
        x64!(e.ops ; mov Rq(r), [r9 + slot]);
    }
}

/// Atomic read-modify-write of 4 or 8 bytes at `dst + off` with `lock`-prefixed instructions.
#[allow(clippy::too_many_arguments)]
pub(super) fn atomic(
    e: &mut Emitter<'_>,
    pc: usize,
    size: Size,
    op: AtomicOp,
    fetch: bool,
    dst: u8,
    src: u8,
    off: i16,
) {
    let addressing = crate::sfi::guard(e, pc, true);
    let (d, s, off) = (reg(dst), reg(src), i32::from(off));
    let wide = size == Size::DW;
    if addressing == Addressing::Segment {
        segment_atomic(e, wide, op, fetch, d, s, off);
        return;
    }
    let o = &mut e.ops;
    match (op, fetch) {
        (AtomicOp::Add, false) if wide => x64!(o ; lock add [Rq(d) + off], Rq(s)),
        (AtomicOp::Add, false) => x64!(o ; lock add [Rq(d) + off], Rd(s)),
        (AtomicOp::Or, false) if wide => x64!(o ; lock or [Rq(d) + off], Rq(s)),
        (AtomicOp::Or, false) => x64!(o ; lock or [Rq(d) + off], Rd(s)),
        (AtomicOp::And, false) if wide => x64!(o ; lock and [Rq(d) + off], Rq(s)),
        (AtomicOp::And, false) => x64!(o ; lock and [Rq(d) + off], Rd(s)),
        (AtomicOp::Xor, false) if wide => x64!(o ; lock xor [Rq(d) + off], Rq(s)),
        (AtomicOp::Xor, false) => x64!(o ; lock xor [Rq(d) + off], Rd(s)),
        (AtomicOp::Add, true) if wide => {
            x64!(o ; mov r11, Rq(s) ; lock xadd [Rq(d) + off], r11 ; mov Rq(s), r11)
        }
        (AtomicOp::Add, true) => {
            x64!(o ; mov r11, Rq(s) ; lock xadd [Rq(d) + off], r11d ; mov Rd(s), r11d)
        }
        (AtomicOp::Xchg, _) if wide => {
            x64!(o ; mov r11, Rq(s) ; xchg [Rq(d) + off], r11 ; mov Rq(s), r11)
        }
        (AtomicOp::Xchg, _) => {
            x64!(o ; mov r11, Rq(s) ; xchg [Rq(d) + off], r11d ; mov Rd(s), r11d)
        }
        // cmpxchg compares with rax = r0 and leaves the old value there.
        (AtomicOp::Cmpxchg, _) if wide => x64!(o ; lock cmpxchg [Rq(d) + off], Rq(s)),
        // A 32-bit cmpxchg that succeeds leaves rax's upper half alone: zero-extend explicitly.
        (AtomicOp::Cmpxchg, _) => x64!(o ; lock cmpxchg [Rq(d) + off], Rd(s) ; mov eax, eax),
        (op, true) => fetch_loop(e, wide, op, d, s, off, Addressing::Plain),
    }
}

/// [`atomic`] with a segment-relative operand `gs:[d32 + off]`.
fn segment_atomic(
    e: &mut Emitter<'_>,
    wide: bool,
    op: AtomicOp,
    fetch: bool,
    d: u8,
    s: u8,
    off: i32,
) {
    let o = &mut e.ops;
    match (op, fetch) {
        (AtomicOp::Add, false) if wide => x64!(o ; gs lock add [Rd(d) + off], Rq(s)),
        (AtomicOp::Add, false) => x64!(o ; gs lock add [Rd(d) + off], Rd(s)),
        (AtomicOp::Or, false) if wide => x64!(o ; gs lock or [Rd(d) + off], Rq(s)),
        (AtomicOp::Or, false) => x64!(o ; gs lock or [Rd(d) + off], Rd(s)),
        (AtomicOp::And, false) if wide => x64!(o ; gs lock and [Rd(d) + off], Rq(s)),
        (AtomicOp::And, false) => x64!(o ; gs lock and [Rd(d) + off], Rd(s)),
        (AtomicOp::Xor, false) if wide => x64!(o ; gs lock xor [Rd(d) + off], Rq(s)),
        (AtomicOp::Xor, false) => x64!(o ; gs lock xor [Rd(d) + off], Rd(s)),
        (AtomicOp::Add, true) if wide => {
            x64!(o ; mov r11, Rq(s) ; gs lock xadd [Rd(d) + off], r11 ; mov Rq(s), r11)
        }
        (AtomicOp::Add, true) => {
            x64!(o ; mov r11, Rq(s) ; gs lock xadd [Rd(d) + off], r11d ; mov Rd(s), r11d)
        }
        (AtomicOp::Xchg, _) if wide => {
            x64!(o ; mov r11, Rq(s) ; gs xchg [Rd(d) + off], r11 ; mov Rq(s), r11)
        }
        (AtomicOp::Xchg, _) => {
            x64!(o ; mov r11, Rq(s) ; gs xchg [Rd(d) + off], r11d ; mov Rd(s), r11d)
        }
        (AtomicOp::Cmpxchg, _) if wide => x64!(o ; gs lock cmpxchg [Rd(d) + off], Rq(s)),
        (AtomicOp::Cmpxchg, _) => {
            x64!(o ; gs lock cmpxchg [Rd(d) + off], Rd(s) ; mov eax, eax)
        }
        (op, true) => fetch_loop(e, wide, op, d, s, off, Addressing::Segment),
    }
}

/// `src = fetch_<op>(dst + off, src)` for and/or/xor, as a `lock cmpxchg` loop. rax (r0) is
/// needed by cmpxchg, so r0 and the operand are parked on the native stack. The address is formed
/// in r10 first (`dst` may be rax); with [`Addressing::Segment`] only its low 32 bits are used,
/// relative to GS.
fn fetch_loop(
    e: &mut Emitter<'_>,
    wide: bool,
    op: AtomicOp,
    d: u8,
    s: u8,
    off: i32,
    at: Addressing,
) {
    let seg = at == Addressing::Segment;
    let o = &mut e.ops;
    x64!(o
        ; push rax
        ; push Rq(s)
        ; lea r10, [Rq(d) + off]
    );
    match (wide, seg) {
        (true, false) => x64!(o ; mov rax, [r10]),
        (true, true) => x64!(o ; gs mov rax, [r10d]),
        (false, false) => x64!(o ; mov eax, [r10]),
        (false, true) => x64!(o ; gs mov eax, [r10d]),
    }
    x64!(o ; retry:);
    if wide {
        x64!(o ; mov r11, rax);
        match op {
            AtomicOp::And => x64!(o ; and r11, [rsp]),
            AtomicOp::Or => x64!(o ; or r11, [rsp]),
            _ => x64!(o ; xor r11, [rsp]),
        }
        if seg {
            x64!(o ; gs lock cmpxchg [r10d], r11);
        } else {
            x64!(o ; lock cmpxchg [r10], r11);
        }
        x64!(o ; jne <retry ; mov r11, rax);
    } else {
        x64!(o ; mov r11d, eax);
        match op {
            AtomicOp::And => x64!(o ; and r11d, [rsp]),
            AtomicOp::Or => x64!(o ; or r11d, [rsp]),
            _ => x64!(o ; xor r11d, [rsp]),
        }
        if seg {
            x64!(o ; gs lock cmpxchg [r10d], r11d);
        } else {
            x64!(o ; lock cmpxchg [r10], r11d);
        }
        x64!(o ; jne <retry ; mov r11d, eax);
    }
    x64!(o ; add rsp, 8 ; pop rax);
    if wide {
        x64!(o ; mov Rq(s), r11);
    } else {
        x64!(o ; mov Rd(s), r11d);
    }
}
