use super::*;

fn ins(opcode: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn::new(opcode, dst, src, off, imm)
}

const EXIT: Insn = Insn::new(0x95, 0, 0, 0, 0);

fn one(i: Insn) -> Result<Instruction, String> {
    Instruction::decode(i, None)
}

fn bytes(b: [u8; 8]) -> Insn {
    Insn::from_bytes(b)
}

/// Asserts that decoding `slots` fails at `pc` with a reason containing `needle`.
fn rejects(slots: &[Insn], pc: usize, needle: &str) {
    match Program::decode(slots) {
        Ok(p) => panic!("expected rejection ({needle}), decoded {p:?}"),
        Err(e) => {
            assert_eq!(e.pc, pc, "wrong pc in {e}");
            assert!(
                e.reason.contains(needle),
                "reason {:?} lacks {needle:?}",
                e.reason
            );
        }
    }
}

// ---- Known encodings (bytes taken from llvm-mc-19 -mcpu=v4 output) ----

#[test]
fn decodes_llvm_encodings() {
    let cases: &[([u8; 8], Instruction)] = &[
        (
            [0x8d, 0x02, 0, 0, 0, 0, 0, 0],
            Instruction::Callx { reg: 2 },
        ),
        ([0x06, 0, 0, 0, 3, 0, 0, 0], Instruction::Ja { off: 3 }),
        ([0xe5, 0, 2, 0, 0, 0, 0, 0], Instruction::MayGoto { off: 2 }),
        (
            [0xbf, 0x21, 1, 0, 0, 0, 1, 0],
            Instruction::AddrSpaceCast {
                dst: 1,
                src: 2,
                dst_as: 1,
                src_as: 0,
            },
        ),
        (
            [0x07, 0x01, 0, 0, 0xff, 0xff, 0xff, 0xff],
            Instruction::Alu {
                width: Width::W64,
                op: AluOp::Add,
                dst: 1,
                src: Operand::Imm(-1),
            },
        ),
        (
            [0x3c, 0x21, 1, 0, 0, 0, 0, 0],
            Instruction::Alu {
                width: Width::W32,
                op: AluOp::SDiv,
                dst: 1,
                src: Operand::Reg(2),
            },
        ),
        (
            [0xbf, 0x21, 8, 0, 0, 0, 0, 0],
            Instruction::MovSx {
                width: Width::W64,
                dst: 1,
                src: 2,
                bits: 8,
            },
        ),
        (
            [0xd7, 0x00, 0, 0, 16, 0, 0, 0],
            Instruction::Endian {
                dst: 0,
                bits: 16,
                kind: EndianKind::Swap,
            },
        ),
        (
            [0xdc, 0x00, 0, 0, 32, 0, 0, 0],
            Instruction::Endian {
                dst: 0,
                bits: 32,
                kind: EndianKind::ToBe,
            },
        ),
        (
            [0x91, 0x21, 4, 0, 0, 0, 0, 0],
            Instruction::Load {
                size: Size::B,
                dst: 1,
                src: 2,
                off: 4,
                sign_extend: true,
            },
        ),
        (
            [0xdb, 0x21, 8, 0, 0x01, 0, 0, 0],
            Instruction::Atomic {
                size: Size::DW,
                op: AtomicOp::Add,
                fetch: true,
                dst: 1,
                src: 2,
                off: 8,
            },
        ),
        (
            [0xc3, 0x21, 0, 0, 0xf1, 0, 0, 0],
            Instruction::Atomic {
                size: Size::W,
                op: AtomicOp::Cmpxchg,
                fetch: true,
                dst: 1,
                src: 2,
                off: 0,
            },
        ),
        (
            [0xdb, 0x10, 0, 0, 0x00, 0x01, 0, 0],
            Instruction::LoadAcquire {
                size: Size::DW,
                dst: 0,
                src: 1,
                off: 0,
            },
        ),
        (
            [0xd3, 0x21, 0, 0, 0x10, 0x01, 0, 0],
            Instruction::StoreRelease {
                size: Size::B,
                dst: 1,
                src: 2,
                off: 0,
            },
        ),
        (
            [0x7a, 0x0a, 0xf8, 0xff, 7, 0, 0, 0],
            Instruction::Store {
                size: Size::DW,
                dst: 10,
                off: -8,
                src: Operand::Imm(7),
            },
        ),
        (
            [0x2e, 0x21, 3, 0, 0, 0, 0, 0],
            Instruction::Jump {
                width: Width::W32,
                op: JmpOp::Gt,
                dst: 1,
                src: Operand::Reg(2),
                off: 3,
            },
        ),
        (
            [0x85, 0x10, 0, 0, 0xfe, 0xff, 0xff, 0xff],
            Instruction::CallLocal { imm: -2 },
        ),
        (
            [0x85, 0x20, 0, 0, 9, 0, 0, 0],
            Instruction::CallKfunc { btf_id: 9 },
        ),
    ];
    for (b, want) in cases {
        assert_eq!(one(bytes(*b)).as_ref(), Ok(want), "bytes {b:02x?}");
        if b[0] != 0x06 {
            // (gotol with a small offset re-encodes as the 16-bit ja; see ja_encodes_...)
            assert_eq!(want.encode(), vec![bytes(*b)], "encode {want:?}");
        }
    }
}

