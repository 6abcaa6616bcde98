//! Every bundled example loads, decodes, and test-runs with the results its C source promises.
//! Expected values are computed here from the packet contents (small models of each program's
//! rules), not copied from kflex's output.

use kflex::packet::{self, ETH_HLEN, ETH_P_ARP, IPPROTO_TCP, IPPROTO_UDP, tcp_flags};
use kflex::{Extension, ExtensionOptions, ProgType, TestRunOptions};

mod common;
use common::cases::*;

const XDP_DROP: u64 = 1;
const XDP_PASS: u64 = 2;
const TC_ACT_OK: u64 = 0;
const TC_ACT_SHOT: u64 = 2;

fn load(name: &str) -> Extension {
    let ex = kflex_examples::get(name).unwrap_or_else(|| panic!("example {name} is bundled"));
    Extension::load(name, ex.object, ExtensionOptions::default())
        .unwrap_or_else(|e| panic!("{name} loads: {e}"))
}

#[test]
fn every_example_loads_and_every_program_decodes() {
    assert!(kflex_examples::all().len() >= 4);
    for ex in kflex_examples::all() {
        let ext = load(ex.name);
        assert!(!ext.program_names().is_empty(), "{} has programs", ex.name);
        for p in ext.programs() {
            let p = p.unwrap_or_else(|r| panic!("{}: {r}", ex.name));
            assert!(!p.is_empty());
            assert!(p.prog_type.is_some(), "{} has a runnable type", p.name);
            // Verified before linking, by default.
            let v = p
                .verified
                .as_ref()
                .unwrap_or_else(|| panic!("{} was not verified", p.name));
            assert!(
                v.stats.insns_processed >= p.len() as u64 / 2,
                "{:?}",
                v.stats
            );
            assert_eq!(v.insns.len(), p.len(), "one fact entry per slot");
            let back_edges = v
                .termination_points
                .iter()
                .filter(|t| matches!(t.kind, kflex_verify::TerminationKind::BackEdge { .. }))
                .count();
            assert_eq!(back_edges as u64, v.stats.back_edges, "{}", p.name);
        }
    }
}

// ---------- xdp_firewall ----------

/// The firewall's rules, applied to a frame: (verdict, malformed).
fn xdp_model(frame: &[u8], blocklist: &[[u8; 4]]) -> (u64, bool) {
    const BLOCKED_UDP: [u16; 3] = [19, 1900, 11211];
    let be16 = |b: &[u8], o: usize| u16::from_be_bytes([b[o], b[o + 1]]);
    if frame.len() < ETH_HLEN {
        return (XDP_DROP, true);
    }
    let mut proto = be16(frame, 12);
    let mut l3 = ETH_HLEN;
    if proto == 0x8100 || proto == 0x88a8 {
        if frame.len() < l3 + 4 {
            return (XDP_DROP, true);
        }
        proto = be16(frame, l3 + 2);
        l3 += 4;
    }
    let (l4, next) = match proto {
        0x0800 => {
            if frame.len() < l3 + 20 {
                return (XDP_DROP, true);
            }
            let src: [u8; 4] = frame[l3 + 12..l3 + 16].try_into().unwrap();
            if blocklist.contains(&src) {
                return (XDP_DROP, false);
            }
            if be16(frame, l3 + 6) & 0x1fff != 0 {
                return (XDP_PASS, false);
            }
            (l3 + usize::from(frame[l3] & 0x0f) * 4, frame[l3 + 9])
        }
        0x86dd => {
            if frame.len() < l3 + 40 {
                return (XDP_DROP, true);
            }
            (l3 + 40, frame[l3 + 6])
        }
        _ => return (XDP_PASS, false),
    };
    match next {
        IPPROTO_UDP => {
            if frame.len() < l4 + 8 {
                return (XDP_DROP, true);
            }
            if BLOCKED_UDP.contains(&be16(frame, l4 + 2)) {
                return (XDP_DROP, false);
            }
        }
        IPPROTO_TCP => {
            if frame.len() < l4 + 20 {
                return (XDP_DROP, true);
            }
            let flags = frame[l4 + 13];
            if flags & tcp_flags::SYN != 0 && flags & tcp_flags::FIN != 0 {
                return (XDP_DROP, false);
            }
        }
        _ => {}
    }
    (XDP_PASS, false)
}

