//! `kflex demo`: load every bundled example, show its maps and programs with each program's
//! verification (verdict, instructions processed, states, time, guards), test-run it on realistic
//! inputs, show the results and map contents, then benchmark it on the interpreter and the JIT
//! side by side.

use std::fmt::Write as _;
use std::process::ExitCode;

use kflex::packet::{self, ETH_P_ARP};
use kflex::{Engine, Extension, ExtensionOptions, MapType, TestRunOptions};

use super::CliError;
use super::disasm::describe_map;
use super::run::{signed_retval, verdict_name};

/// One demo input.
struct Scenario {
    what: &'static str,
    options: TestRunOptions,
}

fn packet(what: &'static str, data: Vec<u8>) -> Scenario {
    Scenario {
        what,
        options: TestRunOptions::packet(data),
    }
}

fn collatz_ctx(n: u64, seed: u64) -> Vec<u8> {
    let mut c = Vec::with_capacity(24);
    c.extend_from_slice(&n.to_ne_bytes());
    c.extend_from_slice(&seed.to_ne_bytes());
    c.extend_from_slice(&0u64.to_ne_bytes());
    c
}

const CLIENT: [u8; 4] = [192, 168, 1, 10];
const SERVER: [u8; 4] = [10, 0, 0, 53];
const ATTACKER: [u8; 4] = [203, 0, 113, 7];

fn scenarios(example: &str) -> Vec<Scenario> {
    match example {
        "xdp_firewall" => vec![
            packet(
                "DNS query from a client",
                packet::udp4_frame(CLIENT, SERVER, 40000, 53, b"\x12\x34\x01\x00"),
            ),
            packet(
                "UDP to memcached port 11211",
                packet::udp4_frame(CLIENT, SERVER, 40000, 11211, b"stats\r\n"),
            ),
            packet(
                "TCP from the blocklisted 203.0.113.7",
                packet::tcp4_frame(ATTACKER, SERVER, 5555, 80, 0, b"GET /"),
            ),
            packet(
                "ARP frame",
                packet::ethernet(packet::DST_MAC, packet::SRC_MAC, ETH_P_ARP, &[0u8; 28]),
            ),
            packet("truncated IPv4 header", {
                let mut f = packet::udp4_frame(CLIENT, SERVER, 1, 2, &[]);
                f.truncate(20);
                f
            }),
        ],
        "socket_udp_filter" => vec![
            packet(
                "DNS query",
                packet::udp4_frame(CLIENT, SERVER, 40000, 53, b"\x12\x34\x01\x00"),
            ),
            packet(
                "NTP packet (port 123)",
                packet::udp4_frame(CLIENT, SERVER, 123, 123, &[0u8; 48]),
            ),
            packet(
                "TCP to port 53",
                packet::tcp4_frame(CLIENT, SERVER, 40000, 53, 0, b""),
            ),
        ],
        "tc_classifier" => vec![
            packet(
                "TCP to port 80 with DSCP EF",
                packet::tcp4_frame(CLIENT, SERVER, 40000, 80, 0xb8, b"voice"),
            ),
            packet(
                "UDP DNS query, TOS 0",
                packet::udp4_frame(CLIENT, SERVER, 40000, 53, b"q"),
            ),
            packet(
                "telnet (TCP port 23)",
                packet::tcp4_frame(CLIENT, SERVER, 40000, 23, 0, b""),
            ),
        ],
        "syscall_events" => vec![
            Scenario {
                what: "Collatz walk from 27 (n = 1000)",
                options: TestRunOptions::context(collatz_ctx(1000, 27)),
            },
            Scenario {
                what: "Collatz walk from 27 cut at n = 10",
                options: TestRunOptions::context(collatz_ctx(10, 27)),
            },
            Scenario {
                what: "n = 10001 (too many steps)",
                options: TestRunOptions::context(collatz_ctx(10001, 27)),
            },
        ],
        "sk_skb_verdict" => vec![
            packet(
                "100-byte message",
                packet::ethernet(packet::DST_MAC, packet::SRC_MAC, 0x0800, &[0u8; 86]),
            ),
            packet(
                "1500-byte message",
                packet::ethernet(packet::DST_MAC, packet::SRC_MAC, 0x0800, &[0u8; 1486]),
            ),
        ],
        _ => Vec::new(),
    }
}

