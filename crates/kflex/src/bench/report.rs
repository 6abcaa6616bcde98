//! The benchmark's results and their text and JSON forms.
//!
//! The JSON document holds `results` (one object per structure × op × key stream × engine with
//! `structure`, `op`, `keys`, `engine`, `ns_per_op`, `ratio_to_native`, plus `ops`,
//! `repetitions` and `successes`), `summary` (per engine `geomean_ratio` and `worst_ratio`),
//! `guards` (`emitted` and `elided` totals and the per-program counts), and the run's
//! parameters, notes and failures.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::stats::{self, EngineSummary};

/// One measured phase: a structure's operation over one key stream on one engine.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BenchResult {
    /// Structure name (`hash`, `rbtree`, ...).
    pub structure: String,
    /// Operation (`update`, `lookup`, `delete`).
    pub op: String,
    /// Key stream (`uniform`, `zipf`).
    pub keys: String,
    /// Engine (`native`, `kflex-jit`, `kflex-jit-perf`, `kflex-interp`, `linux`).
    pub engine: String,
    /// Nanoseconds per operation: per batch the median over the repetitions, summed over the
    /// batches, divided by the ops ([`stats::batchwise_median`]).
    pub ns_per_op: f64,
    /// Nanoseconds per operation from the median of the repetitions' whole-phase times (more
    /// sensitive to interruptions; for comparison).
    pub ns_per_op_phase_median: f64,
    /// Native ns/op of the same phase divided by this engine's (1.0 is native speed).
    pub ratio_to_native: f64,
    /// Like `ns_per_op`, in this thread's CPU time (time descheduled left out).
    pub cpu_ns_per_op: f64,
    /// Native `cpu_ns_per_op` divided by this engine's.
    pub cpu_ratio_to_native: f64,
    /// Operations per phase.
    pub ops: usize,
    /// Repetitions the median was taken over.
    pub repetitions: usize,
    /// Operations of the phase whose result was positive (the same on every engine).
    pub successes: u64,
    /// Fixed cost of one invocation on this instance (an empty batch), in nanoseconds.
    pub invocation_ns: f64,
}

/// Static heap-guard sites of one program as compiled by kflex's JIT in its default SFI mode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProgramGuards {
    /// Structure name.
    pub structure: String,
    /// Program name (`init`, `update`, `lookup`, `delete`).
    pub program: String,
    /// Guard sites emitted.
    pub emitted: u64,
    /// Guard sites the verifier's facts let the JIT elide.
    pub elided: u64,
}

/// Guard totals over every program measured.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct GuardTotals {
    /// Guard sites emitted.
    pub emitted: u64,
    /// Guard sites elided.
    pub elided: u64,
    /// `elided / (emitted + elided)`, 0 when there are no sites.
    pub elided_fraction: f64,
    /// Per-program counts.
    pub programs: Vec<ProgramGuards>,
}

impl GuardTotals {
    /// Totals of `programs`.
    pub fn from_programs(programs: Vec<ProgramGuards>) -> Self {
        let emitted = programs.iter().map(|p| p.emitted).sum();
        let elided = programs.iter().map(|p| p.elided).sum();
        let sites = emitted + elided;
        GuardTotals {
            emitted,
            elided,
            elided_fraction: if sites == 0 {
                0.0
            } else {
                elided as f64 / sites as f64
            },
            programs,
        }
    }
}

/// An engine's summary as written to the JSON.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct SummaryEntry {
    /// Geometric mean of the engine's ratios to native.
    pub geomean_ratio: f64,
    /// Its lowest ratio to native.
    pub worst_ratio: f64,
    /// Number of results.
    pub results: usize,
}

impl From<EngineSummary> for SummaryEntry {
    fn from(s: EngineSummary) -> Self {
        SummaryEntry {
            geomean_ratio: s.geomean_ratio,
            worst_ratio: s.worst_ratio,
            results: s.results,
        }
    }
}

/// A run that was not measured because it failed or disagreed with native.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// Structure name.
    pub structure: String,
    /// Key stream.
    pub keys: String,
    /// Engine.
    pub engine: String,
    /// What went wrong.
    pub error: String,
}

/// The whole report.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Report {
    /// Distinct keys in the key space (the list uses fewer, see `notes`).
    pub keys_n: usize,
    /// Operations per mailbox batch (one program invocation).
    pub batch: usize,
    /// Whether this was a `--quick` run.
    pub quick: bool,
    /// Engines measured, in column order.
    pub engines: Vec<String>,
    /// Measured phases.
    pub results: Vec<BenchResult>,
    /// Per-engine summary.
    pub summary: BTreeMap<String, SummaryEntry>,
    /// Per-engine summary of `cpu_ratio_to_native`.
    pub cpu_summary: BTreeMap<String, SummaryEntry>,
    /// Guard totals.
    pub guards: GuardTotals,
    /// Notes about the run (engines left out, reduced op counts).
    pub notes: Vec<String>,
    /// Runs not reported because they failed.
    pub failures: Vec<Failure>,
    /// Per engine: median fixed cost of one invocation (an empty batch) over its instances, in
    /// nanoseconds; a batch spreads it over up to `batch` ops.
    pub invocation_ns: BTreeMap<String, f64>,
}

