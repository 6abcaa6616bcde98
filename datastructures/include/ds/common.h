/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * kflex data structures: the request protocol shared by every structure, the entry-point macro
 * that makes one source both a BPF object and a native shared library, and key helpers.
 *
 * Protocol. The host writes a batch of `struct ds_op` into the mailbox (an array in the heap, so
 * host and program share it without copies), sets `ctx->count` and runs `update`, `lookup` or
 * `delete`; the program processes ops[0 .. count] in order, writes each op's `result` (and, for a
 * successful lookup, its `value`), and returns how many ops have a result > 0. `init` runs once:
 * it initialises the structure and reports the addresses the host needs in the context.
 *
 * The Rust mirror of these layouts is `kflex_datastructures::protocol`; keep both in step.
 *
 * Builds. With clang -target bpf, DS_PROG(name) is a `SEC("syscall")` program called `name`.
 * With gcc (the native baseline), it is the exported function `ds_<name>`; the kflex SDK header
 * then turns `__arena` into nothing and the loop/lock/allocator macros into plain C.
 */
#ifndef DS_COMMON_H
#define DS_COMMON_H

#include <kflex/kflex.h>

#define DS_KEY_SIZE 32
#define DS_VALUE_SIZE 64
#define DS_BATCH_MAX 1024

#define DS_KEY_WORDS (DS_KEY_SIZE / 8)
#define DS_VALUE_WORDS (DS_VALUE_SIZE / 8)

/* Errno values used in results (negated). */
#define DS_ENOMEM 12
#define DS_EBUSY 16
#define DS_EINVAL 22

/* Per-op results. */
#define DS_ABSENT 0
#define DS_FOUND 1
#define DS_INSERTED 1
#define DS_REPLACED 2
#define DS_REMOVED 1

/* One request: the key, the value (input of update, output of lookup) and the result. The word
 * views let the structures move keys and values as aligned 8-byte loads and stores. */
struct ds_op {
	union {
		__u8 key[DS_KEY_SIZE];
		__u64 key_w[DS_KEY_WORDS];
	};
	union {
		__u8 value[DS_VALUE_SIZE];
		__u64 value_w[DS_VALUE_WORDS];
	};
	__s64 result;
};

/* The context of every program (the `syscall` context on BPF, a plain argument natively). */
struct ds_ctx {
	__u64 mailbox;      /* out (init): user address of ops[0] */
	__u64 alloc_state;  /* out (init): user address of kflex_alloc_state */
	__u64 globals;      /* out (init): first user address of the object's heap globals */
	__u64 globals_size; /* out (init): bytes from `globals` the host must not carve blocks from */
	__u32 count;        /* in: number of ops in the mailbox (at most DS_BATCH_MAX) */
	__s32 ret;          /* out: same as the return value */
};

_Static_assert(sizeof(struct ds_op) == 104, "struct ds_op is 104 bytes");
_Static_assert(sizeof(struct ds_ctx) == 40, "struct ds_ctx is 40 bytes");
_Static_assert((DS_BATCH_MAX & (DS_BATCH_MAX - 1)) == 0, "DS_BATCH_MAX is a power of two");

/* A key and a value as they are stored inside nodes. */
struct ds_key {
	__u64 w[DS_KEY_WORDS];
};

struct ds_value {
	__u64 w[DS_VALUE_WORDS];
};

/* ---- Entry points. ---- */

#if defined(__bpf__)
#define DS_PROG(name) SEC("syscall") int name(struct ds_ctx *ctx)
#else
#define DS_PROG(name) __attribute__((visibility("default"))) int ds_##name(struct ds_ctx *ctx)
#endif

/* Clamps a batch size to the mailbox. (DS_BATCH_PROG refuses larger counts instead: see there.) */
static __always_inline __u32 ds_batch_count(const struct ds_ctx *ctx)
{
	__u32 n = ctx->count;

	return n > DS_BATCH_MAX ? DS_BATCH_MAX : n;
}

/* Fills the context fields `init` reports: the mailbox, the allocator state and the address range
 * [lo, hi) of the heap globals (`ds_globals` and `kflex_alloc_state`, wherever the linker put
 * them). */
