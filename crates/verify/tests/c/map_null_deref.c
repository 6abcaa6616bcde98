// Dereferences a hash lookup result without checking it for NULL: rejected.
#include <kflex/helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 64);
} seen SEC(".maps");

SEC("socket")
int map_null_deref(struct __sk_buff *skb)
{
	__u32 key = skb->len;
	__u64 *value = bpf_map_lookup_elem(&seen, &key);

	return *value > 10;
}

KFLEX_LICENSE("GPL");
