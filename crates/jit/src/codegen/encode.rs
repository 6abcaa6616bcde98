//! Compact encodings of the JIT's plain loads and stores.
//!
//! dynasm cannot see the registers and displacement of a `[Rq(base) + off]` operand when it
//! expands the macro, so it always emits a SIB byte and a 32-bit displacement (`mov rcx,
//! gs:[edx+eiz*1+0x0]`, 10 bytes). The JIT knows both when it emits the instruction: this module
//! encodes the short forms a compiler would use (no SIB unless the base is `rsp`/`r12`, no
//! displacement when it is zero and the base is not `rbp`/`r13`, an 8-bit one when it fits), so
//! the same load takes 5 bytes (3 without the segment prefixes). Denser code decodes faster after
//! every mispredicted branch of a tree or list walk.

use kflex_isa::decode::Size;

use super::Emitter;

/// A memory operand `[base + disp]`, or `gs:[base32 + disp]` when `segment` is set.
#[derive(Clone, Copy, Debug)]
pub(super) struct Mem {
    /// x86 number of the base register.
    pub base: u8,
    /// Displacement.
    pub disp: i32,
    /// Heap access through the segment base (prefixes `gs` and address-size).
    pub segment: bool,
}

/// Prefix `gs` (segment override).
const GS: u8 = 0x65;
/// Prefix address-size (32-bit effective address).
const ADDR32: u8 = 0x67;
/// Prefix operand-size (16-bit operand).
const OP16: u8 = 0x66;

/// Appends one instruction `[prefixes] [REX] opcode modrm [sib] [disp]` with register field
/// `reg` (a register number or an opcode extension) and memory operand `m`.
/// `force_rex` asks for a REX prefix even when no bit is set (byte registers `spl`..`dil`).
fn emit(
    out: &mut Vec<u8>,
    op16: bool,
    wide: bool,
    force_rex: bool,
    opcode: &[u8],
    reg: u8,
    m: Mem,
) {
    if op16 {
        out.push(OP16);
    }
    if m.segment {
        out.extend_from_slice(&[GS, ADDR32]);
    }
    let rex = 0x40 | (u8::from(wide) << 3) | (((reg >> 3) & 1) << 2) | ((m.base >> 3) & 1);
    if rex != 0x40 || force_rex {
        out.push(rex);
    }
    out.extend_from_slice(opcode);
    let low = m.base & 7;
    let (mode, disp_len) = if m.disp == 0 && low != 5 {
        (0b00, 0)
    } else if i8::try_from(m.disp).is_ok() {
        (0b01, 1)
    } else {
        (0b10, 4)
    };
    out.push((mode << 6) | ((reg & 7) << 3) | low);
    if low == 4 {
        // SIB: no index, base = rsp/r12.
        out.push(0x24);
    }
    match disp_len {
        1 => out.push(m.disp as i8 as u8),
        4 => out.extend_from_slice(&m.disp.to_le_bytes()),
        _ => {}
    }
}

/// Bytes of `dst = *(size *)m`, zero- or sign-extended to 64 bits.
pub(super) fn load_bytes(size: Size, sign_extend: bool, dst: u8, m: Mem) -> Vec<u8> {
    let mut out = Vec::with_capacity(12);
    match (size, sign_extend) {
        (Size::B, false) => emit(&mut out, false, false, false, &[0x0f, 0xb6], dst, m),
        (Size::H, false) => emit(&mut out, false, false, false, &[0x0f, 0xb7], dst, m),
        (Size::W, false) => emit(&mut out, false, false, false, &[0x8b], dst, m),
        (Size::B, true) => emit(&mut out, false, true, false, &[0x0f, 0xbe], dst, m),
        (Size::H, true) => emit(&mut out, false, true, false, &[0x0f, 0xbf], dst, m),
        (Size::W, true) => emit(&mut out, false, true, false, &[0x63], dst, m),
        (Size::DW, _) => emit(&mut out, false, true, false, &[0x8b], dst, m),
    }
    out
}

/// Bytes of `*(size *)m = src` (the low bytes of register `src`).
pub(super) fn store_reg_bytes(size: Size, src: u8, m: Mem) -> Vec<u8> {
    let mut out = Vec::with_capacity(12);
    match size {
        // Without REX, byte registers 4..7 would be ah/ch/dh/bh.
        Size::B => emit(
            &mut out,
            false,
            false,
            (4..8).contains(&src),
            &[0x88],
            src,
            m,
        ),
        Size::H => emit(&mut out, true, false, false, &[0x89], src, m),
        Size::W => emit(&mut out, false, false, false, &[0x89], src, m),
        Size::DW => emit(&mut out, false, true, false, &[0x89], src, m),
    }
    out
}

