//! Builds the object's map list: BTF-defined maps from `.maps`, one array map per global-data
//! section, and the arena's initial image from `.addr_space.1`.

use std::collections::HashMap;

use crate::btf::{Btf, BtfKind, TypeId};
use crate::elf::Elf;
use crate::error::LoadError;
use crate::map::{BPF_F_RDONLY_PROG, GlobalKind, MapSpec, MapType};

/// Section holding BTF-defined maps.
pub(crate) const MAPS_SECTION: &str = ".maps";
/// Section of legacy `struct bpf_map_def` maps.
pub(crate) const LEGACY_MAPS_SECTION: &str = "maps";
/// Section holding `__arena` globals.
pub(crate) const ARENA_SECTION: &str = ".addr_space.1";
/// Largest global-data section accepted, in bytes.
const MAX_GLOBAL_SIZE: u64 = 64 << 20;
/// Arena page size.
const ARENA_PAGE: u64 = 4096;

/// The maps of an object and how relocations find them.
#[derive(Debug, Default)]
pub(crate) struct LoadedMaps {
    /// Map specs in index order.
    pub specs: Vec<MapSpec>,
    /// `(offset in .maps, map index)` for BTF-defined maps.
    pub by_offset: Vec<(u64, usize)>,
    /// Global-data section index to map index.
    pub by_section: HashMap<usize, usize>,
    /// Index of the arena map, if any.
    pub arena: Option<usize>,
}

/// Collects all maps of `elf`.
pub(crate) fn load_maps(elf: &Elf<'_>, btf: Option<&Btf>) -> Result<LoadedMaps, LoadError> {
    if elf.section_by_name(LEGACY_MAPS_SECTION).is_some() {
        return Err(LoadError::in_section(
            LEGACY_MAPS_SECTION,
            "legacy struct bpf_map_def maps are not supported; declare maps with BTF \
             (__uint/__type members) in SEC(\".maps\")",
        ));
    }
    let mut out = LoadedMaps::default();
    if let Some(sec) = elf.section_by_name(MAPS_SECTION) {
        let btf = btf.ok_or_else(|| {
            LoadError::in_section(MAPS_SECTION, "BTF-defined maps need a .BTF section")
        })?;
        load_btf_maps(elf, sec.index, btf, &mut out).map_err(|e| e.or_section(MAPS_SECTION))?;
    }
    for sec in &elf.sections {
        let Some(kind) = GlobalKind::from_section(&sec.name) else {
            continue;
        };
        if sec.size == 0 || sec.is_exec() {
            continue;
        }
        if sec.size > MAX_GLOBAL_SIZE {
            return Err(LoadError::in_section(
                &sec.name,
                format!(
                    "global data of {} bytes exceeds the limit of {MAX_GLOBAL_SIZE}",
                    sec.size
                ),
            ));
        }
        let initial = if sec.sh_type == object::elf::SHT_NOBITS {
            vec![0; sec.size as usize]
        } else {
            sec.data.to_vec()
        };
        out.by_section.insert(sec.index, out.specs.len());
        out.specs.push(MapSpec {
            name: sec.name.clone(),
            map_type: MapType::Array,
            key_size: 4,
            value_size: sec.size as u32,
            max_entries: 1,
            flags: if kind == GlobalKind::Rodata {
                BPF_F_RDONLY_PROG
            } else {
                0
            },
            map_extra: 0,
            global: Some(kind),
            initial_value: Some(initial),
        });
    }
    if let Some(sec) = elf.section_by_name(ARENA_SECTION) {
        load_arena_image(sec, &mut out)?;
    }
    Ok(out)
}

fn load_arena_image(sec: &crate::elf::Section<'_>, out: &mut LoadedMaps) -> Result<(), LoadError> {
    let err = |m: String| LoadError::in_section(ARENA_SECTION, m);
    let idx = out.arena.ok_or_else(|| {
        err("__arena globals need an arena map (BPF_MAP_TYPE_ARENA) in the object".into())
    })?;
    let Some(spec) = out.specs.get_mut(idx) else {
        return Err(err("arena map index out of range".into()));
    };
    let heap = u64::from(spec.max_entries).saturating_mul(ARENA_PAGE);
    if sec.size > heap.min(MAX_GLOBAL_SIZE) {
        return Err(err(format!(
            "{} bytes of __arena globals do not fit in arena {} ({heap} bytes)",
            sec.size, spec.name
        )));
    }
    spec.initial_value = Some(if sec.sh_type == object::elf::SHT_NOBITS {
        vec![0; sec.size as usize]
    } else {
        sec.data.to_vec()
    });
    out.by_section.insert(sec.index, idx);
    Ok(())
}

