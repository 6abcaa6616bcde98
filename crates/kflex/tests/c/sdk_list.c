// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * sdk_list: a heap-resident list built with the SDK allocator under the heap lock, for
 * crates/kflex/tests/sdk_cancel.rs (cancellation in the middle of updates).
 *
 * Programs (context struct sdk_args):
 *   sdk_init  reports the allocator state's and the globals' heap addresses.
 *   sdk_add   takes the lock and adds n items with keys first_key.. : each item is allocated,
 *             its payload filled by a data-dependent loop (a termination point between malloc
 *             and link), linked at the head, and committed; returns the items added.
 *             With hold != 0 it then allocates `hold` more items, fills them but never links
 *             them, and spins on the heap flag `spin` without a may_goto (only the watchdog
 *             ends that loop; built with -DSDK_LIST_PORTABLE, as for Linux, the spin has one)
 *             before freeing them.
 *   sdk_pop   takes the lock and frees up to n items from the head; returns the items freed
 *             (with the *_on variants of the SDK calls).
 */
#include <kflex/kflex.h>

KFLEX_HEAP(1024);
KFLEX_ALLOCATOR();

#define PAYLOAD_WORDS 5

struct item {
	__u64 key;
	__u64 payload[PAYLOAD_WORDS];
	struct item __arena *next;
};

struct list_globals {
	struct kflex_lock lock;
	struct item __arena *head;
	__u64 len;     /* items linked */
	__u64 key_sum; /* sum of the linked items' keys */
	__u64 spin;    /* sdk_add's hold loop runs while this is non-zero */
	__u64 spun;    /* set by sdk_add when it reaches the hold loop */
};

struct list_globals __arena lg;

struct sdk_args {
	__u64 n;
	__u64 first_key;
	__u64 hold;
	__u64 state;   /* out (sdk_init) */
	__u64 globals; /* out (sdk_init) */
	__u64 globals_size;
};

/* Payload word j of the item with key k (the host checks the pattern). */
#define PATTERN(k, j) ((k) * 0x9e3779b97f4a7c15ULL + (j))

SEC("syscall")
int sdk_init(struct sdk_args *a)
{
	a->state = kflex_addr(&kflex_alloc_state);
	a->globals = kflex_addr(&lg);
	a->globals_size = sizeof(lg);
	return 0;
}

/* Fills the payload: key % 3 + 2 words (a loop the compiler cannot unroll away). */
static __always_inline void fill(struct item __arena *it, __u64 key)
{
	__u64 j, words = key % 3 + 2;

	for (j = 0; j < words && j < PAYLOAD_WORDS; j++) {
		kflex_cond_break; /* Linux cannot bound this loop by itself */
		it->payload[j] = PATTERN(key, j);
	}
}

SEC("syscall")
int sdk_add(struct sdk_args *a)
{
	struct item __arena *pending = NULL, *it;
	__u64 i, n = a->n, added = 0;

	if (kflex_lock(&lg.lock))
		return -1;
	for (i = 0; i < n; i++) {
		__u64 key = a->first_key + i;

		kflex_cond_break;
		it = kflex_malloc(sizeof(*it));
		if (!it)
			break;
		it->key = key;
		fill(it, key);
		it->next = lg.head;
		lg.head = it;
		lg.len += 1;
		lg.key_sum += key;
		kflex_commit();
		added++;
	}
	for (i = 0; i < a->hold && i < 8; i++) {
		it = kflex_malloc(sizeof(*it));
		if (!it)
			break;
		it->key = ~0ULL;
		it->next = pending;
		pending = it;
	}
	if (pending)
		lg.spun = 1;
	while (pending && KFLEX_READ_ONCE(lg.spin)) {
#ifdef SDK_LIST_PORTABLE
		kflex_cond_break; /* the Linux build: leave the spin when the loop budget is spent */
#endif
		barrier();
	}
	while (pending) {
		kflex_cond_break;
		it = pending;
		pending = it->next;
		kflex_free(it);
	}
	kflex_commit();
	kflex_unlock(&lg.lock);
	return added;
}

/* Uses the *_on variants: one CPU-state lookup for the whole invocation. */
SEC("syscall")
int sdk_pop(struct sdk_args *a)
{
	struct kflex_alloc_cpu __arena *c = kflex_this_cpu();
	struct item __arena *it;
	__u64 i, freed = 0;

	if (kflex_lock_on(c, &lg.lock))
		return -1;
	for (i = 0; i < a->n; i++) {
		kflex_cond_break;
		it = lg.head;
		if (!it)
			break;
		lg.head = it->next;
		lg.len -= 1;
		lg.key_sum -= it->key;
		kflex_free_on(c, it);
		freed++;
	}
	kflex_unlock_on(c, &lg.lock);
	return freed;
}

char _license[] SEC("license") = "GPL";
