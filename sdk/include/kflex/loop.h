/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * kflex SDK: loops portable to both back ends.
 *
 * kflex accepts any loop (each back-edge is a termination point and a runaway invocation is
 * cancelled). The Linux verifier must see every loop bounded: a loop whose trip count it cannot
 * bound must contain `kflex_cond_break;`, which compiles to one `may_goto` instruction: Linux
 * (>= 6.9) and kflex leave the innermost loop through it once the invocation's loop budget is
 * spent (Linux: ~8M iterations or ~250 ms; kflex: the time budget). Natively it is nothing.
 *
 *   for (n = head; n; n = n->next) {
 *           kflex_cond_break;
 *           ...
 *   }
 *
 * Code after such a loop must not assume the loop ran to its natural end.
 */
#ifndef KFLEX_LOOP_H
#define KFLEX_LOOP_H

#include "platform.h"

#if KFLEX_NATIVE

#define kflex_cond_break ((void)0)
#define kflex_can_loop 1

#else

/* Leaves the innermost enclosing loop when the loop budget is spent (a `may_goto`). */
#define kflex_cond_break                                                                           \
	({                                                                                         \
		__label__ __kflex_out, __kflex_go_on;                                              \
		asm volatile goto("may_goto %l[__kflex_out]" :::: __kflex_out);                    \
		goto __kflex_go_on;                                                                \
	__kflex_out:                                                                               \
		break;                                                                             \
	__kflex_go_on:;                                                                            \
	})

/* An expression: 1 while the loop budget lasts, 0 once it is spent (a `may_goto`). */
#define kflex_can_loop                                                                             \
	({                                                                                         \
		__label__ __kflex_out, __kflex_go_on;                                              \
		int __kflex_ok = 1;                                                                \
		asm volatile goto("may_goto %l[__kflex_out]" :::: __kflex_out);                    \
		goto __kflex_go_on;                                                                \
	__kflex_out:                                                                               \
		__kflex_ok = 0;                                                                    \
	__kflex_go_on:;                                                                            \
		__kflex_ok;                                                                        \
	})

#endif

#endif /* KFLEX_LOOP_H */
