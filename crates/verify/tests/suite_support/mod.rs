//! Shared machinery of the accept/reject suite (`suite_asm.rs`, `suite_c.rs`): one case is a
//! program, the verdict kflex must give (with, for rejections, a substring of the broken rule),
//! and what the running Linux kernel must say about the same bytes when `bpf(2)` is available.
#![allow(dead_code)]
// These return `kflex_verify::verify`'s own result type unchanged.
#![allow(clippy::result_large_err)]

use std::os::fd::BorrowedFd;

use kflex_isa::asm::assemble;
use kflex_isa::decode::Program;
use kflex_isa::{Insn, op};
use kflex_linux::{LOG_STATS, LinuxMap, bpf_available, prog_load};
use kflex_object::{
    BPF_F_MMAPABLE, BPF_F_RDONLY_PROG, FuncInfo, GlobalKind, LineInfo, MapSpec, MapType, ProgType,
};
use kflex_runtime::HelperRegistry;
use kflex_verify::{VerifiedProgram, VerifyError, VerifyInput, VerifyOptions, verify};

/// What kflex must answer.
#[derive(Clone, Copy, Debug)]
pub enum Want {
    /// Accept.
    Accept,
    /// Reject with a rule containing this text.
    Reject(&'static str),
}

/// What Linux (privileged `BPF_PROG_LOAD`) must answer for the same bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Linux {
    /// The same verdict as kflex.
    Same,
    /// kflex accepts on purpose what Linux rejects (a relaxation); Linux's reason contains this.
    Rejects(&'static str),
    /// kflex rejects on purpose what privileged Linux accepts (kflex is stricter).
    Accepts,
    /// Not compared (the case depends on something the raw load cannot express, e.g. BTF).
    Skip,
}

/// The maps every suite program may use, by index:
/// 0 `arr` array (4-byte key, 32-byte value, 8 entries), 1 `hash` (8-byte key, 16-byte value),
/// 2 `rb` ring buffer (4096 bytes), 3 `heap` arena (4 pages), 4 `.rodata` (16 bytes, read-only).
pub fn maps() -> Vec<MapSpec> {
    let heap = MapSpec::new("heap", MapType::Arena, 0, 0, 4).with_flags(BPF_F_MMAPABLE);
    let mut rodata =
        MapSpec::new(".rodata", MapType::Array, 4, 16, 1).with_flags(BPF_F_RDONLY_PROG);
    rodata.global = Some(GlobalKind::Rodata);
    rodata.initial_value = Some((1..=16).collect());
    vec![
        MapSpec::new("arr", MapType::Array, 4, 32, 8),
        MapSpec::new("hash", MapType::Hash, 8, 16, 64),
        MapSpec::new("rb", MapType::Ringbuf, 0, 0, 4096),
        heap,
        rodata,
    ]
}

/// Assembles the bpf_conformance dialect plus `map_fd %rN, IDX` (`lddw` of map IDX),
/// `map_value %rN, IDX, OFF` (address of map IDX's value at OFF), `may_goto LABEL` and
/// `cast_kern %rD, %rS` (`addr_space_cast` from the heap's address space 1 to 0).
pub fn asm(src: &str) -> Vec<Insn> {
    let mut lines = Vec::new();
    let mut patches: Vec<(usize, u8)> = Vec::new(); // (slot, kind) kind: src value, or 0xf0/0xf1
    let mut slot = 0usize;
    for raw in src.lines() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() || line.ends_with(':') {
            lines.push(line.to_string());
            continue;
        }
        let (m, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let args: Vec<&str> = rest.split(',').map(str::trim).collect();
        let text = match m {
            "map_fd" => {
                patches.push((slot, op::PSEUDO_MAP_FD));
                format!("lddw {}, {}", args[0], args[1])
            }
            "map_value" => {
                let idx: u64 = args[1].parse().expect("map index");
                let off: u64 = args[2].parse().expect("offset");
                patches.push((slot, op::PSEUDO_MAP_VALUE));
                format!("lddw {}, {:#x}", args[0], idx | (off << 32))
            }
            "may_goto" => {
                patches.push((slot, 0xf0));
                format!("ja {}", args[0])
            }
            "cast_kern" => {
                patches.push((slot, 0xf1));
                format!("mov {}, {}", args[0], args[1])
            }
            _ => line.to_string(),
        };
        slot += if text.starts_with("lddw") { 2 } else { 1 };
        lines.push(text);
    }
    let mut slots = assemble(&lines.join("\n")).unwrap_or_else(|e| panic!("assemble: {e}\n{src}"));
    for (at, kind) in patches {
        let insn = &mut slots[at];
        match kind {
            0xf0 => insn.opcode = op::JMP | op::JCOND,
            0xf1 => {
                insn.off = op::ADDR_SPACE_CAST;
                insn.imm = 1;
            }
            src => insn.src = src,
        }
    }
    slots
}

/// A program under test.
pub struct Subject<'a> {
    /// Test name (for messages).
    pub name: &'a str,
    /// Program type.
    pub prog_type: ProgType,
    /// Unlinked instructions.
    pub insns: &'a [Insn],
    /// Its maps.
    pub maps: &'a [MapSpec],
    /// Line info (C programs).
    pub line_info: &'a [LineInfo],
    /// Function info (C programs).
    pub func_info: &'a [FuncInfo],
}