impl Report {
    /// Recomputes `summary` and `invocation_ns` from `results`.
    pub fn summarise(&mut self) {
        let mut fixed: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        for r in &self.results {
            fixed.entry(&r.engine).or_default().push(r.invocation_ns);
        }
        self.invocation_ns = fixed
            .into_iter()
            .filter_map(|(e, v)| Some((e.to_string(), stats::median(&v)?)))
            .collect();
        self.summary = stats::summarise(
            self.results
                .iter()
                .map(|r| (r.engine.as_str(), r.ratio_to_native)),
        )
        .into_iter()
        .map(|(e, s)| (e, s.into()))
        .collect();
        self.cpu_summary = stats::summarise(
            self.results
                .iter()
                .map(|r| (r.engine.as_str(), r.cpu_ratio_to_native)),
        )
        .into_iter()
        .map(|(e, s)| (e, s.into()))
        .collect();
    }

    /// The JSON document.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report serialises")
    }

    /// The table: one row per structure × op × key stream, ns/op and ratio per engine; then the
    /// per-engine summary and the guard totals.
    pub fn table(&self) -> String {
        let mut rows: Vec<(&str, &str, &str)> = Vec::new();
        let mut cells: BTreeMap<(&str, &str, &str, &str), &BenchResult> = BTreeMap::new();
        for r in &self.results {
            let row = (r.structure.as_str(), r.op.as_str(), r.keys.as_str());
            if !rows.contains(&row) {
                rows.push(row);
            }
            cells.insert((row.0, row.1, row.2, r.engine.as_str()), r);
        }
        let mut out = String::new();
        let _ = write!(out, "{:<12}{:<8}{:<9}", "structure", "op", "keys");
        for e in &self.engines {
            let _ = write!(out, "{e:>22}");
        }
        out.push('\n');
        for (s, op, keys) in rows {
            let _ = write!(out, "{s:<12}{op:<8}{keys:<9}");
            for e in &self.engines {
                let cell = match cells.get(&(s, op, keys, e.as_str())) {
                    Some(r) if e == "native" => format!("{} ns", fmt_ns(r.ns_per_op)),
                    Some(r) => format!("{} ns {:>6.3}x", fmt_ns(r.ns_per_op), r.ratio_to_native),
                    None => "-".to_string(),
                };
                let _ = write!(out, "{cell:>22}");
            }
            out.push('\n');
        }
        if !self.summary.is_empty() {
            out.push_str("\nratio to native (native ns/op / engine ns/op; 1.0 = native speed):\n");
            for e in &self.engines {
                if let Some(s) = self.summary.get(e) {
                    let _ = writeln!(
                        out,
                        "  {e:<16} geomean {:.3}x  worst {:.3}x  ({} results)",
                        s.geomean_ratio, s.worst_ratio, s.results
                    );
                }
            }
        }
        if !self.cpu_summary.is_empty() {
            out.push_str(
                "the same on thread CPU time (time the benchmark was descheduled left out):\n",
            );
            for e in &self.engines {
                if let Some(s) = self.cpu_summary.get(e) {
                    let _ = writeln!(
                        out,
                        "  {e:<16} geomean {:.3}x  worst {:.3}x  ({} results)",
                        s.geomean_ratio, s.worst_ratio, s.results
                    );
                }
            }
        }
        if !self.invocation_ns.is_empty() {
            out.push_str("\nfixed cost of one invocation (an empty batch; a batch spreads it over its ops):\n");
            for e in &self.engines {
                if let Some(ns) = self.invocation_ns.get(e) {
                    let _ = writeln!(
                        out,
                        "  {e:<16} {} ns, {:.2} ns/op over a full batch of {}",
                        fmt_ns(*ns),
                        ns / self.batch.max(1) as f64,
                        self.batch
                    );
                }
            }
        }
        let g = &self.guards;
        let _ = writeln!(
            out,
            "\nstatic heap-guard sites (kflex JIT, default SFI): {} emitted, {} elided ({:.1}% elided); \
             per program emitted/elided:",
            g.emitted,
            g.elided,
            100.0 * g.elided_fraction
        );
        let mut structures: Vec<&str> = Vec::new();
        for p in &g.programs {
            if !structures.contains(&p.structure.as_str()) {
                structures.push(&p.structure);
            }
        }
        for s in structures {
            let programs: Vec<String> = g
                .programs
                .iter()
                .filter(|p| p.structure == s)
                .map(|p| format!("{} {}/{}", p.program, p.emitted, p.elided))
                .collect();
            let _ = writeln!(out, "  {s:<12} {}", programs.join(", "));
        }
        out
    }
}

