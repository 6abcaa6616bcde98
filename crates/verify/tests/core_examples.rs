//! Every bundled example extension verifies, quickly, with sensible facts.

use kflex_isa::decode::Program;
use kflex_object::Object;
use kflex_runtime::HelperRegistry;
use kflex_verify::{VerifyInput, VerifyOptions, verify};

#[test]
fn every_bundled_example_verifies() {
    let mut checked = 0;
    for ex in kflex_examples::all() {
        let obj = Object::parse(ex.name, ex.object).expect("example parses");
        for prog in &obj.programs {
            let prog_type = prog.prog_type.expect("example has a known program type");
            let mut helpers = HelperRegistry::linux_default();
            kflex_hooks::register_extra_helpers(&mut helpers, prog_type).unwrap();
            let code = Program::decode(&prog.insns).expect("example decodes");
            let input = VerifyInput {
                program: &code,
                prog_type,
                maps: &obj.maps,
                helpers: &helpers,
                line_info: &prog.line_info,
                func_info: &prog.func_info,
            };
            let options = VerifyOptions {
                log_level: 1,
                ..VerifyOptions::default()
            };
            let verified = match verify(&input, &options) {
                Ok(v) => v,
                Err(e) => panic!("{}/{} rejected:\n{e}\n{}", ex.name, prog.name, e.log),
            };
            assert!(verified.insns[0].reachable);
            assert_eq!(verified.insns.len(), code.len());
            assert!(verified.log.contains("processed "), "{}", verified.log);
            assert!(
                verified.stats.time.as_millis() < 500,
                "{} took {:?}",
                ex.name,
                verified.stats.time
            );
            // Every termination point and heap access has a cancellation entry.
            for t in &verified.termination_points {
                assert!(verified.cancellation.entries.contains_key(&t.pc));
            }
            for (pc, f) in verified.insns.iter().enumerate() {
                if f.heap.is_some() {
                    assert!(verified.cancellation.entries.contains_key(&pc));
                }
            }
            eprintln!(
                "{}/{}: {} insns processed, {} states, {} pruned, {:?}",
                ex.name,
                prog.name,
                verified.stats.insns_processed,
                verified.stats.states_explored,
                verified.stats.states_pruned,
                verified.stats.time
            );
            checked += 1;
        }
    }
    assert!(checked >= 5, "only {checked} example programs found");
}