#[test]
fn xdp_firewall_verdicts_counters_and_trace() {
    let ext = load("xdp_firewall");
    let prog = ext.program("xdp_firewall").unwrap();
    assert_eq!(prog.prog_type, Some(ProgType::Xdp));
    ext.map("blocklist")
        .unwrap()
        .update(&ATTACKER, &0u64.to_ne_bytes(), 0)
        .unwrap();
    let blocklist = [ATTACKER];
    let mut expected_stats = [(0u64, 0u64); 5];
    let mut expected_malformed = 0u64;
    let mut expected_hits = 0u64;
    for (what, frame) in xdp_cases() {
        let (verdict, malformed) = xdp_model(&frame, &blocklist);
        let r = ext
            .test_run("xdp_firewall", &TestRunOptions::packet(frame.clone()))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(r.retval, verdict, "{what}");
        assert_eq!(
            r.data_out, frame,
            "{what}: XDP firewall never rewrites packets"
        );
        if r.engine == kflex::Engine::Interp {
            assert!(r.instructions_per_run > 0);
        }
        if verdict == XDP_DROP && !malformed {
            assert!(
                r.trace.iter().any(|l| l.contains("xdp_firewall: drop")),
                "{what}: drop is traced: {:?}",
                r.trace
            );
        }
        expected_stats[verdict as usize].0 += 1;
        expected_stats[verdict as usize].1 += frame.len() as u64;
        expected_malformed += u64::from(malformed);
        if frame.get(26..30) == Some(ATTACKER.as_slice()) {
            expected_hits += 1;
        }
    }
    // Per-verdict packet and byte counts, on CPU 0 (the test-run CPU).
    let stats = ext.map("verdict_stats").unwrap();
    for (verdict, (packets, bytes)) in expected_stats.iter().enumerate() {
        let per_cpu = stats
            .lookup_percpu(&(verdict as u32).to_ne_bytes())
            .unwrap();
        let v = &per_cpu[0];
        assert_eq!(
            u64::from_ne_bytes(v[0..8].try_into().unwrap()),
            *packets,
            "verdict {verdict} packets"
        );
        assert_eq!(
            u64::from_ne_bytes(v[8..16].try_into().unwrap()),
            *bytes,
            "verdict {verdict} bytes"
        );
    }
    // The blocklist value counts hits; `.bss` holds the malformed counter.
    let hits = ext
        .map("blocklist")
        .unwrap()
        .lookup(&ATTACKER)
        .unwrap()
        .unwrap();
    assert_eq!(
        u64::from_ne_bytes(hits[..8].try_into().unwrap()),
        expected_hits
    );
    assert_eq!(expected_malformed, 2);
    let bss = ext.map(".bss").unwrap().lookup_u64(0, 0).unwrap();
    assert_eq!(bss, Some(expected_malformed));
}

#[test]
fn xdp_test_run_needs_an_ethernet_header_like_linux() {
    let ext = load("xdp_firewall");
    let e = ext
        .test_run("xdp_firewall", &TestRunOptions::packet(vec![0xff; 10]))
        .unwrap_err();
    assert!(matches!(e, kflex::Error::Input(_)), "{e}");
    assert!(!e.is_program_error());
}

#[test]
fn test_run_repeat_counts_every_run_and_times_it() {
    let ext = load("xdp_firewall");
    let frame = packet::udp4_frame(CLIENT, SERVER, 40000, 53, b"query");
    let opts = TestRunOptions {
        repeat: 50,
        ..TestRunOptions::packet(frame.clone())
    };
    let r = ext.test_run("xdp_firewall", &opts).unwrap();
    assert_eq!(r.retval, XDP_PASS);
    assert!(r.ns_per_run > 0);
    let v = ext
        .map("verdict_stats")
        .unwrap()
        .lookup_percpu(&(XDP_PASS as u32).to_ne_bytes())
        .unwrap();
    assert_eq!(u64::from_ne_bytes(v[0][0..8].try_into().unwrap()), 50);
}

