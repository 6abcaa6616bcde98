//! [`MapTable`]: every map of one runtime instance, by index, with program-side and host-side APIs.

use std::sync::Arc;

use kflex_object::{GlobalKind, MapSpec, MapType};

use super::arena::Arena;
use super::array::ArrayMap;
use super::hash::HashMapImpl;
use super::percpu_array::PercpuArrayMap;
use super::raw::RawBuf;
use super::ringbuf::RingBuf;
use super::{
    ArrayPlan, BPF_F_RDONLY_PROG, MapCallPlan, MapError, MapOptions, PercpuArrayPlan, page_size,
};
use crate::heap::HeapShare;
use crate::memory::{Elements, MemoryMap, Region, RegionKind};

/// Distance between two map handles.
const HANDLE_STRIDE: u64 = 8;

enum MapKind {
    Array(ArrayMap),
    PercpuArray(PercpuArrayMap),
    Hash(HashMapImpl),
    Ringbuf(Arc<RingBuf>),
    Arena(Arena),
}

struct MapEntry {
    spec: MapSpec,
    kind: MapKind,
}

impl MapEntry {
    fn unsupported(&self, op: &'static str) -> MapError {
        MapError::NotSupported {
            op,
            map_type: self.spec.map_type.name(),
        }
    }

    /// True if programs may not write the map's values.
    fn read_only_for_prog(&self) -> bool {
        self.spec.flags & BPF_F_RDONLY_PROG != 0 || self.spec.global == Some(GlobalKind::Rodata)
    }
}

/// All maps of one runtime instance.
///
/// A map is named by its index (the order of the specs it was created from). Programs name it by its
/// *handle*, the value `lddw src=PSEUDO_MAP_FD` loads: an address owned by the table that lies in no
/// region a program may access.
pub struct MapTable {
    maps: Vec<MapEntry>,
    /// Backing store of the handles (never registered as a region).
    handles: RawBuf,
    cpus: u32,
    /// The memory map of [`MapTable::regions`], built (and checked) on first use.
    memory: std::sync::OnceLock<Result<MemoryMap, String>>,
}

impl std::fmt::Debug for MapTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapTable")
            .field(
                "maps",
                &self.maps.iter().map(|m| &m.spec).collect::<Vec<_>>(),
            )
            .field("cpus", &self.cpus)
            .finish()
    }
}

impl MapTable {
    /// Creates every map in `specs`.
    pub fn create(specs: &[MapSpec], opts: &MapOptions) -> Result<MapTable, MapError> {
        let cpus = opts.cpus();
        let page = page_size();
        let mut maps = Vec::with_capacity(specs.len());
        for spec in specs {
            if spec.global.is_some() && spec.map_type != MapType::Array {
                return Err(MapError::Create {
                    name: spec.name.clone(),
                    reason: "global-data maps must be arrays".into(),
                });
            }
            let kind = match spec.map_type {
                MapType::Array => MapKind::Array(ArrayMap::new(spec)?),
                MapType::PercpuArray => MapKind::PercpuArray(PercpuArrayMap::new(spec, cpus)?),
                MapType::Hash => MapKind::Hash(HashMapImpl::new(spec, false)?),
                MapType::LruHash => MapKind::Hash(HashMapImpl::new(spec, true)?),
                MapType::Ringbuf => MapKind::Ringbuf(Arc::new(RingBuf::new(spec, page)?)),
                MapType::Arena => {
                    MapKind::Arena(Arena::new(spec, page, opts.arena_init.as_deref())?)
                }
            };
            maps.push(MapEntry {
                spec: spec.clone(),
                kind,
            });
        }
        let handles = RawBuf::zeroed(maps.len() as u64 * HANDLE_STRIDE).map_err(|reason| {
            MapError::NoMemory {
                name: "map handles".into(),
                reason,
            }
        })?;
        Ok(MapTable {
            maps,
            handles,
            cpus,
            memory: std::sync::OnceLock::new(),
        })
    }

    /// Number of maps.
    pub fn len(&self) -> usize {
        self.maps.len()
    }

    /// True if there are no maps.
    pub fn is_empty(&self) -> bool {
        self.maps.is_empty()
    }

