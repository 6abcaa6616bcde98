/* Several programs in one section and in several sections, static and global subprograms
 * (nested, shared between programs, mutually recursive), and a bpf_loop callback. */
#include <kflex/helpers.h>

static __noinline int leaf(int x)
{
	return x * 3 + 1;
}

static __noinline int mid(int x)
{
	return leaf(x) + leaf(x + 1);
}

__noinline int shared_global(int x)
{
	return mid(x) ^ 5;
}

static __noinline int only_b(int x)
{
	return x - 7;
}

__noinline int pong(int n);

__noinline int ping(int n)
{
	if (n <= 0)
		return 0;
	return pong(n - 1) + 1;
}

__noinline int pong(int n)
{
	if (n <= 0)
		return 1;
	return ping(n - 1) * 2;
}

static int loop_cb(__u32 i, void *ctx)
{
	*(__u64 *)ctx += i;
	return 0;
}

SEC("xdp")
int prog_a(struct xdp_md *ctx)
{
	return shared_global(ctx->ingress_ifindex);
}

SEC("xdp")
int prog_b(struct xdp_md *ctx)
{
	return shared_global(ctx->rx_queue_index) + only_b(ctx->ingress_ifindex);
}

SEC("tc")
int prog_tc(struct __sk_buff *skb)
{
	__u64 sum = 0;

	bpf_loop(skb->len, loop_cb, &sum, 0);
	return sum;
}

SEC("socket")
int prog_sock(struct __sk_buff *skb)
{
	return leaf(skb->len);
}

SEC("syscall")
int prog_sys(void *ctx)
{
	return ping(*(int *)ctx);
}

SEC("sk_skb/stream_verdict")
int prog_verdict(struct __sk_buff *skb)
{
	return SK_PASS;
}

SEC("fentry.s/do_nothing")
int prog_sleepy(void *ctx)
{
	return 0;
}

KFLEX_LICENSE("Dual MIT/GPL");