#[test]
fn per_cpu_slot_follows_the_test_run_cpu() {
    let ext = Extension::load(
        "xdp_firewall",
        kflex_examples::get("xdp_firewall").unwrap().object,
        ExtensionOptions {
            cpus: Some(4),
            ..ExtensionOptions::default()
        },
    )
    .unwrap();
    let frame = packet::udp4_frame(CLIENT, SERVER, 40000, 53, b"");
    let opts = TestRunOptions {
        cpu: 3,
        ..TestRunOptions::packet(frame)
    };
    ext.test_run("xdp_firewall", &opts).unwrap();
    let v = ext
        .map("verdict_stats")
        .unwrap()
        .lookup_percpu(&(XDP_PASS as u32).to_ne_bytes())
        .unwrap();
    assert_eq!(v.len(), 4);
    let packets: Vec<u64> = v
        .iter()
        .map(|c| u64::from_ne_bytes(c[0..8].try_into().unwrap()))
        .collect();
    assert_eq!(packets, vec![0, 0, 0, 1]);
}

// ---------- socket_udp_filter ----------

#[test]
fn socket_filter_keeps_dns_and_drops_the_rest() {
    let ext = load("socket_udp_filter");
    let cases = socket_cases();
    let mut kept = 0u64;
    for (frame, is_dns) in &cases {
        let r = ext
            .test_run("socket_udp_filter", &TestRunOptions::packet(frame.clone()))
            .unwrap();
        // A socket filter sees the packet from the network header: skb->len excludes Ethernet.
        let expected = if *is_dns {
            (frame.len() - ETH_HLEN) as u64
        } else {
            0
        };
        assert_eq!(r.retval, expected);
        kept += u64::from(*is_dns);
    }
    let stats = ext.map("filter_stats").unwrap();
    assert_eq!(stats.lookup_u64(0, 0).unwrap(), Some(kept));
    assert_eq!(
        stats.lookup_u64(1, 0).unwrap(),
        Some(cases.len() as u64 - kept)
    );
}

// ---------- tc_classifier ----------

/// (priority, class) for a DSCP and protocol, per the classifier's table.
fn tc_class(dscp: u8, proto: u8) -> (u32, u32) {
    match dscp {
        46 => (6, 1),
        32 | 34..=38 => (4, 2),
        8 => (1, 3),
        _ if proto == 1 => (5, 4),
        _ => (0, 0),
    }
}

fn ctx_u32(ctx: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes(ctx[off..off + 4].try_into().unwrap())
}

#[test]
fn tc_classifier_writes_skb_fields_and_counts_flows() {
    let ext = load("tc_classifier");
    let frames = tc_frames();
    for frame in &frames {
        let r = ext
            .test_run("tc_classifier", &TestRunOptions::packet(frame.clone()))
            .unwrap();
        assert_eq!(r.retval, TC_ACT_OK);
        let tos = frame[ETH_HLEN + 1];
        let proto = frame[ETH_HLEN + 9];
        let dscp = tos >> 2;
        let (priority, class) = tc_class(dscp, proto);
        let ctx = r.ctx_out.expect("sched_cls returns the __sk_buff");
        assert_eq!(
            ctx_u32(&ctx, 8),
            (u32::from(proto) << 8) | u32::from(dscp),
            "mark"
        );
        assert_eq!(ctx_u32(&ctx, 32), priority, "priority");
        assert_eq!(ctx_u32(&ctx, 48), class, "cb[0]");
    }
    // Run the first flow again: its LRU counter shows two packets.
    ext.test_run("tc_classifier", &TestRunOptions::packet(frames[0].clone()))
        .unwrap();
    let flows = ext.map("flows").unwrap();
    assert_eq!(flows.keys().unwrap().len(), frames.len());
    for (i, frame) in frames.iter().enumerate() {
        let ip = &frame[ETH_HLEN..];
        let mut key = Vec::new();
        key.extend_from_slice(&ip[12..16]);
        key.extend_from_slice(&ip[16..20]);
        key.extend_from_slice(&ip[20..24]); // sport, dport as on the wire
        key.extend_from_slice(&[ip[9], 0, 0, 0]);
        let v = flows.lookup(&key).unwrap().expect("flow counted");
        let runs = if i == 0 { 2 } else { 1 };
        assert_eq!(u64::from_ne_bytes(v[0..8].try_into().unwrap()), runs);
        // tc programs see the whole frame: skb->len includes the Ethernet header.
        assert_eq!(
            u64::from_ne_bytes(v[8..16].try_into().unwrap()),
            runs * frame.len() as u64
        );
    }
}

