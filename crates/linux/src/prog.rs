//! Programs: `BPF_PROG_LOAD` of unlinked kflex instructions (map indices resolved to descriptors),
//! with the kernel verifier's log and its statistics.

use std::ffi::CString;
use std::os::fd::{BorrowedFd, OwnedFd};

use kflex_isa::{Insn, op};
use kflex_object::ProgType;

use crate::map::fd_u32;
use crate::sys;

/// `BPF_LOG_LEVEL1`: the verifier's error context (and, on branches, states).
pub const LOG_LEVEL_1: u32 = 1;
/// `BPF_LOG_LEVEL2`: the full exploration log.
pub const LOG_LEVEL_2: u32 = 2;
/// `BPF_LOG_STATS`: the closing statistics (`processed N insns ...`, `verification time T usec`).
pub const LOG_STATS: u32 = 4;

/// First size of the verifier log buffer (grown on `ENOSPC` up to [`MAX_LOG_SIZE`]).
const INITIAL_LOG_SIZE: usize = 1 << 20;
/// Largest verifier log buffer the kernel accepts (`UINT_MAX >> 2`), capped to something sane.
const MAX_LOG_SIZE: usize = 1 << 28;

/// A program the kernel verifier accepted.
#[derive(Debug)]
pub struct LoadedProg {
    /// The program's descriptor.
    pub fd: OwnedFd,
    /// The verifier log (empty when loaded with log level 0).
    pub verifier_log: String,
    /// `verification time T usec` from the log, when the log has statistics.
    pub verification_time_us: Option<u64>,
    /// `processed N insns` from the log, when the log has statistics.
    pub insns_processed: Option<u64>,
}

/// A program the kernel refused (or that could not be expressed to the kernel).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("BPF_PROG_LOAD: {}{}", sys::errno_text(*errno), if log.is_empty() { String::new() } else { format!("\n{}", log.trim_end()) })]
pub struct LoadError {
    /// The errno (`EACCES` for most verifier rejections, `EINVAL` for malformed programs).
    pub errno: i32,
    /// The verifier log, or for input refused before the call, a line starting `kflex-linux:`.
    pub log: String,
}

impl LoadError {
    /// The kernel's reason: the last non-empty log line that is neither a statistics line nor a
    /// state dump (`cur state:`/`old state:` after `infinite loop detected`).
    pub fn reason(&self) -> &str {
        self.log
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| {
                !l.is_empty()
                    && !l.starts_with("processed ")
                    && !l.starts_with("verification time")
                    && !l.starts_with("stack depth")
                    && !l.starts_with("cur state:")
                    && !l.starts_with("old state:")
            })
            .unwrap_or("")
    }
}

