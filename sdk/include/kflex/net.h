/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * kflex SDK: packet header layouts (Ethernet, 802.1Q, IPv4, IPv6, UDP, TCP), protocol numbers and
 * byte-order conversion. Layouts match the Linux UAPI headers on a little-endian target (the BPF
 * target of kflex is little-endian). Self-contained: no system headers.
 */
#ifndef KFLEX_NET_H
#define KFLEX_NET_H

#include "types.h"

/* ---- Byte order (host is little-endian). ---- */

#define bpf_htons(x) ((__be16)__builtin_bswap16((__u16)(x)))
#define bpf_ntohs(x) ((__u16)__builtin_bswap16((__u16)(x)))
#define bpf_htonl(x) ((__be32)__builtin_bswap32((__u32)(x)))
#define bpf_ntohl(x) ((__u32)__builtin_bswap32((__u32)(x)))
#define bpf_cpu_to_be64(x) ((__be64)__builtin_bswap64((__u64)(x)))
#define bpf_be64_to_cpu(x) ((__u64)__builtin_bswap64((__u64)(x)))

/* ---- Ethernet. ---- */

#define ETH_ALEN 6
#define ETH_HLEN 14

#define ETH_P_IP 0x0800
#define ETH_P_ARP 0x0806
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8
#define ETH_P_IPV6 0x86DD

struct ethhdr {
	unsigned char h_dest[ETH_ALEN];
	unsigned char h_source[ETH_ALEN];
	__be16 h_proto;
} __attribute__((packed));

/* The 4 bytes an 802.1Q tag inserts after the MAC addresses (h_proto becomes ETH_P_8021Q). */
struct vlan_hdr {
	__be16 h_vlan_TCI;
	__be16 h_vlan_encapsulated_proto;
};

#define VLAN_VID_MASK 0x0fff

/* ---- IP. ---- */

#define IPPROTO_IP 0
#define IPPROTO_ICMP 1
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_IPV6 41
#define IPPROTO_GRE 47
#define IPPROTO_ICMPV6 58
#define IPPROTO_SCTP 132
#define IPPROTO_RAW 255

#define IP_MF 0x2000
#define IP_OFFSET 0x1fff

struct iphdr {
	__u8 ihl : 4, version : 4;
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__u16 check;
	__be32 saddr;
	__be32 daddr;
};

struct in6_addr {
	union {
		__u8 u6_addr8[16];
		__be16 u6_addr16[8];
		__be32 u6_addr32[4];
	} in6_u;
};

struct ipv6hdr {
	__u8 priority : 4, version : 4;
	__u8 flow_lbl[3];
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	struct in6_addr saddr;
	struct in6_addr daddr;
};

/* ---- Transport. ---- */

struct udphdr {
	__be16 source;
	__be16 dest;
	__be16 len;
	__u16 check;
};

struct tcphdr {
	__be16 source;
	__be16 dest;
	__be32 seq;
	__be32 ack_seq;
	__u16 res1 : 4, doff : 4, fin : 1, syn : 1, rst : 1, psh : 1, ack : 1, urg : 1, ece : 1,
		cwr : 1;
	__be16 window;
	__u16 check;
	__be16 urg_ptr;
};

_Static_assert(sizeof(struct ethhdr) == 14, "struct ethhdr is 14 bytes");
_Static_assert(sizeof(struct vlan_hdr) == 4, "struct vlan_hdr is 4 bytes");
_Static_assert(sizeof(struct iphdr) == 20, "struct iphdr is 20 bytes");
_Static_assert(sizeof(struct ipv6hdr) == 40, "struct ipv6hdr is 40 bytes");
_Static_assert(sizeof(struct udphdr) == 8, "struct udphdr is 8 bytes");
_Static_assert(sizeof(struct tcphdr) == 20, "struct tcphdr is 20 bytes");
_Static_assert(__builtin_offsetof(struct iphdr, saddr) == 12, "iphdr.saddr at 12");
_Static_assert(__builtin_offsetof(struct ipv6hdr, daddr) == 24, "ipv6hdr.daddr at 24");
_Static_assert(__builtin_offsetof(struct tcphdr, window) == 14, "tcphdr.window at 14");

#endif /* KFLEX_NET_H */
