//! The bundled examples' map helper calls are compiled against their maps (inline array and
//! per-CPU array look-ups, direct hash and LRU hash calls) wherever the verifier knows the map,
//! and a JIT test run gives the interpreter's results and map contents.

use kflex::packet;
use kflex::{Engine, Extension, ExtensionOptions, TestRunOptions};
use kflex_isa::decode::Instruction;
use kflex_object::MapType;

fn load(name: &str) -> Extension {
    let ex = kflex_examples::get(name).unwrap_or_else(|| panic!("example {name} is bundled"));
    Extension::load(name, ex.object, ExtensionOptions::default())
        .unwrap_or_else(|e| panic!("{name} loads: {e}"))
}

/// True if a call of `helper` on a map of type `t` has a compiled form.
fn has_form(helper: i32, t: MapType) -> bool {
    match t {
        MapType::Array | MapType::PercpuArray => helper == 1,
        MapType::Hash | MapType::LruHash => (1..=3).contains(&helper),
        _ => false,
    }
}

#[test]
fn example_map_calls_are_compiled_against_their_maps() {
    let mut with_calls = Vec::new();
    for ex in kflex_examples::all() {
        let ext = load(ex.name);
        for p in ext.programs() {
            let p = p.unwrap_or_else(|r| panic!("{}: {r}", ex.name));
            let v = p.verified.as_ref().expect("verified");
            let jit = p.jit.as_ref().expect("compiled").as_ref().expect("JIT ok");
            let mut expected = 0;
            for (pc, insn) in p.code.iter() {
                let Instruction::Call { helper } = *insn else {
                    continue;
                };
                let fact = v.insns[pc].map_call;
                if (1..=3).contains(&helper) && v.insns[pc].reachable {
                    // Every map helper call of the examples names one map on every path.
                    let m = fact.unwrap_or_else(|| panic!("{}: no map fact at {pc}", p.name));
                    assert!(p.maps_used.contains(&m), "{}: map {m} at {pc}", p.name);
                    let t = ext.map_table().map_type(m).expect("map exists");
                    expected += usize::from(has_form(helper, t));
                } else {
                    assert_eq!(fact, None, "{}: helper {helper} at {pc}", p.name);
                }
            }
            assert_eq!(jit.map_calls_compiled(), expected, "{}", p.name);
            if expected > 0 {
                with_calls.push(ex.name);
            }
        }
    }
    with_calls.sort();
    assert_eq!(
        with_calls,
        [
            "sk_skb_verdict",
            "socket_udp_filter",
            "tc_classifier",
            "xdp_firewall"
        ]
    );
}

/// A stream of frames through the firewall (hash look-ups, per-CPU counters on two CPUs) and
/// the classifier (LRU look-ups and inserts): the JIT's verdicts and final maps equal the
/// interpreter's.
#[test]
fn jit_runs_with_compiled_map_calls_equal_the_interpreter() {
    let frames: Vec<Vec<u8>> = (0..40u8)
        .map(|i| {
            let src = [10, 0, 0, i % 6];
            let dst = [10, 0, 1, 1];
            if i % 3 == 0 {
                packet::tcp4_frame(src, dst, 1000 + u16::from(i % 4), 80, i % 8, &[i])
            } else {
                packet::udp4_frame(src, dst, 4000 + u16::from(i % 5), 53 + u16::from(i), &[i])
            }
        })
        .collect();
    for name in ["xdp_firewall", "tc_classifier"] {
        let run = |engine: Engine| {
            let ext = load(name);
            if name == "xdp_firewall" {
                ext.map("blocklist")
                    .unwrap()
                    .update(&[10, 0, 0, 3], &1u64.to_ne_bytes(), 0)
                    .unwrap();
            }
            let mut verdicts = Vec::new();
            for (i, frame) in frames.iter().enumerate() {
                let options = TestRunOptions {
                    engine: Some(engine),
                    cpu: (i % 2) as u32,
                    ..TestRunOptions::packet(frame.clone())
                };
                let out = ext.test_run(name, &options).expect("runs");
                verdicts.push(out.retval);
            }
            (verdicts, dump(&ext))
        };
        let (jit, interp) = (run(Engine::Jit), run(Engine::Interp));
        assert_eq!(jit, interp, "{name}");
        assert!(jit.1.iter().any(|m| !m.is_empty()), "{name} wrote its maps");
        if name == "xdp_firewall" {
            assert!(jit.0.contains(&1) && jit.0.contains(&2), "drops and passes");
        }
    }
}

/// A key and its value (every CPU's for a per-CPU array).
type Entry = (Vec<u8>, Vec<Vec<u8>>);

/// Every map's keys and values (every CPU's value for per-CPU arrays); maps without keys
/// (ring buffers, the heap) are left out.
fn dump(ext: &Extension) -> Vec<Vec<Entry>> {
    ext.maps()
        .map(|m| {
            let percpu = m.spec().map_type == MapType::PercpuArray;
            m.keys()
                .unwrap_or_default()
                .into_iter()
                .map(|k| {
                    let v = if percpu {
                        m.lookup_percpu(&k).expect("per-CPU value")
                    } else {
                        m.lookup(&k).expect("lookup").into_iter().collect()
                    };
                    (k, v)
                })
                .collect()
        })
        .collect()
}
