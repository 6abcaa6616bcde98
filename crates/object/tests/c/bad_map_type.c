/* A map type kflex does not support (BPF_MAP_TYPE_PROG_ARRAY). */
#include <kflex/helpers.h>

struct {
	__uint(type, 3);
	__uint(max_entries, 4);
	__uint(key_size, 4);
	__uint(value_size, 4);
} jumps SEC(".maps");

SEC("xdp")
int prog(struct xdp_md *ctx)
{
	return bpf_map_lookup_elem(&jumps, &ctx->ingress_ifindex) != 0;
}
