// Socket filters may not write skb->mark: rejected.
#include <kflex/helpers.h>

SEC("socket")
int socket_set_mark(struct __sk_buff *skb)
{
	skb->mark = skb->len + 1;
	return 0;
}

KFLEX_LICENSE("GPL");
