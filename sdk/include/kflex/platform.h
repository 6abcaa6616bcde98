/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * kflex SDK: what differs between the three ways an SDK source is compiled.
 *
 *   clang -target bpf (kflex and Linux): the real thing, helpers.h is included, SEC() places
 *       programs and maps in ELF sections, `__arena` is address space 1.
 *   gcc/clang for the host (the native baseline, KFLEX_NATIVE): SEC() and map definitions vanish,
 *       `__arena` is empty, the heap is an ordinary host buffer, kflex_cpu() is 0.
 *
 * Everything else in the SDK is written once on top of the few macros defined here.
 */
#ifndef KFLEX_PLATFORM_H
#define KFLEX_PLATFORM_H

#include "compiler.h"
#include "types.h"

#if defined(__bpf__)

#include "helpers.h"

/* True when compiling for the host instead of for BPF. */
#define KFLEX_NATIVE 0

#else /* native build */

#define KFLEX_NATIVE 1

/* Sections and BTF map definitions have no meaning natively: programs become plain functions. */
#ifndef SEC
#define SEC(name)
#endif
#ifndef __uint
#define __uint(name, val) int(*name)[val]
#endif
#ifndef __type
#define __type(name, val) typeof(val) *name
#endif
/* Heap pointers are ordinary pointers into a host buffer. */
#ifndef __arena
#define __arena
#endif
#define KFLEX_LICENSE(s) extern int __kflex_license_unused_

#endif /* __bpf__ */

/*
 * kflex_cpu(): the CPU (on kflex: the worker slot, ExecEnv::cpu) running the program. Per-CPU SDK
 * state is indexed by it modulo KFLEX_MAX_CPUS. Natively it is 0 unless the build defines
 * KFLEX_NATIVE_CPU() (for example as a thread-local slot number).
 */
#if KFLEX_NATIVE
#ifdef KFLEX_NATIVE_CPU
#define kflex_cpu() ((__u32)(KFLEX_NATIVE_CPU()))
#else
#define kflex_cpu() ((__u32)0)
#endif
#else
#define kflex_cpu() ((__u32)bpf_get_smp_processor_id())
#endif

#endif /* KFLEX_PLATFORM_H */