#[test]
fn lddw_combines_both_immediates() {
    let s0 = ins(0x18, 1, 0, 0, 0x4433_2211);
    let s1 = ins(0, 0, 0, 0, 0x8877_6655_u32 as i32);
    let p = Program::decode(&[s0, s1, EXIT]).unwrap();
    assert_eq!(
        p.get(0),
        Some(&Instruction::LoadImm64 {
            dst: 1,
            pseudo: 0,
            imm: 0x8877_6655_4433_2211
        })
    );
    assert_eq!(p.get(1), None);
    assert_eq!(p.get(2), Some(&Instruction::Exit));
    assert_eq!(p.get(3), None);
    assert_eq!(p.len(), 3);
    assert_eq!(p.iter().map(|(pc, _)| pc).collect::<Vec<_>>(), vec![0, 2]);
}

/// The opcodes defined by RFC 9669 (v1..v4) plus the Linux extensions, listed by hand.
fn expected_opcodes() -> Vec<u8> {
    let mut v = vec![0x18];
    v.extend([0x61, 0x69, 0x71, 0x79, 0x81, 0x89, 0x91]);
    v.extend([0x62, 0x6a, 0x72, 0x7a]);
    v.extend([0x63, 0x6b, 0x73, 0x7b, 0xc3, 0xcb, 0xd3, 0xdb]);
    for class in [0x04u8, 0x07] {
        for code in [
            0x00u8, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x90, 0xa0, 0xb0, 0xc0,
        ] {
            v.push(code | class);
            v.push(code | 0x08 | class);
        }
        v.push(0x80 | class);
    }
    v.extend([0xd4, 0xdc, 0xd7]);
    for class in [0x05u8, 0x06] {
        v.push(class);
        for code in [
            0x10u8, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0xa0, 0xb0, 0xc0, 0xd0,
        ] {
            v.push(code | class);
            v.push(code | 0x08 | class);
        }
    }
    v.extend([0x85, 0x8d, 0x95, 0xe5]);
    v.sort_unstable();
    v
}

#[test]
fn exactly_the_defined_opcodes_decode() {
    let mut found = Vec::new();
    for opcode in 0..=255u8 {
        let mut ok = false;
        for dst in [0u8, 1] {
            for src in [0u8, 1] {
                for off in [0i16, 1, 8] {
                    for imm in [0i32, 1, 16, 0x100] {
                        let i = ins(opcode, dst, src, off, imm);
                        if let Ok(d) = Instruction::decode(i, Some(ins(0, 0, 0, 0, 0))) {
                            ok = true;
                            let enc = d.encode();
                            let again = Instruction::decode(enc[0], enc.get(1).copied());
                            assert_eq!(again, Ok(d), "round trip of {i:?}");
                        }
                    }
                }
            }
        }
        if ok {
            found.push(opcode);
        }
    }
    let found: Vec<String> = found.iter().map(|o| format!("{o:#04x}")).collect();
    let want: Vec<String> = expected_opcodes()
        .iter()
        .map(|o| format!("{o:#04x}"))
        .collect();
    assert_eq!(found, want);
}

// ---- Rejection rules ----

#[test]
fn rejects_empty_program() {
    rejects(&[], 0, "empty program");
}

