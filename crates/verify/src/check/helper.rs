//! Helper calls checked against the typed helper registry.
//!
//! [`check_helper_call`] checks every argument register against the helper's [`Signature`]
//! (kinds, sizes of memory arguments, which maps the helper accepts, references it releases,
//! calls under a lock), then applies the call's effects: releases, locks, acquired references,
//! r0 per the return kind, and r1-r5 scratched.
//!
//! The register/stack state is reached through [`CallState`], which the verifier state
//! implements: registers are seen as [`ArgVal`] summaries, so these rules do not depend on the
//! state's internal representation.

use kflex_object::{MapSpec, MapType};
use kflex_runtime::helpers::{ArgKind, HelperDef, ResourceKind, RetKind, ids};

use super::resources::{LockTarget, ResourceView, kind_name};
use crate::VerifyInput;
use crate::error::VerifyError;
use crate::hints;
use crate::log::error_at;

/// Largest size a memory argument may have (as Linux's `BPF_MAX_VAR_SIZ`).
pub const MAX_MEM_ARG: u64 = 1 << 29;

/// A register as the helper-call rules see it. Offsets are bounds of the pointer's offset from the
/// start of the object it points into.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArgVal {
    /// Never written (or scratched).
    Uninit,
    /// A scalar with unsigned bounds (and its value when constant).
    Scalar {
        /// Smallest value.
        umin: u64,
        /// Largest value.
        umax: u64,
    },
    /// The context pointer at a constant offset.
    Ctx {
        /// Offset.
        off: i64,
    },
    /// A stack pointer into `frame` at an offset from that frame's r10 in `[min, max]`.
    Stack {
        /// Frame number.
        frame: u8,
        /// Smallest offset.
        min: i64,
        /// Largest offset.
        max: i64,
    },
    /// A map (from `lddw` with a map pseudo source).
    MapPtr {
        /// Map index.
        map: u32,
    },
    /// A pointer into a value of `map`.
    MapValue {
        /// Map index.
        map: u32,
        /// Identity of the lookup result it came from (0 when it has none, e.g. global data):
        /// distinguishes elements for lock identity.
        id: u32,
        /// Smallest offset.
        min: i64,
        /// Largest offset.
        max: i64,
        /// May be NULL (not yet checked).
        nullable: bool,
    },
    /// A packet pointer with the proved readable range.
    Packet {
        /// Smallest offset.
        min: i64,
        /// Largest offset.
        max: i64,
        /// Bytes from the packet start proved inside the packet.
        range: u64,
    },
    /// Memory returned by a helper (ringbuf sample), possibly an acquired reference.
    Mem {
        /// Reference id, when the memory is an acquired reference.
        ref_id: Option<u32>,
        /// Size in bytes.
        size: u64,
        /// Smallest offset.
        min: i64,
        /// Largest offset.
        max: i64,
        /// May be NULL (not yet checked).
        nullable: bool,
    },
    /// A host object reference.
    HostRef {
        /// Reference id.
        ref_id: u32,
        /// Its kind.
        kind: ResourceKind,
        /// May be NULL (not yet checked).
        nullable: bool,
    },
    /// A heap pointer; `off` is its offset from the heap start when known.
    Heap {
        /// Offset from the heap start, when known.
        off: Option<i64>,
    },
    /// Any other pointer kind, by name (packet end, code address, ...).
    Other(String),
}

impl ArgVal {
    /// The constant value of a scalar.
    pub fn constant(&self) -> Option<u64> {
        match *self {
            ArgVal::Scalar { umin, umax } if umin == umax => Some(umin),
            _ => None,
        }
    }

