// Reserves a ring-buffer record, fills it and submits it: accepted.
#include <kflex/helpers.h>

struct event {
	__u32 len;
	__u32 mark;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} events SEC(".maps");

SEC("tc")
int ringbuf_event(struct __sk_buff *skb)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e)
		return 0;
	e->len = skb->len;
	e->mark = skb->mark;
	bpf_ringbuf_submit(e, 0);
	return 0;
}

KFLEX_LICENSE("GPL");