#[test]
fn rejects_unknown_opcodes() {
    rejects(&[ins(0xe4, 0, 0, 0, 0), EXIT], 0, "unknown opcode 0xe4");
    rejects(&[ins(0xf7, 0, 0, 0, 0), EXIT], 0, "unknown opcode 0xf7");
    rejects(&[ins(0xf5, 0, 0, 0, 0), EXIT], 0, "unknown opcode 0xf5");
    rejects(&[ins(0x96, 0, 0, 0, 0), EXIT], 0, "unknown opcode 0x96"); // JMP32 exit
    rejects(&[ins(0x86, 0, 0, 0, 1), EXIT], 0, "unknown opcode 0x86"); // JMP32 call
    rejects(&[ins(0x8c, 1, 1, 0, 0), EXIT], 0, "unknown opcode 0x8c"); // neg with X
    rejects(&[ins(0xdf, 1, 0, 0, 16), EXIT], 0, "unknown opcode 0xdf"); // ALU64 END X
    rejects(&[ins(0x99, 1, 2, 0, 0), EXIT], 0, "unknown opcode 0x99"); // MEMSX DW
    rejects(&[ins(0x0d, 0, 0, 0, 0), EXIT], 0, "unknown opcode 0x0d"); // ja with X
    rejects(&[EXIT, ins(0x82, 1, 0, 0, 0)], 1, "unknown opcode 0x82"); // ST MEMSX
}

#[test]
fn rejects_legacy_packet_access() {
    rejects(&[ins(0x20, 0, 0, 0, 0), EXIT], 0, "legacy packet access");
    rejects(&[ins(0x30, 0, 0, 0, 0), EXIT], 0, "legacy packet access");
    rejects(&[ins(0x40, 0, 1, 0, 0), EXIT], 0, "legacy packet access");
    rejects(&[ins(0x50, 0, 1, 0, 0), EXIT], 0, "legacy packet access");
}

#[test]
fn rejects_nonzero_reserved_fields() {
    rejects(
        &[ins(0x07, 1, 2, 0, 1), EXIT],
        0,
        "reserved src field must be 0, found 2",
    );
    rejects(
        &[ins(0x0f, 1, 2, 0, 5), EXIT],
        0,
        "reserved imm field must be 0, found 5",
    );
    rejects(
        &[ins(0x07, 1, 0, 3, 1), EXIT],
        0,
        "reserved off field must be 0, found 3",
    );
    rejects(
        &[ins(0x87, 1, 0, 0, 1), EXIT],
        0,
        "reserved imm field must be 0, found 1",
    );
    rejects(
        &[ins(0xb7, 1, 0, 8, 1), EXIT],
        0,
        "reserved off field must be 0, found 8",
    );
    rejects(
        &[ins(0xd4, 1, 0, 1, 16), EXIT],
        0,
        "reserved off field must be 0",
    );
    rejects(
        &[ins(0x61, 1, 2, 0, 4), EXIT],
        0,
        "reserved imm field must be 0, found 4",
    );
    rejects(
        &[ins(0x62, 1, 2, 0, 4), EXIT],
        0,
        "reserved src field must be 0, found 2",
    );
    rejects(
        &[ins(0x63, 1, 2, 0, 4), EXIT],
        0,
        "reserved imm field must be 0, found 4",
    );
    rejects(
        &[ins(0x95, 0, 0, 1, 0)],
        0,
        "reserved off field must be 0, found 1",
    );
    rejects(
        &[ins(0x95, 1, 0, 0, 0)],
        0,
        "reserved dst field must be 0, found 1",
    );
    rejects(
        &[ins(0x05, 0, 0, 0, 1), EXIT],
        0,
        "reserved imm field must be 0, found 1",
    );
    rejects(
        &[ins(0x06, 0, 0, 1, 0), EXIT],
        0,
        "reserved off field must be 0, found 1",
    );
    rejects(
        &[ins(0x85, 1, 0, 0, 1), EXIT],
        0,
        "reserved dst field must be 0, found 1",
    );
    rejects(
        &[ins(0x8d, 1, 2, 0, 0), EXIT],
        0,
        "reserved src field must be 0, found 2",
    );
    rejects(
        &[ins(0x8d, 1, 0, 0, 3), EXIT],
        0,
        "reserved imm field must be 0, found 3",
    );
    rejects(
        &[ins(0x15, 1, 2, 0, 0), EXIT],
        0,
        "reserved src field must be 0, found 2",
    );
    rejects(
        &[ins(0x1d, 1, 2, 0, 9), EXIT],
        0,
        "reserved imm field must be 0, found 9",
    );
    rejects(
        &[ins(0xe5, 0, 0, 0, 1), EXIT],
        0,
        "reserved imm field must be 0, found 1",
    );
    rejects(
        &[ins(0x18, 1, 0, 2, 0), ins(0, 0, 0, 0, 0), EXIT],
        0,
        "reserved off field",
    );
}

