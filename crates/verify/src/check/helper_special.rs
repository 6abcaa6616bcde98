//! Helper argument rules for the special kinds (constant strings, spin locks) and Linux's
//! per-helper map-type rules.

use kflex_object::{MapSpec, MapType};
use kflex_runtime::helpers::{ArgKind, HelperDef, ResourceKind, ids};

use super::{ArgError, ArgVal};
use crate::check::resources::LockTarget;
use crate::hints;

pub(super) fn check_const_str(
    reg: u8,
    v: &ArgVal,
    maps: &[MapSpec],
    name: &str,
) -> Result<(), ArgError> {
    let bad = |why: String| -> ArgError {
        (
            format!("R{reg} {why}: argument {reg} of {name} must be a constant string"),
            hints::bad_helper_arg(name, reg, "a pointer to a string constant in .rodata"),
        )
    };
    let ArgVal::MapValue {
        map,
        min,
        max,
        nullable: false,
        ..
    } = *v
    else {
        return Err(bad(format!("type={}", v.kind_name())));
    };
    let Some(spec) = maps.get(map as usize) else {
        return Err(bad(format!("points into unknown map #{map}")));
    };
    let read_only = spec.global == Some(kflex_object::GlobalKind::Rodata)
        || spec.flags & kflex_object::BPF_F_RDONLY_PROG != 0;
    if !read_only {
        return Err(bad(format!(
            "points into map {}, which the program can write",
            spec.name
        )));
    }
    if min != max {
        return Err(bad("has a variable offset".to_string()));
    }
    let data = spec.initial_value.as_deref().unwrap_or(&[]);
    let start = usize::try_from(min).map_err(|_| bad(format!("has negative offset {min}")))?;
    match data.get(start..) {
        Some(rest) if rest.contains(&0) => Ok(()),
        _ => Err(bad(format!(
            "at offset {min} of {} has no NUL terminator",
            spec.name
        ))),
    }
}

pub(super) fn lock_target(
    reg: u8,
    v: &ArgVal,
    maps: &[MapSpec],
    name: &str,
) -> Result<LockTarget, ArgError> {
    let bad = |why: String| -> ArgError {
        (
            format!(
                "R{reg} {why}: argument {reg} of {name} must point to a struct bpf_spin_lock in a map value or the heap"
            ),
            hints::bad_helper_arg(name, reg, "a pointer to a struct bpf_spin_lock field"),
        )
    };
    match *v {
        ArgVal::MapValue { nullable: true, .. } => Err((
            format!("R{reg} type=map_value_or_null: argument {reg} of {name} may be NULL"),
            hints::possibly_null("map value"),
        )),
        ArgVal::MapValue {
            map, id, min, max, ..
        } => {
            if min != max {
                return Err(bad("has a variable offset".to_string()));
            }
            let size = maps
                .get(map as usize)
                .map(|s| i64::from(s.value_size))
                .unwrap_or(0);
            if min < 0 || min % 4 != 0 || min + 4 > size {
                return Err(bad(format!(
                    "offset {min} is not an aligned 4-byte word inside the {size}-byte value"
                )));
            }
            Ok(LockTarget::MapValue {
                map,
                value: id,
                off: min,
            })
        }
        ArgVal::Heap { off } => {
            if off.is_some_and(|o| o % 4 != 0) {
                return Err(bad("is not 4-byte aligned".to_string()));
            }
            Ok(LockTarget::Heap { off })
        }
        _ => Err(bad(format!("type={}", v.kind_name()))),
    }
}

/// Linux's per-helper map type rules.
pub(super) fn check_map_type(
    def: &HelperDef,
    maps: &[MapSpec],
    map: Option<u32>,
) -> Result<(), String> {
    let Some(spec) = map.and_then(|m| maps.get(m as usize)) else {
        return Ok(());
    };
    let t = spec.map_type;
    let keyed = def
        .sig
        .args
        .iter()
        .any(|a| matches!(a, ArgKind::MapKey | ArgKind::MapValue));
    let ringbuf_helper = matches!(
        def.id,
        ids::RINGBUF_OUTPUT | ids::RINGBUF_RESERVE | ids::RINGBUF_QUERY
    ) || def.sig.acquires == Some(ResourceKind::RingbufSample);
    if ringbuf_helper && t != MapType::Ringbuf {
        return Err(format!(
            "{} needs a ring buffer map, but {} is a {} map",
            def.name,
            spec.name,
            t.name()
        ));
    }
    if keyed && matches!(t, MapType::Ringbuf | MapType::Arena) {
        return Err(format!(
            "{} cannot be used on {} map {}: it has no keys or values",
            def.name,
            t.name(),
            spec.name
        ));
    }
    Ok(())
}