    /// Number of CPUs per-CPU maps hold a slot for.
    pub fn cpus(&self) -> u32 {
        self.cpus
    }

    /// The spec map `index` was created from.
    pub fn spec(&self, index: usize) -> Option<&MapSpec> {
        self.maps.get(index).map(|m| &m.spec)
    }

    /// The type of map `index`.
    pub fn map_type(&self, index: usize) -> Option<MapType> {
        self.spec(index).map(|s| s.map_type)
    }

    /// The index of the map named `name`.
    pub fn index_of_name(&self, name: &str) -> Option<usize> {
        self.maps.iter().position(|m| m.spec.name == name)
    }

    fn entry(&self, index: usize) -> Result<&MapEntry, MapError> {
        self.maps.get(index).ok_or(MapError::NoSuchMap(index))
    }

    /// The handle of map `index` (what `lddw src=PSEUDO_MAP_FD` loads), or 0 (never a handle) if
    /// there is no such map.
    pub fn handle(&self, index: usize) -> u64 {
        if index < self.maps.len() {
            self.handles.addr() + index as u64 * HANDLE_STRIDE
        } else {
            0
        }
    }

    /// The map a handle stands for.
    pub fn index_of_handle(&self, handle: u64) -> Option<usize> {
        let off = handle.checked_sub(self.handles.addr())?;
        if off % HANDLE_STRIDE != 0 {
            return None;
        }
        let i = usize::try_from(off / HANDLE_STRIDE).ok()?;
        (i < self.maps.len()).then_some(i)
    }

    /// The address `lddw src=PSEUDO_MAP_VALUE` loads: for single-entry arrays (global data) the
    /// address of the value plus `offset` (`offset < value_size`), for the arena the heap start plus
    /// `offset` (`offset <` heap size). `None` otherwise, as Linux refuses the load.
    pub fn value_address(&self, index: usize, offset: u64) -> Option<u64> {
        match &self.maps.get(index)?.kind {
            MapKind::Array(a) => a.direct_value_addr(offset),
            MapKind::Arena(a) => (offset < a.len()).then(|| a.base() + offset),
            _ => None,
        }
    }

    /// A memory map holding [`MapTable::regions`] (what every run of the table's programs
    /// starts from), copied from one built on first use: no region is inserted one by one
    /// again. Fails if the regions overlap, which no table the runtime creates does.
    ///
    /// # Safety
    /// The map's regions are this table's memory: the caller must keep the table alive (and
    /// access the memory only through raw pointers) for as long as the map holds them, as with
    /// inserting [`MapTable::regions`] into a map of its own.
    pub unsafe fn memory_map(&self) -> Result<MemoryMap, String> {
        let template = self.memory.get_or_init(|| {
            let mut mem = MemoryMap::new();
            for region in self.regions() {
                // SAFETY: the regions describe value memory owned by this table, which the
                // template lives inside of (it is dropped with the table); nothing reads it.
                unsafe { mem.insert(region) }.map_err(|e| format!("map memory layout: {e}"))?;
            }
            Ok(mem)
        });
        template
            .as_ref()
            .map(MemoryMap::duplicate)
            .map_err(Clone::clone)
    }

    /// Every region programs may touch through maps (value slabs and heaps); the caller inserts
    /// them into its [`MemoryMap`] (or takes [`MapTable::memory_map`]). Ring buffer samples are
    /// registered per reservation instead.
    pub fn regions(&self) -> Vec<Region> {
        let mut out = Vec::new();
        for (i, m) in self.maps.iter().enumerate() {
            let writable = !m.read_only_for_prog();
            let value_size = m.spec.value_size as u64;
            let slab = |start: u64, len: u64, stride: u64| Region {
                start,
                len,
                kind: RegionKind::MapValue(i as u32),
                writable,
                elements: Some(Elements {
                    stride,
                    size: value_size,
                }),
            };
            match &m.kind {
                MapKind::Array(a) => out.push(slab(a.base(), a.slab_len(), a.stride())),
                MapKind::PercpuArray(a) => out.push(slab(a.base(), a.slab_len(), a.stride())),
                MapKind::Hash(h) => out.push(slab(h.base(), h.slab_len(), h.stride())),
                MapKind::Ringbuf(_) => {}
                MapKind::Arena(a) => out.push(Region {
                    start: a.base(),
                    len: a.len(),
                    kind: RegionKind::Heap,
                    writable: true,
                    elements: None,
                }),
            }
        }
        out
    }

