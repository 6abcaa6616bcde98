/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * kflex SDK: the heap allocator (program side). Header-only, so every object has its own copy;
 * its host side is the Rust crate kflex-sdk (HeapAllocator), which must match this layout.
 *
 * Design (details and bounds in sdk/README.md):
 *   - Size classes of 16, 32, 64, ..., 4096 usable bytes (KFLEX_NR_CLASSES = 9). A block is an
 *     8-byte header followed by the payload; the header carries the class, an "allocated" bit and
 *     a magic tag, so kflex_free() finds the class in O(1) and ignores double frees and pointers
 *     it did not hand out. Blocks never change class.
 *   - Blocks are carved only by the host, which pushes whole chains onto a per-CPU, per-class
 *     refill stack in the heap (lock-free: the host pushes with compare-and-swap, the program
 *     takes the whole stack with one exchange). The head block's header tells how many blocks
 *     the chain holds.
 *   - Each CPU (kflex_cpu() modulo KFLEX_MAX_CPUS) has a private free list per class. malloc pops
 *     from it, taking the refill stack when it is empty; free pushes onto it, or onto the CPU's
 *     give-back stack once the list holds the host's `keep` limit (the host drains those into
 *     its pool when it refills). No loops and no host calls: cancellation can never stop an
 *     allocator call half-way.
 *   - Every block malloc hands out is written into the CPU's in-flight journal (a ring of
 *     KFLEX_JOURNAL_LEN entries) until kflex_commit(). When an invocation is cancelled the host
 *     takes the journaled blocks that are still allocated back into its pool, from which later
 *     refills hand them out again. If more than
 *     KFLEX_JOURNAL_LEN blocks are allocated between two commits, only the last
 *     KFLEX_JOURNAL_LEN are journaled (the older ones leak if the invocation is cancelled).
 *   - The per-CPU held-lock record (KFLEX_HELD_LOCKS slots, see lock.h) lives here too.
 *   - Each call looks the CPU's state up (a helper call on kflex); kflex_this_cpu() and the
 *     *_on variants let a program do that once per invocation.
 *
 * Per-CPU state assumes at most one invocation at a time per CPU id (kflex: give concurrent
 * workers distinct ExecEnv::cpu ids; Linux: programs run with migration disabled).
 */
#ifndef KFLEX_ALLOC_H
#define KFLEX_ALLOC_H

#include "atomic.h"
#include "heap.h"

#define KFLEX_MAX_CPUS 64
#define KFLEX_NR_CLASSES 9
#define KFLEX_MIN_CLASS_SHIFT 4 /* class 0: 16 bytes */
#define KFLEX_MAX_ALLOC 4096
#define KFLEX_JOURNAL_LEN 16 /* power of two */
#define KFLEX_HELD_LOCKS 4
#define KFLEX_BLOCK_HEADER 8

/* Block header: bits 0..7 class, bit 8 allocated, bit 9 held by the host (its pool), bits 16..47
 * chain length (valid in the head block of a chain on a refill stack), bits 48..63
 * KFLEX_BLOCK_MAGIC. */
#define KFLEX_HDR_CLASS_MASK 0xffULL
#define KFLEX_HDR_ALLOCATED (1ULL << 8)
#define KFLEX_HDR_HOST (1ULL << 9)
#define KFLEX_HDR_COUNT_SHIFT 16
#define KFLEX_HDR_COUNT_MASK 0xffffffffULL
#define KFLEX_HDR_MAGIC_SHIFT 48
#define KFLEX_BLOCK_MAGIC 0x6b66ULL /* "kf" */

/* Written by the host into kflex_alloc.magic when it attaches. */
#define KFLEX_ALLOC_MAGIC 0x636f6c6c61786c66ULL /* "flxalloc" */
#define KFLEX_ALLOC_VERSION 3 /* 2: self_id, 3: keep and giveback */

/* A block as it sits on a free list or refill stack; the payload starts at `next`. */
struct kflex_block {
	__u64 hdr;
	__u64 next; /* heap address of the next block on the list, 0 at the end */
};

