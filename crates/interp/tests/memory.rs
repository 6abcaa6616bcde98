//! Loads, stores, atomics and context routing through the checked memory map.

mod common;
use common::*;
use kflex_runtime::{Access, AccessError};

#[test]
fn stack_loads_and_stores_of_every_size() {
    let insns = [
        lddw(1, 0x8899_aabb_ccdd_eeff),
        st(Size::DW, 10, -8, Reg(1)),
        ld(Size::B, 2, 10, -8),  // 0xff
        ld(Size::H, 3, 10, -8),  // 0xeeff
        ld(Size::W, 4, 10, -8),  // 0xccdd_eeff
        ld(Size::DW, 5, 10, -8), // all
        st(Size::W, 10, -16, Imm(-2)),
        ld(Size::DW, 6, 10, -16), // 0x0000_0000_ffff_fffe (upper half zero: fresh stack)
        st(Size::DW, 10, -24, Imm(-2)),
        ld(Size::DW, 7, 10, -24), // sign-extended imm store
        // r0 = checks packed into bits.
        mov(0, 0),
        jmp(JmpOp::Ne, 2, Imm(0xff), 1),
        alu(W64, AluOp::Or, 0, Imm(1)),
        jmp(JmpOp::Ne, 3, Imm(0xeeff), 1),
        alu(W64, AluOp::Or, 0, Imm(2)),
        lddw(8, 0xccdd_eeff),
        jmp(JmpOp::Ne, 4, Reg(8), 1),
        alu(W64, AluOp::Or, 0, Imm(4)),
        jmp(JmpOp::Ne, 5, Reg(1), 1),
        alu(W64, AluOp::Or, 0, Imm(8)),
        lddw(8, 0xffff_fffe),
        jmp(JmpOp::Ne, 6, Reg(8), 1),
        alu(W64, AluOp::Or, 0, Imm(16)),
        jmp(JmpOp::Ne, 7, Imm(-2), 1),
        alu(W64, AluOp::Or, 0, Imm(32)),
        I::Exit,
    ];
    assert_eq!(r0(&insns), 63);
}

#[test]
fn sign_extending_loads() {
    let ldsx = |size, dst| I::Load {
        size,
        dst,
        src: 10,
        off: -8,
        sign_extend: true,
    };
    for (size, expect) in [
        (Size::B, 0xffff_ffff_ffff_ff80u64),
        (Size::H, 0xffff_ffff_ffff_8080),
        (Size::W, 0xffff_ffff_8080_8080),
    ] {
        let got = r0(&[
            lddw(1, 0x0080_8080_8080_8080),
            st(Size::DW, 10, -8, Reg(1)),
            ldsx(size, 0),
            I::Exit,
        ]);
        assert_eq!(got, expect, "{size:?}");
    }
}

#[test]
fn r10_points_at_the_top_of_a_512_byte_frame() {
    // The lowest byte of the frame is accessible, the byte at r10 and below r10-512 are not.
    assert_eq!(
        r0(&[
            st(Size::B, 10, -512, Imm(7)),
            ld(Size::B, 0, 10, -512),
            I::Exit
        ]),
        7
    );
    let f = fault(&[mov(0, 0), ld(Size::B, 0, 10, 0), I::Exit]);
    assert_eq!(f.pc, 1);
    assert!(matches!(
        f.kind,
        FaultKind::Memory(AccessError::OutOfBounds { .. })
    ));
    let f = fault(&[ld(Size::B, 0, 10, -513), I::Exit]);
    assert_eq!(f.pc, 0);
    assert!(matches!(f.kind, FaultKind::Memory(_)), "{f}");
    // An 8-byte load straddling the top of the frame runs past its end.
    let f = fault(&[ld(Size::DW, 0, 10, -4), I::Exit]);
    match &f.kind {
        FaultKind::Memory(AccessError::PastEnd { kind, len, .. }) => {
            assert_eq!(*kind, RegionKind::Stack(0));
            assert_eq!(*len, 8);
        }
        other => panic!("unexpected fault {other:?}"),
    }
    let text = f.to_string();
    assert!(text.starts_with("instruction 0 ("), "{text}");
    assert!(text.contains("stack frame 0"), "{text}");
}

