// Sums the first 16 bytes of the packet in a counted loop: accepted by both.
#include <kflex/helpers.h>

SEC("xdp")
int bounded_loop(struct xdp_md *ctx)
{
	__u8 *data = (void *)(long)ctx->data;
	__u8 *data_end = (void *)(long)ctx->data_end;
	__u32 sum = 0;

	if (data + 16 > data_end)
		return XDP_PASS;
	for (int i = 0; i < 16; i++)
		sum += data[i];
	return sum == 0 ? XDP_DROP : XDP_PASS;
}

KFLEX_LICENSE("GPL");
