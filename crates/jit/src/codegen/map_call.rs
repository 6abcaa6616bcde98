//! Map helper calls compiled against the map they use ([`crate::JitOptions::map_calls`]), as
//! Linux's JIT does: array and per-CPU array look-ups inline, hash and LRU hash look-ups,
//! updates and deletes as direct calls of the map's functions ([`MapCallPlan`]).
//!
//! Every such site first checks that r1 holds the handle of the map it was compiled for; if not
//! (a wrong fact), it calls the helper through the trampoline as an ordinary call would, so a
//! wrong fact costs speed, never memory safety. Compiled forms, with r1..r5 in rdi, rsi, rdx,
//! rcx, r8 (BPF calls clobber r1..r5, so nothing is saved around the site):
//!
//! * array look-up, branch-free (an out-of-range key never yields an address, not even
//!   speculatively): `eax = *(u32 *)rsi; r10d = eax; rax = rax * stride + values;
//!   rax = r10d < max_entries ? rax : 0`;
//! * per-CPU array look-up: the same with `(key * cpus + cpu) * stride`, the CPU read from the
//!   state block ([`crate::state::RunState::cpu`]) and a second `cmov` for a CPU out of range;
//! * direct call: the slot is stored as the fault pc (as the trampoline does), `rdi` = the map,
//!   for updates `r8` = the run's CPU, `call` of the function, r9 reloaded from the frame. The
//!   functions cannot fail, so no fault check follows.
//!
//! Sites whose map has no plan, and update/delete calls on array maps, use the trampoline.

use std::collections::HashMap;
use std::sync::Arc;

use dynasmrt::{DynasmApi, DynasmLabelApi};
use kflex_isa::decode::{Instruction, Program};
use kflex_runtime::ExecEnv;
use kflex_runtime::maps::{ArrayPlan, MapCallPlan, PercpuArrayPlan};

use super::flow::{HelperId, helper_call};
use super::{Emitter, STATE_SLOT, x64};
use crate::error::{JitError, JitFault, JitFaultKind};
use crate::state::{CPU_OFF, FAULT_PC_OFF};
use crate::{JitOptions, JitProgram};

/// Linux helper numbers of the map calls compiled here.
const LOOKUP: i32 = 1;
const UPDATE: i32 = 2;
const DELETE: i32 = 3;

/// One map-call site: the handle r1 must hold and how to serve the call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Site {
    handle: u64,
    plan: MapCallPlan,
}

/// Map-call sites by slot.
pub(crate) type Sites = HashMap<usize, Site>;

/// The sites of [`JitOptions::map_calls`] whose map has a plan (none without
/// [`JitOptions::maps`]). A fact naming an instruction that is not a call of helper 1, 2 or 3,
/// or two facts for one slot, is an error.
pub(crate) fn sites(program: &Program, options: &JitOptions) -> Result<Sites, JitError> {
    let mut out = Sites::new();
    let Some(table) = options.maps.as_deref() else {
        return Ok(out);
    };
    let mut seen = std::collections::HashSet::new();
    for &(pc, index) in &options.map_calls {
        let bad = |reason: &str| JitError::Instruction {
            pc,
            reason: reason.into(),
        };
        if !matches!(
            program.get(pc),
            Some(Instruction::Call {
                helper: LOOKUP..=DELETE
            })
        ) {
            return Err(bad(
                "map-call fact on an instruction that is not a map helper call",
            ));
        }
        if !seen.insert(pc) {
            return Err(bad("two map-call facts for one instruction"));
        }
        if let Some(plan) = table.call_plan(index) {
            let handle = table.handle(index);
            out.insert(pc, Site { handle, plan });
        }
    }
    Ok(out)
}

/// How one call is compiled.
enum Form {
    Array(ArrayPlan),
    PercpuArray(PercpuArrayPlan),
    /// A direct call of `func`; `cpu`: pass the run's CPU as the fifth argument.
    Direct {
        map: u64,
        func: u64,
        cpu: bool,
    },
}

fn form(helper: i32, plan: MapCallPlan) -> Option<Form> {
    match (helper, plan) {
        (LOOKUP, MapCallPlan::Array(a)) => Some(Form::Array(a)),
        // The CPU bound is compared as a sign-extended 32-bit immediate.
        (LOOKUP, MapCallPlan::PercpuArray(p)) if i32::try_from(p.cpus).is_ok() => {
            Some(Form::PercpuArray(p))
        }
        (LOOKUP, MapCallPlan::Hash(h)) => Some(Form::Direct {
            map: h.map as u64,
            func: h.lookup as usize as u64,
            cpu: false,
        }),
        (UPDATE, MapCallPlan::Hash(h)) => h.update.map(|f| Form::Direct {
            map: h.map as u64,
            func: f as usize as u64,
            cpu: true,
        }),
        (DELETE, MapCallPlan::Hash(h)) => h.delete.map(|f| Form::Direct {
            map: h.map as u64,
            func: f as usize as u64,
            cpu: false,
        }),
        _ => None,
    }
}

