// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * hash: the chained hash map (ds/hash.h) as a kflex data-structure object: programs init,
 * update, lookup and delete over the mailbox protocol of ds/common.h.
 */
#include <ds/hash.h>

KFLEX_HEAP(16384); /* 64 MiB */
KFLEX_ALLOCATOR() = {}; /* initialised, so it is laid out first: near the heap start */

/* The structure (its header before its bucket array) first, so that the header lies within the
 * guard zone of the heap start and accesses to it need no guard. */
struct hash_globals {
	struct ds_hash map;
	struct ds_op ops[DS_BATCH_MAX];
};

struct hash_globals __arena ds_globals;

DS_INIT_PROG(ds_globals, ds_globals.ops)
DS_BATCH_PROG_ON(update, hash_update, &ds_globals.map, ds_globals.ops)
DS_BATCH_PROG_ON(lookup, hash_lookup, &ds_globals.map, ds_globals.ops)
DS_BATCH_PROG_ON(delete, hash_delete, &ds_globals.map, ds_globals.ops)

KFLEX_LICENSE("Dual MIT/GPL");
