/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * kflex data structures: a count sketch (Charikar, Chen and Farach-Colton) in the extension heap.
 *
 * Shape: CS_DEPTH = 5 rows of SK_WIDTH = 65,536 signed 32-bit counters (1.25 MiB), hashed as in
 * ds/countmin.h. A key maps to one counter and one sign (+1 or -1, bit 0 of the row hash) per row;
 * update adds the sign, delete subtracts it, and lookup reports the median over the rows of
 * sign * counter.
 *
 * Error bound: each row's estimate is unbiased with variance at most F2 / w, where F2 is the sum
 * of the squared counts of the other keys; by Chebyshev a row is off by more than
 * 2 * sqrt(F2 / w) with probability at most 1/4, and the median of d = 5 rows is off by more with
 * probability at most sum_{j>=3} C(5,j) (1/4)^j (3/4)^(5-j) = 10.4%. For the benchmark's 100,000
 * keys inserted once (F2 = 100,000): 2 * sqrt(100,000 / 65,536) = 2.47, i.e. the estimate is
 * within 2 of the truth for about 90% of keys or more. A key none of whose counters is shared with
 * another key is counted exactly (the counters then hold only its own signed count).
 */
#ifndef DS_COUNTSKETCH_H
#define DS_COUNTSKETCH_H

#include <ds/countmin.h>

#define CS_DEPTH 5

/* The sketch: its heap lock and its counters. All zero is an empty sketch. */
struct cs_sketch {
	struct kflex_lock lock;
	__s32 rows[CS_DEPTH][SK_WIDTH];
};

/* +1 or -1: the sign a row hash gives the key in that row (bit 0), computed without a branch. */
static __always_inline __s32 cs_sign(__u64 row_hash)
{
	return (__s32)((row_hash & 1) << 1) - 1;
}

/* Adds `delta` times the key's sign to the key's counter in every row. */
static __always_inline void cs_add(struct cs_sketch __arena *s, const __u64 __arena *key,
				   __s32 delta)
{
	__u64 h = sk_key_hash(key);

SK_UNROLL
	for (int r = 0; r < CS_DEPTH; r++) {
		__u64 rh = sk_row_hash(h, r);

		s->rows[r][sk_index(rh)] += cs_sign(rh) * delta;
	}
}

/* Orders two values in place (a <= b afterwards) without a branch: the counters are 32-bit, so
 * the difference cannot overflow and its sign bit says which is smaller. Branch-free keeps the
 * verifiers' work linear (a branching network splits every path nine times). */
#define CS_SORT2(a, b)                                                                             \
	do {                                                                                       \
		__s64 d_ = (b) - (a);                                                              \
		__s64 m_ = d_ >> 63;                                                               \
		barrier_var(m_);                                                                   \
		(a) += d_ & m_;                                                                    \
		(b) -= d_ & m_;                                                                    \
	} while (0)

/* The median of the key's signed counters (a 9-comparator sorting network on 5 values). */
static __always_inline __s64 cs_estimate(struct cs_sketch __arena *s, const __u64 __arena *key)
{
	__u64 h = sk_key_hash(key);
	__s64 v[CS_DEPTH];

SK_UNROLL
	for (int r = 0; r < CS_DEPTH; r++) {
		__u64 rh = sk_row_hash(h, r);

		v[r] = (__s64)cs_sign(rh) * s->rows[r][sk_index(rh)];
	}
	CS_SORT2(v[0], v[1]);
	CS_SORT2(v[3], v[4]);
	CS_SORT2(v[2], v[4]);
	CS_SORT2(v[2], v[3]);
	CS_SORT2(v[0], v[3]);
	CS_SORT2(v[0], v[2]);
	CS_SORT2(v[1], v[4]);
	CS_SORT2(v[1], v[3]);
	CS_SORT2(v[1], v[2]);
	return v[2];
}

_Static_assert(CS_DEPTH == 5, "cs_estimate's sorting network is for 5 rows");

/* Update: counts one occurrence of the key. Always 1. */
static __always_inline int cs_update(struct cs_sketch __arena *s, struct ds_op __arena *op)
{
	cs_add(s, op->key_w, 1);
	return 1;
}

/* Lookup: the estimate as a little-endian 64-bit number (two's complement) in value[0..8].
 * Always 1. */
static __always_inline int cs_lookup(struct cs_sketch __arena *s, struct ds_op __arena *op)
{
	op->value_w[0] = (__u64)cs_estimate(s, op->key_w);
	return 1;
}

/* Delete: removes one occurrence of the key. Always 1. */
static __always_inline int cs_delete(struct cs_sketch __arena *s, struct ds_op __arena *op)
{
	cs_add(s, op->key_w, -1);
	return 1;
}

#endif /* DS_COUNTSKETCH_H */
