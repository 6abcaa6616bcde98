//! Arbitrary inputs and accesses never panic: preparation returns an error or a run, and every
//! context access is answered with a value or a reason.

use kflex_hooks::{TestRunInput, check_ctx_access, context_size, prepare};
use kflex_object::ProgType;
use kflex_runtime::{Access, MemoryMap};
use proptest::prelude::*;

fn prog_type() -> impl Strategy<Value = ProgType> {
    prop::sample::select(ProgType::ALL.to_vec())
}

proptest! {
    #[test]
    fn prepare_and_access_never_panic(
        t in prog_type(),
        data in prop::collection::vec(any::<u8>(), 0..200),
        ctx in prop_oneof![
            Just(None),
            (0usize..260).prop_map(|n| Some(vec![0u8; n])),
            prop::option::of(prop::collection::vec(any::<u8>(), 0..260)),
        ],
        accesses in prop::collection::vec((0u64..300, prop::sample::select(vec![0u8, 1, 2, 3, 4, 8, 16]), any::<u64>(), any::<bool>()), 0..20),
    ) {
        let input = TestRunInput { data_in: data, ctx_in: ctx };
        let Ok(mut run) = prepare(t, &input) else { return Ok(()) };
        let mut mem = MemoryMap::new();
        // SAFETY: uninstalled below before `run` is finished.
        unsafe { run.install(&mut mem).unwrap() };
        for (off, size, value, write) in accesses {
            let allowed = check_ctx_access(t, off, size, if write { Access::Write } else { Access::Read }).is_ok();
            let c = run.context_access();
            let result = if write { c.store(off, size, value).map(|_| 0) } else { c.load(off, size) };
            // The hook never allows what the rules refuse.
            if !allowed {
                prop_assert!(result.is_err());
            }
            let in_struct = context_size(t).is_some_and(|n| off + u64::from(size) <= n as u64);
            if allowed && in_struct {
                prop_assert!(result.is_ok(), "{t:?} {off} {size} {write}: {result:?}");
            }
        }
        run.uninstall(&mut mem);
        prop_assert!(mem.regions().is_empty());
        let out = run.finish();
        if t != ProgType::Syscall {
            prop_assert!(out.data_out.len() >= input.data_in.len().min(14));
        }
    }

    #[test]
    fn access_rules_never_panic(t in prog_type(), off in any::<u64>(), size in any::<u8>(), write in any::<bool>()) {
        let a = if write { Access::Write } else { Access::Read };
        let _ = check_ctx_access(t, off, size, a);
    }
}
