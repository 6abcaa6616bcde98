use super::*;

fn one(src: &str) -> Insn {
    let v = assemble(src).unwrap_or_else(|e| panic!("{src}: {e}"));
    assert_eq!(v.len(), 1, "{src}");
    v[0]
}

fn bytes(src: &str) -> Vec<u8> {
    Insn::slice_to_bytes(&assemble(src).unwrap_or_else(|e| panic!("{src}: {e}")))
}

fn fails(src: &str, line: usize, needle: &str) {
    let e = assemble(src).expect_err(src);
    assert_eq!(e.line, line, "{e}");
    assert!(e.reason.contains(needle), "{:?} lacks {needle:?}", e.reason);
}

// Encodings checked against RFC 9669's opcode tables and llvm-mc-19 output.
#[test]
fn alu_forms() {
    assert_eq!(bytes("add %r1, %r2"), [0x0f, 0x21, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        bytes("add32 %r1, -5"),
        [0x04, 0x01, 0, 0, 0xfb, 0xff, 0xff, 0xff]
    );
    assert_eq!(bytes("sdiv %r1, %r2"), [0x3f, 0x21, 1, 0, 0, 0, 0, 0]);
    assert_eq!(bytes("smod32 %r1, 3"), [0x94, 0x01, 1, 0, 3, 0, 0, 0]);
    assert_eq!(bytes("arsh %r3, 0x3f"), [0xc7, 0x03, 0, 0, 0x3f, 0, 0, 0]);
    assert_eq!(bytes("neg %r1"), [0x87, 0x01, 0, 0, 0, 0, 0, 0]);
    assert_eq!(bytes("neg32 %r1"), [0x84, 0x01, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        bytes("mov32 %r0, 0xffffffff"),
        [0xb4, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]
    );
    assert_eq!(bytes("mov %r10, %r1"), [0xbf, 0x1a, 0, 0, 0, 0, 0, 0]);
    assert_eq!(bytes("movsx864 %r1, %r2"), [0xbf, 0x21, 8, 0, 0, 0, 0, 0]);
    assert_eq!(bytes("movsx1664 %r1, %r2"), [0xbf, 0x21, 16, 0, 0, 0, 0, 0]);
    assert_eq!(bytes("movsx3264 %r1, %r2"), [0xbf, 0x21, 32, 0, 0, 0, 0, 0]);
    assert_eq!(bytes("movsx832 %r1, %r2"), [0xbc, 0x21, 8, 0, 0, 0, 0, 0]);
    assert_eq!(bytes("movsx1632 %r1, %r2"), [0xbc, 0x21, 16, 0, 0, 0, 0, 0]);
    assert_eq!(bytes("be16 %r0"), [0xdc, 0, 0, 0, 16, 0, 0, 0]);
    assert_eq!(bytes("le64 %r0"), [0xd4, 0, 0, 0, 64, 0, 0, 0]);
    assert_eq!(bytes("swap32 %r0"), [0xd7, 0, 0, 0, 32, 0, 0, 0]);
    assert_eq!(bytes("bswap16 %r2"), [0xd7, 2, 0, 0, 16, 0, 0, 0]);
}

#[test]
fn memory_forms() {
    assert_eq!(bytes("ldxb %r0, [%r1]"), [0x71, 0x10, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        bytes("ldxdw %r0, [%r10-8]"),
        [0x79, 0xa0, 0xf8, 0xff, 0, 0, 0, 0]
    );
    assert_eq!(
        bytes("ldxh %r0, [%r1+0x10]"),
        [0x69, 0x10, 0x10, 0, 0, 0, 0, 0]
    );
    assert_eq!(
        bytes("ldxsw %r0, [%r10 - 4]"),
        [0x81, 0xa0, 0xfc, 0xff, 0, 0, 0, 0]
    );
    assert_eq!(bytes("ldxsb %r0, [%r1+2]"), [0x91, 0x10, 2, 0, 0, 0, 0, 0]);
    assert_eq!(
        bytes("stw [%r1+2], 0x11"),
        [0x62, 0x01, 2, 0, 0x11, 0, 0, 0]
    );
    assert_eq!(
        bytes("stdw [%r1], -1"),
        [0x7a, 0x01, 0, 0, 0xff, 0xff, 0xff, 0xff]
    );
    assert_eq!(bytes("stxh [%r1+2], %r3"), [0x6b, 0x31, 2, 0, 0, 0, 0, 0]);
    assert_eq!(
        bytes("lddw %r0, 0x1122334455667788"),
        [
            0x18, 0, 0, 0, 0x88, 0x77, 0x66, 0x55, 0, 0, 0, 0, 0x44, 0x33, 0x22, 0x11
        ]
    );
    assert_eq!(
        bytes("lddw %r1, -2"),
        [
            0x18, 1, 0, 0, 0xfe, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff
        ]
    );
}

#[test]
fn atomic_forms() {
    assert_eq!(
        bytes("lock add [%r10-8], %r1"),
        [0xdb, 0x1a, 0xf8, 0xff, 0, 0, 0, 0]
    );
    assert_eq!(
        bytes("lock add32 [%r10-4], %r1"),
        [0xc3, 0x1a, 0xfc, 0xff, 0, 0, 0, 0]
    );
    assert_eq!(
        bytes("lock fetch or [%r1], %r2"),
        [0xdb, 0x21, 0, 0, 0x41, 0, 0, 0]
    );
    assert_eq!(
        bytes("lock fetch xor32 [%r1], %r2"),
        [0xc3, 0x21, 0, 0, 0xa1, 0, 0, 0]
    );
    assert_eq!(
        bytes("lock and [%r1], %r2"),
        [0xdb, 0x21, 0, 0, 0x50, 0, 0, 0]
    );
    assert_eq!(
        bytes("lock xchg [%r1], %r2"),
        [0xdb, 0x21, 0, 0, 0xe1, 0, 0, 0]
    );
    assert_eq!(
        bytes("lock cmpxchg32 [%r1+4], %r2"),
        [0xc3, 0x21, 4, 0, 0xf1, 0, 0, 0]
    );
}

#[test]
fn jumps_calls_and_labels() {
    let v = assemble(
        "jeq %r1, 0x5, L1  # comment\n\
         ja +1\n\
         L1:\n\
         jsle32 %r1, %r2, -2\n\
         ja32 L1\n\
         call 5\n\
         call %r2\n\
         call local f\n\
         exit\n\
         f: mov %r0, 1\n\
         exit\n",
    )
    .unwrap();
    let want = [
        Insn::new(0x15, 1, 0, 1, 5),
        Insn::new(0x05, 0, 0, 1, 0),
        Insn::new(0xde, 1, 2, -2, 0),
        Insn::new(0x06, 0, 0, 0, -2),
        Insn::new(0x85, 0, 0, 0, 5),
        Insn::new(0x8d, 2, 0, 0, 0),
        Insn::new(0x85, 0, 1, 0, 1),
        Insn::new(0x95, 0, 0, 0, 0),
        Insn::new(0xb7, 0, 0, 0, 1),
        Insn::new(0x95, 0, 0, 0, 0),
    ];
    assert_eq!(v, want);
}

#[test]
fn exit_label_means_first_exit_unless_defined() {
    let v = assemble("lddw %r0, 1\nmov %r1, 1\njne %r0, 1, exit\nmov %r0, 2\nexit\nexit").unwrap();
    assert_eq!(v[3], Insn::new(0x55, 0, 0, 1, 1)); // slot 3 + 1 + 1 = 5, the first exit
    let v = assemble("ja exit\nexit\nexit:\nexit").unwrap();
    assert_eq!(v[0].off, 1); // the explicit label wins
}

#[test]
fn immediates_accept_unsigned_32_bit_and_signed_forms() {
    assert_eq!(one("jne %r1, 0x80000000, +1").imm, i32::MIN);
    assert_eq!(one("mov %r1, -2147483648").imm, i32::MIN);
    assert_eq!(one("mov %r1, 4294967295").imm, -1);
    assert_eq!(one("mov %r1, -0x10").imm, -16);
    assert_eq!(one("MOV %r1, 0X10").imm, 16);
}

#[test]
fn errors_name_line_and_reason() {
    fails("mov %r0, 1\nfrob %r1\n", 2, "unknown mnemonic `frob`");
    fails("mov %r11, 1", 1, "invalid register `%r11`");
    fails("mov r1, 1", 1, "expected a register");
    fails("mov %r1", 1, "expected 2 operand(s), found 1");
    fails("exit %r0", 1, "expected 0 operand(s), found 1");
    fails("mov %r1, 0x100000000", 1, "does not fit in 32 bits");
    fails("mov %r1, -2147483649", 1, "does not fit in 32 bits");
    fails("mov %r1, 12z", 1, "invalid number `12z`");
    fails("lddw %r1, 0x10000000000000000", 1, "invalid number");
    fails(
        "ldxw %r0, [%r1+40000]",
        1,
        "offset 40000 does not fit in 16 bits",
    );
    fails("ldxw %r0, %r1", 1, "expected a memory operand");
    fails("ldxsdw %r0, [%r1]", 1, "ldxsdw does not exist");
    fails("\n\nja nowhere\nexit", 3, "undefined label `nowhere`");
    fails("a:\nexit\na:\nexit", 3, "duplicate label `a`");
    fails("ja +40000\nexit", 1, "does not fit in 16 bits");
    fails("jeq %r1, 1, 1x\nexit", 1, "invalid number");
    fails("jeq %r1, 1, a-b\nexit", 1, "invalid jump target");
    fails("lock nand [%r1], %r2", 1, "unknown atomic operation `nand`");
    fails("lock", 1, "lock needs an operation");
    fails("call", 1, "call needs a helper number");
}

#[test]
fn assembled_programs_decode() {
    let src = "mov %r0, 0\nL: add %r0, 1\njlt %r0, 10, L\nlock fetch add [%r10-8], %r0\nexit";
    let slots = assemble(src).unwrap();
    let p = crate::decode::Program::decode(&slots).unwrap();
    assert_eq!(p.len(), 5);
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn token() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                "mov",
                "add32",
                "lock",
                "fetch",
                "xchg",
                "cmpxchg32",
                "ldxdw",
                "stw",
                "stxb",
                "lddw",
                "ja",
                "ja32",
                "jeq32",
                "call",
                "local",
                "exit",
                "movsx864",
                "be16",
                "%r1",
                "%r10",
                "%r11",
                "[%r1+4]",
                "[%r10-",
                "[%r2]",
                "0x7fffffff",
                "-1",
                "+3",
                "-3",
                "L",
                "L:",
                "exit:",
                ",",
                "#",
                "[",
                "]",
                "-",
                "+",
                "0x",
                "%r",
            ])
            .prop_map(str::to_string),
            "[ -~]{0,6}",
        ]
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_text(s in "\\PC{0,200}") {
            let _ = assemble(&s);
        }

        #[test]
        fn never_panics_on_token_soup(
            lines in prop::collection::vec(prop::collection::vec(token(), 0..6), 0..8)
        ) {
            let src: Vec<String> = lines.iter().map(|l| l.join(" ")).collect();
            if let Ok(slots) = assemble(&src.join("\n")) {
                let _ = crate::decode::Program::decode(&slots);
            }
        }
    }
}
