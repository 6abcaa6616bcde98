// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * Uses every macro and function of <kflex/kflex.h> once, so that tests/headers.rs can check
 * that the SDK compiles warning-free for BPF (clang-19 -target bpf) and natively (gcc).
 */
#include <kflex/kflex.h>

KFLEX_HEAP(16);
KFLEX_ALLOCATOR();

struct pair {
	__u64 a, b;
	struct pair __arena *next;
};

struct globals {
	struct kflex_lock lock;
	struct pair __arena *head;
	__u64 counter;
	__u64 flag;
};

struct globals __arena sdk_all_g;

struct sdk_all_ctx {
	__u64 n;
	__u64 state;
	__s64 ret;
};

SEC("syscall")
int sdk_all(struct sdk_all_ctx *ctx)
{
	struct kflex_alloc_cpu __arena *c = kflex_this_cpu();
	struct globals __arena *g = kflex_cast_kern(&sdk_all_g);
	struct pair __arena *p, *q;
	__u64 i, old, sum = 0;
	int ret = 0;

	ctx->state = kflex_addr(kflex_cast_user(&kflex_alloc_state));
	if (kflex_lock(&g->lock))
		return -1;
	for (i = 0; i < ctx->n && kflex_can_loop; i++) {
		p = kflex_malloc(sizeof(*p));
		if (!p)
			break;
		p->a = i;
		p->b = bpf_htons((__u16)i);
		p->next = g->head;
		g->head = p;
		kflex_commit();
	}
	kflex_unlock(&g->lock);
	if (kflex_lock_on(c, &g->lock))
		return -1;
	for (p = g->head; p; p = q) {
		kflex_cond_break;
		q = p->next;
		sum += p->a;
		kflex_free_on(c, p);
	}
	g->head = NULL;
	q = kflex_malloc_on(c, KFLEX_MAX_ALLOC);
	kflex_free(q);
	kflex_commit_on(c);
	kflex_unlock_on(c, &g->lock);
	old = kflex_fetch_add(&g->counter, sum);
	old = kflex_xchg(&g->flag, old);
	if (kflex_cmpxchg(&g->flag, old, 0) == old)
		ret = 1;
	KFLEX_WRITE_ONCE(g->flag, KFLEX_READ_ONCE(g->counter));
	if (kflex_heap_ptr(struct pair, kflex_heap_addr(g->head)) != NULL)
		ret = 2;
	ctx->ret = ret;
	return (int)sum;
}

KFLEX_LICENSE("GPL");
