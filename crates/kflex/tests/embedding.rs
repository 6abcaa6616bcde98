//! The embedding API on bare bytecode: host helpers, faults, rejections, test-run options.

use std::sync::Arc;

use kflex::{
    ArgKind, Extension, ExtensionOptions, HelperDef, HelperError, ProgType, RetKind, Signature,
    TestRunOptions,
};
use kflex_isa::{Insn, op};

const EXIT: Insn = Insn::new(op::JMP | op::EXIT, 0, 0, 0, 0);

fn mov64_imm(dst: u8, imm: i32) -> Insn {
    Insn::new(op::ALU64 | op::MOV | op::K, dst, 0, 0, imm)
}

fn call(id: i32) -> Insn {
    Insn::new(op::JMP | op::CALL, 0, 0, 0, id)
}

/// A host helper summing `r2` bytes at `r1`, read through the checked memory map.
fn sum_helper(id: u32) -> HelperDef {
    HelperDef {
        id,
        name: "host_sum_bytes".to_string(),
        sig: Signature::new(
            &[
                ArgKind::MemRead { size_arg: 1 },
                ArgKind::MemSize { zero_ok: true },
            ],
            RetKind::Scalar,
        ),
        func: Arc::new(|call| {
            let bytes = call.mem.read_bytes(call.args[0], call.args[1])?;
            Ok(bytes.iter().map(|&b| u64::from(b)).sum())
        }),
    }
}

#[test]
fn host_helper_reads_the_context_through_checked_memory() {
    // r2 = 8; call host_sum_bytes(ctx, 8); exit
    let prog = [mov64_imm(2, 8), call(0x1000), EXIT];
    let ext = Extension::from_raw(
        &prog,
        Some(ProgType::Syscall),
        ExtensionOptions {
            helpers: vec![sum_helper(0x1000)],
            // Unverified on purpose: the verifier (like Linux) does not accept the context as
            // helper memory; this test is about the helper's own checked reads.
            verify: false,
            ..ExtensionOptions::default()
        },
    )
    .unwrap();
    let ctx: Vec<u8> = (1..=8).collect();
    let r = ext
        .test_run(
            kflex::RAW_PROGRAM_NAME,
            &TestRunOptions::context(ctx.clone()),
        )
        .unwrap();
    assert_eq!(r.retval, ctx.iter().map(|&b| u64::from(b)).sum::<u64>());
    assert_eq!(r.instructions_per_run, 3);
    assert_eq!(r.ctx_out, Some(ctx));
}

#[test]
fn host_helper_cannot_read_outside_the_program_memory() {
    // r2 = 64 but the context has only 8 bytes: the helper's checked read fails and stops the run.
    let prog = [mov64_imm(2, 64), call(0x1000), EXIT];
    // Unverified on purpose (the verifier refuses the context as helper memory): this tests the
    // runtime's checks, which must hold even for a program nobody verified.
    let options = ExtensionOptions {
        verify: false,
        ..ExtensionOptions::default()
    };
    let mut ext = Extension::from_raw(&prog, Some(ProgType::Syscall), options).unwrap();
    ext.register_helper(sum_helper(0x1000)).unwrap();
    assert!(
        ext.register_helper(sum_helper(0x1000)).is_err(),
        "duplicate id refused"
    );
    let e = ext
        .test_run(
            kflex::RAW_PROGRAM_NAME,
            &TestRunOptions::context(vec![0; 8]),
        )
        .unwrap_err();
    let kflex::Error::Fault(f) = e else {
        panic!("expected a fault, got {e}");
    };
    assert_eq!(f.pc, 1, "{f}");
}

