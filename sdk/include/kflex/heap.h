/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * kflex SDK: the extension heap (a BPF arena map) and heap pointers.
 *
 * A heap pointer is declared `T __arena *` (address space 1 on BPF). Globals declared `__arena`
 * live in the heap. Both back ends map the heap at the same address in the program and in the
 * host (kflex's heap, Linux's arena user mapping), so a pointer stored in the heap means the same
 * thing to the program and to user space.
 */
#ifndef KFLEX_HEAP_H
#define KFLEX_HEAP_H

#include "platform.h"

/*
 * KFLEX_HEAP(pages); at file scope declares the object's heap: the arena map `kflex_heap`
 * (BPF_F_MMAPABLE, max_entries = pages of 4 KiB). At most one per object. Natively it declares
 * nothing (the host provides the heap buffer).
 */
#if KFLEX_NATIVE
#define KFLEX_HEAP(pages) _Static_assert((pages) > 0, "KFLEX_HEAP needs at least one page")
#else
#define KFLEX_HEAP(pages)                                                                          \
	struct {                                                                                   \
		__uint(type, BPF_MAP_TYPE_ARENA);                                                  \
		__uint(map_flags, BPF_F_MMAPABLE);                                                 \
		__uint(max_entries, pages);                                                        \
	} kflex_heap SEC(".maps")
#endif

/*
 * Address-space conversions. clang >= 18 inserts addr_space_cast itself wherever a heap pointer
 * is dereferenced or converted, so both are identity expressions kept for readability and for
 * compilers without that feature: kflex_cast_kern(p) before handing a heap pointer to code that
 * dereferences it, kflex_cast_user(p) before storing it where user space reads it.
 */
#define kflex_cast_kern(p) (p)
#define kflex_cast_user(p) (p)

/* The heap address of a heap pointer as an integer expression, and back. For a value the
 * verifiers treat as a plain number (to store into the context) use kflex_addr() (alloc.h). */
#define kflex_heap_addr(p) ((__u64)(p))
#define kflex_heap_ptr(type, addr) ((type __arena *)(addr))

#endif /* KFLEX_HEAP_H */