    /// A short name of the kind, as in kernel logs.
    pub fn kind_name(&self) -> String {
        match self {
            ArgVal::Uninit => "uninitialised".into(),
            ArgVal::Scalar { .. } => "scalar".into(),
            ArgVal::Ctx { .. } => "ctx".into(),
            ArgVal::Stack { .. } => "fp".into(),
            ArgVal::MapPtr { .. } => "map_ptr".into(),
            ArgVal::MapValue { nullable: true, .. } => "map_value_or_null".into(),
            ArgVal::MapValue { .. } => "map_value".into(),
            ArgVal::Packet { .. } => "pkt".into(),
            ArgVal::Mem { nullable: true, .. } => "mem_or_null".into(),
            ArgVal::Mem { .. } => "mem".into(),
            ArgVal::HostRef { nullable: true, .. } => "ref_or_null".into(),
            ArgVal::HostRef { .. } => "ref".into(),
            ArgVal::Heap { .. } => "heap".into(),
            ArgVal::Other(n) => n.clone(),
        }
    }
}

/// What a call leaves in r0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RetVal {
    /// An unknown scalar.
    Scalar,
    /// The constant 0.
    Zero,
    /// A value of `map` or NULL; `id` is the fresh or-null id.
    MapValueOrNull {
        /// Map index.
        map: u32,
        /// Or-null id.
        id: u32,
    },
    /// A value of `map` that cannot be NULL (an array lookup with a constant in-range key, as
    /// Linux 6.13+); `id` is a fresh identity of the element.
    MapValue {
        /// Map index.
        map: u32,
        /// Identity of the element.
        id: u32,
    },
    /// Memory of `size` bytes or NULL, an acquired reference when `ref_id` is set.
    MemOrNull {
        /// Size in bytes.
        size: u64,
        /// Or-null id.
        id: u32,
        /// Reference id.
        ref_id: Option<u32>,
    },
    /// A host object reference or NULL.
    HostRefOrNull {
        /// Reference id.
        ref_id: u32,
        /// Its kind.
        kind: ResourceKind,
        /// Or-null id.
        id: u32,
    },
}

/// The register/stack operations the helper-call rules need.
pub trait CallState: ResourceView {
    /// Register `reg` (0..=10) as an argument summary.
    fn arg(&self, reg: u8) -> ArgVal;
    /// Checks that `len` stack bytes of `frame` from offset `off` (from r10) are initialised;
    /// the error is the first offset that is not.
    fn stack_initialised(&self, frame: u8, off: i64, len: u64) -> Result<(), i64>;
    /// The constant a `size`-byte map key that register `reg` points to holds, when it is known
    /// (Linux `get_constant_map_key`: privileged programs, a stack pointer at a constant offset,
    /// known-zero bytes or a spilled constant of the key's size). The default knows nothing.
    fn const_map_key(&self, reg: u8, size: u64) -> Option<u64> {
        let _ = (reg, size);
        None
    }
    /// Marks `len` stack bytes of `frame` from offset `off` as written by the helper.
    fn mark_stack_written(&mut self, frame: u8, off: i64, len: u64);
    /// A fresh id (for or-null pointers and references).
    fn fresh_id(&mut self) -> u32;
    /// The resources, for acquiring and releasing.
    fn resources_mut(&mut self) -> &mut super::resources::Resources;
    /// Invalidates every register and spilled slot holding reference `id` (it was released).
    fn invalidate_ref(&mut self, id: u32);
    /// Sets r0 after the call.
    fn set_r0(&mut self, r0: RetVal);
    /// Marks r1-r5 uninitialised (scratched by the call).
    fn scratch_args(&mut self);
    /// The state as kernel-log style text, for error reports.
    fn describe(&self) -> String;
}

/// What one argument check learned.
#[derive(Default)]
struct Learned {
    map: Option<u32>,
    released: Option<(u32, ResourceKind)>,
    lock: Option<LockTarget>,
    /// The map key is a constant the lookup cannot miss (an in-range array index).
    key_always_found: bool,
    /// Stack bytes a helper writes: frame, offset, length.
    written: Vec<(u8, i64, u64)>,
}