/// Nanoseconds with precision suited to their size.
fn fmt_ns(ns: f64) -> String {
    if ns < 100.0 {
        format!("{ns:.1}")
    } else {
        format!("{ns:.0}")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn result(
        s: &str,
        op: &str,
        keys: &str,
        engine: &str,
        ns: f64,
        native: f64,
    ) -> BenchResult {
        BenchResult {
            structure: s.into(),
            op: op.into(),
            keys: keys.into(),
            engine: engine.into(),
            ns_per_op: ns,
            ns_per_op_phase_median: ns,
            ratio_to_native: native / ns,
            cpu_ns_per_op: ns * 0.5,
            cpu_ratio_to_native: native / ns,
            ops: 1000,
            repetitions: 3,
            successes: 10,
            invocation_ns: if engine == "native" { 20.0 } else { 512.0 },
        }
    }

    pub(crate) fn sample() -> Report {
        let mut r = Report {
            keys_n: 1000,
            batch: 1024,
            engines: vec!["native".into(), "kflex-jit".into(), "kflex-interp".into()],
            ..Report::default()
        };
        for (op, native) in [("update", 100.0), ("lookup", 50.0)] {
            r.results
                .push(result("hash", op, "zipf", "native", native, native));
            r.results.push(result(
                "hash",
                op,
                "zipf",
                "kflex-jit",
                native * 1.25,
                native,
            ));
            r.results.push(result(
                "hash",
                op,
                "zipf",
                "kflex-interp",
                native * 20.0,
                native,
            ));
        }
        r.guards = GuardTotals::from_programs(vec![
            ProgramGuards {
                structure: "hash".into(),
                program: "update".into(),
                emitted: 1,
                elided: 9,
            },
            ProgramGuards {
                structure: "hash".into(),
                program: "lookup".into(),
                emitted: 1,
                elided: 4,
            },
        ]);
        r.summarise();
        r
    }

    #[test]
    fn json_has_the_required_shape() {
        let v: serde_json::Value = serde_json::from_str(&sample().to_json()).unwrap();
        let results = v["results"].as_array().unwrap();
        assert_eq!(results.len(), 6);
        for r in results {
            for field in ["structure", "op", "keys", "engine"] {
                assert!(r[field].is_string(), "{field} in {r}");
            }
            assert!(r["ns_per_op"].as_f64().unwrap() > 0.0);
            assert!(r["ratio_to_native"].as_f64().unwrap() > 0.0);
        }
        let jit = &v["summary"]["kflex-jit"];
        assert!((jit["geomean_ratio"].as_f64().unwrap() - 0.8).abs() < 1e-12);
        assert!((jit["worst_ratio"].as_f64().unwrap() - 0.8).abs() < 1e-12);
        assert!(
            (v["summary"]["kflex-interp"]["geomean_ratio"]
                .as_f64()
                .unwrap()
                - 0.05)
                .abs()
                < 1e-12
        );
        let cpu = &v["cpu_summary"]["kflex-jit"];
        assert!((cpu["geomean_ratio"].as_f64().unwrap() - 0.8).abs() < 1e-12);
        assert!(v["results"][1]["cpu_ns_per_op"].as_f64().unwrap() > 0.0);
        assert_eq!(v["guards"]["emitted"], 2);
        assert_eq!(v["guards"]["elided"], 13);
        assert!((v["guards"]["elided_fraction"].as_f64().unwrap() - 13.0 / 15.0).abs() < 1e-12);
    }

    #[test]
    fn table_has_a_row_per_phase_and_a_column_per_engine() {
        let t = sample().table();
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].contains("native") && lines[0].contains("kflex-interp"));
        assert!(lines[1].starts_with("hash") && lines[1].contains("update"));
        assert!(lines[1].contains("100 ns") && lines[1].contains("125 ns  0.800x"));
        assert!(lines[2].contains("lookup") && lines[2].contains("1000 ns  0.050x"));
        assert!(t.contains("kflex-jit        geomean 0.800x  worst 0.800x"));
        assert_eq!(
            t.matches("kflex-jit        geomean 0.800x").count(),
            2,
            "{t}"
        );
        assert!(t.contains("the same on thread CPU time"));
        assert!(t.contains("2 emitted, 13 elided (86.7% elided)"));
        assert!(
            t.contains("\n  hash         update 1/9, lookup 1/4\n"),
            "{t}"
        );
        assert!(t.contains("kflex-jit        512 ns, 0.50 ns/op over a full batch of 1024"));
        assert!(t.contains("native           20.0 ns, 0.02 ns/op"));
    }
}
