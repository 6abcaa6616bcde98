// Calls a non-inlined static function with a pointer to the caller's stack: accepted.
#include <kflex/helpers.h>

static __noinline __u64 mix(__u64 *acc, __u64 v)
{
	*acc = (*acc ^ v) * 31;
	return *acc & 0xff;
}

SEC("socket")
int subprogram(struct __sk_buff *skb)
{
	__u64 acc = skb->len;

	mix(&acc, skb->protocol);
	return mix(&acc, skb->mark) > 128;
}

KFLEX_LICENSE("GPL");
