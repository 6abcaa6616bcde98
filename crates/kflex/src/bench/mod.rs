//! `kflex bench datastructures`: the data-structure benchmark.
//!
//! For each structure of `kflex-datastructures` × operation (update, lookup, delete) × key stream
//! (uniform, Zipfian with s = 0.99) × engine (`native`: the same C built with gcc -O2 into this
//! process; `kflex-jit` in the default SFI mode; `kflex-jit-perf`, writes-only SFI;
//! `kflex-interp`; `linux`, the kernel through the libbpf back end, when available), a fresh
//! instance runs three phases over the stream: update inserts it, lookup looks it up, delete
//! deletes it. Ops go through the mailbox in batches of `DS_BATCH_MAX`, one program invocation
//! per batch, so the per-invocation cost is amortised as it is for the native loop. A phase's time
//! is the sum of its invocations (the host filling the mailbox is not counted, it is the same for
//! every engine). The three phases are repeated on the same instance (up to
//! [`BenchConfig::max_repetitions`] within [`BenchConfig::case_budget`]); the reported ns/op takes
//! each batch's median over the repetitions and sums them ([`stats::batchwise_median`]), which
//! keeps a preempted batch out of the figure on a busy machine. Each batch is also timed in the
//! thread's CPU time (`cpu_ns_per_op`, `cpu_ratio_to_native`, `cpu_summary`), which leaves out
//! the time the benchmark was descheduled altogether.
//! The engines' repetitions are interleaved (native, then each engine, round after round), so a
//! change in the machine's load affects them alike.
//! `ratio_to_native` is native ns/op ÷ the engine's ns/op from the same run: 1.0 is native speed,
//! higher is better.
//!
//! Every engine's run is checked against native's batch by batch (the program's return value
//! and a digest of every op's result and returned value), and native's first repetition against
//! what the structure promises; a run that disagrees is reported as a failure, never as numbers.
//!
//! Modules: [`keys`] (keys, values, uniform and Zipf streams), [`phase`] (one timed phase),
//! [`runner`] (the loop over structures, streams and engines), [`engines`] (opening instances on
//! each engine), [`stats`], [`report`] (table and JSON), [`svg`] (the chart).

pub mod engine_kind;
pub mod engines;
pub mod keys;
pub mod phase;
pub mod report;
pub mod runner;
pub mod stats;
pub mod svg;

pub use engine_kind::EngineKind;
pub use engines::Engines;
pub use keys::KeyDist;
pub use report::{BenchResult, GuardTotals, ProgramGuards, Report};
pub use runner::{BenchConfig, DriverFactory, OpenError, run};

pub use kflex_datastructures::protocol::{KEY_SIZE, VALUE_SIZE};

#[cfg(test)]
mod tests;
