//! ALU instructions: scalar arithmetic through the domain, and the pointer-arithmetic rules of
//! Linux (`adjust_ptr_min_max_vals`): only `ptr += scalar`, `ptr -= scalar` on pointers with an
//! offset, 64-bit only; `ptr - ptr` gives a scalar; no bitwise operators on pointers; no
//! arithmetic on map pointers, packet end, or-null pointers, code addresses or references.

use kflex_isa::decode::{AluOp, EndianKind, Operand, Width};
use kflex_isa::op;

use super::{CheckResult, Cx};
use crate::domains::Scalar;
use crate::state::{RegState, State};

/// Largest |offset| a pointer may carry (Linux `BPF_MAX_VAR_OFF`).
pub const MAX_VAR_OFF: i64 = 1 << 29;

/// The value of an operand: a register (which must be initialised) or an immediate
/// (sign-extended to 64 bits, truncated for 32-bit operations by the domain).
fn operand(cx: &Cx<'_>, pc: usize, state: &State, src: Operand) -> CheckResult<RegState> {
    match src {
        Operand::Reg(r) => cx.read_reg(pc, state, r).cloned(),
        Operand::Imm(i) => Ok(RegState::constant(i64::from(i) as u64)),
    }
}

fn op_name(op: AluOp) -> &'static str {
    match op {
        AluOp::Add => "+=",
        AluOp::Sub => "-=",
        AluOp::Mul => "*=",
        AluOp::Div | AluOp::SDiv => "/=",
        AluOp::Or => "|=",
        AluOp::And => "&=",
        AluOp::Lsh => "<<=",
        AluOp::Rsh => ">>=",
        AluOp::Mod | AluOp::SMod => "%=",
        AluOp::Xor => "^=",
        AluOp::Arsh => "s>>=",
    }
}

/// `dst op= src`.
pub fn binary(
    cx: &mut Cx<'_>,
    pc: usize,
    state: &mut State,
    width: Width,
    alu: AluOp,
    dst: u8,
    src: Operand,
) -> CheckResult {
    let d = cx.read_reg(pc, state, dst)?.clone();
    let s = operand(cx, pc, state, src)?;
    cx.check_writable_reg(pc, state, dst)?;
    if let Operand::Imm(imm) = src {
        check_constant_operand(cx, pc, state, width, alu, imm)?;
    }
    let result = match (&d, &s) {
        (RegState::Scalar(a), RegState::Scalar(b)) => RegState::Scalar(a.alu(alu, width, b)),
        _ => pointer_alu(cx, pc, state, width, alu, dst, &d, &s)?,
    };
    state.set_reg(dst, result);
    Ok(())
}

/// Linux rejects a constant divisor of 0 and constant shift amounts outside the operand width
/// (`div by zero`, `invalid shift N`), although both have defined run-time semantics.
fn check_constant_operand(
    cx: &Cx<'_>,
    pc: usize,
    state: &State,
    width: Width,
    alu: AluOp,
    imm: i32,
) -> CheckResult {
    let bits = match width {
        Width::W32 => 32,
        Width::W64 => 64,
    };
    match alu {
        AluOp::Div | AluOp::SDiv | AluOp::Mod | AluOp::SMod if imm == 0 => Err(cx.error(
            pc,
            state,
            "div by zero: the constant divisor is 0",
            "divide by a non-zero constant, or by a register checked against 0",
        )),
        AluOp::Lsh | AluOp::Rsh | AluOp::Arsh if !(0..bits).contains(&imm) => Err(cx.error(
            pc,
            state,
            format!("invalid shift {imm}: constant shift amounts must be 0..{bits}"),
            "shift by less than the operand width",
        )),
        _ => Ok(()),
    }
}

