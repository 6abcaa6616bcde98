// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * countsketch: the count sketch (ds/countsketch.h) as a kflex data-structure object: programs init, update,
 * lookup and delete over the mailbox protocol of ds/common.h (sketch semantics: update counts a
 * key once, delete uncounts it, lookup estimates its count), each op under the sketch's heap lock.
 */
#include <ds/countsketch.h>

KFLEX_HEAP(1024); /* 4 MiB: the counters (at most 1.25 MiB) and the mailbox; nothing is allocated */
/* Initialised, so it is laid out first: the structure (and its lock) then lies above it, inside
 * the heap range in which the host allocator releases locks after a cancellation. */
KFLEX_ALLOCATOR() = {};

/* The heap globals: the mailbox first, then the sketch. */
struct cs_globals {
	struct ds_op ops[DS_BATCH_MAX];
	struct cs_sketch sketch;
};

struct cs_globals __arena ds_globals;

DS_INIT_PROG(ds_globals, ds_globals.ops)
DS_BATCH_PROG(update, cs_update, &ds_globals.sketch, ds_globals.ops)
DS_BATCH_PROG(lookup, cs_lookup, &ds_globals.sketch, ds_globals.ops)
DS_BATCH_PROG(delete, cs_delete, &ds_globals.sketch, ds_globals.ops)

KFLEX_LICENSE("Dual MIT/GPL");
