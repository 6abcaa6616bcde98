//! Termination checks and the watchdog: runaway loops are stopped within their budget in both
//! check modes, resources they hold are released, `may_goto` loops leave through their exit
//! branch, other threads are undisturbed, and thousands of cancellations leak nothing. Programs
//! are assembled, verified with `kflex_verify`, and compiled with the verifier's termination
//! points.

use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kflex_isa::asm::assemble;
use kflex_isa::decode::Program;
use kflex_isa::op;
use kflex_jit::{JitEnv, JitFault, JitFaultKind, JitOptions, JitProgram, TerminationMode};
use kflex_object::{MapSpec, MapType, ProgType};
use kflex_runtime::exec::{self, CancelReason, cancellation_stats};
use kflex_runtime::helpers::ResourceKind;
use kflex_runtime::{ExecEnv, HelperRegistry, MapOptions, MapTable, MemoryMap};
use kflex_verify::{VerifiedProgram, VerifyInput, VerifyOptions, verify};

/// Marks the child process of the leak test.
const CHILD_ENV: &str = "KFLEX_TERMINATION_CHILD";

/// Serialises the tests that take the shared map's lock or count mappings.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// A bound on "promptly" that no loaded machine should exceed (budgets are milliseconds).
const GENEROUS: Duration = Duration::from_secs(10);

/// An endless loop at run time that the verifier cannot prove endless: r6 is odd and steps by 2,
/// so it never reaches 0. Returns 0 if it ever ended.
const ENDLESS: &str = "call 7\nmov %r6, %r0\nor %r6, 1\nloop:\nadd %r6, 2\njne %r6, 0, loop\n\
                       mov %r0, 0\nexit";

/// A bounded loop returning 1000.
const BOUNDED: &str = "mov %r6, 0\nloop:\nadd %r6, 1\njlt %r6, 1000, loop\nmov %r0, %r6\nexit";

/// A `may_goto` loop calling a helper per iteration (so that Linux's 8M-iteration counter takes
/// far longer than the budget); returns the number of iterations done.
const MAY_GOTO_LOOP: &str =
    "mov %r6, 0\nloop:\nmay_goto done\ncall 7\nadd %r6, 1\nja loop\ndone:\nmov %r0, %r6\nexit";

/// Looks up key 0 of map 0 (value with a lock at offset 0) into r6, reserves 64 bytes of ring
/// buffer 1 into r7, takes the lock, then loops endlessly (as [`ENDLESS`]) touching the sample;
/// after the loop it unlocks and discards.
const LOCKED_LOOP: &str = "stw [%r10-4], 0\nmap_fd %r1, 0\nmov %r2, %r10\nadd %r2, -4\ncall 1\n\
     mov %r6, %r0\njeq %r6, 0, out\nmap_fd %r1, 1\nmov %r2, 64\nmov %r3, 0\ncall 131\n\
     mov %r7, %r0\njeq %r7, 0, out\ncall 7\nmov %r8, %r0\nor %r8, 1\nmov %r1, %r6\ncall 93\n\
     loop:\nstdw [%r7+0], 1\nadd %r8, 2\njne %r8, 0, loop\nmov %r1, %r6\ncall 94\n\
     mov %r1, %r7\nmov %r2, 0\ncall 133\nout:\nmov %r0, 0\nexit";

/// Takes and releases map 0's lock; returns 7.
const LOCK_ONCE: &str = "stw [%r10-4], 0\nmap_fd %r1, 0\nmov %r2, %r10\nadd %r2, -4\ncall 1\n\
     mov %r6, %r0\njeq %r6, 0, out\nmov %r1, %r6\ncall 93\nmov %r1, %r6\ncall 94\n\
     mov %r0, 7\nexit\nout:\nmov %r0, 0\nexit";

