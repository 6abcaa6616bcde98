//! Loads, stores and atomics: dispatch on the base register's kind, and the stack, map-value and
//! helper-memory rules. Context, packet and heap accesses have their own modules.

use kflex_isa::decode::{AtomicOp, Operand};
use kflex_object::{BPF_F_RDONLY_PROG, GlobalKind};

use super::{CheckResult, Cx, ctx, heap, packet};
use crate::domains::Scalar;
use crate::facts::BaseKind;
use crate::hints;
use crate::state::{RegState, STACK_SIZE, StackError, StackRead, State};

/// What an access does to memory.
#[derive(Clone, Debug)]
pub enum Access {
    /// A load (`sign_extend` for `BPF_MEMSX`).
    Read {
        /// Sign-extend the loaded value.
        sign_extend: bool,
    },
    /// A store of this value.
    Write(RegState),
    /// An atomic read-modify-write with this operand.
    Atomic(RegState),
}

impl Access {
    fn is_write(&self) -> bool {
        !matches!(self, Access::Read { .. })
    }

    fn verb(&self) -> &'static str {
        match self {
            Access::Read { .. } => "read",
            Access::Write(_) => "write",
            Access::Atomic(_) => "atomic",
        }
    }
}

/// One memory access at `pc`: `size` bytes at `base + off`.
#[derive(Clone, Copy, Debug)]
pub struct Site {
    /// Instruction index.
    pub pc: usize,
    /// Base register.
    pub base: u8,
    /// Instruction offset.
    pub off: i16,
    /// Bytes accessed.
    pub size: u8,
}

/// `dst = *(size *)(src + off)` (also load-acquire). Returns after setting `dst`.
pub fn load(
    cx: &mut Cx<'_>,
    state: &mut State,
    site: Site,
    dst: u8,
    sign_extend: bool,
) -> CheckResult {
    let value = access(cx, state, site, &Access::Read { sign_extend })?;
    cx.check_writable_reg(site.pc, state, dst)?;
    state.set_reg(dst, value);
    Ok(())
}

/// `*(size *)(dst + off) = src` (also store-release). `src` may be an immediate (`BPF_ST`),
/// also into a writable context field, as Linux (6.18) allows.
pub fn store(cx: &mut Cx<'_>, state: &mut State, site: Site, src: Operand) -> CheckResult {
    let value = match src {
        Operand::Reg(r) => cx.read_reg(site.pc, state, r)?.clone(),
        Operand::Imm(i) => RegState::constant(i64::from(i) as u64),
    };
    access(cx, state, site, &Access::Write(value))?;
    Ok(())
}

/// An atomic read-modify-write.
pub fn atomic(
    cx: &mut Cx<'_>,
    state: &mut State,
    site: Site,
    op: AtomicOp,
    fetch: bool,
    src: u8,
) -> CheckResult {
    let operand = cx.read_reg(site.pc, state, src)?.clone();
    if op == AtomicOp::Cmpxchg {
        cx.read_reg(site.pc, state, 0)?;
    }
    let base_is_heap = matches!(state.reg(site.base), RegState::Heap { .. });
    let pointer_ok = base_is_heap && matches!(operand, RegState::Heap { .. });
    if operand.is_pointer() && !pointer_ok && !cx.options.privileged {
        return Err(cx.error(
            site.pc,
            state,
            format!("R{src} leaks addr into mem"),
            "atomic operations take scalars",
        ));
    }
    let old = access(cx, state, site, &Access::Atomic(operand))?;
    let old = match old {
        RegState::Scalar(_) => old,
        _ => RegState::Scalar(Scalar::load(site.size, false)),
    };
    match op {
        AtomicOp::Cmpxchg => state.set_reg(0, old),
        _ if fetch => {
            cx.check_writable_reg(site.pc, state, src)?;
            state.set_reg(src, old);
        }
        _ => {}
    }
    Ok(())
}

