// Indexes a map value with a number read from the context, without a bound: rejected.
#include <kflex/helpers.h>

struct slots {
	__u64 v[8];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct slots);
	__uint(max_entries, 1);
} table SEC(".maps");

SEC("tc")
int map_value_unbounded_index(struct __sk_buff *skb)
{
	__u32 key = 0;
	struct slots *s = bpf_map_lookup_elem(&table, &key);

	if (!s)
		return 0;
	return s->v[skb->len] != 0;
}

KFLEX_LICENSE("GPL");
