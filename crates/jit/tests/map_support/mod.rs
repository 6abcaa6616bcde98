//! Shared support of the map-call tests: the map helper programs, a map table with one map of
//! every type with a plan, and the engines that run the programs (generic registry path,
//! trusted trampoline path, compiled map calls, reference interpreter).

#![allow(dead_code)]

use std::sync::Arc;

use kflex_interp::Vm;
use kflex_isa::decode::{Instruction as I, JmpOp, Operand, Program, Size, Width, encode_all};
use kflex_jit::{JitEnv, JitOptions, JitProgram};
use kflex_object::{MapSpec, MapType};
use kflex_runtime::maps::{MapOptions, MapTable};
use kflex_runtime::{ExecEnv, HelperRegistry, MemoryMap};

/// Helper numbers.
pub const LOOKUP: i32 = 1;
pub const UPDATE: i32 = 2;
pub const DELETE: i32 = 3;

/// CPUs the per-CPU map keeps slots for.
pub const CPUS: u32 = 3;

/// The maps of [`table`], by index.
pub const HASH: usize = 0;
pub const LRU: usize = 1;
pub const ARRAY: usize = 2;
pub const PERCPU: usize = 3;
/// An array whose stride (24) is no power of two.
pub const ARRAY24: usize = 4;
pub const MAPS: usize = 5;

/// Entries of the arrays (and of the hash maps: 3, LRU: 2).
pub const ARRAY_ENTRIES: u32 = 4;

fn spec(name: &str, map_type: MapType, value_size: u32, max_entries: u32) -> MapSpec {
    MapSpec::new(name, map_type, 4, value_size, max_entries)
}

/// A fresh table: hash (3 entries), LRU hash (2), array (4), per-CPU array (4, [`CPUS`] CPUs),
/// array of 24-byte values (4); 4-byte keys, 8-byte values unless said otherwise.
pub fn table() -> Arc<MapTable> {
    let specs = [
        spec("hash", MapType::Hash, 8, 3),
        spec("lru", MapType::LruHash, 8, 2),
        spec("array", MapType::Array, 8, ARRAY_ENTRIES),
        spec("percpu", MapType::PercpuArray, 8, ARRAY_ENTRIES),
        spec("array24", MapType::Array, 24, ARRAY_ENTRIES),
    ];
    let opts = MapOptions {
        num_cpus: Some(CPUS),
        arena_init: None,
    };
    Arc::new(MapTable::create(&specs, &opts).expect("maps"))
}

fn store(size: Size, off: i16, src: u8) -> I {
    I::Store {
        size,
        dst: 10,
        off,
        src: Operand::Reg(src),
    }
}

fn reg_plus(dst: u8, src: u8, imm: i32) -> [I; 2] {
    [
        I::Mov {
            width: Width::W64,
            dst,
            src: Operand::Reg(src),
        },
        I::Alu {
            width: Width::W64,
            op: kflex_isa::decode::AluOp::Add,
            dst,
            src: Operand::Imm(imm),
        },
    ]
}

/// A map helper program over args (r1 = map handle, r2 = key, r3 = value, r4 = flags): stores
/// the key (and value) on the stack, calls `helper` with pointers to them. Look-ups return the
/// value's first u64 (`deref`) or r0 itself; a NULL look-up returns u64::MAX when `deref`.
pub fn insns(helper: i32, deref: bool) -> Vec<I> {
    let mut v = vec![store(Size::W, -4, 2), store(Size::DW, -16, 3)];
    v.extend(reg_plus(2, 10, -4));
    v.extend(reg_plus(3, 10, -16));
    v.push(I::Call { helper });
    if helper == LOOKUP && deref {
        v.extend([
            I::Jump {
                width: Width::W64,
                op: JmpOp::Eq,
                dst: 0,
                src: Operand::Imm(0),
                off: 2,
            },
            I::Load {
                size: Size::DW,
                dst: 0,
                src: 0,
                off: 0,
                sign_extend: false,
            },
            I::Exit,
            I::Mov {
                width: Width::W64,
                dst: 0,
                src: Operand::Imm(-1),
            },
        ]);
    }
    v.push(I::Exit);
    v
}

/// The slot of the helper call in [`insns`].
pub const CALL_SLOT: usize = 6;

/// Decodes `insns`.
pub fn program(insns: &[I]) -> Program {
    Program::decode(&encode_all(insns)).expect("test program decodes")
}

