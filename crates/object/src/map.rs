//! Map definitions as an object declares them (BTF-defined maps in `.maps`, and the global-data
//! sections `.data`, `.rodata`, `.bss` which become single-entry array maps, as in libbpf).

/// Linux map types kflex knows, with their `enum bpf_map_type` numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MapType {
    /// `BPF_MAP_TYPE_HASH` (1).
    Hash,
    /// `BPF_MAP_TYPE_ARRAY` (2).
    Array,
    /// `BPF_MAP_TYPE_PERCPU_ARRAY` (6).
    PercpuArray,
    /// `BPF_MAP_TYPE_LRU_HASH` (9).
    LruHash,
    /// `BPF_MAP_TYPE_RINGBUF` (27).
    Ringbuf,
    /// `BPF_MAP_TYPE_ARENA` (33): the extension heap.
    Arena,
}

impl MapType {
    /// The Linux `enum bpf_map_type` value.
    pub const fn linux_id(self) -> u32 {
        match self {
            MapType::Hash => 1,
            MapType::Array => 2,
            MapType::PercpuArray => 6,
            MapType::LruHash => 9,
            MapType::Ringbuf => 27,
            MapType::Arena => 33,
        }
    }

    /// Maps a Linux `enum bpf_map_type` value to a kflex map type, if supported.
    pub const fn from_linux_id(id: u32) -> Option<Self> {
        Some(match id {
            1 => MapType::Hash,
            2 => MapType::Array,
            6 => MapType::PercpuArray,
            9 => MapType::LruHash,
            27 => MapType::Ringbuf,
            33 => MapType::Arena,
            _ => return None,
        })
    }

    /// The libbpf-style lower-case name (`hash`, `array`, `percpu_array`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            MapType::Hash => "hash",
            MapType::Array => "array",
            MapType::PercpuArray => "percpu_array",
            MapType::LruHash => "lru_hash",
            MapType::Ringbuf => "ringbuf",
            MapType::Arena => "arena",
        }
    }
}

/// What kind of global-data section a map stands for, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GlobalKind {
    /// `.data` (and `.data.*`): initialised, writable.
    Data,
    /// `.rodata` (and `.rodata.*`): initialised, read-only for the program.
    Rodata,
    /// `.bss`: zero-initialised, writable.
    Bss,
}

/// One map as declared by an object, ready to be created by a runtime or the Linux kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapSpec {
    /// Map name (the C variable name, or the section name for global data).
    pub name: String,
    /// Map type.
    pub map_type: MapType,
    /// Key size in bytes (0 for ringbuf and arena).
    pub key_size: u32,
    /// Value size in bytes (0 for ringbuf and arena).
    pub value_size: u32,
    /// `max_entries`: entries, ringbuf bytes, or arena pages.
    pub max_entries: u32,
    /// `map_flags` (e.g. `BPF_F_NO_PREALLOC`, `BPF_F_MMAPABLE`, `BPF_F_RDONLY_PROG`).
    pub flags: u32,
    /// `map_extra` (for arena: the requested user-space address, 0 for any).
    pub map_extra: u64,
    /// Set for maps that stand for a global-data section.
    pub global: Option<GlobalKind>,
    /// Initial contents of the single value of a global-data map (`value_size` bytes); for the
    /// arena map, the initial image of the start of the heap (the `.addr_space.1` globals).
    pub initial_value: Option<Vec<u8>>,
}

/// `BPF_F_RDONLY_PROG`: the program may only read the map (set on `.rodata` maps).
pub const BPF_F_RDONLY_PROG: u32 = 0x80;

/// `BPF_F_MMAPABLE`: the map may be mapped into user space.
pub const BPF_F_MMAPABLE: u32 = 0x400;

impl MapSpec {
    /// A plain map: no flags, no `map_extra`, not a global-data map, no initial value.
    pub fn new(
        name: impl Into<String>,
        map_type: MapType,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
    ) -> MapSpec {
        MapSpec {
            name: name.into(),
            map_type,
            key_size,
            value_size,
            max_entries,
            flags: 0,
            map_extra: 0,
            global: None,
            initial_value: None,
        }
    }

    /// The same map with `map_flags` set to `flags`.
    pub fn with_flags(self, flags: u32) -> Self {
        MapSpec { flags, ..self }
    }
}

impl GlobalKind {
    /// The global-data kind a section name stands for (`.data`, `.data.*`, `.rodata`,
    /// `.rodata.*`, `.bss`, `.bss.*`), if any.
    pub fn from_section(name: &str) -> Option<Self> {
        let is = |base: &str| {
            name == base
                || name
                    .strip_prefix(base)
                    .is_some_and(|rest| rest.starts_with('.'))
        };
        if is(".data") {
            Some(GlobalKind::Data)
        } else if is(".rodata") {
            Some(GlobalKind::Rodata)
        } else if is(".bss") {
            Some(GlobalKind::Bss)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_sections() {
        assert_eq!(GlobalKind::from_section(".data"), Some(GlobalKind::Data));
        assert_eq!(
            GlobalKind::from_section(".data.foo"),
            Some(GlobalKind::Data)
        );
        assert_eq!(
            GlobalKind::from_section(".rodata.str1.1"),
            Some(GlobalKind::Rodata)
        );
        assert_eq!(GlobalKind::from_section(".bss"), Some(GlobalKind::Bss));
        assert_eq!(GlobalKind::from_section(".database"), None);
        assert_eq!(GlobalKind::from_section(".rodatax"), None);
        assert_eq!(GlobalKind::from_section(".text"), None);
    }

    #[test]
    fn new_is_a_plain_map() {
        let m = MapSpec::new("counts", MapType::Hash, 4, 8, 16);
        assert_eq!(m.name, "counts");
        assert_eq!(m.map_type, MapType::Hash);
        assert_eq!((m.key_size, m.value_size, m.max_entries), (4, 8, 16));
        assert_eq!((m.flags, m.map_extra), (0, 0));
        assert!(m.global.is_none() && m.initial_value.is_none());
        let m = m.with_flags(BPF_F_RDONLY_PROG);
        assert_eq!(m.flags, BPF_F_RDONLY_PROG);
        assert_eq!((m.key_size, m.value_size, m.max_entries), (4, 8, 16));
    }

    #[test]
    fn linux_ids_round_trip() {
        for t in [
            MapType::Hash,
            MapType::Array,
            MapType::PercpuArray,
            MapType::LruHash,
            MapType::Ringbuf,
            MapType::Arena,
        ] {
            assert_eq!(MapType::from_linux_id(t.linux_id()), Some(t));
        }
        assert_eq!(MapType::from_linux_id(3), None);
    }
}
