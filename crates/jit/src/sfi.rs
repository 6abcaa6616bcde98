//! Software fault isolation of heap accesses.
//!
//! The verifier marks every heap access either [`HeapAccess::Guard`] (the base register may hold
//! any value and must be forced into the heap first) or [`HeapAccess::Elided`] (the base register
//! was guarded earlier and the access stays within the guard zone). In the masking modes the JIT
//! masks the base register into the heap **in place** before each guarded access (the verifier
//! treats the register as trusted afterwards, so later elided accesses through it rely on the
//! masked value); segment mode needs no masking at all:
//!
//! * [`SfiMode::AndMask`]: `and reg, mask ; or reg, r12` (r12 = heap base);
//! * [`SfiMode::Base`]: the offset `reg & mask` is formed in a scratch register and the pointer
//!   rebuilt from the base register, `lea reg, [r12 + r11]` (for a 4 GiB heap the mask is a free
//!   32-bit move, as in the Linux arena JIT);
//! * [`SfiMode::WritesOnly`]: only stores and atomics are guarded (every one of them, also those
//!   the verifier elided, because the load guards they may rely on are skipped); loads are
//!   unchecked, so a forged pointer can read (or fault on) host memory but never write it;
//! * [`SfiMode::Segment`] (the default): no guard instruction at all; every heap access, guarded
//!   or elided, is `gs:[reg32 + off]` with the GS base holding the heap base for the run, so the
//!   CPU confines it to the heap's 4 GiB window ([`segment`]);
//! * [`SfiMode::None`]: no guards, for trusted code and tests only.
//!
//! Because the heap base is aligned to the heap size, masking a pointer that already lies in the
//! heap is the identity: verified programs that use valid heap pointers see exactly the
//! interpreter's values. A masked pointer plus the instruction offset (at most 32 KiB) lands in
//! the heap or its guard zone (at least 64 KiB), where the fault handler cancels the run.
//!
//! # Choosing the mode
//!
//! Measured with `cargo bench -p kflex-jit --bench sfi -- --warm-up-time 1 --measurement-time 3`
//! (a 100k-node linked-list walk in the heap, the same C compiled natively with gcc -O2; one
//! guarded access per node on the pointer-chasing chain; the summary table's interleaved medians,
//! three runs on a shared two-core machine): native 3.0-3.1 ns/node; [`SfiMode::Segment`]
//! 0.97-0.99x native, and with the default one-load termination check at the loop's back-edge
//! 0.98-1.00x; [`SfiMode::AndMask`] 1.03-1.04x (1.04-1.07x with termination); [`SfiMode::Base`]
//! 1.03-1.05x; [`SfiMode::WritesOnly`] 0.94-0.97x; no guards 0.94-0.96x (kflex's code for this
//! loop is slightly faster than gcc's, so "free" shows up below 1.0). Later runs with the machine
//! busier (load average 4-8) spread every ratio (segment plus termination 0.93-1.06x), but in each
//! run segment mode beat and-mask by 2-7%, with and without the termination check.
//!
//! The default is [`SfiMode::Segment`]: it isolates reads and writes with no instruction on the
//! dependency chain (the and-mask's two instructions sit between each load and the next), and
//! meets the goal of at most 5% over native with termination. Its price is a fixed cost per run:
//! the entry stub switches the GS base and back, two `wrgsbase` of about 12 ns each on the
//! measuring machine (AMD EPYC, virtualised): the same bench's per-run table gives about 51 ns
//! for a one-store heap program in and-mask mode and 74 ns in segment mode. Programs without
//! heap accesses do not switch GS and pay nothing; a host that runs very short heap programs
//! once per event and cares about that latency can pick [`SfiMode::AndMask`]. Where it cannot be used (heaps
//! larger than 4 GiB, a heap base not aligned to 4 GiB, or no user-space FSGSBASE) compilation
//! falls back to [`SfiMode::AndMask`], the cheapest portable mode that isolates reads as well as
//! writes. [`SfiMode::WritesOnly`] is the opt-in performance mode when the extension's reads of
//! host memory are acceptable (integrity without confidentiality).
//!
//! Segment mode differs from the masking modes in what a *forged* pointer does (valid heap
//! pointers behave identically in every mode): masking wraps it into the heap modulo the heap
//! size, segment mode takes it modulo 4 GiB, so it lands in the heap or faults in the reserved
//! rest of the window and the run is cancelled. A 4 GiB heap has no reserved rest: an access at
//! its end plus an offset wraps to its start instead of faulting (still inside the heap).

