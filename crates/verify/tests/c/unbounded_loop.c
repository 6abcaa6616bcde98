// Loops until a random number is even: no bound Linux can prove. kflex accepts it (the back-edge
// becomes a termination point).
#include <kflex/helpers.h>

SEC("xdp")
int unbounded_loop(struct xdp_md *ctx)
{
	__u32 n = 0;

	while (bpf_get_prandom_u32() & 1)
		n++;
	return n > 3 ? XDP_DROP : XDP_PASS;
}

KFLEX_LICENSE("GPL");
