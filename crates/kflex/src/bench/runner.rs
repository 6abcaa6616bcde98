//! The benchmark loop: for each structure × key stream, a fresh instance per engine runs the
//! update, lookup and delete phases over the stream (repeated for a median where it is cheap);
//! native runs first and every other engine must reproduce its per-batch results.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use kflex_datastructures::protocol::{BATCH_MAX, LRU_CAPACITY};
use kflex_datastructures::{Driver, OpKind, Structure};

use super::engine_kind::EngineKind;
use super::keys::{self, KeyDist};
use super::phase::{KeySpace, PhaseRun, invocation_cost, run_phase};
use super::report::{BenchResult, Failure, ProgramGuards, Report};
use super::stats::{batchwise_median, median};

/// What to measure.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchConfig {
    /// Distinct keys in the key space (and ops per phase) of every structure but the list.
    pub keys: usize,
    /// Distinct keys (and ops per phase) of the linked list, whose ops are O(n).
    pub list_keys: usize,
    /// Most repetitions of the three phases on each instance.
    pub max_repetitions: usize,
    /// Repetitions every instance runs whatever the time.
    pub min_repetitions: usize,
    /// Time for one structure and stream on all engines together: past `min_repetitions`, an
    /// engine stops repeating once it has used its share of it, and no further round starts
    /// once it is spent.
    pub case_budget: Duration,
    /// Structures, in report order.
    pub structures: Vec<Structure>,
    /// Engines, in column order (native is always measured, as the reference).
    pub engines: Vec<EngineKind>,
    /// Whether this is the `--quick` configuration.
    pub quick: bool,
    /// Seed of the key streams.
    pub seed: u64,
}

impl BenchConfig {
    /// The full benchmark: N = 100,000 keys (the list 2,000), 3 to 9 repetitions within 4 s per
    /// structure and stream, every structure and engine.
    pub fn full() -> Self {
        BenchConfig {
            keys: 100_000,
            list_keys: 2_000,
            max_repetitions: 9,
            min_repetitions: 3,
            case_budget: Duration::from_secs(4),
            structures: Structure::ALL.to_vec(),
            engines: EngineKind::ALL.to_vec(),
            quick: false,
            seed: 0x6b66_6c65_7862,
        }
    }

    /// The quick benchmark: N = 10,000 keys (the list 500), one repetition.
    pub fn quick() -> Self {
        BenchConfig {
            keys: 10_000,
            list_keys: 500,
            max_repetitions: 1,
            min_repetitions: 1,
            quick: true,
            ..BenchConfig::full()
        }
    }

    /// Keys (= ops per phase) for `structure`.
    pub fn keys_for(&self, structure: Structure) -> usize {
        match structure {
            Structure::List => self.list_keys,
            _ => self.keys,
        }
    }
}

/// Opens structure instances on engines.
pub trait DriverFactory {
    /// Whether `engine` can run here at all; `Err` says why not (the engine is then left out
    /// with a note, not reported as a failure).
    fn probe(&mut self, engine: EngineKind) -> Result<(), String>;

    /// A fresh, initialised instance of `structure` on `engine`.
    fn open(
        &mut self,
        structure: Structure,
        engine: EngineKind,
    ) -> Result<Box<dyn Driver>, OpenError>;

    /// Static guard sites of `structure`'s programs on kflex's JIT in its default SFI mode.
    fn guards(&mut self, structure: Structure) -> Result<Vec<ProgramGuards>, String>;
}

/// Why a structure instance was not measured on an engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// The engine cannot run this structure here (e.g. the kernel's verifier refuses the
    /// object): reported as a note, like an engine that is unavailable.
    Unsupported(String),
    /// The instance failed (could not be set up, a run failed, or its results disagreed with
    /// native's): reported as a failure.
    Failed(String),
}

impl From<String> for OpenError {
    fn from(message: String) -> Self {
        OpenError::Failed(message)
    }
}

