/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * LRU cache: a chained hash index over heap nodes that are also on a doubly linked recency list
 * (head = most recently used, tail = least). At most DS_LRU_CAPACITY entries: inserting a new key
 * into a full cache evicts the tail and reuses its node. An update (insert or replace) and a
 * found lookup make the key the most recently used.
 */
#ifndef DS_LRU_H
#define DS_LRU_H

#include "common.h"

#define DS_LRU_CAPACITY 65536
#define DS_LRU_BUCKETS (1u << 17) /* twice the capacity */
#define DS_LRU_SEED 0x6c7275ULL

struct lru_node {
	struct lru_node __arena *hnext; /* next in the hash chain */
	struct lru_node __arena *prev;  /* more recently used */
	struct lru_node __arena *next;  /* less recently used */
	struct ds_key key;
	struct ds_value value;
};

/* The cache: lock, entry count, recency list ends and bucket heads. Zero-filled is empty. */
struct ds_lru {
	struct kflex_lock lock;
	__u64 count;
	struct lru_node __arena *head;
	struct lru_node __arena *tail;
	struct lru_node __arena *buckets[DS_LRU_BUCKETS];
};

static __always_inline struct lru_node __arena *__arena *lru_slot(struct ds_lru __arena *l,
								 const struct ds_key *k)
{
	return &l->buckets[ds_key_hash_local(k, DS_LRU_SEED) & (DS_LRU_BUCKETS - 1)];
}

/* Takes `n` off the recency list. */
static __always_inline void lru_unlink(struct ds_lru __arena *l, struct lru_node __arena *n)
{
	struct lru_node __arena *prev = n->prev;
	struct lru_node __arena *next = n->next;

	if (prev)
		prev->next = next;
	else
		l->head = next;
	if (next)
		next->prev = prev;
	else
		l->tail = prev;
}

/* Puts `n` at the most recently used end. */
static __always_inline void lru_push_front(struct ds_lru __arena *l, struct lru_node __arena *n)
{
	struct lru_node __arena *head = l->head;

	n->prev = NULL;
	n->next = head;
	if (head)
		head->prev = n;
	else
		l->tail = n;
	l->head = n;
}

/* Makes `n` the most recently used. */
static __always_inline void lru_touch(struct ds_lru __arena *l, struct lru_node __arena *n)
{
	if (l->head != n) {
		lru_unlink(l, n);
		lru_push_front(l, n);
	}
}

/* Removes the least recently used entry from the index and the list and returns its node for
 * reuse; NULL when the loop budget ran out (Linux) before its chain was walked. */
static __always_inline struct lru_node __arena *lru_evict(struct ds_lru __arena *l)
{
	struct lru_node __arena *victim = l->tail;
	struct lru_node __arena *__arena *slot;
	struct lru_node __arena *prev = NULL;
	struct lru_node __arena *p;
	struct ds_key vk;

	ds_key_load(&vk, victim->key.w);
	slot = lru_slot(l, &vk);

	for (p = *slot; p && p != victim; prev = p, p = p->hnext)
		kflex_cond_break;
	if (p != victim)
		return NULL;
	if (prev)
		prev->hnext = victim->hnext;
	else
		*slot = victim->hnext;
	lru_unlink(l, victim);
	l->count -= 1;
	return victim;
}

/* Update: 2 when the key existed (value replaced), 1 when inserted (after evicting the least
 * recently used entry of a full cache), -ENOMEM, or -EBUSY (Linux loop budget spent). */
static __always_inline __s64 lru_update(struct ds_lru __arena *l, struct ds_op __arena *op,
					 struct kflex_alloc_cpu __arena *c)
{
	struct lru_node __arena *__arena *slot;
	struct lru_node __arena *n;
	struct ds_key k;

	ds_key_load(&k, op->key_w);
	slot = lru_slot(l, &k);
	for (n = *slot; n; n = n->hnext) {
		if (ds_key_eq_local(n->key.w, &k)) {
			ds_value_copy(n->value.w, op->value_w);
			lru_touch(l, n);
			return DS_REPLACED;
		}
		kflex_cond_break;
	}
	if (n)
		return -DS_EBUSY;
	if (l->count >= DS_LRU_CAPACITY && l->tail) {
		n = lru_evict(l);
		if (!n)
			return -DS_EBUSY;
	} else {
		n = kflex_malloc_on(c, sizeof(*n));
		if (!n)
			return -DS_ENOMEM;
	}
	ds_key_store(n->key.w, &k);
	ds_value_copy(n->value.w, op->value_w);
	n->hnext = *slot; /* re-read: the eviction may have changed this chain */
	*slot = n;
	lru_push_front(l, n);
	kflex_commit_on(c);
	l->count += 1;
	return DS_INSERTED;
}

/* Lookup: 1 and the value copied into the op (the entry becomes the most recent), or 0. */
static __always_inline __s64 lru_lookup(struct ds_lru __arena *l, struct ds_op __arena *op,
					 struct kflex_alloc_cpu __arena *c)
{
	struct lru_node __arena *n;
	struct ds_key k;

	ds_key_load(&k, op->key_w);
	for (n = *lru_slot(l, &k); n; n = n->hnext) {
		if (ds_key_eq_local(n->key.w, &k)) {
			ds_value_copy(op->value_w, n->value.w);
			lru_touch(l, n);
			return DS_FOUND;
		}
		kflex_cond_break;
	}
	return n ? -DS_EBUSY : DS_ABSENT;
}

/* Delete: 1 when removed, 0 when absent. */
static __always_inline __s64 lru_delete(struct ds_lru __arena *l, struct ds_op __arena *op,
					 struct kflex_alloc_cpu __arena *c)
{
	struct lru_node __arena *__arena *slot;
	struct lru_node __arena *prev = NULL;
	struct lru_node __arena *n;
	struct ds_key k;

	ds_key_load(&k, op->key_w);
	slot = lru_slot(l, &k);
	for (n = *slot; n; prev = n, n = n->hnext) {
		if (ds_key_eq_local(n->key.w, &k)) {
			if (prev)
				prev->hnext = n->hnext;
			else
				*slot = n->hnext;
			lru_unlink(l, n);
			kflex_free_on(c, n);
			l->count -= 1;
			return DS_REMOVED;
		}
		kflex_cond_break;
	}
	return n ? -DS_EBUSY : DS_ABSENT;
}

#endif /* DS_LRU_H */