fn load_btf_maps(
    elf: &Elf<'_>,
    maps_sec: usize,
    btf: &Btf,
    out: &mut LoadedMaps,
) -> Result<(), LoadError> {
    let vars = btf.datasec(MAPS_SECTION).ok_or_else(|| {
        LoadError::in_section(MAPS_SECTION, "no BTF DATASEC describes the .maps section")
    })?;
    for v in vars {
        let (name, ty) = match btf.ty(v.ty) {
            Some(t) => match t.kind {
                BtfKind::Var { ty, .. } => (t.name.clone(), ty),
                _ => {
                    return Err(LoadError::new(format!(
                        "DATASEC entry type {} is not a VAR",
                        v.ty
                    )));
                }
            },
            None => {
                return Err(LoadError::new(format!(
                    "DATASEC entry type {} out of range",
                    v.ty
                )));
            }
        };
        let spec = parse_map_def(btf, &name, ty)
            .map_err(|e| LoadError::new(format!("map {name}: {e}")))?;
        let offset = elf
            .symbols
            .iter()
            .find(|s| s.section == Some(maps_sec) && s.name == name)
            .map_or(u64::from(v.offset), |s| s.value);
        if spec.map_type == MapType::Arena {
            if let Some(prev) = out.arena.and_then(|i| out.specs.get(i)) {
                return Err(LoadError::new(format!(
                    "map {name}: a second arena map (the first is {}); only one heap is supported",
                    prev.name
                )));
            }
            out.arena = Some(out.specs.len());
        }
        out.by_offset.push((offset, out.specs.len()));
        out.specs.push(spec);
    }
    Ok(())
}

/// Decodes one libbpf map definition struct.
fn parse_map_def(btf: &Btf, name: &str, ty: TypeId) -> Result<MapSpec, String> {
    let resolved = btf.resolve(ty)?;
    let Some(BtfKind::Struct { members, .. }) = btf.ty(resolved).map(|t| &t.kind) else {
        return Err("definition is not a struct".into());
    };
    let (mut map_type, mut key_size, mut value_size) = (None, None, None);
    let (mut max_entries, mut flags, mut extra) = (0u32, 0u32, 0u64);
    for m in members {
        let set = |slot: &mut Option<u32>, v: u32, what: &str| -> Result<(), String> {
            match slot {
                Some(old) if *old != v => Err(format!("{what} given twice ({old} and {v})")),
                _ => {
                    *slot = Some(v);
                    Ok(())
                }
            }
        };
        let member = m.name.as_str();
        let ctx = |e: String| format!("member {member}: {e}");
        match member {
            "type" => map_type = Some(uint_member(btf, m.ty).map_err(ctx)?),
            "max_entries" => max_entries = uint_member(btf, m.ty).map_err(ctx)?,
            "map_flags" => flags = uint_member(btf, m.ty).map_err(ctx)?,
            "map_extra" => extra = ulong_member(btf, m.ty).map_err(ctx)?,
            "key_size" => set(
                &mut key_size,
                uint_member(btf, m.ty).map_err(ctx)?,
                "key size",
            )?,
            "value_size" => set(
                &mut value_size,
                uint_member(btf, m.ty).map_err(ctx)?,
                "value size",
            )?,
            "key" => set(
                &mut key_size,
                type_member(btf, m.ty).map_err(ctx)?,
                "key size",
            )?,
            "value" => set(
                &mut value_size,
                type_member(btf, m.ty).map_err(ctx)?,
                "value size",
            )?,
            "pinning" => {}
            other => return Err(format!("unsupported map definition member `{other}`")),
        }
    }
    let id = map_type.ok_or("missing `type` member")?;
    let map_type =
        MapType::from_linux_id(id).ok_or_else(|| format!("unsupported map type {id}"))?;
    Ok(MapSpec {
        name: name.to_string(),
        map_type,
        key_size: key_size.unwrap_or(0),
        value_size: value_size.unwrap_or(0),
        max_entries,
        flags,
        map_extra: extra,
        global: None,
        initial_value: None,
    })
}

/// `__uint(name, val)`: a pointer to an array of `val` elements (values above `u32::MAX` are
/// rejected; use [`ulong_member`] for 64-bit fields).
fn uint_member(btf: &Btf, ty: TypeId) -> Result<u32, String> {
    let v = ulong_member(btf, ty)?;
    u32::try_from(v).map_err(|_| format!("value {v} does not fit in 32 bits"))
}

/// `__uint(name, val)`, or `__ulong(name, val)`: an anonymous enum whose one enumerator is `val`.
fn ulong_member(btf: &Btf, ty: TypeId) -> Result<u64, String> {
    const WANT: &str = "expected __uint(...) (a pointer to an array) or __ulong(...) (an enum)";
    let t = btf.resolve(ty)?;
    match btf.ty(t).map(|t| &t.kind) {
        Some(BtfKind::Ptr(target)) => {
            let arr = btf.resolve(*target)?;
            match btf.ty(arr).map(|t| &t.kind) {
                Some(BtfKind::Array { nelems, .. }) => Ok(u64::from(*nelems)),
                _ => Err(WANT.into()),
            }
        }
        Some(BtfKind::Enum { values, .. }) => match values.as_slice() {
            [one] => Ok(one.value as u64),
            _ => Err(WANT.into()),
        },
        _ => Err(WANT.into()),
    }
}

/// `__type(name, T)`: a pointer to `T`; yields `sizeof(T)`.
fn type_member(btf: &Btf, ty: TypeId) -> Result<u32, String> {
    let ptr = btf.resolve(ty)?;
    let Some(BtfKind::Ptr(target)) = btf.ty(ptr).map(|t| &t.kind) else {
        return Err("expected __type(...) (a pointer to the type)".into());
    };
    let size = btf.size_of(*target)?;
    u32::try_from(size).map_err(|_| format!("type size {size} too large"))
}