/// An ALU operation with at least one pointer operand.
#[allow(clippy::too_many_arguments)]
fn pointer_alu(
    cx: &mut Cx<'_>,
    pc: usize,
    state: &State,
    width: Width,
    alu: AluOp,
    dst: u8,
    d: &RegState,
    s: &RegState,
) -> CheckResult<RegState> {
    let reject = |rule: String, hint: &str| Err(cx.error(pc, state, rule, hint));
    if width == Width::W32 {
        return reject(
            format!("R{dst} 32-bit pointer arithmetic prohibited"),
            "do pointer arithmetic with 64-bit operations (`r1 += r2`, not `w1 += w2`)",
        );
    }
    match alu {
        AluOp::And | AluOp::Or | AluOp::Xor => {
            return reject(
                format!(
                    "R{dst} bitwise operator {} on pointer prohibited",
                    op_name(alu)
                ),
                "pointers cannot be masked or combined; compute offsets as scalars and add them",
            );
        }
        AluOp::Add | AluOp::Sub => {}
        _ => {
            return reject(
                format!(
                    "R{dst} pointer arithmetic with {} operator prohibited",
                    op_name(alu)
                ),
                "only adding or subtracting a scalar is allowed on pointers",
            );
        }
    }
    match (d, s) {
        (p, RegState::Scalar(off)) if p.is_pointer() => {
            offset_pointer(cx, pc, state, dst, p, off, alu == AluOp::Sub)
        }
        (RegState::Scalar(off), p) if alu == AluOp::Add => {
            offset_pointer(cx, pc, state, dst, p, off, false)
        }
        (RegState::Scalar(_), _) => reject(
            format!("R{dst} tried to subtract pointer from scalar"),
            "subtract the scalar from the pointer instead",
        ),
        (a, b) if alu == AluOp::Sub => {
            let packet = |r: &RegState| {
                matches!(
                    r,
                    RegState::Packet { .. } | RegState::PacketEnd | RegState::PacketMeta { .. }
                )
            };
            let same_kind = std::mem::discriminant(a) == std::mem::discriminant(b);
            if (packet(a) && packet(b)) || (cx.options.privileged && same_kind) {
                Ok(RegState::unknown())
            } else {
                reject(
                    format!(
                        "R{dst} pointer -= pointer prohibited ({} - {})",
                        a.type_name(),
                        b.type_name()
                    ),
                    "only the difference of two packet pointers (or, when privileged, two \
                     pointers of the same kind) is allowed",
                )
            }
        }
        _ => reject(
            format!("R{dst} pointer += pointer prohibited"),
            "add a scalar offset to a pointer, never another pointer",
        ),
    }
}

/// `ptr ± off`: the pointer kinds with an offset move by `off`.
#[allow(clippy::too_many_arguments)]
fn offset_pointer(
    cx: &mut Cx<'_>,
    pc: usize,
    state: &State,
    dst: u8,
    ptr: &RegState,
    off: &Scalar,
    subtract: bool,
) -> CheckResult<RegState> {
    let reject = |rule: String, hint: &str| Err(cx.error(pc, state, rule, hint));
    let apply = |cur: &Scalar| {
        let op = if subtract { AluOp::Sub } else { AluOp::Add };
        cur.alu(op, Width::W64, off)
    };
    let sane = |s: &Scalar| s.smin >= -MAX_VAR_OFF && s.smax <= MAX_VAR_OFF;
    // Linux (`check_reg_sane_offset`) bounds only the smallest value of the added register and
    // of the resulting offset of a context pointer.
    let var_ctx = |n: Scalar| {
        let sane_min = |s: &Scalar| s.smin > -MAX_VAR_OFF && s.smin < MAX_VAR_OFF;
        if sane_min(off) && sane_min(&n) {
            return Ok(RegState::CtxVarOff { off: n });
        }
        reject(
            format!(
                "R{dst} ctx pointer offset out of bounds: adding {} (the smallest offset must stay within ±{MAX_VAR_OFF})",
                RegState::Scalar(*off)
            ),
            "access context fields through constant offsets only (the context can only be \
             accessed at a constant offset)",
        )
    };
    match ptr {
        RegState::Ctx { off: base } => {
            let Some(v) = off.is_const() else {
                // Linux keeps a context pointer with a variable offset but rejects every use of
                // it (the access rules say why); unprivileged programs may not even form it.
                if cx.options.privileged {
                    return var_ctx(apply(&Scalar::constant(i64::from(*base) as u64)));
                }
                return reject(
                    format!("R{dst} variable ctx pointer arithmetic prohibited"),
                    "access context fields through constant offsets only",
                );
            };
            let delta = if subtract {
                (v as i64).checked_neg()
            } else {
                Some(v as i64)
            };
            match delta.and_then(|d| i64::from(*base).checked_add(d)) {
                Some(n) if (-MAX_VAR_OFF..=MAX_VAR_OFF).contains(&n) => {
                    Ok(RegState::Ctx { off: n as i32 })
                }
                _ => reject(
                    format!("R{dst} ctx pointer offset out of bounds"),
                    "access context fields through constant offsets only",
                ),
            }
        }
        RegState::CtxVarOff { off: cur } => var_ctx(apply(cur)),
        RegState::Heap {
            trusted,
            off: cur,
            start,
        } => {
            let n = apply(cur);
            Ok(RegState::Heap {
                trusted: *trusted && sane(&n),
                off: n,
                start: *start,
            })
        }
        RegState::Stack { .. }
        | RegState::MapValue { or_null: false, .. }
        | RegState::Packet { .. }
        | RegState::PacketMeta { .. }
        | RegState::Mem { or_null: false, .. } => {
            let mut out = ptr.clone();
            let cur = ptr.offset().cloned().unwrap_or_else(|| Scalar::constant(0));
            let n = apply(&cur);
            if !sane(&n) {
                return reject(
                    format!(
                        "R{dst} {} pointer offset out of bounds: {} (the variable offset must stay within ±{MAX_VAR_OFF})",
                        ptr.type_name(),
                        crate::state::RegState::Scalar(n)
                    ),
                    "bound the scalar with a comparison (e.g. `if (i >= N) return ...;`) before \
                     adding it to the pointer",
                );
            }
            if let Some(o) = out.offset_mut() {
                *o = n;
            }
            if let RegState::Packet {
                id, fixed, range, ..
            } = &mut out
            {
                match off.is_const() {
                    Some(c) => {
                        let c = if subtract {
                            (c as i64).wrapping_neg()
                        } else {
                            c as i64
                        };
                        match i32::try_from(i64::from(*fixed) + c) {
                            Ok(f) => *fixed = f,
                            Err(_) => {
                                return reject(
                                    format!("R{dst} packet pointer offset out of bounds"),
                                    "keep packet offsets small",
                                );
                            }
                        }
                    }
                    None => {
                        *id = cx.fresh_id();
                        *fixed = 0;
                        *range = 0;
                    }
                }
            }
            Ok(out)
        }
        _ => reject(
            format!(
                "R{dst} pointer arithmetic on {} prohibited",
                ptr.type_name()
            ),
            if ptr.is_or_null() {
                "check the pointer against NULL before doing arithmetic on it"
            } else {
                "this kind of pointer cannot be moved; use it as it is"
            },
        ),
    }
}