/// The three phases of one repetition.
type Phases = [PhaseRun; 3];

/// Runs the benchmark. The report has results, summary, guards, notes and failures; a phase is
/// reported only when its engine reproduced native's results batch for batch in every
/// repetition.
pub fn run(
    config: &BenchConfig,
    factory: &mut dyn DriverFactory,
    progress: &ProgressBar,
) -> Report {
    let mut report = Report {
        keys_n: config.keys,
        batch: BATCH_MAX,
        quick: config.quick,
        ..Report::default()
    };
    let mut engines = vec![EngineKind::Native];
    if !config.engines.contains(&EngineKind::Native) {
        report
            .notes
            .push("native is always measured: it is the reference of every ratio".into());
    }
    for &e in &config.engines {
        if e == EngineKind::Native || engines.contains(&e) {
            continue;
        }
        match factory.probe(e) {
            Ok(()) => engines.push(e),
            Err(why) => report.notes.push(format!("{e} not measured: {why}")),
        }
    }
    if let Err(why) = factory.probe(EngineKind::Native) {
        report.failures.push(Failure {
            structure: "*".into(),
            keys: "*".into(),
            engine: "native".into(),
            error: why,
        });
        return report;
    }
    report.engines = engines.iter().map(|e| e.name().to_string()).collect();
    report.notes.push(format!(
        "ops go through the mailbox in batches of {BATCH_MAX}: one program invocation runs a \
         whole batch, so the per-invocation cost is amortised over it, as it is for the native loop"
    ));
    if config.structures.contains(&Structure::List) {
        report.notes.push(format!(
            "list: {} keys and ops per phase (its ops are O(n)); the other structures {}",
            config.list_keys, config.keys
        ));
    }

    progress.set_length((config.structures.len() * KeyDist::ALL.len()) as u64);
    for &structure in &config.structures {
        let n = config.keys_for(structure);
        let space = KeySpace::new(n);
        for dist in KeyDist::ALL {
            let stream = keys::stream(dist, n, n, config.seed);
            let case = Case {
                structure,
                dist,
                stream: &stream,
                space: &space,
            };
            measure_case(config, factory, progress, &engines, &case, &mut report);
            progress.inc(1);
        }
    }
    progress.finish_and_clear();

    let mut no_guards: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for &structure in &config.structures {
        match factory.guards(structure) {
            Ok(programs) => report.guards.programs.extend(programs),
            Err(why) => no_guards.entry(why).or_default().push(structure.name()),
        }
    }
    for (why, structures) in no_guards {
        report.notes.push(format!(
            "no guard statistics for {}: {why}",
            structures.join(", ")
        ));
    }
    report.guards =
        super::report::GuardTotals::from_programs(std::mem::take(&mut report.guards.programs));
    report.summarise();
    report
}

/// One structure and key stream.
struct Case<'a> {
    structure: Structure,
    dist: KeyDist,
    stream: &'a [u32],
    space: &'a KeySpace,
}

impl Case<'_> {
    fn failure(&self, engine: EngineKind, error: String) -> Failure {
        Failure {
            structure: self.structure.name().into(),
            keys: self.dist.name().into(),
            engine: engine.name().into(),
            error,
        }
    }
}

/// One engine's instance in a case and what it measured so far.
struct Lane {
    engine: EngineKind,
    driver: Box<dyn Driver>,
    /// Batch times of each phase: one vector per repetition.
    samples: [Vec<Vec<f64>>; 3],
    /// The same in thread CPU time.
    cpu_samples: [Vec<Vec<f64>>; 3],
    /// The first repetition's runs.
    first: Option<Phases>,
    /// Time spent running this lane's repetitions.
    busy: Duration,
}

/// Empty-batch invocations timed per instance for its fixed cost.
const INVOCATION_RUNS: usize = 101;