/// Checks a call of `def` at `pc` and applies its effects to `state` (the error is boxed: it is
/// large and rare).
pub fn check_helper_call<S: CallState + ?Sized>(
    state: &mut S,
    pc: usize,
    def: &HelperDef,
    input: &VerifyInput<'_>,
) -> Result<(), Box<VerifyError>> {
    let fail = |state: &S, rule: String, hint: String| {
        Box::new(error_at(input, pc, rule, hint, Some(state.describe())))
    };
    if !state.resources().locks.is_empty() && !def.sig.allowed_under_lock {
        let held = &state.resources().locks[0];
        return Err(fail(
            state,
            format!(
                "{} may not be called while holding a lock ({} taken at instruction {})",
                def.name, held.target, held.acquired_at
            ),
            hints::call_under_lock(&def.name),
        ));
    }
    let mut learned = Learned::default();
    for (i, kind) in def.sig.args.iter().enumerate() {
        let reg = i as u8 + 1;
        check_arg(state, def, input, reg, *kind, &mut learned)
            .map_err(|(rule, hint)| fail(state, rule, hint))?;
    }
    check_map_type(def, input.maps, learned.map).map_err(|rule| {
        fail(
            state,
            rule,
            hints::bad_helper_arg(&def.name, 1, "a map of a type it supports"),
        )
    })?;

    // Effects: stack writes, release, locks, acquire, r0, scratch.
    for (frame, off, len) in std::mem::take(&mut learned.written) {
        state.mark_stack_written(frame, off, len);
    }
    if let Some((id, kind)) = learned.released {
        state.resources_mut().release(id, kind).map_err(|rule| {
            fail(
                state,
                format!("{}: {rule}", def.name),
                hints::bad_release(&def.name),
            )
        })?;
        state.invalidate_ref(id);
    }
    if let Some(target) = learned.lock {
        let r = if def.id == ids::SPIN_UNLOCK {
            state.resources_mut().unlock(target).map(|_| ())
        } else {
            let id = state.fresh_id();
            state.resources_mut().lock(id, target, pc)
        };
        r.map_err(|rule| fail(state, rule, hints::lock_not_released()))?;
    }
    let r0 =
        return_value(state, pc, def, &learned).map_err(|(rule, hint)| fail(state, rule, hint))?;
    state.scratch_args();
    state.set_r0(r0);
    Ok(())
}

/// The error for a call of a helper the registry does not have: names the id and the program
/// type and lists the nearest known helper numbers.
pub fn unknown_helper(
    input: &VerifyInput<'_>,
    pc: usize,
    id: i64,
    state: Option<String>,
) -> VerifyError {
    let mut known: Vec<(u64, String)> = input
        .helpers
        .iter()
        .map(|h| {
            (
                i64::from(h.id).abs_diff(id),
                format!("{} (#{})", h.name, h.id),
            )
        })
        .collect();
    known.sort();
    let nearby: Vec<String> = known.into_iter().take(4).map(|(_, n)| n).collect();
    error_at(
        input,
        pc,
        format!(
            "unknown helper #{id}: no helper with this number is available to {} programs",
            input.prog_type.name()
        ),
        hints::unknown_helper(&nearby),
        state,
    )
}

type ArgError = (String, String);

#[path = "helper_special.rs"]
mod special;
use special::{check_const_str, check_map_type, lock_target};

