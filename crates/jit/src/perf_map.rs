//! Opt-in symbols for profilers: with `KFLEX_PERF_MAP=1` in the environment, every compiled
//! program appends its functions to `/tmp/perf-<pid>.map`, the file `perf report` reads to name
//! samples in anonymous executable memory (one `START SIZE name` line per range, hexadecimal).
//!
//! Each program gets a name from its code address (`kflex_jit_<addr>`), with ranges for the entry
//! stub, each BPF function (`…_fn<slot>`: body of every instruction from that slot up to the next
//! function entry) and the tail (prologues, shared epilogue and fault stubs). With
//! `KFLEX_PERF_MAP=code` the machine code is also written to `/tmp/kflex-jit-<pid>-<addr>.bin`, so
//! sampled addresses can be matched with a disassembly (`objdump -D -b binary -mi386:x86-64`).
//!
//! Failures to write are ignored: profiling support never stops a compilation.

use std::io::Write;
use std::sync::Mutex;

/// Serialises appends from threads compiling at the same time.
static LOCK: Mutex<()> = Mutex::new(());

/// What the environment asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PerfMap {
    /// Nothing (the default).
    Off,
    /// Symbols only.
    Symbols,
    /// Symbols and a copy of the code.
    SymbolsAndCode,
}

impl PerfMap {
    /// Reads `KFLEX_PERF_MAP`: unset, empty or `0` is off, `code` adds the code dump, anything
    /// else is symbols only.
    pub fn from_env() -> PerfMap {
        match std::env::var("KFLEX_PERF_MAP") {
            Err(_) => PerfMap::Off,
            Ok(v) if v.is_empty() || v == "0" => PerfMap::Off,
            Ok(v) if v == "code" => PerfMap::SymbolsAndCode,
            Ok(_) => PerfMap::Symbols,
        }
    }
}

/// One named range of code, offsets relative to the code start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Range {
    /// First byte.
    pub start: usize,
    /// Length in bytes.
    pub len: usize,
    /// Symbol name.
    pub name: String,
}

/// The ranges of one program: the entry stub up to the first body, each function's bodies
/// (`fn_bodies`: `(slot, code offset of that slot's body)` ascending), then the tail.
pub(crate) fn ranges(
    addr: usize,
    code_len: usize,
    fn_bodies: &[(usize, usize)],
    tail_start: usize,
) -> Vec<Range> {
    let prefix = format!("kflex_jit_{addr:x}");
    let mut out = Vec::new();
    let first = fn_bodies.first().map_or(tail_start, |&(_, o)| o);
    push(&mut out, 0, first, format!("{prefix}_entry"));
    for (i, &(slot, start)) in fn_bodies.iter().enumerate() {
        let end = fn_bodies.get(i + 1).map_or(tail_start, |&(_, o)| o);
        push(&mut out, start, end, format!("{prefix}_fn{slot}"));
    }
    push(&mut out, tail_start, code_len, format!("{prefix}_tail"));
    out
}

fn push(out: &mut Vec<Range>, start: usize, end: usize, name: String) {
    if end > start {
        out.push(Range {
            start,
            len: end - start,
            name,
        });
    }
}

/// Appends `ranges` of the code at `addr` to this process's perf map (and dumps `code` when
/// asked), as `mode` says.
pub(crate) fn publish(mode: PerfMap, addr: usize, code: &[u8], ranges: &[Range]) {
    if mode == PerfMap::Off {
        return;
    }
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let pid = std::process::id();
    let mut text = String::new();
    for r in ranges {
        text.push_str(&format!("{:x} {:x} {}\n", addr + r.start, r.len, r.name));
    }
    let map = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(format!("/tmp/perf-{pid}.map"));
    if let Ok(mut f) = map {
        let _ = f.write_all(text.as_bytes());
    }
    if mode == PerfMap::SymbolsAndCode {
        let _ = std::fs::write(format!("/tmp/kflex-jit-{pid}-{addr:x}.bin"), code);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_entry_functions_and_tail_without_gaps() {
        let r = ranges(0x1000, 300, &[(0, 40), (7, 120)], 250);
        let names: Vec<_> = r.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "kflex_jit_1000_entry",
                "kflex_jit_1000_fn0",
                "kflex_jit_1000_fn7",
                "kflex_jit_1000_tail"
            ]
        );
        let spans: Vec<_> = r.iter().map(|r| (r.start, r.len)).collect();
        assert_eq!(spans, [(0, 40), (40, 80), (120, 130), (250, 50)]);
    }

    #[test]
    fn empty_ranges_are_left_out() {
        let r = ranges(0x10, 50, &[(0, 20)], 50);
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].name, "kflex_jit_10_fn0");
        assert_eq!((r[1].start, r[1].len), (20, 30));
    }
}