#[test]
fn tc_classifier_shoots_telnet_and_passes_non_ip() {
    let ext = load("tc_classifier");
    let telnet = packet::tcp4_frame(CLIENT, SERVER, 40000, 23, 0, b"");
    let r = ext
        .test_run("tc_classifier", &TestRunOptions::packet(telnet))
        .unwrap();
    assert_eq!(r.retval, TC_ACT_SHOT);
    let arp = packet::ethernet(packet::DST_MAC, packet::SRC_MAC, ETH_P_ARP, &[0u8; 28]);
    let r = ext
        .test_run("tc_classifier", &TestRunOptions::packet(arp.clone()))
        .unwrap();
    assert_eq!(r.retval, TC_ACT_OK);
    assert_eq!(r.data_out, arp);
    let ctx = r.ctx_out.unwrap();
    assert_eq!(ctx_u32(&ctx, 8), 0, "mark untouched");
    assert_eq!(ctx_u32(&ctx, 32), 0, "priority untouched");
}

// ---------- syscall_events ----------

/// (steps, peak, reached_one, step events as (step, x)) of the bounded Collatz walk.
fn collatz(n: u64, seed: u64) -> (u64, u64, bool, Vec<(u32, u64)>) {
    let (mut x, mut peak, mut steps) = (seed, seed, 0u64);
    let mut events = Vec::new();
    for i in 0..n.min(10_000) {
        if x == 1 {
            break;
        }
        x = if x & 1 == 1 { 3 * x + 1 } else { x / 2 };
        peak = peak.max(x);
        steps = i + 1;
        if steps % 64 == 0 {
            events.push((steps as u32, x));
        }
    }
    (steps, peak, x == 1, events)
}

fn event(kind: u32, step: u32, seed: u64, value: u64) -> Vec<u8> {
    let mut e = Vec::new();
    e.extend_from_slice(&kind.to_ne_bytes());
    e.extend_from_slice(&step.to_ne_bytes());
    e.extend_from_slice(&seed.to_ne_bytes());
    e.extend_from_slice(&value.to_ne_bytes());
    e
}

#[test]
fn syscall_events_result_ringbuf_and_totals() {
    let ext = load("syscall_events");
    let mut total_steps = 0u64;
    let runs = COLLATZ_RUNS;
    for (n, seed) in runs {
        let r = ext
            .test_run(
                "syscall_events",
                &TestRunOptions::context(collatz_ctx(n, seed)),
            )
            .unwrap();
        let (steps, peak, reached, step_events) = collatz(n, seed);
        assert_eq!(r.retval, u64::from(!reached), "n={n} seed={seed}");
        let ctx = r.ctx_out.expect("syscall returns its context");
        assert_eq!(
            ctx,
            collatz_ctx(n, seed)[..16]
                .iter()
                .copied()
                .chain(steps.to_ne_bytes())
                .collect::<Vec<u8>>()
        );
        let mut expected: Vec<Vec<u8>> = step_events
            .iter()
            .map(|&(step, x)| event(1, step, seed, x))
            .collect();
        expected.push(event(2, steps as u32, seed, peak));
        assert_eq!(
            ext.map("events").unwrap().ringbuf_records().unwrap(),
            expected
        );
        assert_eq!(r.resources_released, 0, "every reservation was submitted");
        total_steps += steps;
    }
    let data = ext.map(".data").unwrap();
    assert_eq!(
        data.lookup_u64(0, 0).unwrap(),
        Some(runs.len() as u64),
        "total_runs"
    );
    assert_eq!(
        data.lookup_u64(0, 8).unwrap(),
        Some(total_steps),
        "total_steps"
    );
}