/// Checks an access through the base register and applies a store's effect; returns what a load
/// yields (for stores, an unknown scalar).
pub fn access(
    cx: &mut Cx<'_>,
    state: &mut State,
    site: Site,
    acc: &Access,
) -> CheckResult<RegState> {
    let base = cx.read_reg(site.pc, state, site.base)?.clone();
    let kind = match base {
        RegState::Ctx { .. } | RegState::CtxVarOff { .. } => BaseKind::Ctx,
        RegState::Heap { .. } => BaseKind::Heap,
        _ => BaseKind::Other,
    };
    if let Err(prev) = cx.facts.base_kind(site.pc, kind) {
        return Err(cx.error(
            site.pc,
            state,
            format!(
                "same insn cannot be used with different pointers: R{} is a {} pointer here but {} memory was accessed on another path",
                site.base,
                base.type_name(),
                prev.name()
            ),
            "use separate instructions (e.g. separate code paths) for accesses to different kinds of memory",
        ));
    }
    match &base {
        RegState::Stack { frame, off } => stack_access(cx, state, site, *frame, off, acc),
        RegState::Ctx { off } => ctx::access(cx, state, site, *off, acc),
        RegState::CtxVarOff { off } => {
            Err(ctx::variable_offset(cx, state, site.pc, site.base, off))
        }
        RegState::MapValue {
            map,
            off,
            or_null: false,
            ..
        } => map_value_access(cx, state, site, *map, off, acc),
        RegState::Packet { .. } | RegState::PacketMeta { .. } => {
            packet::access(cx, state, site, &base, acc)
        }
        RegState::Mem {
            size,
            off,
            or_null: false,
            ..
        } => {
            region_access(cx, state, site, off, u64::from(*size), "mem", acc)?;
            Ok(loaded(site, acc))
        }
        RegState::Heap { .. } => heap::access(cx, state, site, &base, acc),
        other => {
            let name = other.type_name();
            let hint = if other.is_or_null() {
                hints::possibly_null(if name.starts_with("map") {
                    "map value"
                } else {
                    "the pointer"
                })
            } else if matches!(other, RegState::Scalar(_)) {
                "only pointers can be dereferenced; numbers read from memory are not pointers \
                 (heap pointers must come from the heap map or an addr_space_cast)"
                    .to_string()
            } else {
                format!("a {name} pointer cannot be dereferenced")
            };
            let why = if other.is_or_null() {
                ": the pointer may be NULL"
            } else {
                ""
            };
            Err(cx.error(
                site.pc,
                state,
                format!("R{} invalid mem access '{name}'{why}", site.base),
                hint,
            ))
        }
    }
}

/// What a load yields from plain memory (an unknown value of the access size).
pub fn loaded(site: Site, acc: &Access) -> RegState {
    let sign = matches!(acc, Access::Read { sign_extend: true });
    RegState::Scalar(Scalar::load(site.size, sign))
}

/// The offsets `[lo, hi)` an access may touch, given the base's variable offset.
fn touched(off: &Scalar, site: Site) -> (i128, i128) {
    let insn = i128::from(site.off);
    (
        i128::from(off.smin) + insn,
        i128::from(off.smax) + insn + i128::from(site.size),
    )
}

/// Rejects storing a pointer where unprivileged programs may not leak it.
fn check_leak(cx: &Cx<'_>, state: &State, site: Site, acc: &Access, into: &str) -> CheckResult {
    if let Access::Write(v) | Access::Atomic(v) = acc
        && v.is_pointer()
        && !cx.options.privileged
    {
        return Err(cx.error(
            site.pc,
            state,
            format!("R{} leaks addr into {into}", site.base),
            "unprivileged programs may not store pointers into memory the host or user space can read",
        ));
    }
    Ok(())
}

/// An access to a memory region of `size` bytes whose pointer has offset `off`.
fn region_access(
    cx: &Cx<'_>,
    state: &State,
    site: Site,
    off: &Scalar,
    size: u64,
    what: &str,
    acc: &Access,
) -> CheckResult {
    check_leak(cx, state, site, acc, what)?;
    let (lo, hi) = touched(off, site);
    if lo < 0 || hi > i128::from(size) {
        return Err(cx.error(
            site.pc,
            state,
            format!(
                "invalid access to {what}: {} of {} bytes at offset {lo}..{hi} is outside the {size}-byte region",
                acc.verb(),
                site.size
            ),
            format!("keep the access inside the {size} bytes (bound the offset with a comparison first)"),
        ));
    }
    Ok(())
}

fn map_value_access(
    cx: &mut Cx<'_>,
    state: &mut State,
    site: Site,
    map: u32,
    off: &Scalar,
    acc: &Access,
) -> CheckResult<RegState> {
    let Some(spec) = cx.input.maps.get(map as usize) else {
        return Err(cx.error(site.pc, state, format!("map #{map} does not exist"), ""));
    };
    let read_only = spec.flags & BPF_F_RDONLY_PROG != 0 || spec.global == Some(GlobalKind::Rodata);
    if read_only && acc.is_write() {
        return Err(cx.error(
            site.pc,
            state,
            format!(
                "write into map {} marked BPF_F_RDONLY_PROG (read-only for the program)",
                spec.name
            ),
            "declare the variable without `const` (in .data or .bss) if the program must change it",
        ));
    }
    let name = format!("map value of {}", spec.name);
    region_access(cx, state, site, off, u64::from(spec.value_size), &name, acc)?;
    // Read-only global data is constant: a constant-offset load reads the initial value.
    if read_only
        && let (Access::Read { sign_extend }, Some(o), Some(init)) =
            (acc, off.is_const(), spec.initial_value.as_ref())
    {
        let start = (o as i64).checked_add(i64::from(site.off));
        let bytes = start
            .and_then(|s| usize::try_from(s).ok())
            .and_then(|s| init.get(s..s.checked_add(usize::from(site.size))?));
        if let Some(bytes) = bytes {
            let mut v = 0u64;
            for (i, b) in bytes.iter().enumerate() {
                v |= u64::from(*b) << (8 * i);
            }
            let bits = 8 * u32::from(site.size);
            if *sign_extend && bits < 64 {
                let shift = 64 - bits;
                v = (((v << shift) as i64) >> shift) as u64;
            }
            return Ok(RegState::constant(v));
        }
    }
    Ok(loaded(site, acc))
}