/// Bytes of `*(size *)m = imm` (truncated to the size; sign-extended from 32 bits for 8 bytes).
pub(super) fn store_imm_bytes(size: Size, imm: i32, m: Mem) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    match size {
        Size::B => {
            emit(&mut out, false, false, false, &[0xc6], 0, m);
            out.push(imm as u8);
        }
        Size::H => {
            emit(&mut out, true, false, false, &[0xc7], 0, m);
            out.extend_from_slice(&(imm as u16).to_le_bytes());
        }
        Size::W | Size::DW => {
            emit(&mut out, false, size == Size::DW, false, &[0xc7], 0, m);
            out.extend_from_slice(&imm.to_le_bytes());
        }
    }
    out
}

/// Appends `bytes` to the code.
pub(super) fn put(e: &mut Emitter<'_>, bytes: &[u8]) {
    e.ops.extend(bytes.iter().copied());
}

#[cfg(test)]
mod tests {
    use dynasmrt::x64::X64Relocation;
    use dynasmrt::{DynasmApi, VecAssembler};
    use iced_x86::{Decoder, DecoderOptions, Instruction, OpKind, Register};
    use kflex_isa::decode::Size;

    use super::*;
    use crate::codegen::x64;

    const SIZES: [Size; 4] = [Size::B, Size::H, Size::W, Size::DW];
    const DISPS: [i32; 8] = [0, 1, -8, 127, -128, 128, -129, 0x1234_5678];

    /// The one instruction `bytes` decode to (all bytes consumed).
    fn decode(bytes: &[u8]) -> Instruction {
        let mut d = Decoder::with_ip(64, bytes, 0, DecoderOptions::NONE);
        let insn = d.decode();
        assert!(!insn.is_invalid(), "{bytes:02x?}");
        assert_eq!(insn.len(), bytes.len(), "{bytes:02x?}");
        insn
    }

    /// What must agree between our encoding and dynasm's: the operation, the register operand
    /// or immediate, and the memory operand (base, displacement, segment, no index).
    fn meaning(insn: &Instruction) -> String {
        let ops: Vec<String> = (0..insn.op_count())
            .map(|i| match insn.op_kind(i) {
                OpKind::Register => format!("{:?}", insn.op_register(i)),
                OpKind::Memory => {
                    assert_eq!(insn.memory_index(), Register::None);
                    format!(
                        "{:?}:[{:?}+{:#x}]",
                        insn.memory_segment(),
                        insn.memory_base(),
                        insn.memory_displacement64()
                    )
                }
                _ => format!("{:#x}", insn.immediate(i)),
            })
            .collect();
        format!("{:?} {}", insn.code(), ops.join(", "))
    }

    /// dynasm's encoding of the same load (the JIT's previous code).
    fn dynasm_load(size: Size, sx: bool, d: u8, m: Mem) -> Vec<u8> {
        let mut o = VecAssembler::<X64Relocation>::new(0);
        let (s, off) = (m.base, m.disp);
        if m.segment {
            match (size, sx) {
                (Size::B, false) => x64!(o ; gs movzx Rd(d), BYTE [Rd(s) + off]),
                (Size::H, false) => x64!(o ; gs movzx Rd(d), WORD [Rd(s) + off]),
                (Size::W, false) => x64!(o ; gs mov Rd(d), DWORD [Rd(s) + off]),
                (Size::B, true) => x64!(o ; gs movsx Rq(d), BYTE [Rd(s) + off]),
                (Size::H, true) => x64!(o ; gs movsx Rq(d), WORD [Rd(s) + off]),
                (Size::W, true) => x64!(o ; gs movsxd Rq(d), DWORD [Rd(s) + off]),
                (Size::DW, _) => x64!(o ; gs mov Rq(d), QWORD [Rd(s) + off]),
            }
        } else {
            match (size, sx) {
                (Size::B, false) => x64!(o ; movzx Rd(d), BYTE [Rq(s) + off]),
                (Size::H, false) => x64!(o ; movzx Rd(d), WORD [Rq(s) + off]),
                (Size::W, false) => x64!(o ; mov Rd(d), DWORD [Rq(s) + off]),
                (Size::B, true) => x64!(o ; movsx Rq(d), BYTE [Rq(s) + off]),
                (Size::H, true) => x64!(o ; movsx Rq(d), WORD [Rq(s) + off]),
                (Size::W, true) => x64!(o ; movsxd Rq(d), DWORD [Rq(s) + off]),
                (Size::DW, _) => x64!(o ; mov Rq(d), QWORD [Rq(s) + off]),
            }
        }
        o.finalize().unwrap()
    }

