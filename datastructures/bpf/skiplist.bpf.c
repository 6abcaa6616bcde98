// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * skiplist: the skip list (ds/skiplist.h) as a kflex data-structure object: programs init,
 * update, lookup and delete over the mailbox protocol of ds/common.h, each op under the list's
 * heap lock.
 */
#include <ds/skiplist.h>

KFLEX_HEAP(16384); /* 64 MiB: 100,000 nodes of 128 or 256 bytes and the globals */
/* Initialised, so it is laid out first: the structure (and its lock) then lies above it, inside
 * the heap range in which the host allocator releases locks after a cancellation. */
KFLEX_ALLOCATOR() = {};

/* The heap globals: the list first (its fields at small constant offsets from the heap start),
 * the mailbox after it. The host's list check finds `list.levels` and `list.head.next` from the
 * mailbox (offsets below, mirrored in `kflex_datastructures::model_trees::sl_layout`). */
struct sl_globals {
	struct sl_list list;
	struct ds_op ops[DS_BATCH_MAX];
};

_Static_assert(__builtin_offsetof(struct sl_globals, list.levels) == 16, "levels at 16");
_Static_assert(__builtin_offsetof(struct sl_globals, list.head.next) == 264, "head.next at 264");
_Static_assert(__builtin_offsetof(struct sl_globals, ops) == 392, "ops at 392");

struct sl_globals __arena ds_globals;

DS_INIT_PROG(ds_globals, ds_globals.ops)
DS_BATCH_PROG_ON(update, sl_update, &ds_globals.list, ds_globals.ops)
DS_BATCH_PROG(lookup, sl_lookup, &ds_globals.list, ds_globals.ops)
DS_BATCH_PROG_ON(delete, sl_delete, &ds_globals.list, ds_globals.ops)

KFLEX_LICENSE("Dual MIT/GPL");
