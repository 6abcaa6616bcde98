// Counts packets per protocol in an array map (lookup, NULL check, atomic add): accepted.
#include <kflex/helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 256);
} counts SEC(".maps");

SEC("socket")
int map_counter(struct __sk_buff *skb)
{
	__u32 key = skb->protocol & 0xff;
	__u64 *value = bpf_map_lookup_elem(&counts, &key);

	if (value)
		__sync_fetch_and_add(value, 1);
	return 0;
}

KFLEX_LICENSE("GPL");