/// Assembles `src` with two extra forms: `map_fd %rN, IDX` (`lddw` of map IDX) and
/// `may_goto LABEL`. Map references are left unresolved (as the verifier wants them).
fn assemble_ext(src: &str) -> Vec<kflex_isa::Insn> {
    let mut lines = Vec::new();
    let mut patches = Vec::new();
    let mut slot = 0usize;
    for line in src.lines().map(str::trim) {
        if line.is_empty() || line.ends_with(':') {
            lines.push(line.to_string());
            continue;
        }
        let text = if let Some(rest) = line.strip_prefix("map_fd ") {
            patches.push((slot, true));
            format!("lddw {rest}")
        } else if let Some(label) = line.strip_prefix("may_goto ") {
            patches.push((slot, false));
            format!("ja {label}")
        } else {
            line.to_string()
        };
        slot += if text.starts_with("lddw") { 2 } else { 1 };
        lines.push(text);
    }
    let mut slots = assemble(&lines.join("\n")).unwrap_or_else(|e| panic!("{e}\n{src}"));
    for (at, map) in patches {
        if map {
            slots[at].src = op::PSEUDO_MAP_FD;
        } else {
            slots[at].opcode = op::JMP | op::JCOND;
        }
    }
    slots
}

fn helpers() -> HelperRegistry {
    let mut h = HelperRegistry::linux_default();
    kflex_hooks::register_extra_helpers(&mut h, ProgType::Syscall).unwrap();
    h
}

fn lock_and_ringbuf_maps() -> Vec<MapSpec> {
    vec![
        MapSpec::new("locks", MapType::Array, 4, 16, 1),
        MapSpec::new("events", MapType::Ringbuf, 0, 0, 4096),
    ]
}

/// A verified, compiled program with the maps it runs against.
struct Compiled {
    jit: JitProgram,
    verified: VerifiedProgram,
    maps: Arc<MapTable>,
    helpers: HelperRegistry,
}

fn build_with(src: &str, specs: &[MapSpec], mode: TerminationMode) -> Compiled {
    let maps = Arc::new(MapTable::create(specs, &MapOptions::default()).expect("maps"));
    build_on(src, specs, maps, mode)
}