/* One CPU's allocator state (640 bytes, so CPUs do not share cache lines). */
struct kflex_alloc_cpu {
	__u64 free_head[KFLEX_NR_CLASSES];  /* private free list per class (block address) */
	__u64 free_count[KFLEX_NR_CLASSES]; /* blocks on each private list */
	__u64 refill[KFLEX_NR_CLASSES];     /* refill stack per class, shared with the host */
	__u64 starved[KFLEX_NR_CLASSES];    /* mallocs that found both empty (NULL returned) */
	__u64 journal[KFLEX_JOURNAL_LEN];   /* blocks allocated since the last commit (a ring) */
	__u64 journal_pos;                  /* blocks allocated since the last commit */
	__u64 held_locks[KFLEX_HELD_LOCKS]; /* heap addresses of the locks this CPU holds, 0 = free */
	__u64 scratch;                      /* kflex_addr()'s round trip */
	__u64 self_id;                      /* this CPU id + 1, written by the host at attach */
	__u64 keep[KFLEX_NR_CLASSES];       /* private-list size beyond which frees are given back
					     * (written by the host; 0 = keep everything) */
	__u64 giveback[KFLEX_NR_CLASSES];   /* blocks handed back to the host, a stack the program
					     * pushes onto and the host takes whole */
	__u64 _reserved[3];
};

/* The whole allocator state: one heap global per object (KFLEX_ALLOCATOR()). */
struct kflex_alloc {
	__u64 magic;   /* KFLEX_ALLOC_MAGIC once a host has attached */
	__u64 version; /* KFLEX_ALLOC_VERSION, written by the host */
	__u64 _reserved[6];
	struct kflex_alloc_cpu cpu[KFLEX_MAX_CPUS];
};

_Static_assert(sizeof(struct kflex_block) == 16, "struct kflex_block is 16 bytes");
_Static_assert(sizeof(struct kflex_alloc_cpu) == 640, "struct kflex_alloc_cpu is 640 bytes");
_Static_assert(sizeof(struct kflex_alloc) == 64 + 64 * 640, "struct kflex_alloc is 41024 bytes");

/* The object's allocator state, defined once per object by KFLEX_ALLOCATOR(). */
extern struct kflex_alloc __arena kflex_alloc_state;

/* KFLEX_ALLOCATOR(); at file scope (once per object) defines the allocator state in the heap. */
#define KFLEX_ALLOCATOR() struct kflex_alloc __arena kflex_alloc_state

/* Usable size of class `cls`. */
#define KFLEX_CLASS_SIZE(cls) (1ULL << ((cls) + KFLEX_MIN_CLASS_SHIFT))

/*
 * The calling CPU's allocator state. Each plain call (kflex_malloc, kflex_free, kflex_commit,
 * kflex_lock, kflex_unlock) looks it up, which on kflex costs a helper call
 * (bpf_get_smp_processor_id); a program that makes many calls in one invocation can look it up
 * once with kflex_this_cpu() and use the *_on variants.
 */
static __always_inline struct kflex_alloc_cpu __arena *kflex_this_cpu(void)
{
	return &kflex_alloc_state.cpu[kflex_cpu() & (KFLEX_MAX_CPUS - 1)];
}

/* Older name of kflex_this_cpu(). */
static __always_inline struct kflex_alloc_cpu __arena *kflex_alloc_cpu_state(void)
{
	return kflex_this_cpu();
}

/* The smallest class holding `size` bytes (size <= KFLEX_MAX_ALLOC). Loop-free. */
static __always_inline __u32 kflex_size_class(__u64 size)
{
	if (size <= 16)
		return 0;
	if (size <= 32)
		return 1;
	if (size <= 64)
		return 2;
	if (size <= 128)
		return 3;
	if (size <= 256)
		return 4;
	if (size <= 512)
		return 5;
	if (size <= 1024)
		return 6;
	if (size <= 2048)
		return 7;
	return 8;
}

/*
 * The heap address of heap pointer `p` as a plain number, e.g. to hand it to the host through
 * the context (verifiers refuse to store pointers into the context; a value loaded back from the
 * heap is a number to both of them). Uses this CPU's scratch word.
 */
static __always_inline __u64 kflex_addr(const void __arena *p)
{
	volatile __u64 __arena *slot = &kflex_this_cpu()->scratch;

	*slot = (__u64)p;
	return *slot;
}