/// Compiles the call of `helper` at `pc` against its map if [`sites`] has a plan for it;
/// false (nothing emitted) otherwise.
pub(super) fn emit(e: &mut Emitter<'_>, pc: usize, helper: i32) -> bool {
    let Some(site) = e.map_calls.get(&pc).copied() else {
        return false;
    };
    let Some(form) = form(helper, site.plan) else {
        return false;
    };
    e.map_calls_compiled += 1;
    x64!(e.ops
        ; mov r11, QWORD site.handle as i64
        ; cmp rdi, r11
        ; jne >slow
    );
    match form {
        Form::Array(a) => array_lookup(e, &a),
        Form::PercpuArray(p) => percpu_lookup(e, &p),
        Form::Direct { map, func, cpu } => direct_call(e, pc, map, func, cpu),
    }
    x64!(e.ops ; jmp >done ; slow:);
    helper_call(e, pc, HelperId::Imm(helper));
    x64!(e.ops ; done:);
    true
}

/// `rax *= k` (k > 0), clobbering r11.
fn mul_rax(e: &mut Emitter<'_>, k: u64) {
    if k == 1 {
    } else if k.is_power_of_two() {
        x64!(e.ops ; shl rax, k.trailing_zeros() as i8);
    } else if let Ok(k) = i32::try_from(k) {
        x64!(e.ops ; imul rax, rax, k);
    } else {
        x64!(e.ops ; mov r11, QWORD k as i64 ; imul rax, r11);
    }
}

/// `rax += addr; r11 = 0` (the zero the bounds checks select).
fn add_base_zero_r11(e: &mut Emitter<'_>, addr: u64) {
    x64!(e.ops
        ; mov r11, QWORD addr as i64
        ; add rax, r11
        ; xor r11d, r11d
    );
}

/// Inline array look-up (key pointer in rsi, result in rax).
fn array_lookup(e: &mut Emitter<'_>, a: &ArrayPlan) {
    x64!(e.ops
        ; mov eax, DWORD [rsi]
        ; mov r10d, eax
    );
    mul_rax(e, a.stride);
    add_base_zero_r11(e, a.values);
    x64!(e.ops
        ; cmp r10d, a.max_entries as i32
        ; cmovae rax, r11
    );
}

/// Inline per-CPU array look-up (key pointer in rsi, result in rax).
fn percpu_lookup(e: &mut Emitter<'_>, p: &PercpuArrayPlan) {
    x64!(e.ops
        ; mov eax, DWORD [rsi]
        ; mov r10d, eax
    );
    mul_rax(e, u64::from(p.cpus));
    // The CPU field holds a `u32`: its low half is the whole value.
    x64!(e.ops
        ; mov r11d, DWORD [r9 + CPU_OFF]
        ; add rax, r11
    );
    mul_rax(e, p.stride);
    add_base_zero_r11(e, p.values);
    x64!(e.ops
        ; cmp r10d, p.max_entries as i32
        ; cmovae rax, r11
        ; cmp QWORD [r9 + CPU_OFF], p.cpus as i32
        ; cmovae rax, r11
    );
}

/// Direct call of `func(map, r2, r3, r4, cpu)`; the result is r0.
fn direct_call(e: &mut Emitter<'_>, pc: usize, map: u64, func: u64, cpu: bool) {
    let pc = i32::try_from(pc).unwrap_or(i32::MAX);
    x64!(e.ops
        ; mov QWORD [r9 + FAULT_PC_OFF], pc
        ; mov rdi, QWORD map as i64
    );
    if cpu {
        x64!(e.ops ; mov r8, [r9 + CPU_OFF]);
    }
    x64!(e.ops
        ; mov rax, QWORD func as i64
        ; call rax
        ; mov r9, [rsp + STATE_SLOT]
    );
}

impl JitProgram {
    /// Refuses a run whose environment's map table is not the one this program's map calls
    /// were compiled against (their code embeds its addresses).
    pub(crate) fn check_env_maps(&self, env: &ExecEnv) -> Result<(), JitFault> {
        let Some(compiled) = &self.maps else {
            return Ok(());
        };
        if env.maps.as_ref().is_some_and(|m| Arc::ptr_eq(m, compiled)) {
            return Ok(());
        }
        Err(JitFault {
            pc: 0,
            kind: JitFaultKind::StackSetup(
                "the run's map table is not the one the program's map calls were compiled against"
                    .into(),
            ),
            resources_released: 0,
        })
    }

    /// Number of map helper calls compiled against their map (inline array look-ups and
    /// direct hash map calls, [`JitOptions::map_calls`]).
    pub fn map_calls_compiled(&self) -> usize {
        self.map_calls
    }
}