    // ---- program-side operations (used by helpers and engines) ----

    /// How compiled code may serve `bpf_map_lookup_elem`/`update_elem`/`delete_elem` on map
    /// `index` without the helper registry (see [`MapCallPlan`]); `None` for map types whose
    /// calls keep the generic path (and for a missing map). Update and delete are absent from
    /// the plan of a map programs may only read.
    pub fn call_plan(&self, index: usize) -> Option<MapCallPlan> {
        let m = self.maps.get(index)?;
        match &m.kind {
            MapKind::Array(a) => Some(MapCallPlan::Array(ArrayPlan {
                values: a.base(),
                stride: a.stride(),
                max_entries: a.max_entries(),
            })),
            MapKind::PercpuArray(a) => Some(MapCallPlan::PercpuArray(PercpuArrayPlan {
                values: a.base(),
                stride: a.stride(),
                max_entries: a.max_entries(),
                cpus: a.cpus(),
            })),
            MapKind::Hash(h) => Some(MapCallPlan::Hash(h.call_plan(!m.read_only_for_prog()))),
            MapKind::Ringbuf(_) | MapKind::Arena(_) => None,
        }
    }

    /// `bpf_map_lookup_elem` from a program on `cpu`: the value's address, or `None` (NULL).
    /// Ring buffers and arenas refuse with [`MapError::NotSupported`].
    pub fn prog_lookup(&self, index: usize, key: &[u8], cpu: u32) -> Result<Option<u64>, MapError> {
        let m = self.entry(index)?;
        match &m.kind {
            MapKind::Array(a) => a.lookup_addr(key),
            MapKind::PercpuArray(a) => a.lookup_addr(key, cpu),
            MapKind::Hash(h) => h.lookup_addr(key),
            MapKind::Ringbuf(_) | MapKind::Arena(_) => Err(m.unsupported("lookup")),
        }
    }

    /// `bpf_map_update_elem` from a program on `cpu` (per-CPU maps update that CPU's slot).
    pub fn prog_update(
        &self,
        index: usize,
        key: &[u8],
        value: &[u8],
        flags: u64,
        cpu: u32,
    ) -> Result<(), MapError> {
        let m = self.entry(index)?;
        if m.read_only_for_prog() {
            return Err(m.unsupported("update from a program of a read-only map"));
        }
        match &m.kind {
            MapKind::Array(a) => a.update(key, value, flags),
            MapKind::PercpuArray(a) => a.update_cpu(key, value, flags, cpu),
            MapKind::Hash(h) => h.update(key, value, flags),
            MapKind::Ringbuf(_) | MapKind::Arena(_) => Err(m.unsupported("update")),
        }
    }

    /// `bpf_map_delete_elem` from a program.
    pub fn prog_delete(&self, index: usize, key: &[u8]) -> Result<(), MapError> {
        let m = self.entry(index)?;
        if m.read_only_for_prog() {
            return Err(m.unsupported("delete from a program of a read-only map"));
        }
        self.delete(index, key)
    }

    /// The ring buffer of map `index`.
    pub fn ringbuf(&self, index: usize) -> Option<&Arc<RingBuf>> {
        match &self.maps.get(index)?.kind {
            MapKind::Ringbuf(r) => Some(r),
            _ => None,
        }
    }

    // ---- host-side operations ----

    /// Copies the value at `key` out; `None` if there is none. Per-CPU arrays return every CPU's
    /// value in Linux's user-space layout (each padded to 8 bytes).
    pub fn lookup(&self, index: usize, key: &[u8]) -> Result<Option<Vec<u8>>, MapError> {
        let m = self.entry(index)?;
        match &m.kind {
            MapKind::Array(a) => a.lookup(key),
            MapKind::PercpuArray(a) => a.lookup_flat(key),
            MapKind::Hash(h) => h.lookup(key),
            MapKind::Ringbuf(_) | MapKind::Arena(_) => Err(m.unsupported("lookup")),
        }
    }