static __always_inline void ds_report_layout(struct ds_ctx *ctx, void __arena *mailbox,
					     void __arena *globals, __u64 globals_size)
{
	__u64 g = (__u64)kflex_cast_user(globals);
	__u64 a = (__u64)kflex_cast_user((void __arena *)&kflex_alloc_state);
	__u64 g_end = g + globals_size;
	__u64 a_end = a + sizeof(kflex_alloc_state);
	__u64 lo = g < a ? g : a;
	__u64 hi = g_end > a_end ? g_end : a_end;

	ctx->mailbox = (__u64)kflex_cast_user(mailbox);
	ctx->alloc_state = a;
	ctx->globals = lo;
	ctx->globals_size = hi - lo;
}

/* ---- Keys and values. ---- */

/* Whether two keys are equal: four 8-byte loads per side, one branch. */
static __always_inline bool ds_key_eq(const __u64 __arena *a, const __u64 __arena *b)
{
	return ((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3])) == 0;
}

/* Orders two keys by their words, first word first, each compared as an unsigned number: -1, 0
 * or 1. (Not byte-lexicographic on little-endian machines; any total order will do for the
 * structures, and the Rust models compare keys the same way, see `protocol::key_order`.) */
static __always_inline int ds_key_cmp(const __u64 __arena *a, const __u64 __arena *b)
{
	if (a[0] != b[0])
		return a[0] < b[0] ? -1 : 1;
	if (a[1] != b[1])
		return a[1] < b[1] ? -1 : 1;
	if (a[2] != b[2])
		return a[2] < b[2] ? -1 : 1;
	if (a[3] != b[3])
		return a[3] < b[3] ? -1 : 1;
	return 0;
}

/* Copies a key (four 8-byte stores). */
static __always_inline void ds_key_copy(__u64 __arena *dst, const __u64 __arena *src)
{
	dst[0] = src[0];
	dst[1] = src[1];
	dst[2] = src[2];
	dst[3] = src[3];
}

/* Copies a value (eight 8-byte stores). */
static __always_inline void ds_value_copy(__u64 __arena *dst, const __u64 __arena *src)
{
	dst[0] = src[0];
	dst[1] = src[1];
	dst[2] = src[2];
	dst[3] = src[3];
	dst[4] = src[4];
	dst[5] = src[5];
	dst[6] = src[6];
	dst[7] = src[7];
}

/* 64-bit hash of a key: each word multiplied by its own odd constant (independent multiplies the
 * CPU runs in parallel), summed, then one xor-shift-multiply finaliser to spread the high bits
 * into the low ones that index buckets. */
static __always_inline __u64 ds_key_hash(const __u64 __arena *k, __u64 seed)
{
	__u64 h = seed;

	h += k[0] * 0x9e3779b97f4a7c15ULL;
	h += k[1] * 0xc2b2ae3d27d4eb4fULL;
	h += k[2] * 0x165667b19e3779f9ULL;
	h += k[3] * 0xd6e8feb86659fd93ULL;
	h ^= h >> 32;
	h *= 0x94d049bb133111ebULL;
	h ^= h >> 29;
	return h;
}

/*
 * A key copied out of the heap (into registers or the stack) before a structure is walked: the
 * walk then reads only node keys from the heap, and the op is touched once, before the loop.
 */
static __always_inline void ds_key_load(struct ds_key *k, const __u64 __arena *src)
{
	k->w[0] = src[0];
	k->w[1] = src[1];
	k->w[2] = src[2];
	k->w[3] = src[3];
}

/* Whether heap key `a` equals the local key `k`. */
static __always_inline bool ds_key_eq_local(const __u64 __arena *a, const struct ds_key *k)
{
	return ((a[0] ^ k->w[0]) | (a[1] ^ k->w[1]) | (a[2] ^ k->w[2]) | (a[3] ^ k->w[3])) == 0;
}

/* Stores the local key `k` into heap key `dst`. */
static __always_inline void ds_key_store(__u64 __arena *dst, const struct ds_key *k)
{
	dst[0] = k->w[0];
	dst[1] = k->w[1];
	dst[2] = k->w[2];
	dst[3] = k->w[3];
}

/* ds_key_hash of a local key. */
static __always_inline __u64 ds_key_hash_local(const struct ds_key *k, __u64 seed)
{
	__u64 h = seed;

	h += k->w[0] * 0x9e3779b97f4a7c15ULL;
	h += k->w[1] * 0xc2b2ae3d27d4eb4fULL;
	h += k->w[2] * 0x165667b19e3779f9ULL;
	h += k->w[3] * 0xd6e8feb86659fd93ULL;
	h ^= h >> 32;
	h *= 0x94d049bb133111ebULL;
	h ^= h >> 29;
	return h;
}

