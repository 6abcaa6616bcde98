//! Map helper calls compiled against their map (`JitOptions::maps` + `map_calls`): inline array
//! and per-CPU array look-ups and direct hash map calls give exactly the results of the
//! registry path, the trampoline's direct path and the reference interpreter; a site whose r1
//! is another map falls back; runs with another map table are refused.

mod map_support;

use std::sync::Arc;

use kflex_jit::{JitEnv, JitError, JitFaultKind, JitOptions, JitProgram};
use kflex_runtime::{ExecEnv, HelperRegistry, MemoryMap};
use map_support::*;

/// The operation sequence: on every map, updates (plain, `BPF_NOEXIST` on a present key,
/// `BPF_EXIST` on a missing one, bad flags), look-ups of present, missing and out-of-range keys
/// (`max_entries - 1`, `max_entries`, `u32::MAX`), deletes of present and missing keys, on CPUs
/// in and out of range; hash maps fill up (E2BIG) and the LRU map evicts.
fn ops() -> Vec<Op> {
    let mut ops = Vec::new();
    let edge_keys = [
        u64::from(ARRAY_ENTRIES) - 1,
        u64::from(ARRAY_ENTRIES),
        u64::from(u32::MAX),
    ];
    for map in [HASH, LRU, ARRAY, PERCPU] {
        for cpu in [0u32, 2, CPUS, u32::MAX] {
            for key in 0..5u64 {
                ops.push((UPDATE, map, key, 100 + key + u64::from(cpu % 7), 0, cpu));
                ops.push((UPDATE, map, key, 7, 1, cpu));
                ops.push((LOOKUP, map, key, 0, 0, cpu));
                ops.push((LOOKUP, map, key + 10, 0, 0, cpu));
                ops.push((UPDATE, map, key + 20, 9, 2, cpu));
            }
            ops.push((UPDATE, map, 1, 5, 9, cpu));
            for key in edge_keys {
                ops.push((LOOKUP, map, key, 0, 0, cpu));
            }
            ops.push((DELETE, map, 1, 0, 0, cpu));
            ops.push((DELETE, map, 33, 0, 0, cpu));
            ops.push((LOOKUP, map, 1, 0, 0, cpu));
        }
    }
    for key in [0, 3, 4, u64::from(u32::MAX)] {
        ops.push((LOOKUP, ARRAY24, key, 0, 0, 0));
    }
    ops
}

#[test]
fn compiled_map_calls_equal_every_other_path() {
    let ops = ops();
    let compiled = run_ops(Engine::Compiled, &ops);
    for engine in [Engine::Registry, Engine::Trusted, Engine::Interp] {
        let other = run_ops(engine, &ops);
        assert_eq!(compiled.0.len(), other.0.len());
        for (i, (c, o)) in compiled.0.iter().zip(&other.0).enumerate() {
            assert_eq!(c, o, "op {i} {:?}: compiled vs {engine:?}", ops[i]);
        }
        assert_eq!(compiled.1, other.1, "map contents: compiled vs {engine:?}");
    }
    // The sequence exercised hits, misses and every errno.
    let r0s = &compiled.0;
    assert!(r0s.contains(&u64::MAX), "a missing key");
    assert!(r0s.contains(&102), "a per-CPU value of CPU 2");
    for errno in [-17i64, -2, -7, -22] {
        assert!(r0s.iter().any(|&r| r as i64 == errno), "errno {errno}");
    }
}