/// Measures every engine on one case. Each engine gets a fresh instance; the repetitions are
/// interleaved (round `r` runs the three phases on native, then on every other engine) so that
/// a change in the machine's load hits every engine alike instead of skewing the ratios.
fn measure_case(
    config: &BenchConfig,
    factory: &mut dyn DriverFactory,
    progress: &ProgressBar,
    engines: &[EngineKind],
    case: &Case<'_>,
    report: &mut Report,
) {
    progress.set_message(format!("{} {}: loading", case.structure, case.dist.name()));
    let mut lanes: Vec<Lane> = Vec::with_capacity(engines.len());
    for &engine in engines {
        match factory.open(case.structure, engine) {
            Ok(driver) => lanes.push(Lane {
                engine,
                driver,
                samples: Default::default(),
                cpu_samples: Default::default(),
                first: None,
                busy: Duration::ZERO,
            }),
            Err(e) => {
                record(report, case, engine, e);
                if engine == EngineKind::Native {
                    // Without the reference nothing else can be checked or compared.
                    return;
                }
            }
        }
    }

    let started = Instant::now();
    let reps = config.max_repetitions.max(1);
    let min_reps = config.min_repetitions.clamp(1, reps);
    let mut reference: Option<Phases> = None;
    for rep in 0..reps {
        // An engine past its minimum that has used its share of the budget sits out (the
        // interpreter, typically), so the cheap engines get more repetitions.
        let share = config.case_budget / lanes.len().max(1) as u32;
        let mut ran = false;
        let mut k = 0;
        while k < lanes.len() {
            let lane = &mut lanes[k];
            let engine = lane.engine;
            if rep >= min_reps && lane.busy >= share {
                k += 1;
                continue;
            }
            ran = true;
            let start = Instant::now();
            let outcome = run_repetition(lane, rep, reps, case, reference.as_ref(), progress)
                .and_then(|()| {
                    if engine == EngineKind::Native && reference.is_none() {
                        let first = lane.first.as_ref().expect("a repetition ran");
                        plausible(case, first)?;
                        reference = Some(first.clone());
                    }
                    Ok(())
                });
            lane.busy += start.elapsed();
            match outcome {
                Ok(()) => k += 1,
                Err(e) => {
                    report.failures.push(case.failure(engine, e));
                    if engine == EngineKind::Native {
                        return;
                    }
                    lanes.remove(k);
                }
            }
        }
        if !ran || (rep + 1 >= min_reps && started.elapsed() >= config.case_budget) {
            break;
        }
    }

    let mut native_ns = [f64::NAN; 3];
    let mut native_cpu_ns = [f64::NAN; 3];
    for mut lane in lanes {
        let engine = lane.engine;
        let fixed = match invocation_cost(lane.driver.as_mut(), INVOCATION_RUNS) {
            Ok(ns) => ns,
            Err(e) => {
                report.failures.push(case.failure(engine, e));
                continue;
            }
        };
        let ops = case.stream.len().max(1) as f64;
        let ns = lane
            .samples
            .each_ref()
            .map(|reps| (batchwise_median(reps).unwrap_or(f64::NAN) / ops).max(f64::MIN_POSITIVE));
        let cpu_ns = lane
            .cpu_samples
            .each_ref()
            .map(|reps| (batchwise_median(reps).unwrap_or(f64::NAN) / ops).max(f64::MIN_POSITIVE));
        let phase_ns = lane.samples.each_ref().map(|reps| {
            let totals: Vec<f64> = reps.iter().map(|r| r.iter().sum()).collect();
            median(&totals).unwrap_or(f64::NAN) / ops
        });
        if engine == EngineKind::Native {
            native_ns = ns;
            native_cpu_ns = cpu_ns;
        }
        let first = lane.first.expect("a repetition ran");
        for (i, op) in OpKind::ALL.into_iter().enumerate() {
            report.results.push(BenchResult {
                structure: case.structure.name().into(),
                op: op.program().into(),
                keys: case.dist.name().into(),
                engine: engine.name().into(),
                ns_per_op: ns[i],
                ns_per_op_phase_median: phase_ns[i],
                ratio_to_native: native_ns[i] / ns[i],
                cpu_ns_per_op: cpu_ns[i],
                cpu_ratio_to_native: native_cpu_ns[i] / cpu_ns[i],
                ops: case.stream.len(),
                repetitions: lane.samples[i].len(),
                successes: first[i].successes(),
                invocation_ns: fixed,
            });
        }
    }
}

