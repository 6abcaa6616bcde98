// Reads past the end of struct xdp_md: rejected.
#include <kflex/helpers.h>

SEC("xdp")
int ctx_out_of_bounds(struct xdp_md *ctx)
{
	__u32 *raw = (__u32 *)ctx;

	return raw[8] ? XDP_DROP : XDP_PASS;
}

KFLEX_LICENSE("GPL");
