//! Map look-ups from JIT code: the helper trampoline (as kflex runs verified programs:
//! `trust_map_helper_pointers`, registry skipped) against calls compiled against their map
//! (`JitOptions::maps` + `map_calls`: inline array and per-CPU array look-ups, direct hash map
//! calls), and the checked registry path for reference.
//!
//! Each program does [`LOOKUPS`] look-ups of present keys (straight-line, no loop: no watchdog)
//! and sums the first word of the values; runs go through one `JitRunner`, so a run costs the
//! program and the runner's fixed per-run work. Reproduce with
//! `cargo bench -p kflex-jit --bench map_calls -- --warm-up-time 1 --measurement-time 2`.
//! On the shared 2-core machine (load average ~2.5, after the lock-free hash index 2497d56),
//! ns per run of 16 look-ups:
//!
//! ```text
//!                registry   trampoline   compiled
//! array              650         156          30    (inline, branch-free)
//! percpu_array       658         164          39    (inline, CPU from the state block)
//! hash               711         301         128    (direct call of the map's look-up)
//! lru_hash          1178         759         635    (recency update dominates)
//! ```

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use kflex_isa::decode::{
    AluOp, Instruction as I, JmpOp, Operand, Program, Size, Width, encode_all,
};
use kflex_jit::{JitEnv, JitOptions, JitProgram};
use kflex_object::{MapSpec, MapType};
use kflex_runtime::maps::{MapOptions, MapTable};
use kflex_runtime::{ExecEnv, HelperRegistry, MemoryMap};

/// Look-ups per run.
const LOOKUPS: usize = 16;

/// The slot of the `i`-th call in [`program`].
fn call_slot(i: usize) -> usize {
    2 + i * 8 + 4
}

/// r6 = map (r1); for i in 0..LOOKUPS: key = i; r0 = lookup(r6, &key); r7 += *r0 if r0.
fn program() -> Program {
    let mut v = vec![
        I::Mov {
            width: Width::W64,
            dst: 6,
            src: Operand::Reg(1),
        },
        I::Mov {
            width: Width::W64,
            dst: 7,
            src: Operand::Imm(0),
        },
    ];
    for i in 0..LOOKUPS {
        v.extend([
            I::Store {
                size: Size::W,
                dst: 10,
                off: -4,
                src: Operand::Imm(i as i32),
            },
            I::Mov {
                width: Width::W64,
                dst: 1,
                src: Operand::Reg(6),
            },
            I::Mov {
                width: Width::W64,
                dst: 2,
                src: Operand::Reg(10),
            },
            I::Alu {
                width: Width::W64,
                op: AluOp::Add,
                dst: 2,
                src: Operand::Imm(-4),
            },
            I::Call { helper: 1 },
            I::Jump {
                width: Width::W64,
                op: JmpOp::Eq,
                dst: 0,
                src: Operand::Imm(0),
                off: 2,
            },
            I::Load {
                size: Size::DW,
                dst: 3,
                src: 0,
                off: 0,
                sign_extend: false,
            },
            I::Alu {
                width: Width::W64,
                op: AluOp::Add,
                dst: 7,
                src: Operand::Reg(3),
            },
        ]);
    }
    v.push(I::Mov {
        width: Width::W64,
        dst: 0,
        src: Operand::Reg(7),
    });
    v.push(I::Exit);
    Program::decode(&encode_all(&v)).expect("decodes")
}

fn table() -> Arc<MapTable> {
    let spec = |name: &str, map_type| MapSpec::new(name, map_type, 4, 8, 1024);
    let specs = [
        spec("array", MapType::Array),
        spec("percpu", MapType::PercpuArray),
        spec("hash", MapType::Hash),
        spec("lru", MapType::LruHash),
    ];
    let opts = MapOptions {
        num_cpus: Some(4),
        arena_init: None,
    };
    let t = MapTable::create(&specs, &opts).expect("maps");
    for i in 0..LOOKUPS as u32 {
        let (k, v) = (i.to_le_bytes(), u64::from(i + 1).to_le_bytes());
        for m in [0, 2, 3] {
            t.update(m, &k, &v, 0).expect("fill");
        }
        t.update(1, &k, &[v; 4].concat(), 0).expect("fill");
    }
    Arc::new(t)
}

fn bench(c: &mut Criterion) {
    let table = table();
    let helpers = HelperRegistry::linux_default();
    let program = program();
    let plain = JitProgram::compile(&program, &JitOptions::default()).expect("compiles");
    let want: u64 = (1..=LOOKUPS as u64).sum();
    let mut group = c.benchmark_group("map_lookups_x16");
    for (map, name) in [
        (0, "array"),
        (1, "percpu_array"),
        (2, "hash"),
        (3, "lru_hash"),
    ] {
        let options = JitOptions {
            maps: Some(Arc::clone(&table)),
            map_calls: (0..LOOKUPS).map(|i| (call_slot(i), map)).collect(),
            ..JitOptions::default()
        };
        let compiled = JitProgram::compile(&program, &options).expect("compiles");
        assert_eq!(compiled.map_calls_compiled(), LOOKUPS, "{name}");
        for (engine, prog, trusted) in [
            ("registry", &plain, false),
            ("trampoline", &plain, true),
            ("compiled", &compiled, true),
        ] {
            let mut mem = MemoryMap::new();
            for region in table.regions() {
                // SAFETY: value memory of `table`, which outlives `mem`.
                unsafe { mem.insert(region) }.expect("map regions");
            }
            let mut env = ExecEnv::with_maps(Arc::clone(&table));
            let mut jenv = JitEnv::new(&mut mem, &helpers, &mut env);
            if trusted {
                // SAFETY: the program passes handles of `table` and keys of 4 stack bytes.
                unsafe { jenv.trust_map_helper_pointers() };
            }
            let mut lease = prog.frame_lease(jenv.max_call_depth);
            let mut runner = prog.runner(&mut jenv, &mut lease).expect("runner");
            let args = [table.handle(map), 0, 0, 0, 0];
            assert_eq!(runner.run(args), Ok(want), "{name} {engine}");
            group.bench_function(format!("{name}/{engine}"), |b| {
                b.iter(|| runner.run(black_box(args)))
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
