// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * socket_udp_filter: a socket filter that keeps only DNS queries (IPv4/UDP to port 53).
 *
 * For socket filters the packet data starts at the network header, so the program copies the IPv4
 * header and then the UDP header out of the packet with bpf_skb_load_bytes (no direct packet
 * access). It returns skb->len (keep the whole packet) for an unfragmented or first-fragment IPv4
 * UDP datagram whose destination port is 53, and 0 (drop) for anything else, including packets too
 * short to hold the headers. `filter_stats` counts kept (index 0) and dropped (index 1) packets.
 *
 * Expected test-run results (return value of the program; N = skb->len, the length from the IP
 * header on: Linux's BPF_PROG_TEST_RUN takes an Ethernet frame and strips its 14-byte header):
 *   IPv4/UDP packet to port 53, N bytes long   -> N
 *   IPv4/UDP packet to port 123                -> 0
 *   IPv4/TCP packet to port 53                 -> 0
 *   IPv6 packet, or fewer than 28 bytes        -> 0
 */
#include <kflex/helpers.h>
#include <kflex/net.h>

#define DNS_PORT 53

enum filter_counter {
	COUNTER_KEPT = 0,
	COUNTER_DROPPED = 1,
	COUNTER_MAX,
};

/* Packets kept and dropped. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} filter_stats SEC(".maps");

static __always_inline void count(__u32 which)
{
	__u64 *counter = bpf_map_lookup_elem(&filter_stats, &which);

	/* Array values are shared between CPUs: increment atomically. */
	if (counter)
		__sync_fetch_and_add(counter, 1);
}

/* True when the packet is an IPv4/UDP datagram to the DNS port. */
static __always_inline bool is_dns_query(struct __sk_buff *skb)
{
	struct iphdr ip;
	struct udphdr udp;
	__u32 hdr_len;

	if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)) < 0)
		return false;
	if (ip.version != 4 || ip.protocol != IPPROTO_UDP)
		return false;
	if (ip.frag_off & bpf_htons(IP_OFFSET))
		return false;
	hdr_len = ip.ihl * 4;
	if (hdr_len < sizeof(ip))
		return false;
	if (bpf_skb_load_bytes(skb, hdr_len, &udp, sizeof(udp)) < 0)
		return false;
	return udp.dest == bpf_htons(DNS_PORT);
}

SEC("socket")
int socket_udp_filter(struct __sk_buff *skb)
{
	if (is_dns_query(skb)) {
		count(COUNTER_KEPT);
		return skb->len;
	}
	count(COUNTER_DROPPED);
	return 0;
}

char _license[] SEC("license") = "GPL";
