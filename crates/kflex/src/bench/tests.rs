//! The runner on in-process model drivers: agreement checking, failures, notes and the report.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use indicatif::ProgressBar;
use kflex_datastructures::protocol::{BATCH_MAX, Key, Op, Value};
use kflex_datastructures::{Driver, DriverError, OpKind, Structure};

use super::*;

/// A hash map behind the mailbox protocol; `bug` makes every 50th lookup miss.
struct ModelDriver {
    name: &'static str,
    map: HashMap<Key, Value>,
    mailbox: Vec<Op>,
    lookups: u64,
    bug: bool,
    /// Every insert of a new key past this many entries fails with -ENOMEM.
    capacity: usize,
    /// Every non-empty batch run, in order: (engine, op).
    log: Rc<RefCell<Vec<(&'static str, OpKind)>>>,
    /// Sleep this long in every non-empty batch (a slow engine).
    delay: Duration,
}

impl Driver for ModelDriver {
    fn engine(&self) -> &str {
        self.name
    }

    fn mailbox(&mut self) -> &mut [Op] {
        &mut self.mailbox
    }

    fn run(&mut self, op: OpKind, count: usize) -> Result<i64, DriverError> {
        if count > BATCH_MAX {
            return Err(DriverError::BatchTooLarge {
                count,
                max: BATCH_MAX,
            });
        }
        if count > 0 {
            self.log.borrow_mut().push((self.name, op));
            std::thread::sleep(self.delay);
        }
        let mut positive = 0;
        for o in &mut self.mailbox[..count] {
            o.result = match op {
                OpKind::Update
                    if self.map.len() >= self.capacity && !self.map.contains_key(&o.key) =>
                {
                    -12
                }
                OpKind::Update => match self.map.insert(o.key, o.value) {
                    None => 1,
                    Some(_) => 2,
                },
                OpKind::Lookup => {
                    self.lookups += 1;
                    match self.map.get(&o.key) {
                        Some(v) if !(self.bug && self.lookups.is_multiple_of(50)) => {
                            o.value = *v;
                            1
                        }
                        _ => 0,
                    }
                }
                OpKind::Delete => i64::from(self.map.remove(&o.key).is_some()),
            };
            positive += i64::from(o.result > 0);
        }
        Ok(positive)
    }
}

/// Native and kflex-jit are correct models, kflex-interp is buggy, linux is unavailable.
struct ModelFactory {
    opened: Vec<(Structure, EngineKind)>,
    capacity: usize,
    log: Rc<RefCell<Vec<(&'static str, OpKind)>>>,
    /// The engine whose batches sleep 100 ms.
    slow: Option<EngineKind>,
}

impl DriverFactory for ModelFactory {
    fn probe(&mut self, engine: EngineKind) -> Result<(), String> {
        match engine {
            EngineKind::Linux => Err("no BPF in this test".into()),
            _ => Ok(()),
        }
    }

    fn open(&mut self, s: Structure, e: EngineKind) -> Result<Box<dyn Driver>, OpenError> {
        self.opened.push((s, e));
        if e == EngineKind::KflexJitPerf {
            return Err(OpenError::Failed("cannot compile".into()));
        }
        if e == EngineKind::KflexJit && s == Structure::List {
            return Err(OpenError::Unsupported("the list is refused here".into()));
        }
        Ok(Box::new(ModelDriver {
            name: e.name(),
            map: HashMap::new(),
            mailbox: vec![Op::default(); BATCH_MAX],
            lookups: 0,
            bug: e == EngineKind::KflexInterp,
            capacity: self.capacity,
            log: self.log.clone(),
            delay: if self.slow == Some(e) {
                Duration::from_millis(100)
            } else {
                Duration::ZERO
            },
        }))
    }

    fn guards(&mut self, s: Structure) -> Result<Vec<ProgramGuards>, String> {
        Ok(OpKind::ALL
            .iter()
            .map(|op| ProgramGuards {
                structure: s.name().into(),
                program: op.program().into(),
                emitted: 1,
                elided: 4,
            })
            .collect())
    }
}

fn config(engines: &[EngineKind]) -> BenchConfig {
    BenchConfig {
        keys: 3000,
        list_keys: 100,
        max_repetitions: 3,
        structures: vec![Structure::Hash, Structure::List],
        engines: engines.to_vec(),
        ..BenchConfig::quick()
    }
}

#[test]
fn agreeing_engines_are_reported_and_broken_ones_are_failures() {
    let mut factory = ModelFactory {
        opened: vec![],
        capacity: usize::MAX,
        log: Rc::default(),
        slow: None,
    };
    let cfg = config(&EngineKind::ALL);
    let report = run(&cfg, &mut factory, &ProgressBar::hidden());
    assert_eq!(
        report.engines,
        ["native", "kflex-jit", "kflex-jit-perf", "kflex-interp"]
    );
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("linux not measured: no BPF"))
    );
    // A fresh instance per structure, stream and engine, native first.
    assert_eq!(factory.opened.len(), 2 * 2 * 4);
    assert_eq!(factory.opened[0], (Structure::Hash, EngineKind::Native));
    // 2 structures x 2 streams x 3 ops for native, the hash's for kflex-jit; none for the others.
    assert_eq!(report.results.len(), 18);
    assert!(
        report
            .notes
            .iter()
            .filter(|n| *n == "kflex-jit: list not measured: the list is refused here")
            .count()
            == 1,
        "{:?}",
        report.notes
    );
    for r in &report.results {
        assert!(r.engine == "native" || r.engine == "kflex-jit", "{r:?}");
        assert!(r.ns_per_op > 0.0 && r.ratio_to_native > 0.0);
        let ops = if r.structure == "list" { 100 } else { 3000 };
        assert_eq!(r.ops, ops);
        if r.engine == "native" {
            assert_eq!(r.ratio_to_native, 1.0);
        }
    }
    let lookup = |s: &str, keys: &str| {
        report
            .results
            .iter()
            .find(|r| r.structure == s && r.keys == keys && r.op == "lookup")
            .unwrap()
    };
    assert_eq!(
        lookup("hash", "uniform").successes,
        3000,
        "every looked-up key was inserted"
    );
    // The failures: perf could not open, interp's lookups disagree with native's.
    assert_eq!(report.failures.len(), 8);
    let interp: Vec<_> = report
        .failures
        .iter()
        .filter(|f| f.engine == "kflex-interp")
        .collect();
    assert_eq!(interp.len(), 4);
    assert!(
        interp
            .iter()
            .any(|f| f.error.contains("lookup disagrees with native")),
        "{interp:?}"
    );
    assert_eq!(report.guards.emitted, 6);
    assert_eq!(report.guards.elided, 24);
    let jit = &report.summary["kflex-jit"];
    assert_eq!(jit.results, 6);
    assert!(jit.worst_ratio <= jit.geomean_ratio);
}