    /// dynasm's encoding of the same store.
    fn dynasm_store(size: Size, src: Result<u8, i32>, m: Mem) -> Vec<u8> {
        let mut o = VecAssembler::<X64Relocation>::new(0);
        let (d, off) = (m.base, m.disp);
        match (m.segment, size, src) {
            (true, Size::B, Ok(s)) => x64!(o ; gs mov BYTE [Rd(d) + off], Rb(s)),
            (true, Size::H, Ok(s)) => x64!(o ; gs mov WORD [Rd(d) + off], Rw(s)),
            (true, Size::W, Ok(s)) => x64!(o ; gs mov DWORD [Rd(d) + off], Rd(s)),
            (true, Size::DW, Ok(s)) => x64!(o ; gs mov QWORD [Rd(d) + off], Rq(s)),
            (true, Size::B, Err(i)) => x64!(o ; gs mov BYTE [Rd(d) + off], i as i8),
            (true, Size::H, Err(i)) => x64!(o ; gs mov WORD [Rd(d) + off], i as i16),
            (true, Size::W, Err(i)) => x64!(o ; gs mov DWORD [Rd(d) + off], i),
            (true, Size::DW, Err(i)) => x64!(o ; gs mov QWORD [Rd(d) + off], i),
            (false, Size::B, Ok(s)) => x64!(o ; mov BYTE [Rq(d) + off], Rb(s)),
            (false, Size::H, Ok(s)) => x64!(o ; mov WORD [Rq(d) + off], Rw(s)),
            (false, Size::W, Ok(s)) => x64!(o ; mov DWORD [Rq(d) + off], Rd(s)),
            (false, Size::DW, Ok(s)) => x64!(o ; mov QWORD [Rq(d) + off], Rq(s)),
            (false, Size::B, Err(i)) => x64!(o ; mov BYTE [Rq(d) + off], i as i8),
            (false, Size::H, Err(i)) => x64!(o ; mov WORD [Rq(d) + off], i as i16),
            (false, Size::W, Err(i)) => x64!(o ; mov DWORD [Rq(d) + off], i),
            (false, Size::DW, Err(i)) => x64!(o ; mov QWORD [Rq(d) + off], i),
        }
        o.finalize().unwrap()
    }

    fn operands() -> impl Iterator<Item = Mem> {
        (0..16u8).flat_map(|base| {
            DISPS.into_iter().flat_map(move |disp| {
                [false, true].map(|segment| Mem {
                    base,
                    disp,
                    segment,
                })
            })
        })
    }

    #[test]
    fn loads_mean_what_dynasm_encodes_and_are_never_longer() {
        let mut checked = 0;
        for m in operands() {
            for size in SIZES {
                for sx in [false, true] {
                    for dst in 0..16u8 {
                        let ours = load_bytes(size, sx, dst, m);
                        let reference = dynasm_load(size, sx, dst, m);
                        assert_eq!(
                            meaning(&decode(&ours)),
                            meaning(&decode(&reference)),
                            "{size:?} sx={sx} dst={dst} {m:?}"
                        );
                        assert!(ours.len() <= reference.len());
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 16 * 8 * 2 * 4 * 2 * 16);
    }

    #[test]
    fn stores_mean_what_dynasm_encodes_and_are_never_longer() {
        for m in operands() {
            for size in SIZES {
                for src in 0..16u8 {
                    let ours = store_reg_bytes(size, src, m);
                    let reference = dynasm_store(size, Ok(src), m);
                    assert_eq!(
                        meaning(&decode(&ours)),
                        meaning(&decode(&reference)),
                        "{size:?} src={src} {m:?}"
                    );
                    assert!(ours.len() <= reference.len());
                }
                for imm in [0, 1, -1, 0x7f, 0x1234, -0x8000_0000, 0x7fff_ffff] {
                    let ours = store_imm_bytes(size, imm, m);
                    let reference = dynasm_store(size, Err(imm), m);
                    assert_eq!(
                        meaning(&decode(&ours)),
                        meaning(&decode(&reference)),
                        "{size:?} imm={imm} {m:?}"
                    );
                    assert!(ours.len() <= reference.len());
                }
            }
        }
    }

    #[test]
    fn short_forms_are_used() {
        let heap = |base, disp| Mem {
            base,
            disp,
            segment: true,
        };
        let plain = |base, disp| Mem {
            base,
            disp,
            segment: false,
        };
        // mov rcx, gs:[edx]
        assert_eq!(
            load_bytes(Size::DW, false, 1, heap(2, 0)),
            [0x65, 0x67, 0x48, 0x8b, 0x0a]
        );
        // mov r13, gs:[ebx+0x10]
        assert_eq!(
            load_bytes(Size::DW, false, 13, heap(3, 0x10)),
            [0x65, 0x67, 0x4c, 0x8b, 0x6b, 0x10]
        );
        // mov [rbp-0x18], rcx: rbp needs a displacement even when it is zero.
        assert_eq!(
            store_reg_bytes(Size::DW, 1, plain(5, -0x18)),
            [0x48, 0x89, 0x4d, 0xe8]
        );
        assert_eq!(
            load_bytes(Size::W, false, 0, plain(5, 0)),
            [0x8b, 0x45, 0x00]
        );
        // r12 needs a SIB byte; mov byte [r12+1], sil needs REX.
        assert_eq!(
            store_reg_bytes(Size::B, 6, plain(12, 1)),
            [0x41, 0x88, 0x74, 0x24, 0x01]
        );
    }
}
