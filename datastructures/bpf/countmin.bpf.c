// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * countmin: the count-min sketch (ds/countmin.h) as a kflex data-structure object: programs init, update,
 * lookup and delete over the mailbox protocol of ds/common.h (sketch semantics: update counts a
 * key once, delete uncounts it, lookup estimates its count), each op under the sketch's heap lock.
 */
#include <ds/countmin.h>

KFLEX_HEAP(1024); /* 4 MiB: the counters (at most 1.25 MiB) and the mailbox; nothing is allocated */
/* Initialised, so it is laid out first: the structure (and its lock) then lies above it, inside
 * the heap range in which the host allocator releases locks after a cancellation. */
KFLEX_ALLOCATOR() = {};

/* The heap globals: the mailbox first, then the sketch. */
struct cm_globals {
	struct ds_op ops[DS_BATCH_MAX];
	struct cm_sketch sketch;
};

struct cm_globals __arena ds_globals;

DS_INIT_PROG(ds_globals, ds_globals.ops)
DS_BATCH_PROG(update, cm_update, &ds_globals.sketch, ds_globals.ops)
DS_BATCH_PROG(lookup, cm_lookup, &ds_globals.sketch, ds_globals.ops)
DS_BATCH_PROG(delete, cm_delete, &ds_globals.sketch, ds_globals.ops)

KFLEX_LICENSE("Dual MIT/GPL");