#[test]
fn native_is_measured_even_when_not_asked_for() {
    let mut factory = ModelFactory {
        opened: vec![],
        capacity: usize::MAX,
        log: Rc::default(),
        slow: None,
    };
    let report = run(
        &config(&[EngineKind::KflexJit]),
        &mut factory,
        &ProgressBar::hidden(),
    );
    assert_eq!(report.engines, ["native", "kflex-jit"]);
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("native is always measured"))
    );
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.results.len(), 18);
    assert_eq!(
        report.invocation_ns.keys().collect::<Vec<_>>(),
        ["kflex-jit", "native"]
    );
}

#[test]
fn a_native_run_that_runs_out_of_memory_is_not_a_reference() {
    let mut factory = ModelFactory {
        opened: vec![],
        capacity: 500,
        log: Rc::default(),
        slow: None,
    };
    let mut cfg = config(&[EngineKind::Native, EngineKind::KflexJit]);
    cfg.structures = vec![Structure::Hash];
    let report = run(&cfg, &mut factory, &ProgressBar::hidden());
    assert!(report.results.is_empty(), "{:?}", report.results);
    assert_eq!(report.failures.len(), 2, "{:?}", report.failures);
    for f in &report.failures {
        assert_eq!(f.engine, "native");
        assert!(
            f.error.contains("update: ") && f.error.contains("ops failed"),
            "{}",
            f.error
        );
    }
    // Both engines' instances were opened, but nothing was compared with the broken reference.
    assert_eq!(factory.opened.len(), 4);
}

#[test]
fn engines_take_turns_round_by_round() {
    let mut factory = ModelFactory {
        opened: vec![],
        capacity: usize::MAX,
        log: Rc::default(),
        slow: None,
    };
    let mut cfg = config(&[EngineKind::Native, EngineKind::KflexJit]);
    cfg.structures = vec![Structure::Hash];
    cfg.keys = 1000;
    cfg.max_repetitions = 2;
    let report = run(&cfg, &mut factory, &ProgressBar::hidden());
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert!(report.results.iter().all(|r| r.repetitions == 2));
    // Per stream: each round runs native's three phases, then kflex-jit's (one batch each).
    let log = factory.log.borrow();
    let engines: Vec<&str> = log.iter().map(|(e, _)| *e).collect();
    let round = |e: &'static str| [e; 3];
    let expected: Vec<&str> = [round("native"), round("kflex-jit")].concat().repeat(2 * 2);
    assert_eq!(engines, expected);
    assert_eq!(
        log[..3].iter().map(|(_, op)| *op).collect::<Vec<_>>(),
        OpKind::ALL
    );
}

#[test]
fn a_slow_engine_sits_out_once_it_has_used_its_share() {
    let mut factory = ModelFactory {
        opened: vec![],
        capacity: usize::MAX,
        log: Rc::default(),
        slow: Some(EngineKind::KflexJit),
    };
    let mut cfg = config(&[EngineKind::Native, EngineKind::KflexJit]);
    cfg.structures = vec![Structure::Hash];
    cfg.keys = 1000;
    cfg.min_repetitions = 2;
    cfg.max_repetitions = 4;
    // Two engines: a 400 ms share each; the slow one spends at least 300 ms per repetition, the
    // model driver a few milliseconds at most.
    cfg.case_budget = Duration::from_millis(800);
    let report = run(&cfg, &mut factory, &ProgressBar::hidden());
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let reps = |engine: &str| {
        report
            .results
            .iter()
            .find(|r| r.engine == engine && r.keys == "uniform")
            .unwrap()
            .repetitions
    };
    assert_eq!(reps("kflex-jit"), 2, "the minimum, then its share is spent");
    assert!(
        reps("native") >= 3,
        "native kept repeating: {}",
        reps("native")
    );
}