    /// Creates or updates the element at `key` (`flags`: `BPF_ANY`, `BPF_NOEXIST`, `BPF_EXIST`).
    /// Per-CPU arrays take every CPU's value in Linux's user-space layout.
    pub fn update(
        &self,
        index: usize,
        key: &[u8],
        value: &[u8],
        flags: u64,
    ) -> Result<(), MapError> {
        let m = self.entry(index)?;
        match &m.kind {
            MapKind::Array(a) => a.update(key, value, flags),
            MapKind::PercpuArray(a) => a.update_all(key, value, flags),
            MapKind::Hash(h) => h.update(key, value, flags),
            MapKind::Ringbuf(_) | MapKind::Arena(_) => Err(m.unsupported("update")),
        }
    }

    /// Deletes the element at `key`.
    pub fn delete(&self, index: usize, key: &[u8]) -> Result<(), MapError> {
        let m = self.entry(index)?;
        match &m.kind {
            MapKind::Array(a) => a.delete(key),
            MapKind::PercpuArray(_) => {
                crate::maps::array::array_index(key)?;
                Err(MapError::Invalid("array elements cannot be deleted".into()))
            }
            MapKind::Hash(h) => h.delete(key),
            MapKind::Ringbuf(_) | MapKind::Arena(_) => Err(m.unsupported("delete")),
        }
    }

    /// Every key of the map (arrays: every index; hashes: sorted).
    pub fn keys(&self, index: usize) -> Result<Vec<Vec<u8>>, MapError> {
        let m = self.entry(index)?;
        let indices = |n: u32| (0..n).map(|i| i.to_le_bytes().to_vec()).collect();
        match &m.kind {
            MapKind::Array(a) => Ok(indices(a.max_entries())),
            MapKind::PercpuArray(a) => Ok(indices(a.max_entries())),
            MapKind::Hash(h) => Ok(h.keys()),
            MapKind::Ringbuf(_) | MapKind::Arena(_) => Err(m.unsupported("keys")),
        }
    }

    /// Every CPU's value at `key` of a per-CPU array (each `value_size` bytes).
    pub fn lookup_percpu(&self, index: usize, key: &[u8]) -> Result<Vec<Vec<u8>>, MapError> {
        let m = self.entry(index)?;
        match &m.kind {
            MapKind::PercpuArray(a) => a.lookup_percpu(key)?.ok_or(MapError::NotFound),
            _ => Err(m.unsupported("per-CPU lookup")),
        }
    }

    /// Consumes the submitted records of ring buffer `index`, in order, skipping discarded ones.
    pub fn ringbuf_consume(&self, index: usize) -> Result<Vec<Vec<u8>>, MapError> {
        let m = self.entry(index)?;
        match &m.kind {
            MapKind::Ringbuf(r) => Ok(r.consume()),
            _ => Err(m.unsupported("ringbuf consume")),
        }
    }

    /// Start and length of arena `index`.
    pub fn heap(&self, index: usize) -> Result<(u64, u64), MapError> {
        let m = self.entry(index)?;
        match &m.kind {
            MapKind::Arena(a) => Ok((a.base(), a.len())),
            _ => Err(m.unsupported("heap")),
        }
    }