/* ---- Batch programs. ---- */

/*
 * DS_BATCH_PROG(name, fn, s, ops) defines program `name` (DS_PROG) that runs
 * `__s64 fn(S __arena *s, struct ds_op __arena *op)` on each op of the batch in order, with the
 * structure's lock `s->lock` held around each op, stores each op's result and returns the number of
 * ops with a result > 0. `ops` is the mailbox array. An op whose lock cannot be taken (Linux loop
 * budget spent) gets -EBUSY.
 *
 * DS_BATCH_PROG_ON(name, fn, s, ops) is the same for
 * `__s64 fn(S __arena *s, struct ds_op __arena *op, struct kflex_alloc_cpu __arena *c)`, where `c`
 * is the calling CPU's allocator state for the *_on SDK calls (kflex_malloc_on, ...).
 *
 * The CPU id is looked up once per batch (one helper call) and passed down. Each op is one call
 * of the global function `name##_one(i, cpu)`: Linux verifies a global function once, on its
 * own, and each call has its own may_goto loop budget (Linux and kflex count it per frame), so a
 * long walk in one op does not leave the ops after it without budget (inlined, a batch of list
 * walks runs out and its last ops get -EBUSY). The op's result is written first, so that the op
 * pointer is guarded once on every path.
 *
 * A count above DS_BATCH_MAX is refused (-EINVAL, no op runs) rather than clamped: a clamp gives
 * the Linux verifier the constant DS_BATCH_MAX on one path, which makes the loop counter precise
 * and the verifier walk all 1024 iterations one by one (15,000-26,000 processed instructions per
 * program instead of 300-9,400). (The hosts never send more than DS_BATCH_MAX ops.)
 */
#define DS_BATCH_PROG_CALL(name, call, s, ops)                                                     \
	__attribute__((noinline)) int name##_one(__u32 i, __u32 cpu)                               \
	{                                                                                          \
		struct kflex_alloc_cpu __arena *__c =                                              \
			&kflex_alloc_state.cpu[cpu & (KFLEX_MAX_CPUS - 1)];                        \
		struct ds_op __arena *__op = &(ops)[i & (DS_BATCH_MAX - 1)];                       \
		__s64 __r = -DS_EBUSY;                                                             \
                                                                                                   \
		__op->result = __r;                                                                \
		if (!kflex_lock_on(__c, &(s)->lock)) {                                             \
			__r = (call);                                                              \
			kflex_unlock_on(__c, &(s)->lock);                                          \
			__op->result = __r;                                                        \
		}                                                                                  \
		return __r > 0;                                                                    \
	}                                                                                          \
                                                                                                   \
	DS_PROG(name)                                                                              \
	{                                                                                          \
		__u32 __n = ctx->count, __i;                                                       \
		__u32 __cpu = kflex_cpu();                                                         \
		int __hits = 0;                                                                    \
                                                                                                   \
		if (__n > DS_BATCH_MAX) {                                                          \
			ctx->ret = -DS_EINVAL;                                                     \
			return -DS_EINVAL;                                                         \
		}                                                                                  \
		for (__i = 0; __i < __n; __i++) {                                                  \
			__hits += name##_one(__i, __cpu);                                          \
			kflex_cond_break;                                                          \
		}                                                                                  \
		ctx->ret = __hits;                                                                 \
		return __hits;                                                                     \
	}

#define DS_BATCH_PROG(name, fn, s, ops) DS_BATCH_PROG_CALL(name, fn((s), __op), s, ops)
#define DS_BATCH_PROG_ON(name, fn, s, ops) DS_BATCH_PROG_CALL(name, fn((s), __op, __c), s, ops)

/*
 * DS_INIT_PROG(g, ops) defines the `init` program of an object whose heap globals are the one
 * struct `g` with mailbox array `ops`: it reports the layout (the structure itself starts out
 * empty: zero-filled globals are an empty structure). Run it once per loaded object.
 */
#define DS_INIT_PROG(g, ops)                                                                       \
	DS_PROG(init)                                                                              \
	{                                                                                          \
		ds_report_layout(ctx, (void __arena *)&(ops)[0], (void __arena *)&(g), sizeof(g)); \
		ctx->ret = 0;                                                                      \
		return 0;                                                                          \
	}

#endif /* DS_COMMON_H */
