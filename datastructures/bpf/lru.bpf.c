// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * lru: the LRU cache (ds/lru.h, DS_LRU_CAPACITY entries) as a kflex data-structure object:
 * programs init, update, lookup and delete over the mailbox protocol of ds/common.h.
 */
#include <ds/lru.h>

KFLEX_HEAP(16384); /* 64 MiB */
KFLEX_ALLOCATOR() = {}; /* initialised, so it is laid out first: near the heap start */

/* The structure (its header before its bucket array) first, so that the header lies within the
 * guard zone of the heap start and accesses to it need no guard. */
struct lru_globals {
	struct ds_lru cache;
	struct ds_op ops[DS_BATCH_MAX];
};

struct lru_globals __arena ds_globals;

DS_INIT_PROG(ds_globals, ds_globals.ops)
DS_BATCH_PROG_ON(update, lru_update, &ds_globals.cache, ds_globals.ops)
DS_BATCH_PROG_ON(lookup, lru_lookup, &ds_globals.cache, ds_globals.ops)
DS_BATCH_PROG_ON(delete, lru_delete, &ds_globals.cache, ds_globals.ops)

KFLEX_LICENSE("Dual MIT/GPL");
