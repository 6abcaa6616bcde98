// Reads the IPv4 header after checking only the Ethernet header: rejected.
#include <kflex/helpers.h>
#include <kflex/net.h>

SEC("xdp")
int xdp_parse_unchecked(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;

	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	ip = (void *)(eth + 1);
	return ip->ttl < 2 ? XDP_DROP : XDP_PASS;
}

KFLEX_LICENSE("GPL");