/// Verifies `src` against `specs` and compiles it linked to `maps` (created from `specs`).
fn build_on(src: &str, specs: &[MapSpec], maps: Arc<MapTable>, mode: TerminationMode) -> Compiled {
    let slots = assemble_ext(src);
    let helpers = helpers();
    let program = Program::decode(&slots).expect("decodes");
    let input = VerifyInput {
        program: &program,
        prog_type: ProgType::Syscall,
        maps: specs,
        helpers: &helpers,
        line_info: &[],
        func_info: &[],
    };
    let verified = verify(&input, &VerifyOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    link_and_compile(slots, verified, maps, mode)
}

/// Resolves map references to `maps`' handles and compiles with `verified`'s termination points.
fn link_and_compile(
    mut slots: Vec<kflex_isa::Insn>,
    verified: VerifiedProgram,
    maps: Arc<MapTable>,
    mode: TerminationMode,
) -> Compiled {
    let helpers = helpers();
    // Link: map references become the table's handles.
    for at in 0..slots.len() {
        if slots[at].src == op::PSEUDO_MAP_FD && slots[at].opcode == op::LD | op::IMM | op::DW {
            let handle = maps.handle(slots[at].imm as usize);
            slots[at].src = 0;
            slots[at].imm = handle as u32 as i32;
            slots[at + 1].imm = (handle >> 32) as u32 as i32;
        }
    }
    let program = Program::decode(&slots).expect("linked program decodes");
    let options = JitOptions {
        termination: mode,
        termination_points: verified.termination_points.iter().map(|t| t.pc).collect(),
        ..JitOptions::default()
    };
    let jit = JitProgram::compile(&program, &options).expect("compiles");
    Compiled {
        jit,
        verified,
        maps,
        helpers,
    }
}

fn build(src: &str, mode: TerminationMode) -> Compiled {
    build_with(src, &[], mode)
}

impl Compiled {
    fn run(&self, budget: Option<Duration>) -> Result<u64, JitFault> {
        let mut mem = MemoryMap::new();
        for region in self.maps.regions() {
            // SAFETY: map regions describe memory owned by `self.maps`, which outlives `mem`
            // and is only accessed through raw pointers while the region is registered.
            unsafe { mem.insert(region) }.expect("map region");
        }
        let mut env = ExecEnv::with_maps(Arc::clone(&self.maps));
        let mut jenv = JitEnv::new(&mut mem, &self.helpers, &mut env);
        jenv.budget = budget;
        self.jit.run([0; 5], &mut jenv)
    }
}

const MODES: [TerminationMode; 2] = [TerminationMode::OneLoad, TerminationMode::CompareBranch];

fn terminated() -> JitFaultKind {
    JitFaultKind::Cancelled {
        reason: CancelReason::Terminated,
    }
}

#[test]
fn endless_loop_is_cancelled_within_its_budget_and_the_host_continues() {
    for mode in MODES {
        let endless = build(ENDLESS, mode);
        let back_edge = endless.verified.termination_points[0].pc;
        let start = Instant::now();
        let fault = endless.run(Some(Duration::from_millis(10))).unwrap_err();
        assert!(
            start.elapsed() < GENEROUS,
            "{mode:?} took {:?}",
            start.elapsed()
        );
        assert_eq!(fault.kind, terminated(), "{mode:?}");
        assert_eq!(fault.pc, back_edge, "{mode:?}: stopped at the back-edge");
        assert_eq!(fault.resources_released, 0);
        let bounded = build(BOUNDED, mode);
        assert_eq!(
            bounded.run(Some(Duration::from_secs(5))),
            Ok(1000),
            "{mode:?}"
        );
        // The same endless program runs (and is stopped) again.
        assert_eq!(
            endless
                .run(Some(Duration::from_millis(1)))
                .unwrap_err()
                .kind,
            terminated()
        );
    }
}

#[test]
fn without_checks_or_budget_nothing_is_armed() {
    let bounded = build(BOUNDED, TerminationMode::None);
    assert_eq!(bounded.run(Some(Duration::ZERO)), Ok(1000));
    let checked = build(BOUNDED, TerminationMode::OneLoad);
    assert_eq!(checked.run(None), Ok(1000));
}

#[test]
fn cancelled_loop_releases_its_lock_and_ringbuf_reservation() {
    let _s = serial();
    for mode in MODES {
        let specs = lock_and_ringbuf_maps();
        let locked = build_with(LOCKED_LOOP, &specs, mode);
        let before = cancellation_stats();
        let fault = locked.run(Some(Duration::from_millis(10))).unwrap_err();
        assert_eq!(fault.kind, terminated(), "{mode:?}");
        assert_eq!(fault.resources_released, 2, "{mode:?}: lock and sample");
        let after = cancellation_stats();
        assert!(after.cancellations > before.cancellations);
        assert!(after.resources_released >= before.resources_released + 2);
        // The verifier's cancellation table for the stopping pc lists the same resources.
        let live = &locked.verified.cancellation.entries[&fault.pc];
        let mut kinds: Vec<_> = live.iter().map(|l| (l.ref_id, l.kind)).collect();
        kinds.sort_by_key(|&(id, _)| id);
        kinds.dedup();
        assert_eq!(kinds.len(), fault.resources_released, "{live:?}");
        assert!(kinds.iter().any(|&(_, k)| k == ResourceKind::Lock));
        assert!(kinds.iter().any(|&(_, k)| k == ResourceKind::RingbufSample));
        // The lock word is free again, and a second run can take the lock.
        let value = locked.maps.lookup(0, &0u32.to_le_bytes()).unwrap().unwrap();
        assert_eq!(&value[..4], &[0; 4], "{mode:?}: lock released");
        let lock_once = build_on(LOCK_ONCE, &specs, Arc::clone(&locked.maps), mode);
        assert_eq!(lock_once.run(Some(Duration::from_secs(5))), Ok(7));
        // The reservation was discarded: the consumer skips it and no data stays pending.
        let rb = locked.maps.ringbuf(1).expect("ring buffer");
        assert!(locked.maps.ringbuf_consume(1).unwrap().is_empty());
        assert_eq!(rb.query(0), 0, "{mode:?}: no space held by the sample");
        assert!(rb.query(3) > 0, "{mode:?}: the sample was reserved");
    }
}

#[test]
fn memory_fault_cancellation_releases_the_reservation_too() {
    // Unverified on purpose: reserves a sample, then loads from the null page.
    let src = "map_fd %r1, 1\nmov %r2, 64\nmov %r3, 0\ncall 131\nmov %r7, 0\n\
               ldxdw %r0, [%r7+8]\nexit";
    let maps = lock_and_ringbuf_maps();
    let table = Arc::new(MapTable::create(&maps, &MapOptions::default()).expect("maps"));
    let p = link_and_compile(
        assemble_ext(src),
        VerifiedProgram::default(),
        table,
        TerminationMode::OneLoad,
    );
    let before = cancellation_stats();
    let fault = p.run(None).unwrap_err();
    assert_eq!(
        fault.kind,
        JitFaultKind::Cancelled {
            reason: CancelReason::MemoryFault { addr: 8 }
        }
    );
    assert_eq!(fault.resources_released, 1);
    assert!(cancellation_stats().cancellations > before.cancellations);
    let rb = p.maps.ringbuf(1).expect("ring buffer");
    assert!(p.maps.ringbuf_consume(1).unwrap().is_empty());
    assert_eq!(rb.query(0), 0, "the discarded sample holds no space");
    assert!(rb.query(3) > 0, "a sample was reserved");
}

#[test]
fn may_goto_loop_leaves_through_its_exit_when_the_budget_is_exhausted() {
    for mode in MODES {
        let p = build(MAY_GOTO_LOOP, mode);
        let start = Instant::now();
        let iterations = p.run(Some(Duration::from_millis(10))).expect("normal exit");
        assert!(start.elapsed() < GENEROUS);
        assert!(iterations > 0, "{mode:?}");
        assert!(
            iterations < kflex_jit::MAY_GOTO_BUDGET,
            "{mode:?}: {iterations} iterations: left by the budget, not the counter"
        );
    }
    // Without a budget Linux's counter ends it.
    let p = build(MAY_GOTO_LOOP, TerminationMode::OneLoad);
    assert_eq!(p.run(None), Ok(kflex_jit::MAY_GOTO_BUDGET));
}

#[test]
fn runaway_on_one_thread_does_not_disturb_another() {
    let runaway = std::thread::spawn(|| {
        build(ENDLESS, TerminationMode::OneLoad).run(Some(Duration::from_millis(300)))
    });
    let bounded = build(BOUNDED, TerminationMode::OneLoad);
    let start = Instant::now();
    let mut runs = 0;
    while !runaway.is_finished() {
        assert_eq!(bounded.run(Some(Duration::from_secs(5))), Ok(1000));
        runs += 1;
        assert!(start.elapsed() < GENEROUS, "runaway never stopped");
    }
    assert!(runs > 0);
    assert_eq!(runaway.join().unwrap().unwrap_err().kind, terminated());
}

fn maps_lines() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .expect("procfs")
        .lines()
        .count()
}

#[test]
fn thousands_of_terminations_leak_no_mappings() {
    if std::env::var(CHILD_ENV).as_deref() != Ok("alone") {
        let _s = serial();
        let test = "thousands_of_terminations_leak_no_mappings";
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, "alone")
            .output()
            .expect("spawn child");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "child failed: {:?}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    let one_load = build(ENDLESS, TerminationMode::OneLoad);
    let compare = build(ENDLESS, TerminationMode::CompareBranch);
    let budget = Some(Duration::from_micros(100));
    for _ in 0..20 {
        assert_eq!(one_load.run(budget).unwrap_err().kind, terminated());
    }
    let maps = maps_lines();
    for i in 0..2000 {
        let p = if i % 2 == 0 { &one_load } else { &compare };
        assert_eq!(p.run(budget).unwrap_err().kind, terminated());
    }
    assert_eq!(maps_lines(), maps, "no mappings leaked");
    assert_eq!(
        exec::Watchdog::global().armed(),
        0,
        "every deadline disarmed"
    );
}
