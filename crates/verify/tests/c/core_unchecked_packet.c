// Reads the IPv4 protocol byte without checking data_end: rejected, with the source line.
#include <kflex/helpers.h>
#include <kflex/net.h>

SEC("xdp")
int unchecked(struct xdp_md *ctx)
{
	unsigned char *data = (unsigned char *)(long)ctx->data;
	return data[23] == 17 ? XDP_DROP : XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
