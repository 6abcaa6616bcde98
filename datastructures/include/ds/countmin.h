/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * kflex data structures: a count-min sketch in the extension heap, and the key hashing shared with
 * the count sketch (ds/countsketch.h).
 *
 * Shape: CM_DEPTH = 4 rows of SK_WIDTH = 65,536 signed 32-bit counters (1 MiB). A key maps to one
 * counter per row; update adds 1 to each, delete subtracts 1, lookup reports the minimum.
 *
 * Error bound (the classic count-min analysis, for non-negative true counts): the estimate never
 * underestimates, and with probability at least 1 - e^-d it overestimates by at most
 * (e / w) * N, where N is the sum of all counts. For the benchmark's 100,000 keys inserted once
 * (N = 100,000): e / 65,536 * 100,000 = 4.15, so with probability 1 - e^-4 = 98.2% per key the
 * estimate is within 4 of the truth; the expected excess per row is N / w = 1.5. A key whose d
 * counters are shared with no other key is counted exactly.
 *
 * Hashing: the 32-byte key is folded into one 64-bit value (sk_key_hash), and each row derives its
 * own index from that with a splitmix64-style finaliser over a row-specific offset (sk_row_hash):
 * the top SK_LOG_WIDTH bits pick the counter; the count sketch also takes its sign from bit 0.
 * The Rust model (`kflex_datastructures::model_sketch`) recomputes the same functions to know which
 * keys collide.
 */
#ifndef DS_COUNTMIN_H
#define DS_COUNTMIN_H

#include <ds/common.h>

#define SK_LOG_WIDTH 16
#define SK_WIDTH (1U << SK_LOG_WIDTH)
#define CM_DEPTH 4

/* Fully unrolls the per-row loops (both compilers), so each row's offset is a constant. */
#if defined(__clang__)
#define SK_UNROLL _Pragma("unroll")
#else
#define SK_UNROLL _Pragma("GCC unroll 8")
#endif

/* Folds a key's four words into 64 bits (xor, multiply, xor-shift per word). */
static __always_inline __u64 sk_key_hash(const __u64 __arena *k)
{
	__u64 h = 0x6a09e667f3bcc909ULL;

	h = (h ^ k[0]) * 0x9fb21c651e98df25ULL;
	h ^= h >> 29;
	h = (h ^ k[1]) * 0x9fb21c651e98df25ULL;
	h ^= h >> 29;
	h = (h ^ k[2]) * 0x9fb21c651e98df25ULL;
	h ^= h >> 29;
	h = (h ^ k[3]) * 0x9fb21c651e98df25ULL;
	h ^= h >> 32;
	return h;
}

/* Row `row`'s hash of a key hash (row in 0 .. 8). */
static __always_inline __u64 sk_row_hash(__u64 key_hash, __u64 row)
{
	__u64 h = key_hash + (row + 1) * 0x9e3779b97f4a7c15ULL;

	h ^= h >> 30;
	h *= 0xbf58476d1ce4e5b9ULL;
	h ^= h >> 27;
	h *= 0x94d049bb133111ebULL;
	h ^= h >> 31;
	return h;
}

/* The counter a row hash selects. */
static __always_inline __u32 sk_index(__u64 row_hash)
{
	return (__u32)(row_hash >> (64 - SK_LOG_WIDTH));
}

/* The sketch: its heap lock and its counters. All zero is an empty sketch. */
struct cm_sketch {
	struct kflex_lock lock;
	__s32 rows[CM_DEPTH][SK_WIDTH];
};

/* Adds `delta` to the key's counter in every row. */
static __always_inline void cm_add(struct cm_sketch __arena *s, const __u64 __arena *key,
				   __s32 delta)
{
	__u64 h = sk_key_hash(key);

SK_UNROLL
	for (int r = 0; r < CM_DEPTH; r++)
		s->rows[r][sk_index(sk_row_hash(h, r))] += delta;
}

/* The smaller of two counter values without a branch (BPF has no conditional move, and a
 * data-dependent branch on random counters is mispredicted half the time): the values are 32-bit,
 * so their difference cannot overflow and its sign bit says which is smaller. */
static __always_inline __s64 sk_min(__s64 a, __s64 b)
{
	__s64 d = b - a;
	__s64 m = d >> 63;

	barrier_var(m);
	return a + (d & m);
}

/* The smallest of the key's counters. */
static __always_inline __s64 cm_estimate(struct cm_sketch __arena *s, const __u64 __arena *key)
{
	__u64 h = sk_key_hash(key);
	__s64 best = s->rows[0][sk_index(sk_row_hash(h, 0))];

SK_UNROLL
	for (int r = 1; r < CM_DEPTH; r++)
		best = sk_min(best, s->rows[r][sk_index(sk_row_hash(h, r))]);
	return best;
}

/* Update: counts one occurrence of the key. Always 1. */
static __always_inline int cm_update(struct cm_sketch __arena *s, struct ds_op __arena *op)
{
	cm_add(s, op->key_w, 1);
	return 1;
}

/* Lookup: the estimate as a little-endian 64-bit number in value[0..8]. Always 1. */
static __always_inline int cm_lookup(struct cm_sketch __arena *s, struct ds_op __arena *op)
{
	op->value_w[0] = (__u64)cm_estimate(s, op->key_w);
	return 1;
}

/* Delete: removes one occurrence of the key. Always 1. */
static __always_inline int cm_delete(struct cm_sketch __arena *s, struct ds_op __arena *op)
{
	cm_add(s, op->key_w, -1);
	return 1;
}

#endif /* DS_COUNTMIN_H */
