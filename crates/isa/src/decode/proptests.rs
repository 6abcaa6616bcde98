//! Property tests: encode/decode round trips and robustness on arbitrary input.

use super::*;
use crate::insn::op;
use proptest::prelude::*;

fn reg_s() -> impl Strategy<Value = u8> {
    0u8..=10
}

fn width_s() -> impl Strategy<Value = Width> {
    prop_oneof![Just(Width::W32), Just(Width::W64)]
}

fn size_s() -> impl Strategy<Value = Size> {
    prop_oneof![Just(Size::B), Just(Size::H), Just(Size::W), Just(Size::DW)]
}

fn operand_s() -> impl Strategy<Value = Operand> {
    prop_oneof![
        reg_s().prop_map(Operand::Reg),
        any::<i32>().prop_map(Operand::Imm)
    ]
}

fn instruction_s() -> impl Strategy<Value = Instruction> {
    use Instruction as I;
    prop_oneof![
        (
            width_s(),
            prop::sample::select(AluOp::ALL.to_vec()),
            reg_s(),
            operand_s()
        )
            .prop_map(|(width, op, dst, src)| I::Alu {
                width,
                op,
                dst,
                src
            }),
        (width_s(), reg_s()).prop_map(|(width, dst)| I::Neg { width, dst }),
        (width_s(), reg_s(), operand_s()).prop_map(|(width, dst, src)| I::Mov { width, dst, src }),
        (
            width_s(),
            reg_s(),
            reg_s(),
            prop::sample::select(vec![8u8, 16, 32])
        )
            .prop_map(|(width, dst, src, bits)| {
                let bits = if width == Width::W32 && bits == 32 {
                    16
                } else {
                    bits
                };
                I::MovSx {
                    width,
                    dst,
                    src,
                    bits,
                }
            }),
        (reg_s(), reg_s(), any::<u16>(), any::<u16>()).prop_map(|(dst, src, dst_as, src_as)| {
            I::AddrSpaceCast {
                dst,
                src,
                dst_as,
                src_as,
            }
        }),
        (
            reg_s(),
            prop::sample::select(vec![16u8, 32, 64]),
            prop::sample::select(vec![EndianKind::ToLe, EndianKind::ToBe, EndianKind::Swap])
        )
            .prop_map(|(dst, bits, kind)| I::Endian { dst, bits, kind }),
        (reg_s(), 0u8..=6, any::<u64>()).prop_map(|(dst, pseudo, imm)| I::LoadImm64 {
            dst,
            pseudo,
            imm
        }),
        (size_s(), reg_s(), reg_s(), any::<i16>(), any::<bool>()).prop_map(
            |(size, dst, src, off, sx)| I::Load {
                size,
                dst,
                src,
                off,
                sign_extend: sx && size != Size::DW
            }
        ),
        (size_s(), reg_s(), any::<i16>(), operand_s()).prop_map(|(size, dst, off, src)| I::Store {
            size,
            dst,
            off,
            src
        }),
        (
            prop_oneof![Just(Size::W), Just(Size::DW)],
            prop::sample::select(AtomicOp::ALL.to_vec()),
            any::<bool>(),
            reg_s(),
            reg_s(),
            any::<i16>()
        )
            .prop_map(|(size, op, fetch, dst, src, off)| I::Atomic {
                size,
                op,
                fetch: fetch || matches!(op, AtomicOp::Xchg | AtomicOp::Cmpxchg),
                dst,
                src,
                off
            }),
        (size_s(), reg_s(), reg_s(), any::<i16>()).prop_map(|(size, dst, src, off)| {
            I::LoadAcquire {
                size,
                dst,
                src,
                off,
            }
        }),
        (size_s(), reg_s(), reg_s(), any::<i16>()).prop_map(|(size, dst, src, off)| {
            I::StoreRelease {
                size,
                dst,
                src,
                off,
            }
        }),
        any::<i32>().prop_map(|off| I::Ja { off }),
        (
            width_s(),
            prop::sample::select(JmpOp::ALL.to_vec()),
            reg_s(),
            operand_s(),
            any::<i16>()
        )
            .prop_map(|(width, op, dst, src, off)| I::Jump {
                width,
                op,
                dst,
                src,
                off
            }),
        any::<i16>().prop_map(|off| I::MayGoto { off }),
        any::<i32>().prop_map(|helper| I::Call { helper }),
        any::<i32>().prop_map(|imm| I::CallLocal { imm }),
        any::<i32>().prop_map(|btf_id| I::CallKfunc { btf_id }),
        reg_s().prop_map(|reg| I::Callx { reg }),
        Just(I::Exit),
    ]
}

/// Points every relative target of `i` at the slot right after it, which is always valid when the
/// instruction is followed by another one.
fn with_next_target(i: Instruction) -> Instruction {
    match i {
        Instruction::Ja { .. } => Instruction::Ja { off: 0 },
        Instruction::Jump {
            width,
            op,
            dst,
            src,
            ..
        } => Instruction::Jump {
            width,
            op,
            dst,
            src,
            off: 0,
        },
        Instruction::MayGoto { .. } => Instruction::MayGoto { off: 0 },
        Instruction::CallLocal { .. } => Instruction::CallLocal { imm: 0 },
        Instruction::LoadImm64 {
            dst,
            pseudo: op::PSEUDO_FUNC,
            imm,
        } => Instruction::LoadImm64 {
            dst,
            pseudo: op::PSEUDO_FUNC,
            imm: (imm & !0xffff_ffff) | 1,
        },
        other => other,
    }
}

proptest! {
    #[test]
    fn encode_then_decode_is_identity(i in instruction_s()) {
        let slots = i.encode();
        prop_assert_eq!(slots.len(), i.slot_count());
        let first = slots[0];
        prop_assert_eq!(Instruction::decode(first, slots.get(1).copied()), Ok(i));
        // The bytes survive serialisation too.
        let back = Insn::slice_from_bytes(&Insn::slice_to_bytes(&slots)).unwrap();
        prop_assert_eq!(back, slots);
    }

    #[test]
    fn programs_round_trip(body in prop::collection::vec(instruction_s(), 0..24)) {
        let mut insns: Vec<Instruction> = body.into_iter().map(with_next_target).collect();
        insns.push(Instruction::Exit);
        let slots = encode_all(&insns);
        let p = Program::decode(&slots).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(p.slots(), &slots[..]);
        let decoded: Vec<Instruction> = p.iter().map(|(_, i)| *i).collect();
        prop_assert_eq!(decoded, insns);
    }

    #[test]
    fn decode_never_panics_on_bytes(data in prop::collection::vec(any::<u8>(), 0..256)) {
        let usable = data.len() / 8 * 8;
        let slots = Insn::slice_from_bytes(&data[..usable]).unwrap();
        if let Ok(p) = Program::decode(&slots) {
            prop_assert!(!p.is_empty());
            for (pc, i) in p.iter() {
                let original = &p.slots()[pc..pc + i.slot_count()];
                // A `gotol` with a small offset re-encodes as the 16-bit `ja`.
                if original[0].opcode != op::JMP32 | op::JA {
                    prop_assert_eq!(&i.encode()[..], original);
                }
            }
        }
    }

    #[test]
    fn decode_never_panics_on_raw_fields(
        fields in prop::collection::vec(
            (any::<u8>(), any::<u8>(), any::<u8>(), any::<i16>(), any::<i32>()), 1..16)
    ) {
        let slots: Vec<Insn> =
            fields.into_iter().map(|(o, d, s, off, imm)| Insn::new(o, d, s, off, imm)).collect();
        let _ = Program::decode(&slots);
    }
}