#[test]
fn input_memory_is_read_and_written_in_place() {
    let mut buf = vec![1u8, 2, 3, 4, 5, 6, 7, 8];
    let mut h = Harness::new();
    let addr = h.map(&mut buf, RegionKind::Input, true);
    let out = h
        .run(
            &[
                ld(Size::W, 0, 1, 4),
                st(Size::H, 1, 0, Imm(0x0b0a)),
                I::Exit,
            ],
            [addr, 8, 0, 0, 0],
        )
        .unwrap();
    assert_eq!(out.retval, 0x0807_0605);
    assert_eq!(h.mem.regions().len(), 1, "only the input region stays");
    h.mem.remove(addr);
    assert_eq!(buf, [0x0a, 0x0b, 3, 4, 5, 6, 7, 8]);
}

#[test]
fn read_only_regions_refuse_stores_and_atomics() {
    let mut buf = vec![0u8; 16];
    let mut h = Harness::new();
    let addr = h.map(&mut buf, RegionKind::Input, false);
    let f = h
        .run(
            &[mov(0, 0), st(Size::W, 1, 0, Imm(1)), I::Exit],
            [addr, 0, 0, 0, 0],
        )
        .unwrap_err();
    assert_eq!(f.pc, 1);
    assert!(
        matches!(f.kind, FaultKind::Memory(AccessError::ReadOnly { .. })),
        "{f}"
    );
    let atomic = I::Atomic {
        size: Size::DW,
        op: AtomicOp::Add,
        fetch: false,
        dst: 1,
        src: 0,
        off: 0,
    };
    let f = h
        .run(&[mov(0, 0), atomic, I::Exit], [addr, 0, 0, 0, 0])
        .unwrap_err();
    assert!(
        matches!(f.kind, FaultKind::Memory(AccessError::ReadOnly { .. })),
        "{f}"
    );
    // Reads are fine.
    let out = h
        .run(&[ld(Size::DW, 0, 1, 8), I::Exit], [addr, 0, 0, 0, 0])
        .unwrap();
    assert_eq!(out.retval, 0);
    h.mem.remove(addr);
}

#[test]
fn wild_pointers_fault_and_frames_are_removed_even_on_faults() {
    let mut h = Harness::new();
    let f = h
        .run(&[lddw(1, 0x1000), ld(Size::DW, 0, 1, 0), I::Exit], [0; 5])
        .unwrap_err();
    assert_eq!(f.pc, 2, "lddw occupies slots 0 and 1");
    assert_eq!(
        f.kind,
        FaultKind::Memory(AccessError::OutOfBounds {
            addr: 0x1000,
            len: 8,
            access: Access::Read
        })
    );
    assert!(
        f.disasm.contains("r1"),
        "disasm names the instruction: {}",
        f.disasm
    );
    assert!(h.mem.regions().is_empty());
}

/// A context hook that serves loads from a fixed pattern and records stores.
struct FakeCtx {
    stores: Vec<(u64, u8, u64)>,
}

impl ContextAccess for FakeCtx {
    fn load(&mut self, offset: u64, size: u8) -> Result<u64, String> {
        if offset == 12 {
            return Err("field 12 is not readable".into());
        }
        Ok(0x1000 + offset * 0x10 + u64::from(size))
    }

    fn store(&mut self, offset: u64, size: u8, value: u64) -> Result<(), String> {
        if offset != 8 {
            return Err(format!("offset {offset} is read-only"));
        }
        self.stores.push((offset, size, value));
        Ok(())
    }
}