use dynasmrt::DynasmApi;
use kflex_isa::decode::{Instruction, Program};
use std::collections::HashMap;

use crate::JitError;
use crate::codegen::{Emitter, reg, x64};

pub mod segment;

pub use kflex_verify::HeapAccess;

/// How guarded heap accesses are compiled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SfiMode {
    /// The default where available. Every heap access is `gs:`-relative with 32-bit addressing and the GS base set to the heap
    /// base for the run: zero guard instructions (see [`segment`]). Needs a heap of at most 4 GiB
    /// at a 4 GiB-aligned base with the rest of the window reserved inaccessible (every
    /// `kflex_runtime::heap::Heap` of at most 4 GiB created without a fixed address) and a CPU
    /// with user-space FSGSBASE ([`segment::available`]); otherwise compiled as
    /// [`SfiMode::AndMask`].
    #[default]
    Segment,
    /// `and reg, mask ; or reg, base`: the pointer is forced into the heap in place (the fallback
    /// of [`SfiMode::Segment`]).
    AndMask,
    /// The offset `reg & mask` is computed in a scratch register and the pointer rebuilt as
    /// `base + offset` from the reserved base register.
    Base,
    /// Performance mode: only stores and atomics are guarded (integrity, not confidentiality).
    WritesOnly,
    /// No guards at all: for trusted code and tests only.
    None,
}

/// Where the extension heap lives: `size` is a power of two and `base` is aligned to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HeapLayout {
    /// First byte of the heap.
    pub base: u64,
    /// Size in bytes (a power of two).
    pub size: u64,
}

impl HeapLayout {
    /// The mask that turns an address into a heap offset (`size - 1`).
    pub fn mask(&self) -> u64 {
        self.size.wrapping_sub(1)
    }

    /// Checks that the size is a power of two (at least one page) and the base aligned to it.
    pub fn validate(&self) -> Result<(), String> {
        if !self.size.is_power_of_two() || self.size < 4096 {
            return Err(format!(
                "heap size {:#x} is not a power of two of at least 4096 bytes",
                self.size
            ));
        }
        if self.base & self.mask() != 0 || self.base == 0 {
            return Err(format!(
                "heap base {:#x} is not a non-zero multiple of the heap size {:#x}",
                self.base, self.size
            ));
        }
        Ok(())
    }
}

/// The SFI plan of one compilation: the guard decision per heap access slot.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    mode: SfiModeOrOff,
    facts: HashMap<usize, HeapAccess>,
    /// Guards emitted so far.
    pub emitted: usize,
    /// Heap accesses compiled without a guard so far.
    pub elided: usize,
}

/// The mode with its heap, or no SFI.
#[derive(Debug, Default)]
enum SfiModeOrOff {
    #[default]
    Off,
    On(SfiMode, HeapLayout),
}

/// The base register of a memory access instruction and whether it writes memory.
fn access_base(insn: &Instruction) -> Option<(u8, bool)> {
    match *insn {
        Instruction::Load { src, .. } | Instruction::LoadAcquire { src, .. } => Some((src, false)),
        Instruction::Store { dst, .. }
        | Instruction::StoreRelease { dst, .. }
        | Instruction::Atomic { dst, .. } => Some((dst, true)),
        _ => None,
    }
}

impl Plan {
    /// Checks the facts against the program and the heap layout.
    pub fn new(
        program: &Program,
        mode: SfiMode,
        heap: Option<HeapLayout>,
        facts: &[(usize, HeapAccess)],
    ) -> Result<Plan, JitError> {
        let mut map = HashMap::with_capacity(facts.len());
        for &(pc, fact) in facts {
            let bad = |reason: String| JitError::Instruction { pc, reason };
            let (base, _) = program.get(pc).and_then(access_base).ok_or_else(|| {
                bad("heap fact for an instruction that is not a memory access".into())
            })?;
            let fact_reg = match fact {
                HeapAccess::Guard { reg } | HeapAccess::Elided { reg, .. } => reg,
            };
            if fact_reg != base {
                return Err(bad(format!(
                    "heap fact names r{fact_reg} but the access goes through r{base}"
                )));
            }
            if map.insert(pc, fact).is_some() {
                return Err(bad("two heap facts for one instruction".into()));
            }
        }
        let mode = match (mode, heap) {
            (SfiMode::None, _) => SfiModeOrOff::Off,
            (m, Some(h)) => {
                h.validate().map_err(|reason| JitError::Instruction {
                    pc: facts.first().map_or(0, |f| f.0),
                    reason: format!("SFI heap layout: {reason}"),
                })?;
                SfiModeOrOff::On(effective(m, h), h)
            }
            (_, None) => match facts
                .iter()
                .find(|(_, f)| matches!(f, HeapAccess::Guard { .. }))
            {
                Some(&(pc, _)) => {
                    return Err(JitError::Instruction {
                        pc,
                        reason: "heap access needs an SFI guard but no heap layout was given"
                            .into(),
                    });
                }
                None => SfiModeOrOff::Off,
            },
        };
        Ok(Plan {
            mode,
            facts: map,
            emitted: 0,
            elided: 0,
        })
    }

