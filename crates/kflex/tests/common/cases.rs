//! Test inputs of the bundled examples, shared by the per-example tests (`examples.rs`) and the
//! engine differential test (`differential.rs`).

#![allow(dead_code)]

use kflex::TestRunOptions;
use kflex::packet::{self, ETH_HLEN, ETH_P_ARP, ETH_P_IP, IPPROTO_TCP, IPPROTO_UDP, tcp_flags};

/// A client address.
pub const CLIENT: [u8; 4] = [192, 168, 1, 10];
/// A server address.
pub const SERVER: [u8; 4] = [10, 0, 0, 53];
/// A blocklisted address.
pub const ATTACKER: [u8; 4] = [203, 0, 113, 7];

/// A TCP segment with SYN and FIN set.
pub fn syn_fin_frame() -> Vec<u8> {
    let seg = packet::tcp(1000, 80, tcp_flags::SYN | tcp_flags::FIN, &[]);
    let ip = packet::ipv4(CLIENT, SERVER, IPPROTO_TCP, 0, &seg);
    packet::ethernet(packet::DST_MAC, packet::SRC_MAC, ETH_P_IP, &ip)
}

/// xdp_firewall frames by description.
pub fn xdp_cases() -> Vec<(&'static str, Vec<u8>)> {
    let short_ip = {
        let mut f = packet::udp4_frame(CLIENT, SERVER, 1, 2, &[]);
        f.truncate(ETH_HLEN + 10);
        f
    };
    vec![
        (
            "dns",
            packet::udp4_frame(CLIENT, SERVER, 40000, 53, b"query"),
        ),
        (
            "memcached",
            packet::udp4_frame(CLIENT, SERVER, 40000, 11211, b"stats"),
        ),
        (
            "chargen",
            packet::udp4_frame(CLIENT, SERVER, 40000, 19, b""),
        ),
        (
            "blocked source",
            packet::tcp4_frame(ATTACKER, SERVER, 5555, 80, 0, b"GET /"),
        ),
        (
            "http",
            packet::tcp4_frame(CLIENT, SERVER, 40000, 80, 0, b"GET /"),
        ),
        ("syn+fin", syn_fin_frame()),
        (
            "ssdp over ipv6",
            packet::udp6_frame([0xfe; 16], [0xff; 16], 1900, 1900, b"M-SEARCH"),
        ),
        (
            "dns over vlan",
            packet::ethernet_vlan(
                7,
                ETH_P_IP,
                &packet::ipv4(CLIENT, SERVER, IPPROTO_UDP, 0, &packet::udp(1, 53, b"")),
            ),
        ),
        (
            "arp",
            packet::ethernet(packet::DST_MAC, packet::SRC_MAC, ETH_P_ARP, &[0u8; 28]),
        ),
        (
            "vlan tag cut short",
            packet::ethernet(packet::DST_MAC, packet::SRC_MAC, packet::ETH_P_8021Q, &[]),
        ),
        ("short ipv4 header", short_ip),
    ]
}

/// socket_udp_filter frames and whether each is DNS.
pub fn socket_cases() -> Vec<(Vec<u8>, bool)> {
    vec![
        (
            packet::udp4_frame(CLIENT, SERVER, 40000, 53, b"\x12\x34\x01\x00"),
            true,
        ),
        (
            packet::udp4_frame(CLIENT, SERVER, 123, 123, &[0u8; 48]),
            false,
        ),
        (packet::tcp4_frame(CLIENT, SERVER, 40000, 53, 0, b""), false),
        (packet::udp6_frame([1; 16], [2; 16], 40000, 53, b""), false),
    ]
}

/// tc_classifier frames (voice, DNS, video, backup).
pub fn tc_frames() -> Vec<Vec<u8>> {
    vec![
        packet::tcp4_frame(CLIENT, SERVER, 40000, 80, 0xb8, b"voice"),
        packet::udp4_frame(CLIENT, SERVER, 40001, 53, b"q"),
        packet::tcp4_frame(CLIENT, SERVER, 40002, 443, 34 << 2, b"video"),
        packet::tcp4_frame(CLIENT, SERVER, 40003, 22, 8 << 2, b"backup"),
    ]
}

/// syscall_events runs as (steps limit, seed).
pub const COLLATZ_RUNS: [(u64, u64); 4] = [(1000, 27), (1000, 1), (10, 27), (1000, 97)];

/// syscall_events context: steps limit, seed, result slot.
pub fn collatz_ctx(n: u64, seed: u64) -> Vec<u8> {
    [n, seed, 0].iter().flat_map(|v| v.to_ne_bytes()).collect()
}

/// The input with a watchdog budget far above any run's length: these tests compare results, and
/// on a loaded machine a preempted run can outlast the default 10 ms budget of wall-clock time.
pub fn unhurried(input: &TestRunOptions) -> TestRunOptions {
    TestRunOptions {
        budget: Some(std::time::Duration::from_secs(10)),
        ..input.clone()
    }
}
