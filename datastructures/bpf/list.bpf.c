// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * list: the linked list (ds/list.h) as a kflex data-structure object: programs init, update,
 * lookup and delete over the mailbox protocol of ds/common.h.
 */
#include <ds/list.h>

KFLEX_HEAP(16384); /* 64 MiB */
KFLEX_ALLOCATOR() = {}; /* initialised, so it is laid out first: near the heap start */

/* The list header first, so that it lies within the guard zone of the heap start. */
struct list_globals {
	struct ds_list list;
	struct ds_op ops[DS_BATCH_MAX];
};

struct list_globals __arena ds_globals;

DS_INIT_PROG(ds_globals, ds_globals.ops)
DS_BATCH_PROG_ON(update, list_update, &ds_globals.list, ds_globals.ops)
DS_BATCH_PROG_ON(lookup, list_lookup, &ds_globals.list, ds_globals.ops)
DS_BATCH_PROG_ON(delete, list_delete, &ds_globals.list, ds_globals.ops)

KFLEX_LICENSE("Dual MIT/GPL");