/// `*(u64 *)(r10 - 8) = 0x0807060504030201; r1 = r10 - 8; r2 = 8; call 0x1000; exit`.
fn sum_stack_program() -> Vec<Insn> {
    let value: u64 = 0x0807_0605_0403_0201;
    vec![
        Insn::new(op::LD | op::IMM | op::DW, 3, 0, 0, value as u32 as i32),
        Insn::new(0, 0, 0, 0, (value >> 32) as u32 as i32),
        Insn::new(op::STX | op::MEM | op::DW, 10, 3, -8, 0),
        Insn::new(op::ALU64 | op::MOV | op::X, 1, 10, 0, 0),
        Insn::new(op::ALU64 | op::ADD | op::K, 1, 0, 0, -8),
        mov64_imm(2, 8),
        call(0x1000),
        EXIT,
    ]
}

#[test]
fn verified_program_calls_a_host_helper_with_stack_memory() {
    let ext = Extension::from_raw(
        &sum_stack_program(),
        Some(ProgType::Syscall),
        ExtensionOptions {
            helpers: vec![sum_helper(0x1000)],
            ..ExtensionOptions::default()
        },
    )
    .unwrap();
    assert!(ext.verifies());
    let p = ext.program(kflex::RAW_PROGRAM_NAME).unwrap();
    let v = p.verified.as_ref().expect("verified by default");
    assert!(v.stats.insns_processed >= 7, "{:?}", v.stats);
    let r = ext
        .test_run(kflex::RAW_PROGRAM_NAME, &TestRunOptions::default())
        .unwrap();
    assert_eq!(r.retval, 1 + 2 + 3 + 4 + 5 + 6 + 7 + 8);
}

#[test]
fn registering_the_missing_helper_verifies_the_program_again() {
    let mut ext = Extension::from_raw(
        &sum_stack_program(),
        Some(ProgType::Syscall),
        ExtensionOptions::default(),
    )
    .unwrap();
    // Helper 0x1000 does not exist yet: the verifier rejects the call.
    let e = ext.program(kflex::RAW_PROGRAM_NAME).unwrap_err();
    let kflex::Error::Rejected(r) = e else {
        panic!("expected a rejection, got {e}");
    };
    assert_eq!(r.pc, Some(6), "{r}");
    ext.register_helper(sum_helper(0x1000)).unwrap();
    let p = ext.program(kflex::RAW_PROGRAM_NAME).unwrap();
    assert!(p.verified.is_some());
    let r = ext
        .test_run(kflex::RAW_PROGRAM_NAME, &TestRunOptions::default())
        .unwrap();
    assert_eq!(r.retval, 36);
}

#[test]
fn host_helper_clashing_with_a_builtin_is_refused_when_reverifying() {
    let mut ext = Extension::from_raw(
        &sum_stack_program(),
        Some(ProgType::Syscall),
        ExtensionOptions::default(),
    )
    .unwrap();
    // Helper 1 is bpf_map_lookup_elem.
    let e = ext.register_helper(sum_helper(1)).unwrap_err();
    assert!(matches!(e, kflex::Error::Helper(_)), "{e}");
    // The extension is unchanged: the clashing helper was not kept.
    ext.register_helper(sum_helper(0x1000)).unwrap();
    assert!(ext.program(kflex::RAW_PROGRAM_NAME).is_ok());
}

#[test]
fn unverified_extensions_record_no_facts() {
    let ext = Extension::from_raw(
        &[mov64_imm(0, 1), EXIT],
        Some(ProgType::Syscall),
        ExtensionOptions {
            verify: false,
            ..ExtensionOptions::default()
        },
    )
    .unwrap();
    assert!(!ext.verifies());
    assert!(ext.program("main").unwrap().verified.is_none());
}

#[test]
fn helper_errors_are_faults() {
    let failing = HelperDef {
        id: 0x2000,
        name: "host_fail".to_string(),
        sig: Signature::new(&[], RetKind::Scalar),
        func: Arc::new(|_| Err(HelperError::Unavailable("not today".to_string()))),
    };
    let ext = Extension::from_raw(
        &[call(0x2000), EXIT],
        Some(ProgType::Syscall),
        ExtensionOptions {
            helpers: vec![failing],
            ..ExtensionOptions::default()
        },
    )
    .unwrap();
    let e = ext
        .test_run("main", &TestRunOptions::default())
        .unwrap_err();
    match e {
        kflex::Error::Fault(f) => {
            assert_eq!(f.pc, 0);
            assert!(f.message.contains("not today"), "{}", f.message);
        }
        other => panic!("expected a fault, got {other}"),
    }
}

