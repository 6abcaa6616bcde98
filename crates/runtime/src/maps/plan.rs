//! [`MapCallPlan`]: how compiled code may serve a program's map helper calls on one map without
//! the helper registry.
//!
//! Linux's JIT inlines array look-ups (`map_gen_lookup`) and calls the hash map's look-up function
//! directly; a plan gives a code generator what it needs to do the same for a map of a
//! [`MapTable`](super::MapTable) ([`MapTable::call_plan`](super::MapTable::call_plan)):
//!
//! * arrays and per-CPU arrays: the address, stride and bounds of their value slab, for an inline
//!   look-up (`bpf_map_lookup_elem` only; other operations keep the generic path);
//! * hash and LRU hash maps: the map's address and `extern "sysv64"` functions for look-up,
//!   update and delete that take the program's raw arguments (key and value pointers already
//!   proved valid by the verifier) and return r0 exactly as the registry's helpers do.
//!
//! Every address in a plan stays valid as long as the table it came from is alive: a code
//! generator that embeds them must keep the table (its `Arc`) alive with the code.

use std::ffi::c_void;

/// Direct look-up: `(map, key) -> r0` (the value's address, or 0 when there is none).
pub type LookupFn = unsafe extern "sysv64" fn(map: *const c_void, key: *const u8) -> u64;

/// Direct update: `(map, key, value, flags, cpu) -> r0` (0, or a negative errno as `u64`).
pub type UpdateFn = unsafe extern "sysv64" fn(
    map: *const c_void,
    key: *const u8,
    value: *const u8,
    flags: u64,
    cpu: u64,
) -> u64;

/// Direct delete: `(map, key) -> r0` (0, or a negative errno as `u64`).
pub type DeleteFn = unsafe extern "sysv64" fn(map: *const c_void, key: *const u8) -> u64;

/// How a program's calls of map helpers 1, 2 and 3 on one map may be compiled.
#[derive(Clone, Copy, Debug)]
pub enum MapCallPlan {
    /// `BPF_MAP_TYPE_ARRAY`: look-ups inline.
    Array(ArrayPlan),
    /// `BPF_MAP_TYPE_PERCPU_ARRAY`: look-ups inline, using the run's CPU.
    PercpuArray(PercpuArrayPlan),
    /// `BPF_MAP_TYPE_HASH` and `BPF_MAP_TYPE_LRU_HASH`: direct calls.
    Hash(HashPlan),
}

/// The value slab of an array map.
///
/// A look-up of key `k` (the `u32` at the key pointer) is `values + k * stride` if
/// `k < max_entries`, else NULL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArrayPlan {
    /// Address of element 0.
    pub values: u64,
    /// Distance between elements in bytes (the value size rounded up to 8).
    pub stride: u64,
    /// Number of elements.
    pub max_entries: u32,
}

impl ArrayPlan {
    /// What the inline look-up computes for key `key`: the element's address, or 0.
    pub fn lookup(&self, key: u32) -> u64 {
        if key < self.max_entries {
            self.values + u64::from(key) * self.stride
        } else {
            0
        }
    }
}

/// The slot slab of a per-CPU array map.
///
/// The slot of key `k` on CPU `c` is `values + (k * cpus + c) * stride`; a look-up is NULL when
/// `k >= max_entries` or `c >= cpus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PercpuArrayPlan {
    /// Address of the slot of key 0 on CPU 0.
    pub values: u64,
    /// Distance between slots in bytes (the value size rounded up to 8).
    pub stride: u64,
    /// Number of keys.
    pub max_entries: u32,
    /// Number of CPUs with a slot per key (at least 1).
    pub cpus: u32,
}

impl PercpuArrayPlan {
    /// What the inline look-up computes for key `key` on CPU `cpu`: the slot's address, or 0.
    pub fn lookup(&self, key: u32, cpu: u64) -> u64 {
        if key < self.max_entries && cpu < u64::from(self.cpus) {
            self.values + (u64::from(key) * u64::from(self.cpus) + cpu) * self.stride
        } else {
            0
        }
    }
}

/// Direct-call entry points of a hash or LRU hash map.
///
/// Each function takes [`HashPlan::map`] as its first argument and the program's remaining helper
/// arguments unchanged. None of them unwinds or fails: errors are r0 values.
#[derive(Clone, Copy, Debug)]
pub struct HashPlan {
    /// The map (opaque; only the functions below interpret it).
    pub map: *const c_void,
    /// `bpf_map_lookup_elem`.
    pub lookup: LookupFn,
    /// `bpf_map_update_elem`; `None` when programs may not write the map (the generic path
    /// reports that).
    pub update: Option<UpdateFn>,
    /// `bpf_map_delete_elem`; `None` when programs may not write the map.
    pub delete: Option<DeleteFn>,
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use kflex_object::{GlobalKind, MapSpec, MapType};

    use super::*;
    use crate::maps::{BPF_EXIST, BPF_F_RDONLY_PROG, BPF_NOEXIST, MapOptions, MapTable};

    fn spec(name: &str, map_type: MapType, value_size: u32, max_entries: u32) -> MapSpec {
        MapSpec::new(name, map_type, 4, value_size, max_entries)
    }

    fn table(specs: &[MapSpec], cpus: u32) -> Arc<MapTable> {
        let opts = MapOptions {
            num_cpus: Some(cpus),
            arena_init: None,
        };
        Arc::new(MapTable::create(specs, &opts).unwrap())
    }

