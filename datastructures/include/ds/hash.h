/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Hash map with chained buckets: a power-of-two array of bucket heads (sized for 100,000 keys at
 * a load factor below 1) and heap nodes from kflex_malloc, newest first in each chain.
 */
#ifndef DS_HASH_H
#define DS_HASH_H

#include "common.h"

#define DS_HASH_BUCKETS (1u << 17) /* 131072 */
#define DS_HASH_SEED 0x6b666c6578ULL

struct hash_node {
	struct hash_node __arena *next;
	struct ds_key key;
	struct ds_value value;
};

/* The map: lock, key count and bucket heads. Zero-filled is an empty map. */
struct ds_hash {
	struct kflex_lock lock;
	__u64 count;
	struct hash_node __arena *buckets[DS_HASH_BUCKETS];
};

/* The bucket head slot of a key. */
static __always_inline struct hash_node __arena *__arena *hash_slot(struct ds_hash __arena *h,
								    const struct ds_key *k)
{
	return &h->buckets[ds_key_hash_local(k, DS_HASH_SEED) & (DS_HASH_BUCKETS - 1)];
}

/* Update: 2 when the key existed (value replaced), 1 when inserted, -ENOMEM, or -EBUSY when the
 * loop budget ran out (Linux) before the chain walk ended. */
static __always_inline __s64 hash_update(struct ds_hash __arena *h, struct ds_op __arena *op,
					 struct kflex_alloc_cpu __arena *c)
{
	struct hash_node __arena *__arena *slot;
	struct hash_node __arena *head;
	struct hash_node __arena *n;
	struct ds_key k;

	ds_key_load(&k, op->key_w);
	slot = hash_slot(h, &k);
	head = *slot;
	for (n = head; n; n = n->next) {
		if (ds_key_eq_local(n->key.w, &k)) {
			ds_value_copy(n->value.w, op->value_w);
			return DS_REPLACED;
		}
		kflex_cond_break;
	}
	if (n)
		return -DS_EBUSY;
	n = kflex_malloc_on(c, sizeof(*n));
	if (!n)
		return -DS_ENOMEM;
	ds_key_store(n->key.w, &k);
	ds_value_copy(n->value.w, op->value_w);
	n->next = head;
	*slot = n;
	kflex_commit_on(c);
	h->count += 1;
	return DS_INSERTED;
}

/* Lookup: 1 and the value copied into the op, or 0. */
static __always_inline __s64 hash_lookup(struct ds_hash __arena *h, struct ds_op __arena *op,
					 struct kflex_alloc_cpu __arena *c)
{
	struct hash_node __arena *n;
	struct ds_key k;

	ds_key_load(&k, op->key_w);
	for (n = *hash_slot(h, &k); n; n = n->next) {
		if (ds_key_eq_local(n->key.w, &k)) {
			ds_value_copy(op->value_w, n->value.w);
			return DS_FOUND;
		}
		kflex_cond_break;
	}
	return n ? -DS_EBUSY : DS_ABSENT;
}

/* Delete: 1 when removed, 0 when absent. */
static __always_inline __s64 hash_delete(struct ds_hash __arena *h, struct ds_op __arena *op,
					 struct kflex_alloc_cpu __arena *c)
{
	struct hash_node __arena *__arena *slot;
	struct hash_node __arena *prev = NULL;
	struct hash_node __arena *n;
	struct ds_key k;

	ds_key_load(&k, op->key_w);
	slot = hash_slot(h, &k);
	for (n = *slot; n; prev = n, n = n->next) {
		if (ds_key_eq_local(n->key.w, &k)) {
			if (prev)
				prev->next = n->next;
			else
				*slot = n->next;
			kflex_free_on(c, n);
			h->count -= 1;
			return DS_REMOVED;
		}
		kflex_cond_break;
	}
	return n ? -DS_EBUSY : DS_ABSENT;
}

#endif /* DS_HASH_H */