#[test]
fn out_of_bounds_load_faults_with_the_instruction() {
    // r0 = *(u64 *)(r1 + 4096): past the end of an 8-byte syscall context.
    let prog = [Insn::new(op::LDX | op::MEM | op::DW, 0, 1, 4096, 0), EXIT];
    let ext =
        Extension::from_raw(&prog, Some(ProgType::Syscall), ExtensionOptions::default()).unwrap();
    let e = ext
        .test_run("main", &TestRunOptions::context(vec![0; 8]))
        .unwrap_err();
    let kflex::Error::Fault(f) = e else {
        panic!("expected a fault");
    };
    assert_eq!(f.pc, 0);
}

#[test]
fn malformed_bytecode_is_rejected_at_load() {
    let e = Extension::from_raw(
        &[Insn::new(0xff, 0, 0, 0, 0), EXIT],
        Some(ProgType::Syscall),
        ExtensionOptions::default(),
    )
    .unwrap_err();
    assert!(e.is_program_error());
    let kflex::Error::Rejected(r) = e else {
        panic!("expected a rejection");
    };
    assert_eq!(r.pc, Some(0));
    // A program that does not end in exit.
    let e = Extension::from_raw(&[mov64_imm(0, 1)], None, ExtensionOptions::default()).unwrap_err();
    assert!(e.is_program_error(), "{e}");
}

#[test]
fn instruction_budget_stops_infinite_loops() {
    // loop: goto loop
    let prog = [Insn::new(op::JMP | op::JA, 0, 0, -1, 0), EXIT];
    let ext = Extension::from_raw(
        &prog,
        Some(ProgType::Syscall),
        ExtensionOptions {
            limits: Some(kflex::Limits {
                max_instructions: 10_000,
                ..kflex::Limits::default()
            }),
            // The instruction budget is the interpreter's; the JIT has the watchdog (below).
            engine: kflex::Engine::Interp,
            ..ExtensionOptions::default()
        },
    )
    .unwrap();
    let e = ext
        .test_run("main", &TestRunOptions::default())
        .unwrap_err();
    assert!(e.to_string().contains("10000"), "{e}");
}

#[test]
fn the_jit_cancels_an_endless_loop_within_its_budget() {
    if !kflex::Engine::JIT_SUPPORTED {
        return;
    }
    // loop: goto loop
    let prog = [Insn::new(op::JMP | op::JA, 0, 0, -1, 0), EXIT];
    let ext = Extension::from_raw(
        &prog,
        Some(ProgType::Syscall),
        ExtensionOptions {
            engine: kflex::Engine::Jit,
            ..ExtensionOptions::default()
        },
    )
    .unwrap();
    let budget = std::time::Duration::from_millis(20);
    let start = std::time::Instant::now();
    let r = ext
        .test_run(
            "main",
            &TestRunOptions {
                budget: Some(budget),
                ..TestRunOptions::default()
            },
        )
        .unwrap();
    let took = start.elapsed();
    assert_eq!(r.engine, kflex::Engine::Jit);
    assert!(r.cancelled);
    assert_eq!(r.cancel_reason.as_deref(), Some("terminated"));
    assert!(took >= budget, "stopped after {took:?}");
    assert!(took < budget * 50, "stopped only after {took:?}");
    // The host carries on: the same extension runs again and is cancelled again.
    let again = ext.test_run("main", &TestRunOptions::default()).unwrap();
    assert!(again.cancelled);
}

#[test]
fn program_without_a_type_cannot_be_test_run() {
    let ext =
        Extension::from_raw(&[mov64_imm(0, 1), EXIT], None, ExtensionOptions::default()).unwrap();
    let e = ext
        .test_run("main", &TestRunOptions::default())
        .unwrap_err();
    assert!(!e.is_program_error());
    assert!(e.to_string().contains("no program type"), "{e}");
}
