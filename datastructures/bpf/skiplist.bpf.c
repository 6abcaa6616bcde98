/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Skip list programs: init, update, lookup, delete over the mailbox (see ds/common.h for the
 * protocol and ds/skiplist.h for the list). Each op runs under the list's heap lock.
 */
#include <ds/skiplist.h>

/* 64 MiB of heap: 100,000 nodes of 128 or 256 bytes plus the globals, with room to spare. */
KFLEX_HEAP(16384);
KFLEX_ALLOCATOR();

/* Every heap global of this object: the lock and the list first (small offsets from the heap
 * start), the mailbox last. */
struct sl_globals {
	struct kflex_lock lock;
	struct sl_list list;
	struct ds_op ops[DS_BATCH_MAX];
};

struct sl_globals __arena ds_globals;

DS_PROG(init)
{
	sl_init(&ds_globals.list);
	ds_report_layout(ctx, &ds_globals.ops[0], &ds_globals, sizeof(ds_globals));
	ctx->ret = 0;
	return 0;
}

/* Runs one op under the lock; the op kind is a constant at each (inlined) call site. */
#define SL_OP_UPDATE 0
#define SL_OP_LOOKUP 1
#define SL_OP_DELETE 2

static __always_inline int sl_batch(struct ds_ctx *ctx, int kind)
{
	__u32 n = ds_batch_count(ctx);
	int positive = 0;

	for (__u32 i = 0; i < n; i++) {
		struct ds_op __arena *op = &ds_globals.ops[i];
		int r;

		if (kflex_lock(&ds_globals.lock)) {
			op->result = -DS_EBUSY;
		} else {
			if (kind == SL_OP_UPDATE)
				r = sl_update(&ds_globals.list, op);
			else if (kind == SL_OP_LOOKUP)
				r = sl_lookup(&ds_globals.list, op);
			else
				r = sl_delete(&ds_globals.list, op);
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
	return sl_batch(ctx, SL_OP_UPDATE);
}

DS_PROG(lookup)
{
	return sl_batch(ctx, SL_OP_LOOKUP);
}

DS_PROG(delete)
{
	return sl_batch(ctx, SL_OP_DELETE);
}

KFLEX_LICENSE("GPL");
