//! Resources a program still holds at exit are released after every test-run.

use std::path::Path;

use kflex::{Extension, ExtensionOptions, TestRunOptions};

/// Compiles `tests/c/NAME.c` with clang-19, or returns `None` (after saying so) if clang is absent.
fn compile(name: &str) -> Option<Vec<u8>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/c")
        .join(format!("{name}.c"));
    kflex_testutil::compile_c(&src)
}

#[test]
fn leaked_ringbuf_reservations_are_released_after_each_run() {
    let Some(object) = compile("leak") else {
        return;
    };
    // Unverified on purpose: the verifier rejects the leak (see the next test); this tests the
    // runtime's release of what an unverified program still holds at exit.
    let options = ExtensionOptions {
        verify: false,
        ..ExtensionOptions::default()
    };
    let ext = Extension::load("leak.o", &object, options).unwrap();
    let run = || ext.test_run("leak", &TestRunOptions::default()).unwrap();
    // Each run reserves 2 KiB + header of a 4 KiB ring and never submits.
    let r = run();
    assert_eq!(r.retval, 1, "first reservation succeeds");
    assert_eq!(
        r.resources_released, 1,
        "the runtime released the held sample"
    );
    // As in Linux, a discarded record keeps its space until the consumer passes it.
    let r = run();
    assert_eq!(r.retval, 0, "no room until the consumer advances");
    assert_eq!(r.resources_released, 0, "nothing held when reserve failed");
    // Discarded records are invisible to the consumer, which still moves past them...
    assert!(ext.map("rb").unwrap().ringbuf_records().unwrap().is_empty());
    // ...so the space is free again.
    let r = ext
        .test_run(
            "leak",
            &TestRunOptions {
                repeat: 1,
                ..TestRunOptions::default()
            },
        )
        .unwrap();
    assert_eq!(r.retval, 1);
    assert_eq!(r.resources_released, 1);
}

#[test]
fn the_verifier_rejects_the_leak_at_the_exit_that_leaks() {
    let Some(object) = compile("leak") else {
        return;
    };
    let ext = Extension::load("leak.o", &object, ExtensionOptions::default()).unwrap();
    let e = ext.program("leak").unwrap_err();
    let kflex::Error::Rejected(r) = e else {
        panic!("expected a rejection, got {e}");
    };
    assert!(r.reason.contains("unreleased reference"), "{r}");
    assert!(r.reason.contains("ringbuf sample"), "{r}");
    assert_eq!(r.insn.as_deref(), Some("exit"), "{r}");
    // Running it is refused with the same rejection.
    let e = ext
        .test_run("leak", &TestRunOptions::default())
        .unwrap_err();
    assert!(e.is_program_error());
    assert!(e.to_string().contains("leak rejected"), "{e}");
}