#[test]
fn rejects_invalid_field_values() {
    rejects(
        &[ins(0x37, 1, 0, 2, 3), EXIT],
        0,
        "invalid offset 2 for div/mod",
    );
    rejects(&[ins(0xbc, 1, 2, 32, 0), EXIT], 0, "invalid mov offset 32");
    rejects(&[ins(0xbf, 1, 2, 4, 0), EXIT], 0, "invalid mov offset 4");
    rejects(&[ins(0xbc, 1, 2, 1, 0), EXIT], 0, "invalid mov offset 1");
    rejects(
        &[ins(0xdc, 1, 0, 0, 8), EXIT],
        0,
        "byte swap width must be 16, 32 or 64, found 8",
    );
    rejects(
        &[ins(0xdb, 1, 2, 0, 0x02), EXIT],
        0,
        "unknown atomic operation (imm 0x2)",
    );
    rejects(
        &[ins(0xdb, 1, 2, 0, 0xe0), EXIT],
        0,
        "unknown atomic operation (imm 0xe0)",
    );
    rejects(
        &[ins(0xdb, 1, 2, 0, 0x101), EXIT],
        0,
        "unknown atomic operation",
    );
    rejects(
        &[ins(0xd3, 1, 2, 0, 0x01), EXIT],
        0,
        "atomic read-modify-write on 1 bytes",
    );
    rejects(
        &[ins(0xcb, 1, 2, 0, 0xe1), EXIT],
        0,
        "atomic read-modify-write on 2 bytes",
    );
    rejects(
        &[ins(0x85, 0, 3, 0, 1), EXIT],
        0,
        "call with unknown source kind 3",
    );
    rejects(&[ins(0xe5, 0, 1, 0, 0), EXIT], 0, "source kind 1");
    rejects(
        &[ins(0x18, 1, 7, 0, 0), ins(0, 0, 0, 0, 0), EXIT],
        0,
        "unknown pseudo source 7",
    );
}

#[test]
fn rejects_out_of_range_registers() {
    rejects(
        &[ins(0xb7, 11, 0, 0, 0), EXIT],
        0,
        "destination register r11 out of range",
    );
    rejects(
        &[ins(0xbf, 1, 11, 0, 0), EXIT],
        0,
        "source register r11 out of range",
    );
    rejects(&[ins(0x79, 0, 15, 0, 0), EXIT], 0, "source register r15");
    rejects(
        &[ins(0x7b, 12, 1, 0, 0), EXIT],
        0,
        "destination register r12",
    );
    rejects(
        &[ins(0x8d, 11, 0, 0, 0), EXIT],
        0,
        "call target register r11",
    );
    rejects(&[ins(0x1d, 1, 11, 0, 0), EXIT], 0, "source register r11");
    rejects(
        &[ins(0x18, 11, 0, 0, 0), ins(0, 0, 0, 0, 0), EXIT],
        0,
        "register r11",
    );
    // Raw values beyond a nibble (constructed directly) are rejected too.
    rejects(
        &[ins(0xb7, 200, 0, 0, 0), EXIT],
        0,
        "destination register r200",
    );
}

#[test]
fn rejects_malformed_lddw() {
    rejects(
        &[EXIT, ins(0x18, 1, 0, 0, 0)],
        1,
        "lddw is missing its second slot",
    );
    rejects(
        &[ins(0x18, 1, 0, 0, 0), ins(0x95, 0, 0, 0, 0), EXIT],
        0,
        "malformed second slot",
    );
    rejects(
        &[ins(0x18, 1, 0, 0, 0), ins(0, 1, 0, 0, 0), EXIT],
        0,
        "malformed second slot",
    );
    rejects(
        &[ins(0x18, 1, 0, 0, 0), ins(0, 0, 2, 0, 0), EXIT],
        0,
        "malformed second slot",
    );
    rejects(
        &[ins(0x18, 1, 0, 0, 0), ins(0, 0, 0, 4, 0), EXIT],
        0,
        "malformed second slot",
    );
}

