/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Count sketch programs: init, update, lookup, delete over the mailbox (see ds/common.h for the
 * protocol and ds/countsketch.h for the sketch). Each op runs under the sketch's heap lock.
 */
#include <ds/countsketch.h>

/* 4 MiB of heap: the counters (at most 1.25 MiB) and the mailbox; the sketch allocates nothing. */
KFLEX_HEAP(1024);
KFLEX_ALLOCATOR();

/* Every heap global of this object: the lock and the mailbox first (small offsets from the heap
 * start), the counters last. */
struct cs_globals {
	struct kflex_lock lock;
	struct ds_op ops[DS_BATCH_MAX];
	struct cs_sketch sketch;
};

struct cs_globals __arena ds_globals;

DS_PROG(init)
{
	ds_report_layout(ctx, &ds_globals.ops[0], &ds_globals, sizeof(ds_globals));
	ctx->ret = 0;
	return 0;
}

/* Runs one op under the lock; the op kind is a constant at each (inlined) call site. */
#define CS_OP_UPDATE 0
#define CS_OP_LOOKUP 1
#define CS_OP_DELETE 2

static __always_inline int cs_batch(struct ds_ctx *ctx, int kind)
{
	__u32 n = ds_batch_count(ctx);
	int positive = 0;

	for (__u32 i = 0; i < n; i++) {
		struct ds_op __arena *op = &ds_globals.ops[i];
		int r;

		if (kflex_lock(&ds_globals.lock)) {
			op->result = -DS_EBUSY;
		} else {
			if (kind == CS_OP_UPDATE)
				r = cs_update(&ds_globals.sketch, op);
			else if (kind == CS_OP_LOOKUP)
				r = cs_lookup(&ds_globals.sketch, op);
			else
				r = cs_delete(&ds_globals.sketch, op);
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
	return cs_batch(ctx, CS_OP_UPDATE);
}

DS_PROG(lookup)
{
	return cs_batch(ctx, CS_OP_LOOKUP);
}

DS_PROG(delete)
{
	return cs_batch(ctx, CS_OP_DELETE);
}

KFLEX_LICENSE("GPL");
