// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * sk_skb_verdict: a stream verdict program that polices message sizes on a sockmap'd socket.
 *
 * Passes messages of at most `max_message_len` bytes (.rodata, default 1024, settable before load)
 * and drops larger ones, counting both outcomes in the array map `verdicts` (index = verdict).
 * Empty messages are dropped too: a verdict program only ever sees non-empty data, so an empty
 * skb signals a broken caller.
 *
 * Expected test-run results (return value of the program):
 *   skb of 100 bytes    -> SK_PASS (1)
 *   skb of 1024 bytes   -> SK_PASS (1)
 *   skb of 1500 bytes   -> SK_DROP (0)
 *   skb of 0 bytes      -> SK_DROP (0)
 */
#include <kflex/helpers.h>

/* Largest message passed, in bytes. */
const volatile __u32 max_message_len = 1024;

/* Messages dropped (index SK_DROP) and passed (index SK_PASS). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} verdicts SEC(".maps");

SEC("sk_skb/stream_verdict")
int sk_skb_verdict(struct __sk_buff *skb)
{
	__u32 len = skb->len;
	__u32 verdict = (len > 0 && len <= max_message_len) ? SK_PASS : SK_DROP;
	__u64 *count = bpf_map_lookup_elem(&verdicts, &verdict);

	if (count)
		__sync_fetch_and_add(count, 1);
	return verdict;
}

char _license[] SEC("license") = "GPL";
