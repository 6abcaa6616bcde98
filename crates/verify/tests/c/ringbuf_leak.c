// Submits the record only for long packets and forgets it otherwise: rejected (leaked reference).
#include <kflex/helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} events SEC(".maps");

SEC("tc")
int ringbuf_leak(struct __sk_buff *skb)
{
	__u32 *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e)
		return 0;
	*e = skb->len;
	if (skb->len > 100)
		bpf_ringbuf_submit(e, 0);
	return 0;
}

KFLEX_LICENSE("GPL");