#[test]
fn rejects_bad_targets() {
    let lddw = [ins(0x18, 1, 0, 0, 0), ins(0, 0, 0, 0, 0)];
    rejects(
        &[ins(0x05, 0, 0, 1, 0), EXIT],
        0,
        "jump target 2 is outside the program",
    );
    rejects(
        &[ins(0x05, 0, 0, -2, 0), EXIT],
        0,
        "jump target -1 is outside the program",
    );
    rejects(
        &[ins(0x15, 1, 0, 5, 0), EXIT],
        0,
        "jump target 6 is outside",
    );
    rejects(
        &[ins(0x06, 0, 0, 0, 7), EXIT],
        0,
        "jump target 8 is outside",
    );
    rejects(&[ins(0x06, 0, 0, 0, i32::MIN), EXIT], 0, "is outside");
    rejects(
        &[ins(0xe5, 0, 0, 3, 0), EXIT],
        0,
        "may_goto target 4 is outside",
    );
    rejects(
        &[ins(0x85, 0, 1, 0, 1), EXIT],
        0,
        "call target 2 is outside",
    );
    rejects(
        &[ins(0x05, 0, 0, 1, 0), lddw[0], lddw[1], EXIT],
        0,
        "jump target 2 is the second slot of a lddw",
    );
    rejects(
        &[lddw[0], lddw[1], ins(0x05, 0, 0, -2, 0), EXIT],
        2,
        "jump target 1 is the second slot of a lddw",
    );
    rejects(
        &[ins(0x18, 1, 4, 0, 5), ins(0, 0, 0, 0, 0), EXIT],
        0,
        "subprogram address target 6 is outside",
    );
    rejects(
        &[ins(0x18, 1, 4, 0, 0), ins(0, 0, 0, 0, 0), EXIT],
        0,
        "subprogram address target 1 is the second slot",
    );
    // A valid PSEUDO_FUNC target and valid backward/forward jumps are accepted.
    assert!(Program::decode(&[ins(0x18, 1, 4, 0, 1), ins(0, 0, 0, 0, 0), EXIT]).is_ok());
    assert!(Program::decode(&[ins(0x15, 1, 0, 1, 0), EXIT, ins(0x05, 0, 0, -3, 0)]).is_ok());
}

#[test]
fn rejects_bad_last_instruction() {
    rejects(&[ins(0xb7, 0, 0, 0, 0)], 0, "last instruction must be exit");
    rejects(
        &[EXIT, ins(0x15, 0, 0, -2, 0)],
        1,
        "last instruction must be exit",
    );
    rejects(
        &[EXIT, ins(0x85, 0, 0, 0, 1)],
        1,
        "last instruction must be exit",
    );
    rejects(
        &[EXIT, ins(0x18, 0, 0, 0, 1), ins(0, 0, 0, 0, 0)],
        1,
        "last instruction must be exit",
    );
    assert!(Program::decode(&[ins(0xb7, 0, 0, 0, 0), EXIT]).is_ok());
    assert!(Program::decode(&[EXIT, ins(0x05, 0, 0, -2, 0)]).is_ok());
    assert!(Program::decode(&[EXIT, ins(0x06, 0, 0, 0, -2)]).is_ok());
}

#[test]
fn error_display_names_the_slot() {
    let e = Program::decode(&[EXIT, ins(0xff, 0, 0, 0, 0)]).unwrap_err();
    assert_eq!(e.to_string(), "instruction 1: unknown opcode 0xff");
}

#[test]
fn ja_encodes_wide_offsets_as_gotol() {
    assert_eq!(
        Instruction::Ja { off: -1 }.encode(),
        vec![ins(0x05, 0, 0, -1, 0)]
    );
    assert_eq!(
        Instruction::Ja { off: 40000 }.encode(),
        vec![ins(0x06, 0, 0, 0, 40000)]
    );
}
