// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * tc_classifier: a tc (sched_cls) classifier that sets QoS metadata and keeps per-flow counters.
 *
 * Reads the packet directly through skb->data / skb->data_end (tc packets start at the Ethernet
 * header). For IPv4 it takes the DSCP from the TOS byte and the protocol, picks a traffic class:
 *   DSCP EF (46)             -> CLASS_REALTIME    (priority 6)
 *   DSCP AF41..AF43, CS4     -> CLASS_INTERACTIVE (priority 4)
 *   DSCP CS1 (8)             -> CLASS_BULK        (priority 1)
 *   other, ICMP              -> CLASS_CONTROL     (priority 5)
 *   other, UDP or TCP        -> CLASS_DEFAULT     (priority 0)
 * and writes skb->priority = that priority, skb->mark = (protocol << 8) | DSCP, and
 * skb->cb[0] = the class number. Every IPv4 packet is counted (packets, bytes) under its 5-tuple in
 * the LRU hash `flows`. TCP/UDP packets whose destination port equals the .data globals
 * `blocked_proto` / `blocked_port` (default TCP port 23, telnet) are shot. Non-IPv4 and truncated
 * packets pass untouched.
 *
 * Expected test-run results (return value; context fields after the run):
 *   IPv4/TCP to port 80, TOS 0xb8 (EF)  -> TC_ACT_OK (0); priority 6, mark 0x062e, cb[0] 1
 *   IPv4/UDP to port 53, TOS 0          -> TC_ACT_OK (0); priority 0, mark 0x1100, cb[0] 0
 *   IPv4/TCP to port 23                 -> TC_ACT_SHOT (2)
 *   IPv6 or ARP frame                   -> TC_ACT_OK (0); skb unchanged
 */
#include <kflex/helpers.h>
#include <kflex/net.h>

enum traffic_class {
	CLASS_DEFAULT = 0,
	CLASS_REALTIME = 1,
	CLASS_INTERACTIVE = 2,
	CLASS_BULK = 3,
	CLASS_CONTROL = 4,
};

#define DSCP_EF 46
#define DSCP_CS1 8
#define DSCP_CS4 32
#define DSCP_AF41 34
#define DSCP_AF43 38

/* Destination protocol and port to shoot (.data: initialised, rewritable at run time). */
__u8 blocked_proto = IPPROTO_TCP;
__u16 blocked_port = 23;

/* Flow identity (IPv4 5-tuple). Explicit padding keeps the key fully initialised. */
struct flow_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

struct flow_stats {
	__u64 packets;
	__u64 bytes;
};

/* Per-flow counters; the least recently used flows are evicted when full. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct flow_key);
	__type(value, struct flow_stats);
} flows SEC(".maps");

static __always_inline __u32 classify(__u8 dscp, __u8 proto, __u32 *priority)
{
	if (dscp == DSCP_EF) {
		*priority = 6;
		return CLASS_REALTIME;
	}
	if (dscp == DSCP_CS4 || (dscp >= DSCP_AF41 && dscp <= DSCP_AF43)) {
		*priority = 4;
		return CLASS_INTERACTIVE;
	}
	if (dscp == DSCP_CS1) {
		*priority = 1;
		return CLASS_BULK;
	}
	if (proto == IPPROTO_ICMP) {
		*priority = 5;
		return CLASS_CONTROL;
	}
	*priority = 0;
	return CLASS_DEFAULT;
}

static __always_inline void count_flow(const struct flow_key *key, __u64 bytes)
{
	struct flow_stats *stats = bpf_map_lookup_elem(&flows, key);

	if (stats) {
		__sync_fetch_and_add(&stats->packets, 1);
		__sync_fetch_and_add(&stats->bytes, bytes);
	} else {
		struct flow_stats fresh = {.packets = 1, .bytes = bytes};

		/* Another CPU may have inserted the flow meanwhile; losing one count is acceptable. */
		bpf_map_update_elem(&flows, key, &fresh, BPF_NOEXIST);
	}
}

SEC("tc")
int tc_classifier(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	struct flow_key key = {};
	__u32 priority, class, hdr_len;
	__u8 dscp;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return TC_ACT_OK;

	key.saddr = ip->saddr;
	key.daddr = ip->daddr;
	key.proto = ip->protocol;

	hdr_len = ip->ihl * 4;
	if (hdr_len >= sizeof(*ip) && !(ip->frag_off & bpf_htons(IP_OFFSET)) &&
	    (ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP)) {
		/* Source and destination ports lead both the TCP and the UDP header. */
		__be16 *ports = (void *)ip + hdr_len;

		if ((void *)(ports + 2) > data_end)
			return TC_ACT_OK;
		key.sport = ports[0];
		key.dport = ports[1];
	}

	count_flow(&key, skb->len);

	if (key.dport != 0 && key.proto == blocked_proto && bpf_ntohs(key.dport) == blocked_port)
		return TC_ACT_SHOT;

	dscp = ip->tos >> 2;
	class = classify(dscp, ip->protocol, &priority);
	skb->priority = priority;
	skb->mark = ((__u32)ip->protocol << 8) | dscp;
	skb->cb[0] = class;
	return TC_ACT_OK;
}

char _license[] SEC("license") = "GPL";
