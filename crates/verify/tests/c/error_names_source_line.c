// Rejected; the error must name this file and the line of the bad read.
#include <kflex/helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 8);
} flags SEC(".maps");

SEC("tc")
int error_names_source_line(struct __sk_buff *skb)
{
	__u32 key = 1;
	__u32 *flag = bpf_map_lookup_elem(&flags, &key);
	__u32 value = *flag; /* BAD READ */

	return value;
}

KFLEX_LICENSE("GPL");