/// Compiles `insns` with the call at [`CALL_SLOT`] compiled against map `map` of `maps`.
pub fn compile_for(insns: &[I], maps: &Arc<MapTable>, map: usize) -> JitProgram {
    let options = JitOptions {
        maps: Some(Arc::clone(maps)),
        map_calls: vec![(CALL_SLOT, map)],
        ..JitOptions::default()
    };
    JitProgram::compile(&program(insns), &options).expect("compiles")
}

/// Compiles `insns` without map calls.
pub fn compile_plain(insns: &[I]) -> JitProgram {
    JitProgram::compile(&program(insns), &JitOptions::default()).expect("compiles")
}

/// How a run serves map helper calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// JIT, helpers through the registry (pointers checked).
    Registry,
    /// JIT, helpers through the trampoline's direct path (`trust_map_helper_pointers`).
    Trusted,
    /// JIT with the calls compiled against their map.
    Compiled,
    /// The reference interpreter.
    Interp,
}

/// One map operation: `(helper, map, key, value, flags, cpu)`.
pub type Op = (i32, usize, u64, u64, u64, u32);

/// Per map and key: the value stored (every CPU's for the per-CPU map), if any.
pub type Contents = Vec<Vec<Option<Vec<Vec<u8>>>>>;

/// Runs `ops` in order on a fresh [`table`] with `engine`; returns every r0 and, per map and
/// key 0..30, the final contents (every CPU's value for the per-CPU map).
pub fn run_ops(engine: Engine, ops: &[Op]) -> (Vec<u64>, Contents) {
    let table = table();
    let helpers = HelperRegistry::linux_default();
    let kinds = [LOOKUP, UPDATE, DELETE];
    // programs[map][helper - 1]
    let programs: Vec<Vec<Program>> = (0..MAPS)
        .map(|_| kinds.iter().map(|&h| program(&insns(h, true))).collect())
        .collect();
    let compiled: Vec<Vec<JitProgram>> = (0..MAPS)
        .map(|m| {
            kinds
                .iter()
                .map(|&h| match engine {
                    Engine::Compiled => compile_for(&insns(h, true), &table, m),
                    _ => compile_plain(&insns(h, true)),
                })
                .collect()
        })
        .collect();
    let sites: usize = compiled
        .iter()
        .flatten()
        .map(|p| p.map_calls_compiled())
        .sum();
    if engine == Engine::Compiled {
        // Look-ups on all 5 maps, updates and deletes on the 2 hash maps.
        assert_eq!(sites, MAPS + 4, "compiled map-call sites");
    } else {
        assert_eq!(sites, 0);
    }
    let mut mem = MemoryMap::new();
    for region in table.regions() {
        // SAFETY: the regions describe value memory owned by `table`, which outlives `mem`.
        unsafe { mem.insert(region) }.expect("map regions");
    }
    let mut results = Vec::new();
    for &(helper, map, key, value, flags, cpu) in ops {
        let mut env = ExecEnv::with_maps(Arc::clone(&table));
        env.cpu = cpu;
        let args = [table.handle(map), key, value, flags, 0];
        let h = (helper - 1) as usize;
        let r0 = if engine == Engine::Interp {
            let mut vm = Vm::new(&mut mem, &helpers, &mut env);
            kflex_interp::run(&programs[map][h], args, &mut vm)
                .expect("interpreter run")
                .retval
        } else {
            let mut jenv = JitEnv::new(&mut mem, &helpers, &mut env);
            if engine == Engine::Trusted {
                // SAFETY: the programs pass a handle of `table` and pointers to 4 and 8 bytes
                // of their stack, the key and value sizes of every map of `table`.
                unsafe { jenv.trust_map_helper_pointers() };
            }
            compiled[map][h].run(args, &mut jenv).expect("JIT run")
        };
        results.push(r0);
    }
    (results, contents(&table))
}

/// Per map and key 0..30: the value(s) stored, if any.
pub fn contents(table: &MapTable) -> Contents {
    (0..MAPS)
        .map(|m| {
            (0..30u32)
                .map(|k| {
                    let key = k.to_le_bytes();
                    if m == PERCPU {
                        table.lookup_percpu(m, &key).ok()
                    } else {
                        table.lookup(m, &key).ok().flatten().map(|v| vec![v])
                    }
                })
                .collect()
        })
        .collect()
}