#[test]
fn context_accesses_are_routed_to_the_hook() {
    let mut backing = vec![0xeeu8; 32];
    let mut h = Harness::new();
    // Registered read-only: the hook, not the region, decides which fields are writable.
    let base = h.map(&mut backing, RegionKind::Context, false);
    let mut ctx = FakeCtx { stores: Vec::new() };
    let prog = program(&[
        ld(Size::W, 0, 1, 4),       // hook: 0x1000 + 4*0x10 + 4
        st(Size::W, 1, 8, Imm(77)), // hook records (8, 4, 77)
        st(Size::DW, 1, 8, Reg(0)), // hook records (8, 8, r0)
        I::Exit,
    ]);
    let out = h
        .run_program(&prog, [base, 0, 0, 0, 0], Some(&mut ctx))
        .unwrap();
    assert_eq!(out.retval, 0x1044);
    assert_eq!(ctx.stores, vec![(8, 4, 77), (8, 8, 0x1044)]);

    // Refused load and store.
    let prog = program(&[ld(Size::W, 0, 1, 12), I::Exit]);
    let f = h
        .run_program(&prog, [base, 0, 0, 0, 0], Some(&mut ctx))
        .unwrap_err();
    assert_eq!(
        f.kind,
        FaultKind::Context {
            offset: 12,
            size: 4,
            reason: "field 12 is not readable".into()
        }
    );
    let prog = program(&[mov(0, 0), st(Size::B, 1, 0, Imm(1)), I::Exit]);
    let f = h
        .run_program(&prog, [base, 0, 0, 0, 0], Some(&mut ctx))
        .unwrap_err();
    assert!(f.to_string().contains("offset 0 is read-only"), "{f}");

    // Past the end of the context region: the memory map refuses before the hook is asked.
    let prog = program(&[st(Size::DW, 1, 28, Imm(1)), I::Exit]);
    let f = h
        .run_program(&prog, [base, 0, 0, 0, 0], Some(&mut ctx))
        .unwrap_err();
    assert!(
        matches!(f.kind, FaultKind::Memory(AccessError::PastEnd { .. })),
        "{f}"
    );

    // Atomics on the context are never allowed.
    let prog = program(&[
        mov(2, 1),
        I::Atomic {
            size: Size::W,
            op: AtomicOp::Add,
            fetch: true,
            dst: 1,
            src: 2,
            off: 8,
        },
        I::Exit,
    ]);
    let f = h
        .run_program(&prog, [base, 0, 0, 0, 0], Some(&mut ctx))
        .unwrap_err();
    assert_eq!(f.kind, FaultKind::AtomicOnContext { offset: 8 });
    h.mem.remove(base);
    assert!(
        backing.iter().all(|&b| b == 0xee),
        "the hook, not memory, saw the stores"
    );
}

#[test]
fn context_without_a_hook_is_plain_memory() {
    let mut backing = vec![0u8; 8];
    backing[0] = 42;
    let mut h = Harness::new();
    let base = h.map(&mut backing, RegionKind::Context, false);
    let out = h
        .run(&[ld(Size::B, 0, 1, 0), I::Exit], [base, 0, 0, 0, 0])
        .unwrap();
    assert_eq!(out.retval, 42);
    let f = h
        .run(
            &[mov(0, 0), st(Size::B, 1, 0, Imm(1)), I::Exit],
            [base, 0, 0, 0, 0],
        )
        .unwrap_err();
    assert!(matches!(
        f.kind,
        FaultKind::Memory(AccessError::ReadOnly { .. })
    ));
    h.mem.remove(base);
}

fn atomic(size: Size, op: AtomicOp, fetch: bool, src: u8) -> Instruction {
    I::Atomic {
        size,
        op,
        fetch,
        dst: 10,
        src,
        off: -8,
    }
}

/// Stores `init` at r10-8, runs `op` with r1 = `operand` (and r0 = `r0`), returns
/// (memory after, r0 after, r1 after).
fn run_atomic(
    size: Size,
    op: AtomicOp,
    fetch: bool,
    init: u64,
    operand: u64,
    r0v: u64,
) -> (u64, u64, u64) {
    let base = [
        lddw(2, init),
        st(Size::DW, 10, -8, Reg(2)),
        lddw(1, operand),
        lddw(0, r0v),
        atomic(size, op, fetch, 1),
    ];
    let get = |tail: Instruction| {
        let mut p = base.to_vec();
        p.push(tail);
        p.push(I::Exit);
        r0(&p)
    };
    (
        get(ld(Size::DW, 0, 10, -8)),
        get(I::Ja { off: 0 }),
        get(movr(0, 1)),
    )
}