    /// What a second process needs to map arena `index` at the same address, so that heap
    /// pointers are identical on both sides: its memfd, base and size. Pass
    /// [`HeapShare::inheritable_fd`] to a child and have it call
    /// [`SharedHeap::attach`](crate::heap::SharedHeap::attach) (or `attach_guarded` to run
    /// extensions against it too).
    pub fn heap_share(&self, index: usize) -> Result<HeapShare<'_>, MapError> {
        let m = self.entry(index)?;
        match &m.kind {
            MapKind::Arena(a) => Ok(a.share()),
            _ => Err(m.unsupported("heap share")),
        }
    }

    /// Copies `len` bytes at `offset` out of arena `index`.
    pub fn heap_read(&self, index: usize, offset: u64, len: usize) -> Result<Vec<u8>, MapError> {
        let m = self.entry(index)?;
        match &m.kind {
            MapKind::Arena(a) => a.read(offset, len).ok_or_else(|| {
                MapError::Invalid(format!("{len} bytes at {offset:#x} leave the heap"))
            }),
            _ => Err(m.unsupported("heap read")),
        }
    }

    /// Copies `data` into arena `index` at `offset`.
    pub fn heap_write(&self, index: usize, offset: u64, data: &[u8]) -> Result<(), MapError> {
        let m = self.entry(index)?;
        match &m.kind {
            MapKind::Arena(a) => a.write(offset, data).then_some(()).ok_or_else(|| {
                MapError::Invalid(format!(
                    "{} bytes at {offset:#x} leave the heap",
                    data.len()
                ))
            }),
            _ => Err(m.unsupported("heap write")),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::process::Command;

    use super::*;
    use crate::heap::SharedHeap;

    /// Selects the child role of [`an_arena_is_shared_with_a_child_process`]: `fd,base,size`.
    const CHILD_ENV: &str = "KFLEX_MAP_HEAP_SHARE";
    const CHILD_TEST: &str = "maps::table::tests::heap_share_child";

    fn table() -> MapTable {
        let arena = MapSpec::new("heap", MapType::Arena, 0, 0, 16).with_flags(0x400);
        let array = MapSpec::new("array", MapType::Array, 4, 8, 1).with_flags(0x400);
        MapTable::create(&[array, arena], &MapOptions::default()).unwrap()
    }

    fn word(bytes: &[u8]) -> u64 {
        u64::from_le_bytes(bytes.try_into().unwrap())
    }

    /// Child role (a no-op unless [`CHILD_ENV`] is set): maps the heap at the parent's base,
    /// follows the absolute pointer at offset 0 to the parent's message, and answers by storing a
    /// pointer to its own message at offset 8.
    #[test]
    fn heap_share_child() {
        let Ok(arg) = std::env::var(CHILD_ENV) else {
            return;
        };
        let v: Vec<u64> = arg.split(',').map(|n| n.parse().unwrap()).collect();
        // SAFETY: the parent passed this inherited descriptor for the child to own.
        let fd = unsafe { OwnedFd::from_raw_fd(v[0] as i32) };
        let heap = SharedHeap::attach(fd, v[1], v[2]).expect("attach at the parent's base");
        let mut b = [0u8; 8];
        heap.read(0, &mut b).unwrap();
        let ptr = word(&b);
        assert!(heap.contains(ptr, 5), "{ptr:#x}");
        let mut msg = [0u8; 5];
        heap.read(ptr - heap.base(), &mut msg).unwrap();
        assert_eq!(&msg, b"hello");
        heap.write(512, b"child").unwrap();
        heap.write(8, &(heap.base() + 512).to_le_bytes()).unwrap();
    }

    #[test]
    fn an_arena_is_shared_with_a_child_process() {
        let t = table();
        assert!(matches!(
            t.heap_share(0),
            Err(MapError::NotSupported { .. })
        ));
        assert!(t.heap_share(7).is_err());
        let share = t.heap_share(1).unwrap();
        assert_eq!((share.base, share.size), t.heap(1).unwrap());
        t.heap_write(1, 256, b"hello").unwrap();
        t.heap_write(1, 0, &(share.base + 256).to_le_bytes())
            .unwrap();
        let fd = share.inheritable_fd().unwrap();
        let status = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", CHILD_TEST, "--test-threads=1"])
            .env(
                CHILD_ENV,
                format!("{},{},{}", fd.as_raw_fd(), share.base, share.size),
            )
            .status()
            .unwrap();
        drop(fd);
        assert!(status.success(), "child failed: {status:?}");
        let ptr = word(&t.heap_read(1, 8, 8).unwrap());
        assert_eq!(
            ptr,
            share.base + 512,
            "the child's pointer is valid here too"
        );
        assert_eq!(t.heap_read(1, ptr - share.base, 5).unwrap(), b"child");
    }
}