    /// True if heap accesses are compiled segment-relative (the entry stub then switches GS).
    pub fn segment(&self) -> bool {
        matches!(self.mode, SfiModeOrOff::On(SfiMode::Segment, _)) && !self.facts.is_empty()
    }
}

/// The mode a compilation for `heap` really uses: [`SfiMode::Segment`] falls back to
/// [`SfiMode::AndMask`] where the heap or the CPU does not allow it.
pub fn effective(mode: SfiMode, heap: HeapLayout) -> SfiMode {
    match mode {
        SfiMode::Segment if !segment::usable(heap.base, heap.size) => SfiMode::AndMask,
        m => m,
    }
}

/// What to emit before the access at `pc` (`write`: a store or atomic).
fn decide(plan: &Plan, pc: usize, write: bool) -> Option<Option<(u8, SfiMode, HeapLayout)>> {
    let fact = plan.facts.get(&pc)?;
    let SfiModeOrOff::On(mode, heap) = plan.mode else {
        return Some(None);
    };
    let guard = match (mode, *fact) {
        (SfiMode::None | SfiMode::Segment, _) => None,
        (SfiMode::WritesOnly, HeapAccess::Guard { reg } | HeapAccess::Elided { reg, .. }) => {
            write.then_some(reg)
        }
        (_, HeapAccess::Guard { reg }) => Some(reg),
        (_, HeapAccess::Elided { .. }) => None,
    };
    Some(guard.map(|r| (r, mode, heap)))
}

/// How the access itself is addressed, after [`guard`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Addressing {
    /// A plain 64-bit `[reg + off]` operand.
    Plain,
    /// `gs:[reg32 + off]`: 32-bit address size, relative to the heap base in GS.
    Segment,
}

/// Emits the guard for the heap access at `pc`, if it needs one; counts the decision; says how
/// the access must be addressed. Clobbers only x86 r11 besides the base register.
///
/// In [`SfiMode::Segment`] no instruction is emitted and every heap access is segment-relative;
/// the counts keep the verifier's split so they compare across modes: a
/// [`HeapAccess::Guard`] site counts as emitted (a guard that costs nothing), an
/// [`HeapAccess::Elided`] one as elided (it is segment-relative too, since no earlier guard
/// masked its register in place).
pub(crate) fn guard(e: &mut Emitter<'_>, pc: usize, write: bool) -> Addressing {
    if let (SfiModeOrOff::On(SfiMode::Segment, _), Some(fact)) = (&e.sfi.mode, e.sfi.facts.get(&pc))
    {
        match fact {
            HeapAccess::Guard { .. } => e.sfi.emitted += 1,
            HeapAccess::Elided { .. } => e.sfi.elided += 1,
        }
        return Addressing::Segment;
    }
    let Some(decision) = decide(&e.sfi, pc, write) else {
        return Addressing::Plain;
    };
    let Some((bpf_reg, mode, heap)) = decision else {
        e.sfi.elided += 1;
        return Addressing::Plain;
    };
    e.sfi.emitted += 1;
    let r = reg(bpf_reg);
    let mask = heap.mask();
    let o = &mut e.ops;
    match mode {
        SfiMode::Base => {
            if mask == u64::from(u32::MAX) {
                x64!(o ; mov r11d, Rd(r));
            } else if let Ok(m) = i32::try_from(mask) {
                x64!(o ; mov r11, Rq(r) ; and r11, m);
            } else {
                x64!(o ; mov r11, QWORD mask as i64 ; and r11, Rq(r));
            }
            x64!(o ; lea Rq(r), [r12 + r11]);
        }
        _ => {
            if mask == u64::from(u32::MAX) {
                x64!(o ; mov Rd(r), Rd(r));
            } else if let Ok(m) = i32::try_from(mask) {
                x64!(o ; and Rq(r), m);
            } else {
                x64!(o ; mov r11, QWORD mask as i64 ; and Rq(r), r11);
            }
            x64!(o ; or Rq(r), r12);
        }
    }
    Addressing::Plain
}

