/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * kflex SDK: a spin lock that lives in the heap.
 *
 * The lock word holds 0 when free and (CPU id + 1) of the holder when taken. Taking it records
 * the lock's heap address in the CPU's held-lock record (struct kflex_alloc_cpu.held_locks, so
 * the object needs KFLEX_ALLOCATOR()) before the first attempt; unlocking removes it after the
 * release. When an invocation is cancelled the
 * host (kflex_sdk::HeapAllocator::release_after_cancel) releases every lock still recorded for
 * that CPU. At most KFLEX_HELD_LOCKS locks are recorded per CPU; a lock taken beyond that works
 * but is not released by cancellation.
 *
 * On Linux the spin is bounded by may_goto: kflex_lock() returns -1 when the loop budget ran out
 * (the lock is then NOT held). On kflex a runaway spin is cancelled by the watchdog instead.
 * Natively (single-threaded baseline or host threads) it spins until it gets the lock.
 */
#ifndef KFLEX_LOCK_H
#define KFLEX_LOCK_H

#include "alloc.h"
#include "loop.h"

/* A heap spin lock; zero-initialised means unlocked. */
struct kflex_lock {
	__u64 word;
};

_Static_assert(sizeof(struct kflex_lock) == 8, "struct kflex_lock is 8 bytes");

/* Records lock address `a` in a free slot of this CPU's held-lock record. Loop-free. */
static __always_inline void kflex_lock_record(struct kflex_alloc_cpu __arena *c, __u64 a)
{
	if (!c->held_locks[0])
		c->held_locks[0] = a;
	else if (!c->held_locks[1])
		c->held_locks[1] = a;
	else if (!c->held_locks[2])
		c->held_locks[2] = a;
	else if (!c->held_locks[3])
		c->held_locks[3] = a;
}

/* Removes lock address `a` from this CPU's held-lock record. Loop-free. */
static __always_inline void kflex_lock_forget(struct kflex_alloc_cpu __arena *c, __u64 a)
{
	if (c->held_locks[0] == a)
		c->held_locks[0] = 0;
	else if (c->held_locks[1] == a)
		c->held_locks[1] = 0;
	else if (c->held_locks[2] == a)
		c->held_locks[2] = 0;
	else if (c->held_locks[3] == a)
		c->held_locks[3] = 0;
}

/*
 * Takes the lock with CPU state `c` (from kflex_this_cpu()): 0 when held, -1 when the loop
 * budget ran out first (Linux only).
 *
 * The lock is recorded before it is tried and forgotten only after it is released, so a
 * cancellation at any point (the compiler may place the spin loop's back-edge between the
 * successful cmpxchg and the code after it) finds it recorded whenever this CPU holds it. A
 * record of a lock this CPU does not hold is harmless: the host releases a recorded lock only if
 * its word names this CPU.
 */
static __always_inline int kflex_lock_on(struct kflex_alloc_cpu __arena *c,
					 struct kflex_lock __arena *l)
{
	__u64 me = c->self_id;

	if (!me) /* no host attached: any non-zero owner will do */
		me = (__u64)(kflex_cpu() & (KFLEX_MAX_CPUS - 1)) + 1;
	kflex_lock_record(c, (__u64)l);
	for (;;) {
		if (KFLEX_READ_ONCE(l->word) == 0 && kflex_cmpxchg(&l->word, 0, me) == 0)
			return 0;
		kflex_cond_break;
	}
	kflex_lock_forget(c, (__u64)l);
	return -1;
}

/* kflex_lock_on() for the calling CPU. */
static __always_inline int kflex_lock(struct kflex_lock __arena *l)
{
	return kflex_lock_on(kflex_this_cpu(), l);
}

/* Releases a lock taken by kflex_lock_on(c, l) (same CPU state). */
static __always_inline void kflex_unlock_on(struct kflex_alloc_cpu __arena *c,
					    struct kflex_lock __arena *l)
{
	kflex_xchg(&l->word, 0);
	kflex_lock_forget(c, (__u64)l);
}

/* Releases a lock taken by kflex_lock() on this CPU. */
static __always_inline void kflex_unlock(struct kflex_lock __arena *l)
{
	kflex_unlock_on(kflex_this_cpu(), l);
}

#endif /* KFLEX_LOCK_H */