fn check_arg<S: CallState + ?Sized>(
    state: &S,
    def: &HelperDef,
    input: &VerifyInput<'_>,
    reg: u8,
    kind: ArgKind,
    learned: &mut Learned,
) -> Result<(), ArgError> {
    let v = state.arg(reg);
    let name = &def.name;
    let wrong = |expected: &str| -> ArgError {
        (
            format!(
                "R{reg} type={} expected={expected}: argument {reg} of {name} must be {expected}",
                v.kind_name()
            ),
            hints::bad_helper_arg(name, reg, expected),
        )
    };
    if kind != ArgKind::Any && v == ArgVal::Uninit {
        return Err((
            format!("R{reg} !read_ok: argument {reg} of {name} is not initialised"),
            hints::uninit_register(reg),
        ));
    }
    match kind {
        ArgKind::Any => Ok(()),
        ArgKind::Scalar => match v {
            ArgVal::Scalar { .. } => Ok(()),
            _ => Err(wrong("a scalar")),
        },
        ArgKind::ConstScalar => match v.constant() {
            Some(_) => Ok(()),
            None if matches!(v, ArgVal::Scalar { .. }) => Err((
                format!(
                    "R{reg} is not a known constant: argument {reg} of {name} must be a constant"
                ),
                hints::bad_helper_arg(name, reg, "a compile-time constant"),
            )),
            None => Err(wrong("a constant scalar")),
        },
        ArgKind::MapPtr => match v {
            ArgVal::MapPtr { map } => {
                learned.map = Some(map);
                Ok(())
            }
            _ => Err(wrong("a map pointer")),
        },
        ArgKind::MapKey | ArgKind::MapValue => {
            let Some(spec) = learned.map.and_then(|m| input.maps.get(m as usize)) else {
                return Err(wrong(
                    "a pointer into a map key or value (after the map argument)",
                ));
            };
            let (size, what) = if kind == ArgKind::MapKey {
                (u64::from(spec.key_size), "key")
            } else {
                (u64::from(spec.value_size), "value")
            };
            check_mem(state, input.maps, reg, &v, size, false, name)
                .map_err(|(r, h)| (format!("{r} (the map {what} of {})", spec.name), h))?;
            if kind == ArgKind::MapKey
                && matches!(spec.map_type, MapType::Array | MapType::PercpuArray)
            {
                learned.key_always_found = state
                    .const_map_key(reg, size)
                    .is_some_and(|k| k < u64::from(spec.max_entries));
            }
            Ok(())
        }
        ArgKind::MemRead { size_arg } | ArgKind::MemWrite { size_arg } => {
            let write = matches!(kind, ArgKind::MemWrite { .. });
            let size_reg = size_arg + 1;
            let (min, max) = match state.arg(size_reg) {
                ArgVal::Scalar { umin, umax } => (umin, umax),
                other => {
                    return Err((
                        format!(
                            "R{size_reg} type={} expected=scalar: the size of argument {reg} of {name} must be a scalar",
                            other.kind_name()
                        ),
                        hints::bad_helper_arg(name, size_reg, "a bounded size"),
                    ));
                }
            };
            let zero_ok = matches!(
                def.sig.args.get(size_arg as usize),
                Some(ArgKind::MemSize { zero_ok: true })
            );
            if min == 0 && !zero_ok {
                return Err((
                    format!(
                        "R{size_reg} invalid zero-sized access: the size of argument {reg} of {name} may be 0"
                    ),
                    format!("check that the size is not 0 before calling {name}"),
                ));
            }
            if max >= MAX_MEM_ARG {
                return Err((
                    format!(
                        "R{size_reg} unbounded memory access: the size of argument {reg} of {name} may be {max}"
                    ),
                    format!(
                        "bound the size with a comparison (e.g. `if (len > 256) return ...;`) before calling {name}"
                    ),
                ));
            }
            check_mem(state, input.maps, reg, &v, max, write, name)?;
            if let (
                true,
                ArgVal::Stack {
                    frame,
                    min: lo,
                    max: hi,
                },
            ) = (write, &v)
                && lo == hi
            {
                learned.written.push((*frame, *lo, max));
            }
            Ok(())
        }
        ArgKind::MemSize { .. } => match v {
            ArgVal::Scalar { .. } => Ok(()),
            _ => Err(wrong("a size (scalar)")),
        },
        ArgKind::Ctx => match v {
            ArgVal::Ctx { off: 0 } => Ok(()),
            ArgVal::Ctx { off } => Err((
                format!(
                    "R{reg} ctx pointer at offset {off}: argument {reg} of {name} must be the context pointer itself"
                ),
                hints::bad_helper_arg(name, reg, "the unmodified context pointer"),
            )),
            _ => Err(wrong("the context pointer")),
        },
        ArgKind::Ref(rk) => check_ref(state, reg, &v, rk, def, learned),
        ArgKind::ConstStr => check_const_str(reg, &v, input.maps, name),
        ArgKind::SpinLock => {
            let target = lock_target(reg, &v, input.maps, name)?;
            learned.lock = Some(target);
            Ok(())
        }
    }
}

