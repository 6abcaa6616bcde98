//! Cancellation through the embedding API: a JIT run past its budget is cancelled, the resources it
//! held are released and counted, and the extension keeps working.

use std::path::Path;
use std::time::{Duration, Instant};

use kflex::{Engine, Extension, ExtensionOptions, TestRunOptions};

/// `tests/c/spin_holding.c` loaded for the JIT, or `None` when clang is missing.
fn spin_holding() -> Option<Extension> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/spin_holding.c");
    let obj = kflex_testutil::compile_c(&src)?;
    let options = ExtensionOptions {
        engine: Engine::Jit,
        ..ExtensionOptions::default()
    };
    Some(Extension::load("spin_holding.o", &obj, options).expect("spin_holding loads"))
}

fn ctx(stop: u64) -> TestRunOptions {
    TestRunOptions {
        budget: Some(Duration::from_millis(2)),
        ..TestRunOptions::context(stop.to_ne_bytes().to_vec())
    }
}

#[test]
fn a_cancelled_run_releases_its_ringbuf_reservation() {
    if !Engine::JIT_SUPPORTED {
        return;
    }
    let Some(ext) = spin_holding() else {
        return;
    };
    let start = Instant::now();
    let r = ext.test_run("spin", &ctx(0)).unwrap();
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(r.engine, Engine::Jit);
    assert!(r.cancelled);
    assert_eq!(r.cancel_reason.as_deref(), Some("terminated"));
    assert_eq!(r.resources_released, 1, "the reservation was discarded");
    let events = ext.map("events").unwrap();
    assert!(events.ringbuf_records().unwrap().is_empty());
    // The ring buffer has no leaked space: a finishing run reserves and submits normally.
    let r = ext.test_run("spin", &ctx(1)).unwrap();
    assert!(!r.cancelled);
    assert_eq!((r.retval, r.resources_released), (0, 0));
    assert_eq!(
        events.ringbuf_records().unwrap(),
        vec![42u64.to_ne_bytes().to_vec()]
    );
}

#[test]
fn many_cancellations_leave_the_extension_usable() {
    if !Engine::JIT_SUPPORTED {
        return;
    }
    let Some(ext) = spin_holding() else {
        return;
    };
    let events = ext.map("events").unwrap();
    let mut released = 0;
    for i in 0..300 {
        let r = ext.test_run("spin", &ctx(0)).unwrap();
        assert!(
            r.cancelled,
            "run {i}: r0 = {} (1: the reservation failed)",
            r.retval
        );
        released += r.resources_released;
        // Discarded records hold their space until the consumer passes them, as in Linux.
        assert!(events.ringbuf_records().unwrap().is_empty());
    }
    assert_eq!(released, 300);
    // 300 leaked 16-byte reservations (header and 8-byte record) would have overflowed the 4 KiB
    // buffer; none leaked, so 50 finishing runs all reserve, and each leaves exactly one record.
    let r = ext
        .test_run(
            "spin",
            &TestRunOptions {
                repeat: 50,
                ..ctx(1)
            },
        )
        .unwrap();
    assert!(!r.cancelled);
    assert_eq!(
        ext.map("events").unwrap().ringbuf_records().unwrap().len(),
        50
    );
}
