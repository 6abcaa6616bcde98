//! Builders for realistic test packets (Ethernet, 802.1Q, IPv4, IPv6, UDP, TCP), used by the demo,
//! the tests and hosts that want to test-run packet programs.
//!
//! Every multi-byte header field is written in network byte order; IPv4 header checksums are
//! computed. Transport checksums are left zero (allowed for UDP over IPv4, and nothing in a test-run
//! checks them).

/// EtherType of IPv4.
pub const ETH_P_IP: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETH_P_IPV6: u16 = 0x86dd;
/// EtherType of an 802.1Q VLAN tag.
pub const ETH_P_8021Q: u16 = 0x8100;
/// EtherType of ARP.
pub const ETH_P_ARP: u16 = 0x0806;
/// IP protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;
/// IP protocol number of ICMP.
pub const IPPROTO_ICMP: u8 = 1;

/// Length of an Ethernet header.
pub const ETH_HLEN: usize = 14;

/// Source MAC address used by the convenience builders.
pub const SRC_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
/// Destination MAC address used by the convenience builders.
pub const DST_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];

/// An Ethernet frame: destination MAC, source MAC, EtherType, payload.
pub fn ethernet(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(ETH_HLEN + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An Ethernet frame with one 802.1Q tag (`vlan_id` in the low 12 bits of the TCI).
pub fn ethernet_vlan(vlan_id: u16, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut inner = Vec::with_capacity(4 + payload.len());
    inner.extend_from_slice(&(vlan_id & 0x0fff).to_be_bytes());
    inner.extend_from_slice(&ethertype.to_be_bytes());
    inner.extend_from_slice(payload);
    ethernet(DST_MAC, SRC_MAC, ETH_P_8021Q, &inner)
}

/// The RFC 1071 ones'-complement checksum of `bytes`.
pub fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for pair in bytes.chunks(2) {
        let word = match pair {
            [a, b] => u16::from_be_bytes([*a, *b]),
            [a] => u16::from_be_bytes([*a, 0]),
            _ => 0,
        };
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 packet (20-byte header, no options, TTL 64, DF set) with a valid header checksum.
/// `tos` is the whole TOS byte (DSCP in the high 6 bits).
pub fn ipv4(src: [u8; 4], dst: [u8; 4], protocol: u8, tos: u8, payload: &[u8]) -> Vec<u8> {
    let total = u16::try_from(20 + payload.len()).unwrap_or(u16::MAX);
    let mut h = Vec::with_capacity(20 + payload.len());
    h.push(0x45);
    h.push(tos);
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&0x1234u16.to_be_bytes()); // identification
    h.extend_from_slice(&0x4000u16.to_be_bytes()); // flags: DF
    h.push(64); // TTL
    h.push(protocol);
    h.extend_from_slice(&[0, 0]); // checksum placeholder
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    let csum = checksum(&h);
    h[10..12].copy_from_slice(&csum.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

/// An IPv6 packet (40-byte header, hop limit 64).
pub fn ipv6(src: [u8; 16], dst: [u8; 16], next_header: u8, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(payload.len()).unwrap_or(u16::MAX);
    let mut h = Vec::with_capacity(40 + payload.len());
    h.extend_from_slice(&[0x60, 0, 0, 0]);
    h.extend_from_slice(&len.to_be_bytes());
    h.push(next_header);
    h.push(64);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(payload);
    h
}

/// A UDP datagram (checksum 0).
pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(8 + payload.len()).unwrap_or(u16::MAX);
    let mut d = Vec::with_capacity(8 + payload.len());
    d.extend_from_slice(&sport.to_be_bytes());
    d.extend_from_slice(&dport.to_be_bytes());
    d.extend_from_slice(&len.to_be_bytes());
    d.extend_from_slice(&[0, 0]);
    d.extend_from_slice(payload);
    d
}

/// TCP flag bits.
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
}

/// A TCP segment (20-byte header, no options, window 65535, checksum 0).
pub fn tcp(sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut s = Vec::with_capacity(20 + payload.len());
    s.extend_from_slice(&sport.to_be_bytes());
    s.extend_from_slice(&dport.to_be_bytes());
    s.extend_from_slice(&1u32.to_be_bytes()); // sequence
    s.extend_from_slice(&0u32.to_be_bytes()); // ack
    s.push(5 << 4); // data offset
    s.push(flags);
    s.extend_from_slice(&0xffffu16.to_be_bytes());
    s.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    s.extend_from_slice(payload);
    s
}

/// Ethernet + IPv4 + UDP frame between the default MAC addresses.
pub fn udp4_frame(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let ip = ipv4(src, dst, IPPROTO_UDP, 0, &udp(sport, dport, payload));
    ethernet(DST_MAC, SRC_MAC, ETH_P_IP, &ip)
}

/// Ethernet + IPv4 + TCP frame between the default MAC addresses, with the given TOS byte.
pub fn tcp4_frame(
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    tos: u8,
    payload: &[u8],
) -> Vec<u8> {
    let ip = ipv4(
        src,
        dst,
        IPPROTO_TCP,
        tos,
        &tcp(sport, dport, tcp_flags::ACK | tcp_flags::PSH, payload),
    );
    ethernet(DST_MAC, SRC_MAC, ETH_P_IP, &ip)
}

/// Ethernet + IPv6 + UDP frame between the default MAC addresses.
pub fn udp6_frame(src: [u8; 16], dst: [u8; 16], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let ip = ipv6(src, dst, IPPROTO_UDP, &udp(sport, dport, payload));
    ethernet(DST_MAC, SRC_MAC, ETH_P_IPV6, &ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_checksum_verifies() {
        let p = ipv4([10, 0, 0, 1], [10, 0, 0, 2], IPPROTO_UDP, 0, &[1, 2, 3]);
        // A correct header sums to 0xffff, so its checksum over itself is 0.
        assert_eq!(checksum(&p[..20]), 0);
        assert_eq!(u16::from_be_bytes([p[2], p[3]]), 23);
    }

    #[test]
    fn udp_frame_layout() {
        let f = udp4_frame([192, 168, 1, 1], [8, 8, 8, 8], 5353, 53, b"query");
        assert_eq!(f.len(), 14 + 20 + 8 + 5);
        assert_eq!(&f[12..14], &[0x08, 0x00]);
        assert_eq!(f[14 + 9], IPPROTO_UDP);
        assert_eq!(&f[14 + 12..14 + 16], &[192, 168, 1, 1]);
        assert_eq!(u16::from_be_bytes([f[36], f[37]]), 53);
        assert_eq!(u16::from_be_bytes([f[38], f[39]]), 13);
    }

    #[test]
    fn vlan_and_tcp_layout() {
        let f = ethernet_vlan(42, ETH_P_IP, &[0xaa]);
        assert_eq!(&f[12..18], &[0x81, 0x00, 0x00, 42, 0x08, 0x00]);
        let t = tcp4_frame([1, 1, 1, 1], [2, 2, 2, 2], 1000, 80, 0xb8, &[]);
        assert_eq!(t[15], 0xb8);
        assert_eq!(t[14 + 20 + 12], 0x50);
    }
}