/// Checks a pointer to `[min_size, max_size]` bytes of memory, readable (and initialised on the
/// stack) or writable.
fn check_mem<S: CallState + ?Sized>(
    state: &S,
    maps: &[MapSpec],
    reg: u8,
    v: &ArgVal,
    max_size: u64,
    write: bool,
    name: &str,
) -> Result<(), ArgError> {
    // Callers bound sizes below MAX_MEM_ARG, so this conversion is exact.
    let size = i64::try_from(max_size).unwrap_or(i64::MAX);
    let access = if write { "write" } else { "read" };
    let out_of = |what: &str, lo: i64, hi: i64, limit: String| -> ArgError {
        (
            format!(
                "R{reg} invalid {what} {access} of {size} bytes at offset [{lo}, {hi}] ({limit}) by {name}"
            ),
            hints::bad_helper_arg(name, reg, &format!("a pointer to {size} accessible bytes")),
        )
    };
    match *v {
        ArgVal::Stack { frame, min, max } => {
            if min < -512 || max.saturating_add(size) > 0 {
                return Err(out_of("stack", min, max, "the stack is fp-512..fp".into()));
            }
            if !write && size > 0 {
                let span = max.saturating_sub(min).saturating_add(size).max(0) as u64;
                if let Err(bad) = state.stack_initialised(frame, min, span) {
                    return Err((
                        format!(
                            "invalid indirect read from stack R{reg} off {min}+{size}: fp{bad:+} is not initialised (argument {reg} of {name})"
                        ),
                        hints::uninit_stack(bad, 1),
                    ));
                }
            }
            Ok(())
        }
        ArgVal::MapValue { nullable: true, .. } | ArgVal::Mem { nullable: true, .. } => Err((
            format!(
                "R{reg} type={} may be NULL: argument {reg} of {name} must be checked against NULL first",
                v.kind_name()
            ),
            hints::possibly_null(if matches!(v, ArgVal::MapValue { .. }) {
                "map value"
            } else {
                "the pointer"
            }),
        )),
        ArgVal::MapValue { map, min, max, .. } => {
            let limit = maps
                .get(map as usize)
                .map(|s| i64::from(s.value_size))
                .unwrap_or(0);
            if min < 0 || max.saturating_add(size) > limit {
                return Err(out_of(
                    "map value",
                    min,
                    max,
                    format!("the value is {limit} bytes"),
                ));
            }
            Ok(())
        }
        ArgVal::Mem {
            size: limit,
            min,
            max,
            ..
        } => {
            if min < 0 || max.saturating_add(size) > i64::try_from(limit).unwrap_or(i64::MAX) {
                return Err(out_of(
                    "mem",
                    min,
                    max,
                    format!("the memory is {limit} bytes"),
                ));
            }
            Ok(())
        }
        ArgVal::Packet { min, max, range } => {
            if min < 0 || (max.saturating_add(size)) as u64 > range {
                return Err((
                    format!(
                        "R{reg} invalid packet {access} of {size} bytes at offset [{min}, {max}], proved range is {range} (argument {reg} of {name})"
                    ),
                    hints::packet_range(max.saturating_add(size).max(0) as u64),
                ));
            }
            Ok(())
        }
        ArgVal::Heap { .. } => Ok(()),
        _ => Err((
            format!(
                "R{reg} type={} expected=pointer to memory: argument {reg} of {name} must point to {size} bytes of stack, map value, packet or helper memory",
                v.kind_name()
            ),
            hints::bad_helper_arg(name, reg, "a pointer to memory"),
        )),
    }
}

