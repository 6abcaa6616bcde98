/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Red-black tree programs: init, update, lookup, delete over the mailbox (see ds/common.h for the
 * protocol and ds/rbtree.h for the tree). Each op runs under the tree's heap lock.
 */
#include <ds/rbtree.h>

/* 64 MiB of heap: 100,000 nodes of 128 bytes plus the globals, with room to spare. */
KFLEX_HEAP(16384);
KFLEX_ALLOCATOR();

/* Every heap global of this object. The host's invariant check finds the tree from the mailbox:
 * `tree.root` is RB_GLOBALS_ROOT_OFF bytes into the struct and `ops` RB_GLOBALS_OPS_OFF bytes. */
struct rb_globals {
	struct kflex_lock lock;
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

DS_PROG(init)
{
	rb_init(&ds_globals.tree);
	ds_report_layout(ctx, &ds_globals.ops[0], &ds_globals, sizeof(ds_globals));
	ctx->ret = 0;
	return 0;
}

/* Runs one op under the lock; the op kind is a constant at each (inlined) call site. */
#define RB_OP_UPDATE 0
#define RB_OP_LOOKUP 1
#define RB_OP_DELETE 2

static __always_inline int rb_batch(struct ds_ctx *ctx, int kind)
{
	__u32 n = ds_batch_count(ctx);
	int positive = 0;

	for (__u32 i = 0; i < n; i++) {
		struct ds_op __arena *op = &ds_globals.ops[i];
		int r;

		if (kflex_lock(&ds_globals.lock)) {
			op->result = -DS_EBUSY;
		} else {
			if (kind == RB_OP_UPDATE)
				r = rb_update(&ds_globals.tree, op);
			else if (kind == RB_OP_LOOKUP)
				r = rb_lookup(&ds_globals.tree, op);
			else
				r = rb_delete(&ds_globals.tree, op);
			kflex_unlock(&ds_globals.lock);
			op->result = r;
			positive += r > 0;
		}
		kflex_cond_break;
	}
	ctx->ret = positive;
	return positive;
}

DS_PROG(update)
{
	return rb_batch(ctx, RB_OP_UPDATE);
}

DS_PROG(lookup)
{
	return rb_batch(ctx, RB_OP_LOOKUP);
}

DS_PROG(delete)
{
	return rb_batch(ctx, RB_OP_DELETE);
}

KFLEX_LICENSE("GPL");
