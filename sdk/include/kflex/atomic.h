/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * kflex SDK: atomics on heap (or any) memory, sequentially consistent.
 *
 * On BPF they are the v3+ atomic instructions (xchg, cmpxchg, fetch-add), which both kflex and
 * Linux (also on arena memory) execute as full barriers. Natively they are the compiler's
 * __atomic builtins with __ATOMIC_SEQ_CST. Use 8-byte operands for portability.
 */
#ifndef KFLEX_ATOMIC_H
#define KFLEX_ATOMIC_H

#include "platform.h"

#if KFLEX_NATIVE
/* Stores v into *p; returns the previous value. */
#define kflex_xchg(p, v) __atomic_exchange_n((p), (v), __ATOMIC_SEQ_CST)
/* Stores nw into *p if it holds old; returns the value *p held (== old on success). */
#define kflex_cmpxchg(p, old, nw)                                                                  \
	({                                                                                         \
		typeof(*(p)) __kflex_expected = (old);                                             \
		__atomic_compare_exchange_n((p), &__kflex_expected, (nw), 0, __ATOMIC_SEQ_CST,     \
					    __ATOMIC_SEQ_CST);                                     \
		__kflex_expected;                                                                  \
	})
/* Adds v to *p; returns the previous value. */
#define kflex_fetch_add(p, v) __atomic_fetch_add((p), (v), __ATOMIC_SEQ_CST)
#else
#define kflex_xchg(p, v) __sync_lock_test_and_set((p), (v))
#define kflex_cmpxchg(p, old, nw) __sync_val_compare_and_swap((p), (old), (nw))
#define kflex_fetch_add(p, v) __sync_fetch_and_add((p), (v))
#endif

/* A load / store the compiler performs exactly once, with the access size of *p. */
#define KFLEX_READ_ONCE(x) (*(volatile typeof(x) *)&(x))
#define KFLEX_WRITE_ONCE(x, v) (*(volatile typeof(x) *)&(x) = (v))

#endif /* KFLEX_ATOMIC_H */
