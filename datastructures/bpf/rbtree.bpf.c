// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * rbtree: the red-black tree (ds/rbtree.h) as a kflex data-structure object: programs init,
 * update, lookup and delete over the mailbox protocol of ds/common.h, each op under the tree's
 * heap lock.
 */
#include <ds/rbtree.h>

KFLEX_HEAP(16384); /* 64 MiB: 100,000 nodes of 128 bytes and the globals, with room to spare */
/* Initialised, so it is laid out first: the structure (and its lock) then lies above it, inside
 * the heap range in which the host allocator releases locks after a cancellation. */
KFLEX_ALLOCATOR() = {};

/* The heap globals. The tree comes first (its fields at small constant offsets from the heap
 * start); the host's invariant check finds the root from the mailbox: `tree.root` is
 * RB_GLOBALS_ROOT_OFF bytes into the struct and `ops` RB_GLOBALS_OPS_OFF bytes. */
struct rb_globals {
	struct rb_tree tree;
	__u64 reserved[5];
	struct ds_op ops[DS_BATCH_MAX];
};

#define RB_GLOBALS_ROOT_OFF 8
#define RB_GLOBALS_OPS_OFF 64
_Static_assert(__builtin_offsetof(struct rb_globals, tree.root) == RB_GLOBALS_ROOT_OFF,
	       "tree root at 8");
_Static_assert(__builtin_offsetof(struct rb_globals, ops) == RB_GLOBALS_OPS_OFF, "ops at 64");

struct rb_globals __arena ds_globals;

DS_INIT_PROG(ds_globals, ds_globals.ops)
DS_BATCH_PROG_ON(update, rb_update, &ds_globals.tree, ds_globals.ops)
DS_BATCH_PROG(lookup, rb_lookup, &ds_globals.tree, ds_globals.ops)
DS_BATCH_PROG_ON(delete, rb_delete, &ds_globals.tree, ds_globals.ops)

KFLEX_LICENSE("Dual MIT/GPL");
