/* A legacy struct bpf_map_def map, which kflex rejects. */
#include <kflex/helpers.h>

struct bpf_map_def {
	unsigned int type, key_size, value_size, max_entries, map_flags;
};

struct bpf_map_def SEC("maps") old_map = { 1, 4, 8, 16, 0 };

SEC("xdp")
int prog(struct xdp_md *ctx)
{
	__u32 k = 0;

	return bpf_map_lookup_elem(&old_map, &k) != 0;
}
