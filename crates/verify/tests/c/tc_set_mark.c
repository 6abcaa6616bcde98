// A classifier writes skb->mark and skb->priority (writable for sched_cls): accepted.
#include <kflex/helpers.h>

SEC("tc")
int tc_set_mark(struct __sk_buff *skb)
{
	skb->mark = skb->len + 1;
	skb->priority = skb->protocol;
	return TC_ACT_OK;
}

KFLEX_LICENSE("GPL");