/// Blocks the demo attacker's address in the firewall's blocklist.
fn setup(ext: &Extension) -> Result<(), kflex::Error> {
    if let Ok(m) = ext.map("blocklist") {
        m.update(&ATTACKER, &0u64.to_ne_bytes(), 0)?;
    }
    Ok(())
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    b.get(off..off + 4)
        .map(|s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    let s = b.get(off..off + 8)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_ne_bytes(a))
}

/// A short description of a context after the run, for the program types the demo uses.
fn describe_ctx(example: &str, ctx: &[u8]) -> Option<String> {
    match example {
        "tc_classifier" => Some(format!(
            "mark {:#06x}, priority {}, cb[0] {}",
            u32_at(ctx, 8)?,
            u32_at(ctx, 32)?,
            u32_at(ctx, 48)?
        )),
        "syscall_events" => Some(format!("result {}", u64_at(ctx, 16)?)),
        _ => None,
    }
}

/// Hex of at most 32 bytes, with the total length when longer.
fn short_hex(bytes: &[u8]) -> String {
    match bytes.get(..32) {
        Some(head) if bytes.len() > 32 => {
            format!("{}... ({} bytes)", kflex::hex::encode(head), bytes.len())
        }
        _ => kflex::hex::encode(bytes),
    }
}

fn show_maps(ext: &Extension, out: &mut String) -> Result<(), kflex::Error> {
    for m in ext.maps() {
        let spec = m.spec();
        match spec.map_type {
            MapType::Ringbuf => {
                let recs = m.ringbuf_records()?;
                let _ = writeln!(out, "    map {}: {} record(s)", spec.name, recs.len());
                for r in recs.iter().take(4) {
                    let _ = writeln!(out, "      {}", kflex::hex::encode(r));
                }
            }
            MapType::Arena => {
                let _ = writeln!(
                    out,
                    "    map {}: heap of {} pages",
                    spec.name, spec.max_entries
                );
            }
            _ => {
                let keys = m.keys()?;
                let nonzero: Vec<(Vec<u8>, Vec<u8>)> = keys
                    .into_iter()
                    .filter_map(|k| {
                        let v = m.lookup(&k).ok().flatten()?;
                        v.iter().any(|&b| b != 0).then_some((k, v))
                    })
                    .collect();
                let _ = writeln!(
                    out,
                    "    map {}: {} non-zero entr{}",
                    spec.name,
                    nonzero.len(),
                    if nonzero.len() == 1 { "y" } else { "ies" }
                );
                for (k, v) in nonzero.iter().take(6) {
                    let _ = writeln!(out, "      {} => {}", kflex::hex::encode(k), short_hex(v));
                }
            }
        }
    }
    Ok(())
}

/// One line saying what the verifier made of a loaded program.
fn verification_line(p: &kflex::LoadedProgram) -> String {
    let Some(v) = &p.verified else {
        return "verifier: not verified".to_string();
    };
    let s = &v.stats;
    format!(
        "verifier: accepted, {} insns processed, {} states ({} pruned, peak {}), {} us, \
         guards {} emitted / {} elided, {} back-edge(s)",
        s.insns_processed,
        s.states_explored,
        s.states_pruned,
        s.peak_states,
        s.time.as_micros(),
        s.guards_emitted,
        s.guards_elided,
        s.back_edges
    )
}

/// How the JIT took a program: compiled (code size, guards) or why it runs on the interpreter.
fn jit_line(p: &kflex::LoadedProgram) -> String {
    match (&p.jit, &p.verified, p.prog_type) {
        (Some(Ok(j)), _, _) => {
            let (emitted, elided) = j.guards();
            format!(
                "compiled, {} bytes of x86-64, {emitted} heap guard(s), {elided} elided",
                j.code().len()
            )
        }
        (Some(Err(e)), _, _) => format!("compilation failed: {e}"),
        (None, Some(_), _) => "interpreter only (no JIT on this host)".to_string(),
        (None, _, _) => "interpreter only (not verified)".to_string(),
    }
}