/// A pointer in an operation that turns it into a number: allowed (as an unknown scalar) only
/// when privileged, as Linux's `allow_ptr_leaks`.
fn leak(cx: &Cx<'_>, pc: usize, state: &State, reg: u8, what: &str) -> CheckResult<RegState> {
    if cx.options.privileged {
        Ok(RegState::unknown())
    } else {
        Err(cx.error(
            pc,
            state,
            format!("R{reg} {what} of pointer prohibited"),
            "unprivileged programs may not turn pointers into numbers",
        ))
    }
}

/// `dst = -dst`.
pub fn neg(cx: &mut Cx<'_>, pc: usize, state: &mut State, width: Width, dst: u8) -> CheckResult {
    let d = cx.read_reg(pc, state, dst)?.clone();
    cx.check_writable_reg(pc, state, dst)?;
    let r = match &d {
        RegState::Scalar(s) => RegState::Scalar(s.neg(width)),
        _ => leak(cx, pc, state, dst, "negation")?,
    };
    state.set_reg(dst, r);
    Ok(())
}

/// `dst = src` (`W32`: the low half, zero-extended).
pub fn mov(
    cx: &mut Cx<'_>,
    pc: usize,
    state: &mut State,
    width: Width,
    dst: u8,
    src: Operand,
) -> CheckResult {
    let s = operand(cx, pc, state, src)?;
    cx.check_writable_reg(pc, state, dst)?;
    let r = match (&s, width) {
        (_, Width::W64) => s,
        (RegState::Scalar(v), Width::W32) => RegState::Scalar(v.mov(Width::W32)),
        (_, Width::W32) => {
            let reg = match src {
                Operand::Reg(r) => r,
                Operand::Imm(_) => dst,
            };
            leak(cx, pc, state, reg, "partial copy")?
        }
    };
    state.set_reg(dst, r);
    Ok(())
}

/// `dst = (sN) src`.
pub fn movsx(
    cx: &mut Cx<'_>,
    pc: usize,
    state: &mut State,
    width: Width,
    dst: u8,
    src: u8,
    bits: u8,
) -> CheckResult {
    let s = cx.read_reg(pc, state, src)?.clone();
    cx.check_writable_reg(pc, state, dst)?;
    let r = match &s {
        RegState::Scalar(v) => RegState::Scalar(v.movsx(width, bits)),
        _ => leak(cx, pc, state, src, "sign extension")?,
    };
    state.set_reg(dst, r);
    Ok(())
}

/// Byte-order conversion of `dst`.
pub fn endian(
    cx: &mut Cx<'_>,
    pc: usize,
    state: &mut State,
    dst: u8,
    bits: u8,
    kind: EndianKind,
) -> CheckResult {
    let d = cx.read_reg(pc, state, dst)?.clone();
    cx.check_writable_reg(pc, state, dst)?;
    let r = match &d {
        RegState::Scalar(v) => RegState::Scalar(v.endian(kind, bits)),
        _ => leak(cx, pc, state, dst, "byte swap")?,
    };
    state.set_reg(dst, r);
    Ok(())
}