/// kflex's verdict on `s` with `options`.
pub fn kflex(s: &Subject<'_>, options: &VerifyOptions) -> Result<VerifiedProgram, VerifyError> {
    let program = Program::decode(s.insns).unwrap_or_else(|e| panic!("{}: decode: {e:?}", s.name));
    let mut helpers = HelperRegistry::linux_default();
    kflex_hooks::register_extra_helpers(&mut helpers, s.prog_type).expect("hook helpers");
    let input = VerifyInput {
        program: &program,
        prog_type: s.prog_type,
        maps: s.maps,
        helpers: &helpers,
        line_info: s.line_info,
        func_info: s.func_info,
    };
    verify(&input, options)
}

/// Linux's verdict on `s`: `Ok(())` or the reason, or `None` when `bpf(2)` is unavailable.
pub fn linux(s: &Subject<'_>) -> Option<Result<(), String>> {
    bpf_available().ok()?;
    let maps: Vec<LinuxMap> = s
        .maps
        .iter()
        .map(|m| LinuxMap::create(m).unwrap_or_else(|e| panic!("{}: {e}", s.name)))
        .collect();
    let fds: Vec<BorrowedFd<'_>> = maps.iter().map(LinuxMap::as_fd).collect();
    Some(
        prog_load(s.prog_type, s.insns, &fds, "GPL", LOG_STATS)
            .map(|_| ())
            .map_err(|e| e.reason().to_string()),
    )
}

/// Checks kflex's verdict (default options) and then Linux's; returns kflex's result.
pub fn check(
    s: &Subject<'_>,
    want: Want,
    linux_want: Linux,
) -> Result<VerifiedProgram, VerifyError> {
    check_with(s, want, linux_want, &VerifyOptions::default())
}

/// Like [`check`] with explicit verifier options.
pub fn check_with(
    s: &Subject<'_>,
    want: Want,
    linux_want: Linux,
    options: &VerifyOptions,
) -> Result<VerifiedProgram, VerifyError> {
    let got = kflex(s, options);
    match (&want, &got) {
        (Want::Accept, Err(e)) => panic!("{}: kflex rejects, expected accept:\n{e}", s.name),
        (Want::Reject(needle), Ok(_)) => {
            panic!(
                "{}: kflex accepts, expected a rejection containing {needle:?}",
                s.name
            )
        }
        (Want::Reject(needle), Err(e)) => assert!(
            e.rule.contains(needle),
            "{}: rule {:?} lacks {needle:?}\n{e}",
            s.name,
            e.rule
        ),
        (Want::Accept, Ok(_)) => {}
    }
    if linux_want == Linux::Skip {
        return got;
    }
    let Some(kernel) = linux(s) else {
        kflex_testutil::skip(&format!(
            "{}: Linux comparison: {}",
            s.name,
            bpf_available().unwrap_err()
        ));
        return got;
    };
    let kflex_ok = got.is_ok();
    match linux_want {
        Linux::Same => assert_eq!(
            kernel.is_ok(),
            kflex_ok,
            "{}: Linux says {:?}, kflex says {}",
            s.name,
            kernel,
            if kflex_ok { "accept" } else { "reject" }
        ),
        Linux::Rejects(needle) => match &kernel {
            Ok(()) => panic!("{}: Linux accepts what the case calls a relaxation", s.name),
            Err(reason) => assert!(
                reason.contains(needle),
                "{}: Linux's reason {reason:?} lacks {needle:?}",
                s.name
            ),
        },
        Linux::Accepts => assert!(kernel.is_ok(), "{}: Linux rejects: {:?}", s.name, kernel),
        Linux::Skip => {}
    }
    got
}

/// Assembles `src` and checks it with the standard [`maps`].
pub fn case(
    name: &str,
    prog_type: ProgType,
    src: &str,
    want: Want,
    linux_want: Linux,
) -> Result<VerifiedProgram, VerifyError> {
    let insns = asm(src);
    let maps = maps();
    check(
        &Subject {
            name,
            prog_type,
            insns: &insns,
            maps: &maps,
            line_info: &[],
            func_info: &[],
        },
        want,
        linux_want,
    )
}