#[test]
fn atomic_read_modify_write() {
    let init = 0xffff_ffff_0000_000fu64;
    // 64-bit, without fetch: src unchanged.
    assert_eq!(
        run_atomic(Size::DW, AtomicOp::Add, false, init, 1, 0),
        (init + 1, 0, 1)
    );
    assert_eq!(
        run_atomic(Size::DW, AtomicOp::Or, false, init, 0x30, 0).0,
        init | 0x30
    );
    assert_eq!(
        run_atomic(Size::DW, AtomicOp::And, false, init, 0x3, 0).0,
        0x3
    );
    assert_eq!(
        run_atomic(Size::DW, AtomicOp::Xor, false, init, 0xf, 0).0,
        init ^ 0xf
    );
    // With fetch: src receives the old value.
    assert_eq!(
        run_atomic(Size::DW, AtomicOp::Add, true, init, 1, 0),
        (init + 1, 0, init)
    );
    // 32-bit: only the low word changes, the fetched value is zero-extended.
    assert_eq!(
        run_atomic(Size::W, AtomicOp::Add, true, init, 0xffff_ffff, 0),
        (0xffff_ffff_0000_000e, 0, 0xf)
    );
    let (mem, _, r1) = run_atomic(Size::W, AtomicOp::Xchg, true, init, 0x1_2345_6789, 0);
    assert_eq!((mem, r1), (0xffff_ffff_2345_6789, 0xf));
    let (mem, _, r1) = run_atomic(Size::DW, AtomicOp::Xchg, true, init, 5, 0);
    assert_eq!((mem, r1), (5, init));
}

#[test]
fn atomic_compare_exchange() {
    let init = 0x1111_2222_3333_4444u64;
    // Success: memory replaced, r0 = old, src unchanged.
    assert_eq!(
        run_atomic(Size::DW, AtomicOp::Cmpxchg, true, init, 9, init),
        (9, init, 9)
    );
    // Failure: memory unchanged, r0 = old.
    assert_eq!(
        run_atomic(Size::DW, AtomicOp::Cmpxchg, true, init, 9, 1),
        (init, init, 9)
    );
    // 32-bit compares the low halves and zero-extends the old value into r0.
    assert_eq!(
        run_atomic(
            Size::W,
            AtomicOp::Cmpxchg,
            true,
            init,
            9,
            0xdead_0000_3333_4444
        ),
        (0x1111_2222_0000_0009, 0x3333_4444, 9)
    );
    assert_eq!(
        run_atomic(Size::W, AtomicOp::Cmpxchg, true, init, 9, 0x3333_4445),
        (init, 0x3333_4444, 9)
    );
}

#[test]
fn misaligned_atomics_fault() {
    let f = fault(&[
        mov(1, 1),
        I::Atomic {
            size: Size::DW,
            op: AtomicOp::Add,
            fetch: false,
            dst: 10,
            src: 1,
            off: -12,
        },
        I::Exit,
    ]);
    assert_eq!(f.pc, 1);
    assert!(
        matches!(f.kind, FaultKind::MisalignedAtomic { size: 8, .. }),
        "{f}"
    );
}

#[test]
fn load_acquire_and_store_release() {
    let v = r0(&[
        lddw(1, 0x0102_0304_0506_0708),
        I::StoreRelease {
            size: Size::DW,
            dst: 10,
            src: 1,
            off: -8,
        },
        I::StoreRelease {
            size: Size::B,
            dst: 10,
            src: 1,
            off: -16,
        },
        I::LoadAcquire {
            size: Size::W,
            dst: 0,
            src: 10,
            off: -8,
        },
        I::LoadAcquire {
            size: Size::DW,
            dst: 2,
            src: 10,
            off: -16,
        },
        alu(W64, AluOp::Lsh, 2, Imm(32)),
        alu(W64, AluOp::Or, 0, Reg(2)),
        I::Exit,
    ]);
    assert_eq!(v, 0x0000_0008_0506_0708);
}
