/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * kflex data structures: a skip list in the extension heap.
 *
 * Keys are ordered byte-lexicographically (four big-endian 64-bit words), like the red-black tree.
 * A node's level is drawn from a xorshift64* generator kept in the list (fixed seed, so kflex, Linux
 * and the native build build identical lists from the same op stream): each extra level with
 * probability 1/4, at most SL_MAX_LEVEL levels (4^16 keys before the top level saturates, far above
 * the 100,000 keys of the benchmark; expected search cost about 4 * log4(n) key comparisons).
 *
 * A node is allocated with exactly as many `next` pointers as its level (112 to 224 bytes, so it
 * comes from the 128- or 256-byte size class). Robustness under the loop budget and cancellation:
 * a search cut short fails the op with -EBUSY before anything is modified; insert links level 0
 * first and commits the node at once, so an insert interrupted while linking the upper levels
 * leaves a valid list (upper levels are only shortcuts, and delete unlinks a node only where it is
 * actually linked); delete unlinks top-down and frees the node last.
 */
#ifndef DS_SKIPLIST_H
#define DS_SKIPLIST_H

#include <ds/common.h>

#define SL_MAX_LEVEL 16
#define SL_SEED 0x2545f4914f6cdd1dULL

struct sl_node {
	__u64 key[DS_KEY_WORDS];
	__u64 value[DS_VALUE_WORDS];
	__u64 level;
	struct sl_node __arena *next[];
};

/* The list head has the layout of a node of full height (its key and value are unused). */
struct sl_head {
	__u64 key[DS_KEY_WORDS];
	__u64 value[DS_VALUE_WORDS];
	__u64 level;
	struct sl_node __arena *next[SL_MAX_LEVEL];
};

/* The list. All zero is an empty list (the generator then starts from SL_SEED). */
struct sl_list {
	struct kflex_lock lock;
	__u64 rng;    /* xorshift64* state (0: not started) */
	__u64 levels; /* levels in use: 0 ..= SL_MAX_LEVEL */
	__u64 size;
	/* Scratch for the op in progress (the list lock is held): the predecessor on each level. In
	 * the heap rather than on the stack so that it is indexed by a masked level, which every
	 * verifier bounds, and costs no stack. */
	struct sl_node __arena *prev[SL_MAX_LEVEL];
	struct sl_head head;
};

/* A level as an index both verifiers can bound (SL_MAX_LEVEL is a power of two). */
#define SL_IDX(lv) ((lv) & (SL_MAX_LEVEL - 1))
_Static_assert((SL_MAX_LEVEL & (SL_MAX_LEVEL - 1)) == 0, "SL_MAX_LEVEL is a power of two");

/* A level count read from the heap (0 ..= SL_MAX_LEVEL when the list is intact), bounded by a
 * mask rather than clamped: a clamp gives the Linux verifier a constant on one path, and a
 * constant level count makes it walk every level of the search separately (over its one-million
 * instruction limit). */
#define SL_LEVELS(n) ((n) & (2 * SL_MAX_LEVEL - 1))

_Static_assert(sizeof(struct sl_node) == 104, "struct sl_node header is 104 bytes");

/* A search key in comparison form (big-endian words in host order). */
struct sl_key {
	__u64 w[DS_KEY_WORDS];
};

static __always_inline void sl_key_load(struct sl_key *k, const __u64 __arena *src)
{
	k->w[0] = __builtin_bswap64(src[0]);
	k->w[1] = __builtin_bswap64(src[1]);
	k->w[2] = __builtin_bswap64(src[2]);
	k->w[3] = __builtin_bswap64(src[3]);
}

/* Orders a node's key against the search key: -1, 0 or 1. */
static __always_inline int sl_node_cmp(const struct sl_node __arena *n, const struct sl_key *k)
{
	__u64 w;

	w = __builtin_bswap64(n->key[0]);
	if (w != k->w[0])
		return w < k->w[0] ? -1 : 1;
	w = __builtin_bswap64(n->key[1]);
	if (w != k->w[1])
		return w < k->w[1] ? -1 : 1;
	w = __builtin_bswap64(n->key[2]);
	if (w != k->w[2])
		return w < k->w[2] ? -1 : 1;
	w = __builtin_bswap64(n->key[3]);
	if (w != k->w[3])
		return w < k->w[3] ? -1 : 1;
	return 0;
}

static __always_inline struct sl_node __arena *sl_head_node(struct sl_list __arena *l)
{
	return (struct sl_node __arena *)&l->head;
}

/* Draws a level: 1 plus one for every pair of zero bits at the bottom of a xorshift64* draw. */
static __always_inline __u64 sl_random_level(struct sl_list __arena *l)
{
	__u64 x = l->rng ? l->rng : SL_SEED;
	__u64 r, level = 1;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	l->rng = x;
	r = x * 0x2545f4914f6cdd1dULL;
	r >>= 32;
	for (int i = 1; i < SL_MAX_LEVEL; i++) {
		if (r & 3)
			break;
		level++;
		r >>= 2;
	}
	return level;
}

/*
 * Finds, on every level in use, the last node whose key is below `k` (the head when none) and
 * records it in l->prev: the predecessors an insert or delete relinks. Returns the level-0
 * successor (the node holding `k` when the key is present); *ok is false when the loop budget cut
 * the search short.
 */