fn demo_one(example: &kflex_examples::Example, repeat: u32) -> Result<String, kflex::Error> {
    let mut out = String::new();
    let ext = Extension::load(example.name, example.object, ExtensionOptions::default())?;
    let _ = writeln!(out, "== {} ==", example.name);
    for m in ext.map_specs() {
        let _ = writeln!(out, "  map {}", describe_map(m));
    }
    for p in ext.programs() {
        match p {
            Ok(p) => {
                let _ = writeln!(
                    out,
                    "  program {} (section {}, type {}): {} instructions",
                    p.name,
                    p.section,
                    p.prog_type.map(|t| t.name()).unwrap_or("unknown"),
                    p.len()
                );
                let _ = writeln!(out, "    {}", verification_line(p));
                let _ = writeln!(out, "    jit: {}", jit_line(p));
            }
            Err(r) => {
                let _ = writeln!(out, "  {r}");
            }
        }
    }
    setup(&ext)?;
    let program = ext
        .program_names()
        .first()
        .cloned()
        .unwrap_or_else(|| example.name.to_string());
    let prog_type = ext.program(&program)?.prog_type;
    let cases = scenarios(example.name);
    for case in &cases {
        // Instruction counts come from the interpreter.
        let options = TestRunOptions {
            engine: Some(Engine::Interp),
            ..case.options.clone()
        };
        let r = ext.test_run(&program, &options)?;
        let verdict = verdict_name(prog_type, r.retval)
            .map(|v| format!(" {v}"))
            .unwrap_or_default();
        let _ = write!(
            out,
            "  {}: r0 = {}{}, {} instructions",
            case.what,
            signed_retval(r.retval),
            verdict,
            r.instructions_per_run
        );
        if let Some(d) = r
            .ctx_out
            .as_deref()
            .and_then(|c| describe_ctx(example.name, c))
        {
            let _ = write!(out, ", {d}");
        }
        out.push('\n');
        for line in &r.trace {
            let _ = writeln!(out, "    trace: {line}");
        }
    }
    let _ = writeln!(out, "  maps after the runs:");
    show_maps(&ext, &mut out)?;
    if let Some(first) = cases.first() {
        let _ = writeln!(
            out,
            "  bench {} ({}, {} runs each):",
            example.name,
            first.what,
            repeat.max(1)
        );
        let bench = |engine: Engine| {
            let options = TestRunOptions {
                repeat,
                engine: Some(engine),
                ..first.options.clone()
            };
            ext.test_run(&program, &options)
        };
        let interp = bench(Engine::Interp)?;
        let ips = if interp.ns_per_run > 0 {
            interp.instructions_per_run as f64 * 1e9 / interp.ns_per_run as f64
        } else {
            0.0
        };
        let _ = writeln!(
            out,
            "    interp {:>8} ns/run, {} instructions/run, {:.1} M instructions/s",
            interp.ns_per_run,
            interp.instructions_per_run,
            ips / 1e6
        );
        let jit = bench(Engine::Jit)?;
        if jit.engine == Engine::Jit {
            let speedup = interp.ns_per_run as f64 / jit.ns_per_run.max(1) as f64;
            let _ = writeln!(
                out,
                "    jit    {:>8} ns/run, {speedup:.1}x the interpreter's speed",
                jit.ns_per_run
            );
        } else {
            let _ = writeln!(
                out,
                "    jit    not used: {}",
                jit_line(ext.program(&program)?)
            );
        }
    }
    Ok(out)
}

/// Runs the subcommand.
pub fn run(repeat: u32) -> Result<ExitCode, CliError> {
    let mut failed = false;
    for example in kflex_examples::all() {
        match demo_one(example, repeat) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                println!("== {} ==\n  error: {e}\n", example.name);
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::from(super::EXIT_PROGRAM)
    } else {
        ExitCode::SUCCESS
    })
}