/// Files an instance that could not be opened: a note when the engine cannot run the structure
/// here, a failure otherwise.
fn record(report: &mut Report, case: &Case<'_>, engine: EngineKind, e: OpenError) {
    match e {
        OpenError::Failed(e) => report.failures.push(case.failure(engine, e)),
        OpenError::Unsupported(why) => {
            let note = format!("{engine}: {} not measured: {why}", case.structure);
            if !report.notes.contains(&note) {
                report.notes.push(note);
            }
        }
    }
}

/// Runs the three phases once on `lane`, checking each against `reference` (native's first
/// repetition; for native itself, its own first).
fn run_repetition(
    lane: &mut Lane,
    rep: usize,
    reps: usize,
    case: &Case<'_>,
    reference: Option<&Phases>,
    progress: &ProgressBar,
) -> Result<(), String> {
    let mut phases: Phases = Default::default();
    for (i, op) in OpKind::ALL.into_iter().enumerate() {
        progress.set_message(format!(
            "{} {} {}: {} (repetition {}/{reps})",
            case.structure,
            case.dist.name(),
            lane.engine,
            op.program(),
            rep + 1
        ));
        let mut run = run_phase(lane.driver.as_mut(), op, case.stream, case.space)?;
        if let Some(want) = reference.or(lane.first.as_ref())
            && let Some((batch, got, expected)) = run.first_difference(&want[i])
        {
            return Err(format!(
                "{} disagrees with native in repetition {} at batch {batch}: returned {} \
                 (digest {:#x}), native {} (digest {:#x})",
                op.program(),
                rep + 1,
                got.ret,
                got.digest,
                expected.ret,
                expected.digest
            ));
        }
        lane.samples[i].push(std::mem::take(&mut run.batch_ns));
        lane.cpu_samples[i].push(std::mem::take(&mut run.batch_cpu_ns));
        phases[i] = run;
    }
    if lane.first.is_none() {
        lane.first = Some(phases);
    }
    Ok(())
}

/// Checks that native's first repetition did what the structure promises, so that a broken
/// native build cannot become the reference: no op failed, and for the key-value structures
/// every update succeeded, every lookup after them found its key and delete removed each
/// distinct key once.
fn plausible(case: &Case<'_>, first: &Phases) -> Result<(), String> {
    for (i, op) in OpKind::ALL.into_iter().enumerate() {
        if first[i].negative > 0 {
            return Err(format!(
                "native {}: {} ops failed (negative result: out of memory or lock not taken)",
                op.program(),
                first[i].negative
            ));
        }
    }
    let len = case.stream.len() as u64;
    let distinct = case.stream.iter().collect::<HashSet<_>>().len() as u64;
    let expect: BTreeMap<&str, u64> = if case.structure.is_sketch() {
        [("update", len), ("lookup", len), ("delete", len)].into()
    } else if case.structure != Structure::Lru || distinct <= LRU_CAPACITY as u64 {
        [("update", len), ("lookup", len), ("delete", distinct)].into()
    } else {
        [("update", len)].into()
    };
    for (i, op) in OpKind::ALL.into_iter().enumerate() {
        if let Some(&want) = expect.get(op.program()) {
            let got = first[i].successes();
            if got != want {
                return Err(format!(
                    "native {}: {got} of {len} ops succeeded, expected {want}",
                    op.program()
                ));
            }
        }
    }
    Ok(())
}
