//! Differential test against the running Linux kernel: generated programs (and the bundled
//! examples) are verified by kflex and loaded with `BPF_PROG_LOAD` (privileged) on the same
//! bytes, with kernel maps created to match. Verdicts must agree, except for kflex's deliberate
//! relaxations (loops without a provable bound accepted; heap/arena use), which are counted.
//!
//! Prints `linux-diff: N programs, A agree, R relaxations, D disagreements` to stderr.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::fd::BorrowedFd;

use kflex_isa::decode::Program;
use kflex_isa::disasm::listing;
use kflex_linux::{LOG_STATS, LinuxMap, bpf_available, prog_load};
use kflex_object::{MapSpec, Object, ProgType};
use kflex_runtime::HelperRegistry;
use kflex_verify::progen::{self, Generated, PROG_TYPES, TAG_HEAP};
use kflex_verify::{VerifyInput, VerifyOptions, verify};

/// Generated programs per run (a quarter per program type).
const PROGRAMS: u64 = 6000;

fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn helpers_for(prog_type: ProgType) -> HelperRegistry {
    let mut helpers = HelperRegistry::linux_default();
    kflex_hooks::register_extra_helpers(&mut helpers, prog_type).expect("hook helpers register");
    helpers
}

/// kflex's verdict: `Ok(())` or the rule it reports (decode errors are rejections too).
fn kflex_verdict(
    insns: &[kflex_isa::Insn],
    prog_type: ProgType,
    maps: &[MapSpec],
    helpers: &HelperRegistry,
) -> Result<(), String> {
    let program = Program::decode(insns).map_err(|e| format!("decode: {e:?}"))?;
    let input = VerifyInput {
        program: &program,
        prog_type,
        maps,
        helpers,
        line_info: &[],
        func_info: &[],
    };
    verify(&input, &VerifyOptions::default())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The kernel's verdict: `Ok(())` or the errno and its reason line.
fn kernel_verdict(
    insns: &[kflex_isa::Insn],
    prog_type: ProgType,
    fds: &[BorrowedFd<'_>],
) -> Result<(), String> {
    prog_load(prog_type, insns, fds, "GPL", LOG_STATS)
        .map(|_| ())
        .map_err(|e| format!("errno {}: {}", e.errno, e.reason()))
}

/// How a verdict pair is explained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Agree,
    /// kflex accepts on purpose what Linux rejects.
    Relaxation(&'static str),
    /// kflex rejects on purpose what privileged Linux accepts.
    Stricter(&'static str),
    /// A difference that is not by design, listed with its cause until it is fixed.
    Known(&'static str),
    Disagree,
}

/// Known differences that are not by design where kflex accepts and Linux rejects: (program type
/// or None for any, kernel reason substring, cause). Empty: every one found so far is fixed.
const KNOWN: &[(Option<ProgType>, &str, &str)] = &[];

fn classify(
    g: Option<&Generated>,
    prog_type: ProgType,
    kflex: &Result<(), String>,
    linux: &Result<(), String>,
) -> Class {
    match (kflex, linux) {
        (Ok(()), Ok(())) | (Err(_), Err(_)) => Class::Agree,
        (Ok(()), Err(l)) => {
            if [
                "infinite loop detected",
                "BPF program is too large",
                "back-edge from insn",
            ]
            .iter()
            .any(|p| l.contains(p))
            {
                return Class::Relaxation("loop without a bound Linux can prove");
            }
            if g.is_some_and(|g| g.has_tag(TAG_HEAP))
                && (l.contains("arena") || l.contains("addr_space"))
            {
                return Class::Relaxation("heap (arena) use");
            }
            KNOWN
                .iter()
                .find(|(t, pat, _)| t.is_none_or(|t| t == prog_type) && l.contains(pat))
                .map_or(Class::Disagree, |(_, _, cause)| Class::Known(cause))
        }
        (Err(k), Ok(())) => {
            if k.contains("invalid read from stack") && k.contains("not initialised") {
                return Class::Stricter(
                    "reading uninitialised stack (privileged Linux allows it, allow_uninit_stack)",
                );
            }
            if g.is_some_and(|g| g.has_tag(TAG_HEAP)) && k.contains("heap") {
                return Class::Stricter("pointer stores into the heap (leak to user space)");
            }
            Class::Disagree
        }
    }
}

/// The generator's `MapNoNullCheck` mutation expects a rejection, but when it drew an array
/// lookup with key 0 (`*(u32 *)(r10 - 4) = 0`) the lookup cannot fail and both verifiers accept
/// (Linux 6.13+ and kflex track constant array keys), so that expectation is void.
fn unchecked_lookup_cannot_fail(
    g: &Generated,
    insns: &[kflex_isa::Insn],
    verdict: &Result<(), String>,
) -> bool {
    use kflex_isa::op;
    verdict.is_ok()
        && g.note.contains("mutation:MapNoNullCheck")
        && insns.iter().any(|i| {
            i.opcode == op::ST | op::MEM | op::W && i.dst == 10 && i.off == -4 && i.imm == 0
        })
}

#[derive(Default)]
struct Tally {
    programs: usize,
    agree: usize,
    relaxations: usize,
    disagreements: Vec<String>,
    /// Generator expectations both verifiers contradicted (generator bugs, reported only).
    expectation_misses: Vec<String>,
    /// Explained differences (relaxations, strictness by design, known) with counts.
    explained: BTreeMap<String, usize>,
}

impl Tally {
    fn record(
        &mut self,
        what: &str,
        g: Option<&Generated>,
        prog_type: ProgType,
        insns: &[kflex_isa::Insn],
        kflex: Result<(), String>,
        linux: Result<(), String>,
    ) {
        self.programs += 1;
        let class = classify(g, prog_type, &kflex, &linux);
        match class {
            Class::Agree => {
                self.agree += 1;
                if let Some(g) = g
                    && g.expect.is_some_and(|e| e != kflex.is_ok())
                    && !unchecked_lookup_cannot_fail(g, insns, &kflex)
                {
                    self.expectation_misses.push(format!(
                        "{what} ({}): expected {:?}, both said {:?}",
                        g.note, g.expect, kflex
                    ));
                }
            }
            Class::Relaxation(why) => {
                self.relaxations += 1;
                *self
                    .explained
                    .entry(format!("relaxation: {why}"))
                    .or_default() += 1;
            }
            Class::Stricter(why) => {
                *self
                    .explained
                    .entry(format!("kflex stricter by design: {why}"))
                    .or_default() += 1;
            }
            Class::Known(cause) => {
                *self
                    .explained
                    .entry(format!("known difference: {cause}"))
                    .or_default() += 1;
            }
            Class::Disagree => {
                let disasm = Program::decode(insns)
                    .map(|p| listing(&p))
                    .unwrap_or_else(|e| format!("(does not decode: {e:?})"));
                self.disagreements.push(format!(
                    "{what}{}\n  kflex: {}\n  linux: {}\n{disasm}",
                    g.map(|g| format!(" [{}]", g.note)).unwrap_or_default(),
                    kflex.as_ref().err().map_or("accept", String::as_str),
                    linux.as_ref().err().map_or("accept", String::as_str),
                ));
            }
        }
    }
}

/// Kernel maps matching `specs`, created once per distinct map set.
struct KernelMaps {
    sets: Vec<(Vec<MapSpec>, Vec<LinuxMap>)>,
}

impl KernelMaps {
    fn get(&mut self, specs: &[MapSpec]) -> &[LinuxMap] {
        if let Some(i) = self.sets.iter().position(|(s, _)| s == specs) {
            return &self.sets[i].1;
        }
        let maps = specs
            .iter()
            .map(|s| LinuxMap::create(s).unwrap_or_else(|e| panic!("creating kernel map: {e}")))
            .collect();
        self.sets.push((specs.to_vec(), maps));
        &self.sets.last().expect("just pushed").1
    }
}

#[test]
fn generated_programs_agree_with_linux() {
    if let Err(reason) = bpf_available() {
        kflex_testutil::skip(&reason);
        return;
    }
    let programs: u64 = std::env::var("KFLEX_DIFF_PROGRAMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(PROGRAMS);
    let helpers: Vec<HelperRegistry> = PROG_TYPES.iter().map(|&t| helpers_for(t)).collect();
    let mut kernel_maps = KernelMaps { sets: Vec::new() };
    let mut tally = Tally::default();
    let start = std::time::Instant::now();
    for seed in 0..programs {
        let which = (seed % PROG_TYPES.len() as u64) as usize;
        let g = progen::generate(seed, PROG_TYPES[which]);
        let kflex = kflex_verdict(&g.insns, g.prog_type, &g.maps, &helpers[which]);
        let maps = kernel_maps.get(&g.maps);
        let fds: Vec<BorrowedFd<'_>> = maps.iter().map(LinuxMap::as_fd).collect();
        let linux = kernel_verdict(&g.insns, g.prog_type, &fds);
        tally.record(
            &format!("seed {seed} {}", g.prog_type.name()),
            Some(&g),
            g.prog_type,
            &g.insns,
            kflex,
            linux,
        );
    }
    say(&format!(
        "linux-diff: {} programs, {} agree, {} relaxations, {} disagreements ({:?})",
        tally.programs,
        tally.agree,
        tally.relaxations,
        tally.disagreements.len(),
        start.elapsed()
    ));
    for (why, n) in &tally.explained {
        say(&format!("linux-diff: x{n} {why}"));
    }
    for miss in &tally.expectation_misses {
        say(&format!("linux-diff: generator expectation missed: {miss}"));
    }
    let mut kinds: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for d in &tally.disagreements {
        let key: String = d.lines().skip(1).take(2).collect::<Vec<_>>().join(" | ");
        let key: String = key.chars().take(200).collect();
        kinds.entry(key).or_insert((0, d.clone())).0 += 1;
    }
    for (key, (n, _)) in &kinds {
        say(&format!("linux-diff: disagreement x{n}: {key}"));
    }
    assert!(
        tally.disagreements.is_empty(),
        "{} disagreements with Linux (first 5):\n{}",
        tally.disagreements.len(),
        tally
            .disagreements
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n\n")
    );
    assert!(
        tally.expectation_misses.is_empty(),
        "the generator's expectations are wrong for {} programs (see above)",
        tally.expectation_misses.len()
    );
    assert!(
        tally.relaxations <= tally.programs / 4,
        "implausibly many relaxations"
    );
}

#[test]
fn bundled_examples_are_accepted_by_both_verifiers() {
    if let Err(reason) = bpf_available() {
        kflex_testutil::skip(&reason);
        return;
    }
    let mut checked = 0;
    for ex in kflex_examples::all() {
        let obj = Object::parse(ex.name, ex.object).expect("example parses");
        let maps: Vec<LinuxMap> = obj
            .maps
            .iter()
            .map(|s| LinuxMap::create(s).unwrap_or_else(|e| panic!("{}: {e}", ex.name)))
            .collect();
        let fds: Vec<BorrowedFd<'_>> = maps.iter().map(LinuxMap::as_fd).collect();
        for prog in &obj.programs {
            let prog_type = prog.prog_type.expect("example has a known program type");
            let kflex = kflex_verdict(&prog.insns, prog_type, &obj.maps, &helpers_for(prog_type));
            let linux = prog_load(prog_type, &prog.insns, &fds, "GPL", LOG_STATS);
            assert!(
                kflex.is_ok(),
                "kflex rejects {}/{}: {}",
                ex.name,
                prog.name,
                kflex.unwrap_err()
            );
            match linux {
                Ok(l) => say(&format!(
                    "linux-diff: example {}/{}: both accept (linux processed {:?} insns)",
                    ex.name, prog.name, l.insns_processed
                )),
                Err(e) => panic!("Linux rejects {}/{}: {e}", ex.name, prog.name),
            }
            checked += 1;
        }
    }
    assert!(checked >= 5, "only {checked} example programs");
}