static __always_inline struct sl_node __arena *sl_search(struct sl_list __arena *l,
							 const struct sl_key *k, bool *ok)
{
	struct sl_node __arena *x = sl_head_node(l);
	struct sl_node __arena *nx = NULL;
	__u64 lv = SL_LEVELS(l->levels);
	bool done = false;

	for (;;) {
		bool level_done = false;

		if (lv == 0) {
			done = true;
			break;
		}
		lv--;
		for (;;) {
			nx = x->next[SL_IDX(lv)];
			if (!nx || sl_node_cmp(nx, k) >= 0) {
				level_done = true;
				break;
			}
			x = nx;
			kflex_cond_break;
		}
		if (!level_done)
			break;
		l->prev[SL_IDX(lv)] = x;
		kflex_cond_break;
	}
	*ok = done;
	return nx;
}

/* Lookup: DS_FOUND (value copied into the op), DS_ABSENT or -DS_EBUSY. No predecessors kept. */
static __always_inline int sl_lookup(struct sl_list __arena *l, struct ds_op __arena *op)
{
	struct sl_node __arena *x = sl_head_node(l);
	struct sl_node __arena *nx = NULL;
	struct sl_key k;
	__u64 lv = SL_LEVELS(l->levels);
	bool done = false;
	int c = 1;

	sl_key_load(&k, op->key_w);
	for (;;) {
		bool level_done = false;

		if (lv == 0) {
			done = true;
			break;
		}
		lv--;
		/* Walk right on this level while the next key is below the search key. */
		for (;;) {
			nx = x->next[SL_IDX(lv)];
			c = nx ? sl_node_cmp(nx, &k) : 1;
			if (c >= 0) {
				level_done = true;
				break;
			}
			x = nx;
			kflex_cond_break;
		}
		/* A level walk cut short by the loop budget proves nothing about the key. */
		if (!level_done)
			break;
		if (c == 0) {
			done = true;
			break;
		}
		kflex_cond_break;
	}
	if (!done)
		return -DS_EBUSY;
	if (c != 0)
		return DS_ABSENT;
	ds_value_copy(op->value_w, nx->value);
	return DS_FOUND;
}

/* Insert or replace: DS_INSERTED, DS_REPLACED, -DS_ENOMEM or -DS_EBUSY. `ac` is the calling CPU's
 * allocator state. */
static __always_inline int sl_update(struct sl_list __arena *l, struct ds_op __arena *op,
				     struct kflex_alloc_cpu __arena *ac)
{
	struct sl_node __arena *n;
	struct sl_key k;
	__u64 level, levels;
	bool ok;

	sl_key_load(&k, op->key_w);
	n = sl_search(l, &k, &ok);
	if (!ok)
		return -DS_EBUSY;
	if (n && sl_node_cmp(n, &k) == 0) {
		ds_value_copy(n->value, op->value_w);
		return DS_REPLACED;
	}

	level = sl_random_level(l);
	n = kflex_malloc_on(ac, sizeof(struct sl_node) + level * sizeof(n));
	if (!n)
		return -DS_ENOMEM;
	levels = SL_LEVELS(l->levels);
	for (__u64 i = levels; i < level; i++)
		l->prev[SL_IDX(i)] = sl_head_node(l);
	if (level > levels)
		l->levels = level;
	ds_key_copy(n->key, op->key_w);
	ds_value_copy(n->value, op->value_w);
	n->level = level;
	for (__u64 i = 0; i < level; i++)
		n->next[SL_IDX(i)] = l->prev[SL_IDX(i)]->next[SL_IDX(i)];

	/* Level 0 makes the node part of the list: commit it before the shortcuts. */
	l->prev[0]->next[0] = n;
	l->size++;
	kflex_commit_on(ac);
	for (__u64 i = 1; i < level; i++) {
		l->prev[SL_IDX(i)]->next[SL_IDX(i)] = n;
		kflex_cond_break;
	}
	return DS_INSERTED;
}

/* Delete: DS_REMOVED, DS_ABSENT or -DS_EBUSY. `ac` is the calling CPU's allocator state. */
static __always_inline int sl_delete(struct sl_list __arena *l, struct ds_op __arena *op,
				     struct kflex_alloc_cpu __arena *ac)
{
	struct sl_node __arena *n;
	struct sl_key k;
	__u64 level, levels;
	bool ok;

	sl_key_load(&k, op->key_w);
	n = sl_search(l, &k, &ok);
	if (!ok)
		return -DS_EBUSY;
	if (!n || sl_node_cmp(n, &k) != 0)
		return DS_ABSENT;

	/* Unlink top-down, only where the node is linked, so level 0 goes last. */
	level = SL_LEVELS(n->level);
	levels = SL_LEVELS(l->levels);
	if (level > levels)
		level = levels;
	for (__u64 i = level; i > 0; i--) {
		struct sl_node __arena *p = l->prev[SL_IDX(i - 1)];

		if (p->next[SL_IDX(i - 1)] == n)
			p->next[SL_IDX(i - 1)] = n->next[SL_IDX(i - 1)];
	}
	l->size--;
	kflex_free_on(ac, n);

	/* Drop empty top levels. */
	for (int i = 0; i < SL_MAX_LEVEL; i++) {
		if (levels <= 1 || l->head.next[SL_IDX(levels - 1)])
			break;
		levels--;
	}
	l->levels = levels;
	return DS_REMOVED;
}

#endif /* DS_SKIPLIST_H */
