// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * xdp_firewall: a stateless XDP packet filter.
 *
 * Parses Ethernet (with at most one 802.1Q / 802.1ad tag), IPv4 or IPv6, then TCP or UDP, checking
 * every header against data_end before touching it. A packet is dropped when
 *   - its IPv4 source address is a key of the `blocklist` hash map (the value counts the hits),
 *   - its UDP destination port is one of `blocked_udp_ports` (.rodata, set before load; defaults
 *     block the usual UDP amplification ports: chargen 19, SSDP 1900, memcached 11211),
 *   - it is a TCP segment with both SYN and FIN set, or
 *   - it is truncated (a header runs past data_end; counted in the .bss global `malformed`).
 * Everything else, including non-IP traffic and non-first IPv4 fragments, passes. Packets and bytes
 * are counted per verdict in the per-CPU array `verdict_stats` (index = XDP_* verdict).
 *
 * Expected test-run results (return value of the program):
 *   IPv4/UDP to port 53 from an address not in the blocklist   -> XDP_PASS (2)
 *   IPv4/UDP to port 11211                                      -> XDP_DROP (1)
 *   IPv4 packet whose source address is in `blocklist`          -> XDP_DROP (1)
 *   IPv6/UDP to port 1900                                       -> XDP_DROP (1)
 *   IPv4/TCP to port 80 with SYN only                           -> XDP_PASS (2)
 *   ARP frame                                                   -> XDP_PASS (2)
 *   frame shorter than 14 bytes, or IPv4 header cut short       -> XDP_DROP (1), malformed += 1
 * (Linux's BPF_PROG_TEST_RUN refuses XDP input shorter than 14 bytes, so check that case on kflex.)
 */
#include <kflex/helpers.h>
#include <kflex/net.h>

#define MAX_BLOCKED_PORTS 4
#define MAX_VERDICT (XDP_REDIRECT + 1)

/* UDP destination ports to drop (host byte order; 0 = unused slot). Rewritable before load. */
const volatile __u16 blocked_udp_ports[MAX_BLOCKED_PORTS] = {19, 1900, 11211, 0};

/* Source addresses to drop: key = IPv4 address in network byte order, value = packets dropped. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u64);
} blocklist SEC(".maps");

struct verdict_counters {
	__u64 packets;
	__u64 bytes;
};

/* Packets and bytes per XDP verdict, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_VERDICT);
	__type(key, __u32);
	__type(value, struct verdict_counters);
} verdict_stats SEC(".maps");

/* Frames dropped because a header was cut short (.bss). */
__u64 malformed = 0;

/* Adds one packet of `bytes` bytes to the counters of `verdict` and returns the verdict. */
static __noinline int account(__u32 verdict, __u64 bytes)
{
	struct verdict_counters *c;

	c = bpf_map_lookup_elem(&verdict_stats, &verdict);
	if (c) {
		/* Per-CPU values are private to this CPU: plain increments are enough. */
		c->packets += 1;
		c->bytes += bytes;
	}
	return verdict;
}

static __always_inline bool udp_port_blocked(__u16 port)
{
#pragma unroll
	for (int i = 0; i < MAX_BLOCKED_PORTS; i++) {
		if (blocked_udp_ports[i] != 0 && blocked_udp_ports[i] == port)
			return true;
	}
	return false;
}

/* Verdict for the transport header at `l4` (protocol `proto`); -1 when it is truncated. */
static __always_inline int check_l4(void *l4, void *data_end, __u8 proto)
{
	if (proto == IPPROTO_UDP) {
		struct udphdr *udp = l4;

		if ((void *)(udp + 1) > data_end)
			return -1;
		if (udp_port_blocked(bpf_ntohs(udp->dest))) {
			bpf_printk("xdp_firewall: drop udp dport %u", bpf_ntohs(udp->dest));
			return XDP_DROP;
		}
	} else if (proto == IPPROTO_TCP) {
		struct tcphdr *tcp = l4;

		if ((void *)(tcp + 1) > data_end || tcp->doff < 5)
			return -1;
		if (tcp->syn && tcp->fin) {
			bpf_printk("xdp_firewall: drop tcp syn+fin dport %u", bpf_ntohs(tcp->dest));
			return XDP_DROP;
		}
	}
	return XDP_PASS;
}

static __always_inline int check_ipv4(struct iphdr *ip, void *data_end)
{
	__u32 saddr;
	__u64 *hits;
	__u32 hdr_len;

	if ((void *)(ip + 1) > data_end)
		return -1;
	hdr_len = ip->ihl * 4;
	if (hdr_len < sizeof(*ip))
		return -1;

	saddr = ip->saddr;
	hits = bpf_map_lookup_elem(&blocklist, &saddr);
	if (hits) {
		__sync_fetch_and_add(hits, 1);
		bpf_printk("xdp_firewall: drop blocked source %x", bpf_ntohl(saddr));
		return XDP_DROP;
	}

	/* Only the first fragment carries the transport header. */
	if (ip->frag_off & bpf_htons(IP_OFFSET))
		return XDP_PASS;
	if ((void *)ip + hdr_len > data_end)
		return -1;
	return check_l4((void *)ip + hdr_len, data_end, ip->protocol);
}

static __always_inline int check_ipv6(struct ipv6hdr *ip6, void *data_end)
{
	if ((void *)(ip6 + 1) > data_end)
		return -1;
	/* Extension headers are not walked: such packets are judged on the IPv6 header alone. */
	return check_l4(ip6 + 1, data_end, ip6->nexthdr);
}

SEC("xdp")
int xdp_firewall(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 bytes = data_end - data;
	struct ethhdr *eth = data;
	void *l3;
	__u16 proto;
	int verdict;

	if ((void *)(eth + 1) > data_end)
		goto malformed;
	proto = eth->h_proto;
	l3 = eth + 1;

	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
		struct vlan_hdr *vlan = l3;

		if ((void *)(vlan + 1) > data_end)
			goto malformed;
		proto = vlan->h_vlan_encapsulated_proto;
		l3 = vlan + 1;
	}

	if (proto == bpf_htons(ETH_P_IP))
		verdict = check_ipv4(l3, data_end);
	else if (proto == bpf_htons(ETH_P_IPV6))
		verdict = check_ipv6(l3, data_end);
	else
		verdict = XDP_PASS;

	if (verdict < 0)
		goto malformed;
	return account(verdict, bytes);

malformed:
	__sync_fetch_and_add(&malformed, 1);
	return account(XDP_DROP, bytes);
}

char _license[] SEC("license") = "GPL";