#[cfg(test)]
mod tests {
    use super::*;
    use kflex_isa::decode::{Operand, Size, encode_all};

    fn program() -> Program {
        let insns = [
            Instruction::Load {
                size: Size::DW,
                dst: 0,
                src: 1,
                off: 0,
                sign_extend: false,
            },
            Instruction::Store {
                size: Size::W,
                dst: 2,
                off: 4,
                src: Operand::Imm(1),
            },
            Instruction::Exit,
        ];
        Program::decode(&encode_all(&insns)).unwrap()
    }

    const HEAP: HeapLayout = HeapLayout {
        base: 1 << 32,
        size: 1 << 20,
    };

    #[test]
    fn layout_validation() {
        assert!(HEAP.validate().is_ok());
        assert_eq!(HEAP.mask(), 0xf_ffff);
        let bad = [
            (1 << 32, 3 << 20),
            (1 << 20, 1 << 21),
            (0, 1 << 20),
            (1 << 32, 16),
        ];
        for (base, size) in bad {
            assert!(
                HeapLayout { base, size }.validate().is_err(),
                "{base:#x} {size:#x}"
            );
        }
    }

    #[test]
    fn facts_are_checked_against_the_program() {
        let p = program();
        let g = |reg| HeapAccess::Guard { reg };
        let ok = [(0, g(1)), (1, g(2))];
        assert!(Plan::new(&p, SfiMode::AndMask, Some(HEAP), &ok).is_ok());
        let cases: [&[(usize, HeapAccess)]; 4] = [
            &[(0, g(2))],
            &[(2, g(1))],
            &[(7, g(1))],
            &[(0, g(1)), (0, g(1))],
        ];
        for facts in cases {
            let err = Plan::new(&p, SfiMode::AndMask, Some(HEAP), facts).unwrap_err();
            assert!(matches!(err, JitError::Instruction { .. }), "{err}");
        }
    }

    #[test]
    fn guard_without_heap_is_an_error_unless_sfi_is_off() {
        let p = program();
        let facts = [(0, HeapAccess::Guard { reg: 1 })];
        let err = Plan::new(&p, SfiMode::AndMask, None, &facts).unwrap_err();
        assert_eq!(
            err,
            JitError::Instruction {
                pc: 0,
                reason: "heap access needs an SFI guard but no heap layout was given".into()
            }
        );
        assert!(Plan::new(&p, SfiMode::None, None, &facts).is_ok());
        let elided = [(
            0,
            HeapAccess::Elided {
                reg: 1,
                max_offset: 8,
            },
        )];
        assert!(Plan::new(&p, SfiMode::AndMask, None, &elided).is_ok());
    }

    #[test]
    fn decisions_per_mode() {
        let p = program();
        let facts = [
            (0, HeapAccess::Guard { reg: 1 }),
            (
                1,
                HeapAccess::Elided {
                    reg: 2,
                    max_offset: 8,
                },
            ),
        ];
        let plan = |m| Plan::new(&p, m, Some(HEAP), &facts).unwrap();
        let guarded = |m, pc, w| decide(&plan(m), pc, w).unwrap().map(|(r, _, _)| r);
        assert_eq!(guarded(SfiMode::AndMask, 0, false), Some(1));
        assert_eq!(guarded(SfiMode::Base, 0, false), Some(1));
        assert_eq!(guarded(SfiMode::AndMask, 1, true), None);
        assert_eq!(guarded(SfiMode::WritesOnly, 0, false), None);
        assert_eq!(guarded(SfiMode::WritesOnly, 1, true), Some(2));
        assert_eq!(guarded(SfiMode::None, 0, false), None);
        assert!(decide(&plan(SfiMode::AndMask), 2, false).is_none());
    }

    #[test]
    fn segment_mode_falls_back_where_it_cannot_address_the_heap() {
        let (window, mib) = (segment::WINDOW, 1u64 << 20);
        let layout = |base, size| HeapLayout { base, size };
        let fallback = [layout(2 * window, 2 * window), layout(window + mib, mib)];
        for h in fallback {
            assert_eq!(effective(SfiMode::Segment, h), SfiMode::AndMask, "{h:?}");
        }
        let fits = [layout(window, mib), layout(3 * window, window)];
        let expect = if segment::available() {
            SfiMode::Segment
        } else {
            SfiMode::AndMask
        };
        for h in fits {
            assert_eq!(effective(SfiMode::Segment, h), expect, "{h:?}");
        }
        for m in [SfiMode::AndMask, SfiMode::Base, SfiMode::WritesOnly] {
            assert_eq!(effective(m, layout(window + mib, mib)), m);
        }
    }
}
