/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * kflex SDK: compiler hints shared by every build of an SDK source (BPF and native alike).
 * Each is defined only where the including code has not defined it already (libbpf's headers
 * spell the same ones).
 */
#ifndef KFLEX_COMPILER_H
#define KFLEX_COMPILER_H

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif
#ifndef __noinline
#define __noinline __attribute__((noinline))
#endif
#ifndef __weak
#define __weak __attribute__((weak))
#endif
#ifndef __hidden
#define __hidden __attribute__((visibility("hidden")))
#endif

#ifndef likely
#define likely(x) __builtin_expect(!!(x), 1)
#endif
#ifndef unlikely
#define unlikely(x) __builtin_expect(!!(x), 0)
#endif

/* Make the compiler forget what it knows about `var` (its range), e.g. so that a bounds check is
 * emitted on the very register that is then used. */
#ifndef barrier_var
#define barrier_var(var) asm volatile("" : "+r"(var))
#endif

#ifndef barrier
#define barrier() asm volatile("" ::: "memory")
#endif

#ifndef ARRAY_SIZE
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#endif

#endif /* KFLEX_COMPILER_H */
