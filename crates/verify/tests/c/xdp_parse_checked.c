// Parses Ethernet and IPv4 behind bounds checks: accepted by kflex and Linux.
#include <kflex/helpers.h>
#include <kflex/net.h>

SEC("xdp")
int xdp_parse_checked(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;

	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return XDP_PASS;
	return ip->ttl < 2 ? XDP_DROP : XDP_PASS;
}

KFLEX_LICENSE("GPL");