    /// `prog_lookup`'s answer as r0.
    fn generic(t: &MapTable, index: usize, key: u32, cpu: u32) -> u64 {
        t.prog_lookup(index, &key.to_le_bytes(), cpu)
            .unwrap()
            .unwrap_or(0)
    }

    #[test]
    fn array_plans_compute_the_generic_lookup() {
        let t = table(
            &[
                spec("a", MapType::Array, 12, 5),
                spec("p", MapType::PercpuArray, 4, 3),
            ],
            3,
        );
        let Some(MapCallPlan::Array(a)) = t.call_plan(0) else {
            panic!("array plan: {:?}", t.call_plan(0));
        };
        assert_eq!((a.stride, a.max_entries), (16, 5));
        for key in [0, 1, 4, 5, 6, u32::MAX] {
            assert_eq!(a.lookup(key), generic(&t, 0, key, 0), "key {key}");
        }
        assert_eq!(a.lookup(4), a.values + 64);
        assert_eq!(a.lookup(5), 0);
        let Some(MapCallPlan::PercpuArray(p)) = t.call_plan(1) else {
            panic!("per-CPU plan: {:?}", t.call_plan(1));
        };
        assert_eq!((p.stride, p.max_entries, p.cpus), (8, 3, 3));
        for key in [0, 2, 3, u32::MAX] {
            for cpu in [0u32, 1, 2] {
                let want = generic(&t, 1, key, cpu);
                assert_eq!(p.lookup(key, u64::from(cpu)), want, "key {key} cpu {cpu}");
            }
            // CPUs without a slot: NULL, as the generic path answers.
            assert_eq!(p.lookup(key, 3), 0);
            assert_eq!(generic(&t, 1, key, 3), 0);
            assert_eq!(p.lookup(key, u64::MAX), 0);
        }
        assert_eq!(p.lookup(2, 1), p.values + (2 * 3 + 1) * 8);
    }

    #[test]
    fn hash_plans_serve_lookup_update_and_delete() {
        let t = table(
            &[
                spec("h", MapType::Hash, 8, 2),
                spec("lru", MapType::LruHash, 8, 2),
            ],
            1,
        );
        for index in [0, 1] {
            let Some(MapCallPlan::Hash(h)) = t.call_plan(index) else {
                panic!("hash plan: {:?}", t.call_plan(index));
            };
            let (update, delete) = (h.update.unwrap(), h.delete.unwrap());
            let k = |i: u32| i.to_le_bytes();
            let v = |x: u64| x.to_le_bytes();
            // SAFETY (every call below): `h.map` comes from the live table `t`; keys and values
            // are 4 and 8 readable bytes, the map's sizes.
            unsafe {
                assert_eq!((h.lookup)(h.map, k(1).as_ptr()), 0, "miss");
                assert_eq!(update(h.map, k(1).as_ptr(), v(11).as_ptr(), 0, 0), 0);
                let addr = (h.lookup)(h.map, k(1).as_ptr());
                assert_eq!(addr, generic(&t, index, 1, 0));
                assert_ne!(addr, 0);
                let errno = |e: i64| e as u64;
                assert_eq!(
                    update(h.map, k(1).as_ptr(), v(5).as_ptr(), BPF_NOEXIST, 0),
                    errno(-17)
                );
                assert_eq!(
                    update(h.map, k(9).as_ptr(), v(5).as_ptr(), BPF_EXIST, 0),
                    errno(-2)
                );
                assert_eq!(
                    update(h.map, k(1).as_ptr(), v(5).as_ptr(), 7, 0),
                    errno(-22)
                );
                assert_eq!(update(h.map, k(2).as_ptr(), v(22).as_ptr(), 0, 0), 0);
                let third = update(h.map, k(3).as_ptr(), v(33).as_ptr(), 0, 0);
                if index == 0 {
                    assert_eq!(third, errno(-7), "a full hash map: E2BIG");
                } else {
                    assert_eq!(third, 0, "a full LRU map evicts");
                    assert_eq!((h.lookup)(h.map, k(1).as_ptr()), 0, "key 1 was oldest");
                }
                assert_eq!(delete(h.map, k(2).as_ptr()), 0);
                assert_eq!(delete(h.map, k(2).as_ptr()), errno(-2));
                assert_eq!((h.lookup)(h.map, k(2).as_ptr()), 0);
            }
            assert_eq!(t.lookup(index, &k(2)).unwrap(), None);
        }
    }

    #[test]
    fn read_only_maps_get_no_direct_writes_and_other_maps_no_plan() {
        let ro = spec("ro", MapType::Hash, 8, 2).with_flags(BPF_F_RDONLY_PROG);
        let mut rodata = spec(".rodata", MapType::Array, 8, 1);
        rodata.global = Some(GlobalKind::Rodata);
        let ring = MapSpec::new("rb", MapType::Ringbuf, 0, 0, 4096);
        let t = table(&[ro, rodata, ring], 1);
        let Some(MapCallPlan::Hash(h)) = t.call_plan(0) else {
            panic!("hash plan: {:?}", t.call_plan(0));
        };
        assert!(h.update.is_none() && h.delete.is_none());
        assert!(matches!(t.call_plan(1), Some(MapCallPlan::Array(_))));
        assert!(
            t.call_plan(2).is_none(),
            "ring buffers keep the generic path"
        );
        assert!(t.call_plan(3).is_none(), "no such map");
    }
}