/// `dst = addr_space_cast(src, dst_as, src_as)`: as1 -> as0 turns a scalar into an untrusted
/// heap pointer (to be guarded at its first access) and keeps a heap pointer as it is (kflex maps
/// the heap at the same address on both sides, so the cast does not change the value: a trusted
/// pointer stays trusted with its offset); as0 -> as1 keeps a heap pointer as it is and a scalar a
/// scalar.
pub fn addr_space_cast(
    cx: &mut Cx<'_>,
    pc: usize,
    state: &mut State,
    dst: u8,
    src: u8,
    dst_as: u16,
    src_as: u16,
) -> CheckResult {
    let s = cx.read_reg(pc, state, src)?.clone();
    cx.check_writable_reg(pc, state, dst)?;
    let r = match (src_as, dst_as, &s) {
        (1, 0, RegState::Scalar(_)) => RegState::Heap {
            trusted: false,
            off: Scalar::constant(0),
            start: false,
        },
        (1, 0, RegState::Heap { .. }) | (0, 1, RegState::Scalar(_) | RegState::Heap { .. }) => s,
        (1, 0, _) | (0, 1, _) => {
            return Err(cx.error(
                pc,
                state,
                format!(
                    "addr_space_cast of R{src} ({}) prohibited: only heap pointers and scalars \
                     change address space",
                    s.type_name()
                ),
                "cast only pointers into the heap (arena) between address spaces 1 and 0",
            ));
        }
        _ => {
            return Err(cx.error(
                pc,
                state,
                format!("addr_space_cast from address space {src_as} to {dst_as} is not supported"),
                "only casts between address spaces 0 and 1 (the heap) are supported",
            ));
        }
    };
    state.set_reg(dst, r);
    Ok(())
}

/// `dst = imm64` (`lddw`): a constant, a map, a map value (or the heap for the arena map), or a
/// subprogram address.
pub fn load_imm64(
    cx: &mut Cx<'_>,
    pc: usize,
    state: &mut State,
    dst: u8,
    pseudo: u8,
    imm: u64,
) -> CheckResult {
    cx.check_writable_reg(pc, state, dst)?;
    let map_at = |index: u64| {
        u32::try_from(index)
            .ok()
            .and_then(|i| cx.input.maps.get(i as usize).map(|m| (i, m)))
    };
    let r = match pseudo {
        0 => RegState::constant(imm),
        op::PSEUDO_MAP_FD | op::PSEUDO_MAP_IDX => match map_at(imm & 0xffff_ffff) {
            Some((map, _)) => RegState::MapPtr { map },
            None => return Err(bad_map(cx, pc, state, imm & 0xffff_ffff)),
        },
        op::PSEUDO_MAP_VALUE | op::PSEUDO_MAP_IDX_VALUE => {
            let index = imm & 0xffff_ffff;
            let off = imm >> 32;
            let Some((map, spec)) = map_at(index) else {
                return Err(bad_map(cx, pc, state, index));
            };
            if spec.map_type == kflex_object::MapType::Arena {
                RegState::Heap {
                    trusted: true,
                    off: Scalar::constant(off),
                    start: true,
                }
            } else if off >= u64::from(spec.value_size) {
                return Err(cx.error(
                    pc,
                    state,
                    format!(
                        "invalid access to map value pointer: offset {off} is past the {}-byte value of map {}",
                        spec.value_size, spec.name
                    ),
                    "refer only to variables inside the map's value",
                ));
            } else {
                RegState::MapValue {
                    map,
                    off: Scalar::constant(off),
                    id: 0,
                    or_null: false,
                }
            }
        }
        op::PSEUDO_FUNC => {
            let insn = cx.input.program.get(pc);
            match insn.and_then(|i| i.target(pc)) {
                Some(target) if cx.input.program.get(target).is_some() => {
                    RegState::Code { pc: target }
                }
                _ => {
                    return Err(cx.error(
                        pc,
                        state,
                        "subprogram address does not name an instruction",
                        "",
                    ));
                }
            }
        }
        other => {
            return Err(cx.error(
                pc,
                state,
                format!("unsupported lddw pseudo source {other}: only plain constants, maps, map values and subprogram addresses are supported"),
                "load maps through their definitions in the object, not by id",
            ));
        }
    };
    state.set_reg(dst, r);
    Ok(())
}

fn bad_map(cx: &Cx<'_>, pc: usize, state: &State, index: u64) -> Box<crate::VerifyError> {
    cx.error(
        pc,
        state,
        format!(
            "lddw refers to map #{index}, but the program has only {} map(s)",
            cx.input.maps.len()
        ),
        "load the program together with the object's map definitions",
    )
}