/// Inline array look-ups return exactly the generic path's address (or NULL) for keys and CPUs
/// at and beyond the edges; hash look-ups return the element's slot.
#[test]
fn inline_lookups_return_the_generic_address() {
    let table = table();
    let lookup = |map| compile_for(&insns(LOOKUP, false), &table, map);
    let programs = [
        (ARRAY, lookup(ARRAY)),
        (ARRAY24, lookup(ARRAY24)),
        (PERCPU, lookup(PERCPU)),
        (HASH, lookup(HASH)),
    ];
    for (_, p) in &programs {
        assert_eq!(p.map_calls_compiled(), 1);
    }
    table.update(HASH, &5u32.to_le_bytes(), &[1; 8], 0).unwrap();
    let (mut mem, helpers) = (MemoryMap::new(), HelperRegistry::empty());
    let keys = [0u32, 1, ARRAY_ENTRIES - 1, ARRAY_ENTRIES, u32::MAX, 5];
    let cpus = [0u32, CPUS - 1, CPUS, u32::MAX];
    let mut non_null = 0;
    for (map, p) in &programs {
        for key in keys {
            for cpu in cpus {
                let mut env = ExecEnv::with_maps(Arc::clone(&table));
                env.cpu = cpu;
                let want = table
                    .prog_lookup(*map, &key.to_le_bytes(), cpu)
                    .unwrap()
                    .unwrap_or(0);
                let mut jenv = JitEnv::new(&mut mem, &helpers, &mut env);
                let got = p.run([table.handle(*map), u64::from(key), 0, 0, 0], &mut jenv);
                assert_eq!(got, Ok(want), "map {map} key {key} cpu {cpu}");
                non_null += usize::from(want != 0);
            }
        }
    }
    // Arrays: 3 in-range keys x 4 CPUs each; per-CPU: 3 keys x 2 CPUs; hash: key 5 x 4 CPUs.
    assert_eq!(non_null, 2 * 12 + 6 + 4);
}

/// A site compiled for one map whose r1 holds another map's handle (a wrong fact) takes the
/// helper path and gets that map's answer.
#[test]
fn a_site_called_with_another_map_falls_back() {
    let table = table();
    let helpers = HelperRegistry::linux_default();
    table
        .update(HASH, &2u32.to_le_bytes(), &77u64.to_le_bytes(), 0)
        .unwrap();
    table
        .update(ARRAY, &2u32.to_le_bytes(), &88u64.to_le_bytes(), 0)
        .unwrap();
    let for_array = compile_for(&insns(LOOKUP, true), &table, ARRAY);
    let for_hash = compile_for(&insns(LOOKUP, true), &table, HASH);
    let mut mem = MemoryMap::new();
    for region in table.regions() {
        // SAFETY: value memory of `table`, which outlives `mem`.
        unsafe { mem.insert(region) }.unwrap();
    }
    let mut env = ExecEnv::with_maps(Arc::clone(&table));
    let mut jenv = JitEnv::new(&mut mem, &helpers, &mut env);
    let run = |p: &JitProgram, map: usize, jenv: &mut JitEnv<'_>| {
        p.run([table.handle(map), 2, 0, 0, 0], jenv)
    };
    assert_eq!(run(&for_array, ARRAY, &mut jenv), Ok(88));
    assert_eq!(run(&for_array, HASH, &mut jenv), Ok(77));
    assert_eq!(run(&for_hash, HASH, &mut jenv), Ok(77));
    assert_eq!(run(&for_hash, ARRAY, &mut jenv), Ok(88));
    // Not a map at all: the registry refuses it, as for an ordinary call.
    let fault = for_array.run([12345, 2, 0, 0, 0], &mut jenv).unwrap_err();
    assert!(
        matches!(fault.kind, JitFaultKind::Helper { id: 1, .. }),
        "{fault:?}"
    );
}

