// bpf_xdp_adjust_head exists only for xdp programs: rejected in a socket filter.
#include <kflex/helpers.h>

SEC("socket")
int helper_wrong_type(struct __sk_buff *skb)
{
	return bpf_xdp_adjust_head((void *)skb, 4) == 0;
}

KFLEX_LICENSE("GPL");
