// Probes for runs that reuse a prepared packet and context (Invoker::run on packet types): each
// program reports in the packet what it found there that a fresh run would not have (headroom
// bytes, metadata, context fields an earlier run set), then dirties all of it for the next run.
// `xdp_probe` spins until cancelled when the packet's first byte is 0xee.
#include <kflex/helpers.h>

#define HEAD 32
#define META 8

SEC("xdp")
int xdp_probe(struct xdp_md *ctx)
{
	__u8 *p = (void *)(long)ctx->data;
	__u8 *end = (void *)(long)ctx->data_end;
	volatile __u64 spins = 0;
	__u64 headroom, meta;
	__u8 first;

	if (p + 1 > end)
		return XDP_ABORTED;
	while (p[0] == 0xee)
		spins++;
	if (bpf_xdp_adjust_head(ctx, -HEAD))
		return XDP_ABORTED;
	p = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	if (p + HEAD + 2 > end)
		return XDP_ABORTED;
	/* What the headroom held: zero in a fresh run. */
	__u64 *h = (void *)p;
	headroom = h[0] | h[1] | h[2] | h[3];
	h[0] = h[1] = h[2] = h[3] = 0xabababababababab;
	first = p[HEAD];
	p[HEAD] = 0x77;
	p[HEAD + 1] = headroom != 0;
	if (bpf_xdp_adjust_meta(ctx, -META))
		return XDP_ABORTED;
	__u8 *m = (void *)(long)ctx->data_meta;
	p = (void *)(long)ctx->data;
	if (m + META > p)
		return XDP_ABORTED;
	meta = *(__u64 *)m;
	*(__u64 *)m = 0xcdcdcdcdcdcdcdcd;
	m[0] = meta != 0;
	return first == 0x02 ? XDP_PASS : XDP_DROP;
}

SEC("tc")
int tc_probe(struct __sk_buff *skb)
{
	__u8 *p = (void *)(long)skb->data;
	__u8 *end = (void *)(long)skb->data_end;
	__u8 marks[4];

	if (p + 14 > end)
		return 2;
	/* Context fields an earlier run set: zero (priority, mark, cb) in a fresh run. */
	marks[0] = skb->mark;
	marks[1] = skb->priority;
	marks[2] = skb->cb[0];
	marks[3] = skb->cb[4];
	skb->mark = 0x55;
	skb->priority = 7;
	skb->cb[0] = 0x99;
	skb->cb[4] = 0x42;
	p[0] = 0x11;
	if (bpf_skb_store_bytes(skb, 6, marks, sizeof(marks), 0))
		return 3;
	return 0;
}

KFLEX_LICENSE("GPL");