#[test]
fn runs_with_another_map_table_are_refused() {
    let (table, other) = (table(), table());
    let p = compile_for(&insns(LOOKUP, false), &table, ARRAY);
    let (mut mem, helpers) = (MemoryMap::new(), HelperRegistry::linux_default());
    let args = [table.handle(ARRAY), 1, 0, 0, 0];
    for env_maps in [Some(Arc::clone(&other)), None] {
        let mut env = ExecEnv {
            maps: env_maps,
            ..ExecEnv::default()
        };
        let mut jenv = JitEnv::new(&mut mem, &helpers, &mut env);
        let fault = p.run(args, &mut jenv).unwrap_err();
        assert!(
            matches!(&fault.kind, JitFaultKind::StackSetup(m) if m.contains("map table")),
            "{fault:?}"
        );
    }
    let mut env = ExecEnv::with_maps(Arc::clone(&table));
    let mut jenv = JitEnv::new(&mut mem, &helpers, &mut env);
    let want = table.prog_lookup(ARRAY, &1u32.to_le_bytes(), 0).unwrap();
    assert_eq!(p.run(args, &mut jenv).ok(), want);
    // Nothing compiled against the table (array updates keep the helper path): any table runs.
    let update = compile_for(&insns(UPDATE, false), &table, ARRAY);
    assert_eq!(update.map_calls_compiled(), 0);
    let mut env = ExecEnv::with_maps(Arc::clone(&other));
    let mut jenv = JitEnv::new(&mut mem, &helpers, &mut env);
    assert_eq!(
        update.run([other.handle(ARRAY), 1, 5, 0, 0], &mut jenv),
        Ok(0)
    );
    assert_eq!(
        other.lookup(ARRAY, &1u32.to_le_bytes()).unwrap(),
        Some(5u64.to_le_bytes().to_vec())
    );
}

#[test]
fn map_call_facts_must_name_map_helper_calls() {
    let table = table();
    let insns = insns(LOOKUP, false);
    let compile = |map_calls: Vec<(usize, usize)>| {
        let options = JitOptions {
            maps: Some(Arc::clone(&table)),
            map_calls,
            ..JitOptions::default()
        };
        JitProgram::compile(&map_support::program(&insns), &options).map(|p| p.map_calls_compiled())
    };
    assert!(matches!(
        compile(vec![(0, ARRAY)]),
        Err(JitError::Instruction { pc: 0, .. })
    ));
    assert!(matches!(
        compile(vec![(CALL_SLOT, ARRAY), (CALL_SLOT, HASH)]),
        Err(JitError::Instruction { .. })
    ));
    assert!(compile(vec![(999, ARRAY)]).is_err());
    // A map without a plan (or no such map) keeps the helper path.
    assert_eq!(compile(vec![(CALL_SLOT, 99)]), Ok(0));
    assert_eq!(compile(vec![(CALL_SLOT, ARRAY)]), Ok(1));
    // Without a table the facts are ignored.
    let options = JitOptions {
        map_calls: vec![(CALL_SLOT, ARRAY)],
        ..JitOptions::default()
    };
    let p = JitProgram::compile(&map_support::program(&insns), &options).unwrap();
    assert_eq!(p.map_calls_compiled(), 0);
}

/// A runner reads the environment's CPU afresh for every run: per-CPU look-ups follow a CPU
/// changed between runs. A runner for another table is refused when it is made.
#[test]
fn runners_follow_the_cpu_and_check_the_table() {
    let table = table();
    let p = compile_for(&insns(LOOKUP, false), &table, PERCPU);
    let (mut mem, helpers) = (MemoryMap::new(), HelperRegistry::empty());
    let mut env = ExecEnv::with_maps(Arc::clone(&table));
    let mut jenv = JitEnv::new(&mut mem, &helpers, &mut env);
    let mut lease = p.frame_lease(jenv.max_call_depth);
    let mut runner = p.runner(&mut jenv, &mut lease).expect("runner");
    let args = [table.handle(PERCPU), 1, 0, 0, 0];
    for cpu in [0, 2, 1, CPUS, 0] {
        runner.env().env.cpu = cpu;
        let want = table
            .prog_lookup(PERCPU, &1u32.to_le_bytes(), cpu)
            .unwrap()
            .unwrap_or(0);
        assert_eq!(runner.run(args), Ok(want), "cpu {cpu}");
    }
    drop(runner);
    lease.release(jenv.mem);
    let mut other = ExecEnv::with_maps(map_support::table());
    let mut jenv = JitEnv::new(&mut mem, &helpers, &mut other);
    let mut lease = p.frame_lease(jenv.max_call_depth);
    let fault = p.runner(&mut jenv, &mut lease).unwrap_err();
    assert!(
        matches!(fault.kind, JitFaultKind::StackSetup(_)),
        "{fault:?}"
    );
}
