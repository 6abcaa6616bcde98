//! Every bundled example extension verifies, quickly, with sensible facts.

mod support;

use kflex_isa::decode::Program;
use kflex_object::Object;
use kflex_verify::VerifyOptions;
use support::verify_object_program;

#[test]
fn every_bundled_example_verifies() {
    let mut checked = 0;
    for ex in kflex_examples::all() {
        let obj = Object::parse(ex.name, ex.object).expect("example parses");
        for prog in &obj.programs {
            let code = Program::decode(&prog.insns).expect("example decodes");
            let options = VerifyOptions {
                log_level: 1,
                ..VerifyOptions::default()
            };
            let verified = match verify_object_program(&obj, prog, &code, &options) {
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
