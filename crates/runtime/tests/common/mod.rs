//! Shared fixture: a map table, a memory map with a stack-like buffer and the map regions, an
//! environment, and the default helper registry.

#![allow(dead_code)]

use std::sync::Arc;

use kflex_object::{GlobalKind, MapSpec, MapType};
use kflex_runtime::helpers::HelperError;
use kflex_runtime::maps::{BPF_F_RDONLY_PROG, MapOptions, MapTable};
use kflex_runtime::{ExecEnv, HelperCall, HelperRegistry, MemoryMap, Region, RegionKind};

pub const ARRAY: usize = 0;
pub const HASH: usize = 1;
pub const RINGBUF: usize = 2;
pub const PERCPU: usize = 3;
pub const RODATA: usize = 4;
pub const LRU: usize = 5;
pub const ARENA: usize = 6;
pub const STACK_LEN: usize = 512;

pub fn spec(name: &str, t: MapType, key: u32, value: u32, max: u32) -> MapSpec {
    MapSpec::new(name, t, key, value, max)
}

pub fn specs() -> Vec<MapSpec> {
    let mut rodata = spec(".rodata", MapType::Array, 4, 6, 1);
    rodata.flags = BPF_F_RDONLY_PROG;
    rodata.global = Some(GlobalKind::Rodata);
    rodata.initial_value = Some(b"hello\0".to_vec());
    vec![
        spec("arr", MapType::Array, 4, 8, 4),
        spec("hash", MapType::Hash, 4, 8, 2),
        spec("rb", MapType::Ringbuf, 0, 0, 4096),
        spec("pcpu", MapType::PercpuArray, 4, 4, 1),
        rodata,
        spec("lru", MapType::LruHash, 4, 8, 2),
        spec("arena", MapType::Arena, 0, 0, 1),
    ]
}

/// A stack-like buffer owned outside Rust references.
pub struct RawStack {
    ptr: *mut u8,
}

impl RawStack {
    fn new() -> Self {
        let b: Box<[u8; STACK_LEN]> = Box::new([0; STACK_LEN]);
        RawStack {
            ptr: Box::into_raw(b) as *mut u8,
        }
    }
}

impl Drop for RawStack {
    fn drop(&mut self) {
        // SAFETY: allocated by `Box::into_raw` in `new`, freed once.
        drop(unsafe { Box::from_raw(self.ptr as *mut [u8; STACK_LEN]) });
    }
}

pub struct Fixture {
    pub table: Arc<MapTable>,
    pub mem: MemoryMap,
    pub env: ExecEnv,
    pub reg: HelperRegistry,
    pub stack: u64,
    _stack: RawStack,
}

impl Fixture {
    pub fn new() -> Self {
        let opts = MapOptions {
            num_cpus: Some(2),
            arena_init: Some(b"heap!".to_vec()),
        };
        let table = Arc::new(MapTable::create(&specs(), &opts).unwrap());
        let raw = RawStack::new();
        let stack = raw.ptr as u64;
        let mut mem = MemoryMap::new();
        // SAFETY: the stack buffer lives as long as the fixture and is only accessed through `mem`.
        unsafe {
            mem.insert(Region {
                start: stack,
                len: STACK_LEN as u64,
                kind: RegionKind::Stack(0),
                writable: true,
                elements: None,
            })
        }
        .unwrap();
        for r in table.regions() {
            // SAFETY: map memory is owned by the table, which the fixture keeps alive.
            unsafe { mem.insert(r) }.unwrap();
        }
        let mut env = ExecEnv::with_maps(table.clone());
        env.seed_prandom(1);
        Fixture {
            table,
            mem,
            env,
            reg: HelperRegistry::linux_default(),
            stack,
            _stack: raw,
        }
    }

    /// Writes `bytes` at `off` in the stack buffer and returns their address.
    pub fn put(&mut self, off: u64, bytes: &[u8]) -> u64 {
        self.mem.write_bytes(self.stack + off, bytes).unwrap();
        self.stack + off
    }

    pub fn handle(&self, index: usize) -> u64 {
        self.table.handle(index)
    }

    pub fn call(&mut self, id: u32, args: &[u64]) -> Result<u64, HelperError> {
        let mut a = [0u64; 5];
        a[..args.len()].copy_from_slice(args);
        let f = self.reg.get(id).expect("helper registered").func.clone();
        let mut c = HelperCall {
            args: a,
            mem: &mut self.mem,
            env: &mut self.env,
        };
        f(&mut c)
    }
}

pub fn neg(errno: i32) -> u64 {
    (-(errno as i64)) as u64
}
