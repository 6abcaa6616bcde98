/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * A small data-structure object over the ds protocol (datastructures/include/ds/common.h), used by
 * the tests of kflex's LinuxDriver (crates/kflex/src/datastructures/linux.rs): a chained hash
 * table of 64 buckets whose nodes come from the SDK allocator (kflex_malloc/kflex_free, refilled
 * by the host through the arena mapping), each op under the table's heap lock.
 *
 * Each op is one call of a global (noinline) function: Linux verifies a global function once,
 * on its own, so the batch loop stays small for its verifier (the whole body inlined into the
 * loop exceeds the kernel's one-million-instruction complexity limit).
 */
#include <ds/common.h>

KFLEX_HEAP(8192); /* 32 MiB: the allocator's first refill stocks every CPU (about 2.3 MiB each) */
KFLEX_ALLOCATOR();

#define NBUCKETS 64

struct node {
	struct node __arena *next;
	struct ds_key key;
	struct ds_value value;
};

struct table_globals {
	struct ds_op ops[DS_BATCH_MAX];
	struct kflex_lock lock;
	struct node __arena *buckets[NBUCKETS];
};

struct table_globals __arena ds_globals;

static __always_inline __u32 bucket_of(struct ds_op __arena *op)
{
	return ds_key_hash(op->key_w, 0) & (NBUCKETS - 1);
}

static __always_inline __s64 table_update(struct ds_op __arena *op)
{
	__u32 b = bucket_of(op);
	struct node __arena *n = ds_globals.buckets[b];

	while (n) {
		if (ds_key_eq(n->key.w, op->key_w)) {
			ds_value_copy(n->value.w, op->value_w);
			return DS_REPLACED;
		}
		n = n->next;
		kflex_cond_break;
	}
	n = kflex_malloc(sizeof(struct node));
	if (!n)
		return -DS_ENOMEM;
	ds_key_copy(n->key.w, op->key_w);
	ds_value_copy(n->value.w, op->value_w);
	n->next = ds_globals.buckets[b];
	ds_globals.buckets[b] = n;
	kflex_commit();
	return DS_INSERTED;
}

static __always_inline __s64 table_lookup(struct ds_op __arena *op)
{
	struct node __arena *n = ds_globals.buckets[bucket_of(op)];

	while (n) {
		if (ds_key_eq(n->key.w, op->key_w)) {
			ds_value_copy(op->value_w, n->value.w);
			return DS_FOUND;
		}
		n = n->next;
		kflex_cond_break;
	}
	return DS_ABSENT;
}

static __always_inline __s64 table_delete(struct ds_op __arena *op)
{
	__u32 b = bucket_of(op);
	struct node __arena *n = ds_globals.buckets[b];
	struct node __arena *prev = NULL;

	while (n) {
		if (ds_key_eq(n->key.w, op->key_w)) {
			if (prev)
				prev->next = n->next;
			else
				ds_globals.buckets[b] = n->next;
			kflex_free(n);
			return DS_REMOVED;
		}
		prev = n;
		n = n->next;
		kflex_cond_break;
	}
	return DS_ABSENT;
}

/* One op `i` of the mailbox under the lock; returns whether its result is > 0. */
#define TABLE_OP(kind)                                                                             \
	__attribute__((noinline)) int kind##_one(__u32 i)                                          \
	{                                                                                          \
		struct ds_op __arena *op = &ds_globals.ops[i & (DS_BATCH_MAX - 1)];                \
		__s64 r;                                                                           \
                                                                                                   \
		if (kflex_lock(&ds_globals.lock)) {                                                \
			r = -DS_EBUSY;                                                             \
		} else {                                                                           \
			r = table_##kind(op);                                                      \
			kflex_unlock(&ds_globals.lock);                                            \
		}                                                                                  \
		op->result = r;                                                                    \
		return r > 0;                                                                      \
	}                                                                                          \
                                                                                                   \
	DS_PROG(kind)                                                                              \
	{                                                                                          \
		__u32 n = ds_batch_count(ctx), i;                                                  \
		int hits = 0;                                                                      \
                                                                                                   \
		for (i = 0; i < n; i++) {                                                          \
			hits += kind##_one(i);                                                     \
			kflex_cond_break;                                                          \
		}                                                                                  \
		ctx->ret = hits;                                                                   \
		return hits;                                                                       \
	}

DS_INIT_PROG(ds_globals, ds_globals.ops)
TABLE_OP(update)
TABLE_OP(lookup)
TABLE_OP(delete)

KFLEX_LICENSE("GPL");
