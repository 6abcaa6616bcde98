// A Collatz walk driven by packet data: no bound proof exists, KFlex accepts it on purpose
// (Linux would reject it). The packet is checked once before the loop.
#include <kflex/helpers.h>
#include <kflex/net.h>

SEC("xdp")
int walk(struct xdp_md *ctx)
{
	unsigned char *data = (unsigned char *)(long)ctx->data;
	unsigned char *end = (unsigned char *)(long)ctx->data_end;
	__u64 x, steps = 0;

	if (data + 1 > end)
		return XDP_ABORTED;
	x = data[0] | 1;
	while (x != 1) {
		x = (x & 1) ? 3 * x + 1 : x / 2;
		steps++;
	}
	return steps & 1 ? XDP_PASS : XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