fn stack_access(
    cx: &mut Cx<'_>,
    state: &mut State,
    site: Site,
    frame: u8,
    off: &Scalar,
    acc: &Access,
) -> CheckResult<RegState> {
    let (lo, hi) = touched(off, site);
    let limit = -(STACK_SIZE as i128);
    if lo < limit || hi > 0 {
        return Err(cx.error(
            site.pc,
            state,
            format!(
                "invalid {} of {} bytes at stack offset {lo}..{hi}: the stack is fp-{STACK_SIZE}..fp0",
                acc.verb(),
                site.size
            ),
            "keep stack accesses inside the 512-byte frame (below r10)",
        ));
    }
    let (lo, hi) = (lo as i64, hi as i64);
    cx.facts.stack_touched(lo);
    let constant = off.is_const().is_some();
    if constant && lo % i64::from(site.size) != 0 {
        return Err(cx.error(
            site.pc,
            state,
            format!("misaligned stack access off fp{lo} size {}", site.size),
            "align stack accesses to their size",
        ));
    }
    let uninit_err = |cx: &Cx<'_>, state: &State, at: i64| {
        cx.error(
            site.pc,
            state,
            format!(
                "invalid read from stack R{} off {lo} size {}: byte fp{at} is not initialised",
                site.base, site.size
            ),
            hints::uninit_stack(lo, u64::from(site.size)),
        )
    };
    let privileged = cx.options.privileged;
    let Some(stack) = state.stack(frame) else {
        return Err(cx.error(
            site.pc,
            state,
            format!("stack frame {frame} does not exist"),
            "",
        ));
    };
    match acc {
        Access::Read { .. } if constant => match stack.read(lo, site.size) {
            Ok(StackRead::Fill(r)) => Ok(r),
            Ok(StackRead::Zero) => Ok(RegState::constant(0)),
            Ok(StackRead::Const(v)) => Ok(match acc {
                Access::Read { sign_extend: true } if site.size < 8 => {
                    let shift = 64 - 8 * u32::from(site.size);
                    RegState::constant((((v << shift) as i64) >> shift) as u64)
                }
                _ => RegState::constant(v),
            }),
            Ok(StackRead::Unknown) => Ok(loaded(site, acc)),
            Err(StackError::Uninit { off }) => Err(uninit_err(cx, state, off)),
            Err(StackError::PartialFill { slot_off }) => Err(cx.error(
                site.pc,
                state,
                format!(
                    "invalid size of register fill: {} bytes of the pointer spilled at fp{slot_off}",
                    site.size
                ),
                "read a spilled pointer back with an 8-byte load of its whole slot",
            )),
        },
        Access::Read { .. } => match stack.first_uninit(lo, hi) {
            Some(at) => Err(uninit_err(cx, state, at)),
            None => Ok(loaded(site, acc)),
        },
        Access::Write(value) => {
            let partial_ptr = value.is_pointer() && (site.size != 8 || !constant);
            if partial_ptr && !privileged {
                return Err(cx.error(
                    site.pc,
                    state,
                    format!("attempt to corrupt spilled pointer on stack (R{} off {lo})", site.base),
                    "spill pointers with aligned 8-byte stores",
                ));
            }
            if !constant && !privileged && let Some(at) = stack.first_uninit(lo, hi) {
                return Err(cx.error(
                    site.pc,
                    state,
                    format!("uninit stack fp{at} in range of var-offset write prohibited for !root"),
                    "initialise the whole range before writing at a variable offset",
                ));
            }
            let value = value.clone();
            if let Some(stack) = state.stack_mut(frame) {
                if constant {
                    stack.write(lo, site.size, &value);
                } else {
                    stack.write_unknown(lo, hi);
                }
            }
            Ok(RegState::unknown())
        }
        Access::Atomic(_) => {
            if let Some(at) = stack.first_uninit(lo, hi) {
                return Err(uninit_err(cx, state, at));
            }
            if constant
                && let Some(r) = stack.spill(lo.div_euclid(8) * 8)
                && r.is_pointer()
            {
                return Err(cx.error(
                    site.pc,
                    state,
                    format!("atomic operation on the pointer spilled at fp{lo}"),
                    "atomic operations work on scalars only",
                ));
            }
            if let Some(stack) = state.stack_mut(frame) {
                stack.write_unknown(lo, hi);
            }
            Ok(loaded(site, acc))
        }
    }
}
