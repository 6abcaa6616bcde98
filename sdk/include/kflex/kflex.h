/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * kflex SDK umbrella header: #include <kflex/kflex.h>.
 *
 * Compiles three ways: clang -target bpf for kflex, the same object for Linux through libbpf, and
 * natively with gcc/clang for the host baseline (see platform.h). Contents:
 *   types.h    fixed-width types, contexts, ABI constants
 *   helpers.h  SEC, map definitions, helper functions (BPF builds only)
 *   net.h      packet header layouts, protocol numbers, byte order
 *   platform.h what differs natively; kflex_cpu()
 *   heap.h     __arena, KFLEX_HEAP(pages), kflex_cast_user/kflex_cast_kern
 *   loop.h     kflex_cond_break, kflex_can_loop (may_goto)
 *   atomic.h   kflex_xchg, kflex_cmpxchg, kflex_fetch_add
 *   alloc.h    KFLEX_ALLOCATOR(), kflex_malloc, kflex_free, kflex_commit
 *   lock.h     struct kflex_lock, kflex_lock, kflex_unlock
 * sdk/README.md documents the API, the allocator's bounds and what cancellation guarantees.
 */
#ifndef KFLEX_KFLEX_H
#define KFLEX_KFLEX_H

#include "platform.h"
#include "net.h"
#include "heap.h"
#include "loop.h"
#include "atomic.h"
#include "alloc.h"
#include "lock.h"

#endif /* KFLEX_KFLEX_H */
