// Two programs for `kflex verify`: one the verifier accepts, one it rejects because a map value
// is used without checking the lookup's result against NULL. The map is a hash map: its lookups
// may return NULL whatever the key (Linux treats lookups of constant in-range keys of an array as
// never NULL).
#include <kflex/helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

SEC("xdp")
int count_ok(struct xdp_md *ctx)
{
	__u32 key = 1;
	__u64 *v = bpf_map_lookup_elem(&counters, &key);

	if (!v)
		return XDP_PASS;
	*v += 1;
	return XDP_PASS;
}

SEC("xdp")
int count_unchecked(struct xdp_md *ctx)
{
	__u32 key = 2;
	__u64 *v = bpf_map_lookup_elem(&counters, &key);

	*v += 1; /* no NULL check */
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