/*
 * kflex_malloc() on CPU state `c` (from kflex_this_cpu() in the same invocation): `size` bytes
 * (at most KFLEX_MAX_ALLOC) from the heap, 8-byte aligned, contents unspecified. NULL when size
 * is too large or when the CPU's free list and refill stack of the class are both empty (the
 * host refills them; the program never waits for it).
 */
static __always_inline void __arena *kflex_malloc_on(struct kflex_alloc_cpu __arena *c,
						     __u64 size)
{
	struct kflex_block __arena *b;
	__u64 pos;
	__u32 cls;

	if (size > KFLEX_MAX_ALLOC)
		return NULL;
	cls = kflex_size_class(size);
	b = (struct kflex_block __arena *)c->free_head[cls];
	if (!b) {
		b = (struct kflex_block __arena *)kflex_xchg(&c->refill[cls], 0);
		if (!b) {
			c->starved[cls] += 1;
			return NULL;
		}
		c->free_count[cls] += (b->hdr >> KFLEX_HDR_COUNT_SHIFT) & KFLEX_HDR_COUNT_MASK;
	}
	c->free_head[cls] = b->next;
	c->free_count[cls] -= 1;
	b->hdr |= KFLEX_HDR_ALLOCATED;
	pos = c->journal_pos;
	c->journal[pos & (KFLEX_JOURNAL_LEN - 1)] = (__u64)b;
	c->journal_pos = pos + 1;
	return (void __arena *)&b->next;
}

/* Allocates `size` bytes on the calling CPU (see kflex_malloc_on). */
static __always_inline void __arena *kflex_malloc(__u64 size)
{
	return kflex_malloc_on(kflex_this_cpu(), size);
}

/*
 * kflex_free() on CPU state `c`: returns a block to the CPU's free list, or, when that list
 * already holds the host's `keep` limit, hands it back to the host (so a CPU that frees what
 * others allocate does not hoard memory). NULL is allowed; a pointer that is not an allocated
 * block's payload (double free, foreign pointer) is ignored rather than corrupting the lists.
 */
static __always_inline void kflex_free_on(struct kflex_alloc_cpu __arena *c, void __arena *p)
{
	struct kflex_block __arena *b;
	__u64 hdr, cls;

	if (!p)
		return;
	b = (struct kflex_block __arena *)((char __arena *)p - KFLEX_BLOCK_HEADER);
	hdr = b->hdr;
	cls = hdr & KFLEX_HDR_CLASS_MASK;
	if ((hdr >> KFLEX_HDR_MAGIC_SHIFT) != KFLEX_BLOCK_MAGIC || !(hdr & KFLEX_HDR_ALLOCATED) ||
	    cls >= KFLEX_NR_CLASSES)
		return;
	b->hdr = hdr & ~KFLEX_HDR_ALLOCATED;
	if (c->keep[cls] && c->free_count[cls] >= c->keep[cls]) {
		/* Surplus: hand the block back to the host (one attempt; the host only ever takes
		 * the whole stack, so a failed attempt just means it did so meanwhile). */
		__u64 old = c->giveback[cls];

		b->next = old;
		if (kflex_cmpxchg(&c->giveback[cls], old, (__u64)b) == old)
			return;
	}
	b->next = c->free_head[cls];
	c->free_head[cls] = (__u64)b;
	c->free_count[cls] += 1;
}

/* Frees `p` on the calling CPU (see kflex_free_on). */
static __always_inline void kflex_free(void __arena *p)
{
	kflex_free_on(kflex_this_cpu(), p);
}

/*
 * Declares every block allocated since the last commit reachable from the program's structure
 * (or freed): clears the CPU's in-flight journal. Call it right after linking, with no loop in
 * between, so that cancellation finds each block either journaled or linked, never neither, and
 * before unlocking the structure's lock (once other CPUs can reach a block, the cleanup of this
 * CPU's journal must not take it back).
 */
static __always_inline void kflex_commit_on(struct kflex_alloc_cpu __arena *c)
{
	c->journal_pos = 0;
}

/* kflex_commit_on() for the calling CPU. */
static __always_inline void kflex_commit(void)
{
	kflex_commit_on(kflex_this_cpu());
}

#endif /* KFLEX_ALLOC_H */
