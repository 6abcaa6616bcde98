/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Linked list: keys kept in a singly linked list of heap nodes, newest first. Update replaces the
 * value of an existing key in place or inserts a new node at the head; lookup and delete walk the
 * list. O(n) per op: the benchmark's baseline structure.
 */
#ifndef DS_LIST_H
#define DS_LIST_H

#include "common.h"

struct list_node {
	struct list_node __arena *next;
	struct ds_key key;
	struct ds_value value;
};

/* The list: its lock and first node. Zero-filled is an empty list. */
struct ds_list {
	struct kflex_lock lock;
	struct list_node __arena *head;
};

/* Update: 2 when the key existed (value replaced), 1 when inserted, -ENOMEM, or -EBUSY when the
 * loop budget ran out (Linux) before the walk ended. */
static __always_inline __s64 list_update(struct ds_list __arena *l, struct ds_op __arena *op,
					 struct kflex_alloc_cpu __arena *c)
{
	struct list_node __arena *n;
	struct ds_key k;

	ds_key_load(&k, op->key_w);
	for (n = l->head; n; n = n->next) {
		if (ds_key_eq_local(n->key.w, &k)) {
			ds_value_copy(n->value.w, op->value_w);
			return DS_REPLACED;
		}
		kflex_cond_break;
	}
	if (n) /* left through kflex_cond_break */
		return -DS_EBUSY;
	n = kflex_malloc_on(c, sizeof(*n));
	if (!n)
		return -DS_ENOMEM;
	ds_key_store(n->key.w, &k);
	ds_value_copy(n->value.w, op->value_w);
	n->next = l->head;
	l->head = n;
	kflex_commit_on(c);
	return DS_INSERTED;
}

/* Lookup: 1 and the value copied into the op, or 0. */
static __always_inline __s64 list_lookup(struct ds_list __arena *l, struct ds_op __arena *op,
					 struct kflex_alloc_cpu __arena *c)
{
	struct list_node __arena *n;
	struct ds_key k;

	ds_key_load(&k, op->key_w);
	for (n = l->head; n; n = n->next) {
		if (ds_key_eq_local(n->key.w, &k)) {
			ds_value_copy(op->value_w, n->value.w);
			return DS_FOUND;
		}
		kflex_cond_break;
	}
	return n ? -DS_EBUSY : DS_ABSENT;
}

/* Delete: 1 when removed, 0 when absent. */
static __always_inline __s64 list_delete(struct ds_list __arena *l, struct ds_op __arena *op,
					 struct kflex_alloc_cpu __arena *c)
{
	struct list_node __arena *prev = NULL;
	struct list_node __arena *n;
	struct ds_key k;

	ds_key_load(&k, op->key_w);
	for (n = l->head; n; prev = n, n = n->next) {
		if (ds_key_eq_local(n->key.w, &k)) {
			if (prev)
				prev->next = n->next;
			else
				l->head = n->next;
			kflex_free_on(c, n);
			return DS_REMOVED;
		}
		kflex_cond_break;
	}
	return n ? -DS_EBUSY : DS_ABSENT;
}

#endif /* DS_LIST_H */