/// Loads a program into the kernel.
///
/// `insns` are kflex's unlinked slots: a `lddw` with `src = PSEUDO_MAP_FD` or `PSEUDO_MAP_VALUE`
/// names map index `imm`, which is replaced by `map_fds[imm]` before the call. `log_level` is a
/// combination of [`LOG_LEVEL_1`], [`LOG_LEVEL_2`] and [`LOG_STATS`]; with any level set the log
/// buffer starts at 1 MiB and is grown when the kernel reports it too small. `BPF_PROG_TYPE_SYSCALL`
/// programs are loaded sleepable, which the kernel requires of them.
pub fn prog_load(
    prog_type: ProgType,
    insns: &[Insn],
    map_fds: &[BorrowedFd<'_>],
    license: &str,
    log_level: u32,
) -> Result<LoadedProg, LoadError> {
    let insns = resolve_maps(insns, map_fds)?;
    let license = CString::new(license).map_err(|_| LoadError {
        errno: libc::EINVAL,
        log: "kflex-linux: the license string contains a NUL byte".into(),
    })?;
    let insn_cnt = u32::try_from(insns.len()).map_err(|_| LoadError {
        errno: libc::E2BIG,
        log: format!("kflex-linux: {} instructions is too many", insns.len()),
    })?;
    let bytes = Insn::slice_to_bytes(&insns);
    let flags = if prog_type == ProgType::Syscall {
        sys::BPF_F_SLEEPABLE
    } else {
        0
    };
    let mut log_size = if log_level == 0 { 0 } else { INITIAL_LOG_SIZE };
    loop {
        let mut log = vec![0u8; log_size];
        let mut attr = sys::ProgLoadAttr {
            prog_type: prog_type.linux_id(),
            insn_cnt,
            insns: bytes.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: if log_size == 0 { 0 } else { log_level },
            log_size: log_size as u32,
            log_buf: if log_size == 0 {
                0
            } else {
                log.as_mut_ptr() as u64
            },
            prog_flags: flags,
            prog_name: sys::obj_name("kflex"),
            ..Default::default()
        };
        let result = sys::bpf_fd(sys::BPF_PROG_LOAD, &mut attr);
        let text = log_text(&log);
        match result {
            Ok(fd) => {
                let (insns_processed, verification_time_us) = parse_stats(&text);
                return Ok(LoadedProg {
                    fd,
                    verifier_log: text,
                    verification_time_us,
                    insns_processed,
                });
            }
            Err(libc::ENOSPC) if log_size != 0 && log_size < MAX_LOG_SIZE => {
                let wanted = attr.log_true_size as usize;
                log_size = wanted.max(log_size * 4).min(MAX_LOG_SIZE);
            }
            Err(errno) => return Err(LoadError { errno, log: text }),
        }
    }
}

/// Replaces the map indices of `lddw` map references with descriptors.
fn resolve_maps(insns: &[Insn], map_fds: &[BorrowedFd<'_>]) -> Result<Vec<Insn>, LoadError> {
    let mut out = insns.to_vec();
    let mut pc = 0;
    while let Some(insn) = out.get_mut(pc) {
        if insn.is_lddw() {
            if matches!(insn.src, op::PSEUDO_MAP_FD | op::PSEUDO_MAP_VALUE) {
                let fd = usize::try_from(insn.imm)
                    .ok()
                    .and_then(|i| map_fds.get(i))
                    .ok_or_else(|| LoadError {
                        errno: libc::EINVAL,
                        log: format!(
                            "kflex-linux: lddw at instruction {pc} names map index {} but {} map descriptors were given",
                            insn.imm,
                            map_fds.len()
                        ),
                    })?;
                insn.imm = fd_u32(*fd) as i32;
            }
            pc += 2;
        } else {
            pc += 1;
        }
    }
    Ok(out)
}

/// The log buffer up to its NUL terminator, as text.
fn log_text(buf: &[u8]) -> String {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Parses `processed N insns` and `verification time T usec` from a `BPF_LOG_STATS` log.
pub fn parse_stats(log: &str) -> (Option<u64>, Option<u64>) {
    let mut processed = None;
    let mut time = None;
    for line in log.lines() {
        if let Some(rest) = line.strip_prefix("processed ") {
            processed = rest
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .or(processed);
        } else if let Some(rest) = line.strip_prefix("verification time ") {
            time = rest
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .or(time);
        }
    }
    (processed, time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_are_parsed_from_a_kernel_style_log() {
        let log = "0: R1=ctx() R10=fp0\n0: (b7) r0 = 0\n1: (95) exit\n\
                   verification time 17 usec\nstack depth 0\n\
                   processed 2 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0\n";
        assert_eq!(parse_stats(log), (Some(2), Some(17)));
        assert_eq!(parse_stats("nothing here\n"), (None, None));
        assert_eq!(parse_stats("processed x insns\n"), (None, None));
    }

    #[test]
    fn reason_is_the_last_non_statistics_line() {
        let e = LoadError {
            errno: libc::EACCES,
            log: "0: (61) r0 = *(u32 *)(r1 +200)\ninvalid bpf_context access off=200 size=4\n\
                  processed 1 insns (limit 1000000)\n"
                .into(),
        };
        assert_eq!(e.reason(), "invalid bpf_context access off=200 size=4");
        let e = LoadError {
            errno: libc::EINVAL,
            log: "infinite loop detected at insn 3\ncur state: R0=1\nold state: R0=1\n".into(),
        };
        assert_eq!(e.reason(), "infinite loop detected at insn 3");
    }

    #[test]
    fn map_indices_out_of_range_are_refused_with_the_instruction() {
        let insns = [
            Insn::new(op::LD | op::IMM | op::DW, 1, op::PSEUDO_MAP_FD, 0, 3),
            Insn::new(0, 0, 0, 0, 0),
            Insn::new(op::JMP | op::EXIT, 0, 0, 0, 0),
        ];
        let err = resolve_maps(&insns, &[]).unwrap_err();
        assert_eq!(err.errno, libc::EINVAL);
        assert!(err.log.contains("instruction 0"), "{}", err.log);
        assert!(err.log.contains("map index 3"), "{}", err.log);
        let neg = [Insn::new(
            op::LD | op::IMM | op::DW,
            1,
            op::PSEUDO_MAP_VALUE,
            0,
            -1,
        )];
        assert!(resolve_maps(&neg, &[]).is_err());
    }

    #[test]
    fn non_map_lddw_and_second_slots_are_untouched() {
        let insns = [
            Insn::new(op::LD | op::IMM | op::DW, 1, 0, 0, 7),
            // A second slot whose bytes look like a map lddw must not be resolved.
            Insn::new(op::LD | op::IMM | op::DW, 0, op::PSEUDO_MAP_FD, 0, 99),
            Insn::new(op::JMP | op::EXIT, 0, 0, 0, 0),
        ];
        assert_eq!(resolve_maps(&insns, &[]).unwrap(), insns.to_vec());
    }
}