#[test]
fn syscall_events_rejects_bad_arguments_without_side_effects() {
    let ext = load("syscall_events");
    for (n, seed) in [(10_001u64, 27u64), (100, 0)] {
        let ctx = collatz_ctx(n, seed);
        let r = ext
            .test_run("syscall_events", &TestRunOptions::context(ctx.clone()))
            .unwrap();
        assert_eq!(r.retval as i32, -22);
        assert_eq!(r.ctx_out.unwrap(), ctx);
    }
    assert!(
        ext.map("events")
            .unwrap()
            .ringbuf_records()
            .unwrap()
            .is_empty()
    );
    assert_eq!(ext.map(".data").unwrap().lookup_u64(0, 0).unwrap(), Some(0));
}

// ---------- errors ----------

#[test]
fn unknown_program_and_map_are_clear_errors() {
    let ext = load("xdp_firewall");
    let e = ext
        .test_run("nope", &TestRunOptions::default())
        .unwrap_err();
    assert!(e.to_string().contains("no program named \"nope\""), "{e}");
    assert!(
        e.to_string().contains("xdp_firewall"),
        "lists the programs: {e}"
    );
    let e = ext.map("nope").unwrap_err();
    assert!(e.to_string().contains("blocklist"), "lists the maps: {e}");
    assert!(!e.is_program_error());
}

#[test]
fn malformed_object_is_a_load_error() {
    let e = Extension::load(
        "junk.o",
        b"\x7fELF but not really",
        ExtensionOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(e, kflex::Error::Object(_)), "{e}");
    assert!(!e.is_program_error());
}

#[test]
fn corrupted_instruction_is_rejected_with_its_c_source_line() {
    let object = kflex_examples::get("xdp_firewall").unwrap().object;
    let parsed = kflex_object::Object::parse("fw", object).unwrap();
    let prog = parsed.program("xdp_firewall").unwrap();
    // The first three instructions load from the context and are not relocated: find them in the
    // ELF and give the first one an unknown opcode.
    let pattern = kflex_isa::Insn::slice_to_bytes(&prog.insns[..3]);
    let at = object
        .windows(pattern.len())
        .position(|w| w == pattern.as_slice())
        .expect("program text is in the object");
    let mut bytes = object.to_vec();
    bytes[at] = 0xff;
    let ext = Extension::load("fw", &bytes, ExtensionOptions::default()).unwrap();
    let e = ext.program("xdp_firewall").unwrap_err();
    let kflex::Error::Rejected(r) = &e else {
        panic!("expected a rejection, got {e}");
    };
    assert_eq!(r.pc, Some(0));
    assert!(r.insn.as_deref().unwrap().contains("0xff"), "{e}");
    let expected_line = prog.line_at(0).expect("line info for instruction 0");
    let src = r.source.as_deref().expect("source line from line info");
    assert!(src.contains(expected_line.source.trim()), "{src}");
    assert!(src.contains(&format!(":{}:", expected_line.line)), "{src}");
    assert!(e.is_program_error());
    // Test-running it reports the same rejection.
    let e = ext
        .test_run("xdp_firewall", &TestRunOptions::packet(vec![0; 64]))
        .unwrap_err();
    assert!(e.to_string().contains("rejected at instruction 0"), "{e}");
}