/// Checks a reference argument: a live reference of `kind`, not NULL, pointing at its start.
fn check_ref<S: CallState + ?Sized>(
    state: &S,
    reg: u8,
    v: &ArgVal,
    kind: ResourceKind,
    def: &HelperDef,
    learned: &mut Learned,
) -> Result<(), ArgError> {
    let name = &def.name;
    let (id, nullable, exact) = match *v {
        ArgVal::Mem {
            ref_id: Some(id),
            nullable,
            min,
            max,
            ..
        } => (id, nullable, min == 0 && max == 0),
        ArgVal::HostRef {
            ref_id,
            kind: k,
            nullable,
        } if k == kind => (ref_id, nullable, true),
        _ => {
            return Err((
                format!(
                    "R{reg} type={} expected={}: argument {reg} of {name} must be an acquired {} reference",
                    v.kind_name(),
                    kind_name(kind),
                    kind_name(kind)
                ),
                hints::bad_release(name),
            ));
        }
    };
    if nullable {
        return Err((
            format!(
                "R{reg} may be NULL: argument {reg} of {name} must be checked against NULL first"
            ),
            hints::possibly_null("the pointer"),
        ));
    }
    if !exact {
        return Err((
            format!(
                "R{reg} must point to the start of the reference passed to {name}, not into it"
            ),
            hints::bad_release(name),
        ));
    }
    match state.resources().get(id) {
        Some(r) if r.kind == kind => {}
        Some(r) => {
            return Err((
                format!(
                    "R{reg} holds a {} but {name} takes a {}",
                    kind_name(r.kind),
                    kind_name(kind)
                ),
                hints::bad_release(name),
            ));
        }
        None => {
            return Err((
                format!(
                    "R{reg} reference id={id} is not held (released already?): {name} needs a live reference"
                ),
                hints::bad_release(name),
            ));
        }
    }
    if def.sig.releases == Some(reg - 1) {
        learned.released = Some((id, kind));
    }
    Ok(())
}

fn return_value<S: CallState + ?Sized>(
    state: &mut S,
    pc: usize,
    def: &HelperDef,
    learned: &Learned,
) -> Result<RetVal, ArgError> {
    let acquire = |state: &mut S, kind: ResourceKind| {
        let id = state.fresh_id();
        state.resources_mut().acquire(id, kind, pc);
        id
    };
    Ok(match def.sig.ret {
        RetKind::Void => RetVal::Zero,
        RetKind::Scalar => match def.sig.acquires {
            Some(kind @ ResourceKind::Host(_)) => {
                let ref_id = acquire(state, kind);
                RetVal::HostRefOrNull {
                    ref_id,
                    kind,
                    id: state.fresh_id(),
                }
            }
            _ => RetVal::Scalar,
        },
        RetKind::MapValueOrNull => {
            let map = learned.map.ok_or_else(|| {
                (
                    format!("{} returns a map value but has no map argument", def.name),
                    String::new(),
                )
            })?;
            let id = state.fresh_id();
            if def.id == ids::MAP_LOOKUP_ELEM && learned.key_always_found {
                RetVal::MapValue { map, id }
            } else {
                RetVal::MapValueOrNull { map, id }
            }
        }
        RetKind::MemOrNull { size_arg } => {
            let size = state.arg(size_arg + 1).constant().ok_or_else(|| {
                (
                    format!(
                        "R{} is not a known constant: the size {} returns must be constant",
                        size_arg + 1,
                        def.name
                    ),
                    hints::bad_helper_arg(&def.name, size_arg + 1, "a compile-time constant size"),
                )
            })?;
            let ref_id = def.sig.acquires.map(|k| acquire(state, k));
            RetVal::MemOrNull {
                size,
                id: state.fresh_id(),
                ref_id,
            }
        }
    })
}

#[cfg(test)]
#[path = "helper_tests.rs"]
mod tests;
