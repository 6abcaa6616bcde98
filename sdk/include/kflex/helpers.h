/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * kflex SDK: section and map-definition macros, compiler hints, and the helper functions an
 * extension may call, declared with their Linux helper numbers.
 *
 * The spellings follow libbpf's conventions (SEC, __uint, __type, bpf_printk, ...) so one object
 * runs on kflex and also loads into Linux with libbpf >= 1.4. Self-contained: no system headers.
 */
#ifndef KFLEX_HELPERS_H
#define KFLEX_HELPERS_H

#include "compiler.h"
#include "types.h"

/* ---- Sections and BTF-defined maps. ---- */

/* Place a program, map or global in the named ELF section (the section name selects the program
 * type: "xdp", "socket", "tc", "sk_skb/stream_verdict", "syscall", ...). */
#define SEC(name) __attribute__((section(name), used))

/* Fields of a BTF-defined map in the ".maps" section. The value is encoded in the field's type
 * (array dimension or pointee), which is what loaders read from BTF. */
#define __uint(name, val) int(*name)[val]
#define __type(name, val) typeof(val) *name
#define __array(name, val) typeof(val) *name[]
#define __ulong(name, val) enum { ___kflex_concat(__unique_value, __COUNTER__) = val } name

#define ___kflex_concat(a, b) ___kflex_concat_(a, b)
#define ___kflex_concat_(a, b) a##b

/* Pointer into the extension heap (the arena map, address space 1). Globals declared with it land
 * in the ".addr_space.1" section and live in the heap. */
#ifndef __arena
#define __arena __attribute__((address_space(1)))
#endif

/* Every extension carries a license string; kflex records it, Linux checks it for GPL helpers. */
#define KFLEX_LICENSE(s) char _license[] SEC("license") = s

/* ---- Helper functions (Linux helper numbers). ---- */

/* 1: pointer to the value stored under `key`, or NULL. */
static void *(*const bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
/* 2: insert or replace the value under `key` (flags: BPF_ANY, BPF_NOEXIST, BPF_EXIST). 0 or -errno. */
static long (*const bpf_map_update_elem)(void *map, const void *key, const void *value,
					 __u64 flags) = (void *)2;
/* 3: remove `key`. 0 or -errno (-ENOENT when absent). */
static long (*const bpf_map_delete_elem)(void *map, const void *key) = (void *)3;
/* 5: monotonic clock in nanoseconds. */
static __u64 (*const bpf_ktime_get_ns)(void) = (void *)5;
/* 6: formatted trace message (at most three arguments); use bpf_printk. */
static long (*const bpf_trace_printk)(const char *fmt, __u32 fmt_size, ...) = (void *)6;
/* 7: pseudo-random 32-bit number. */
static __u32 (*const bpf_get_prandom_u32)(void) = (void *)7;
/* 8: index of the CPU (kflex: the worker) running the program. */
static __u32 (*const bpf_get_smp_processor_id)(void) = (void *)8;
/* 9: copy `len` bytes from `from` into the packet at `offset`. 0 or -errno. */
static long (*const bpf_skb_store_bytes)(struct __sk_buff *skb, __u32 offset, const void *from,
					 __u32 len, __u64 flags) = (void *)9;
/* 26: copy `len` packet bytes at `offset` into `to`. 0 or -errno. */
static long (*const bpf_skb_load_bytes)(const void *skb, __u32 offset, void *to,
					__u32 len) = (void *)26;
/* 44: move xdp_md->data by `delta` bytes (negative grows the packet at the front). 0 or -errno. */
static long (*const bpf_xdp_adjust_head)(struct xdp_md *xdp_md, int delta) = (void *)44;
/* 54: move xdp_md->data_meta by `delta` bytes. 0 or -errno. */
static long (*const bpf_xdp_adjust_meta)(struct xdp_md *xdp_md, int delta) = (void *)54;
/* 93/94: take and release the spin lock inside a map value. */
static long (*const bpf_spin_lock)(struct bpf_spin_lock *lock) = (void *)93;
static long (*const bpf_spin_unlock)(struct bpf_spin_lock *lock) = (void *)94;
/* 125: boot-time clock in nanoseconds (counts suspend). */
static __u64 (*const bpf_ktime_get_boot_ns)(void) = (void *)125;
/* 130: copy `size` bytes into a new ring-buffer record. 0 or -errno. */
static long (*const bpf_ringbuf_output)(void *ringbuf, void *data, __u64 size,
					__u64 flags) = (void *)130;
/* 131: reserve a `size`-byte record; NULL when full. Must be submitted or discarded. */
static void *(*const bpf_ringbuf_reserve)(void *ringbuf, __u64 size, __u64 flags) = (void *)131;
/* 132: publish a reserved record. */
static void (*const bpf_ringbuf_submit)(void *data, __u64 flags) = (void *)132;
/* 133: drop a reserved record. */
static void (*const bpf_ringbuf_discard)(void *data, __u64 flags) = (void *)133;
/* 134: ring-buffer property selected by `flags` (BPF_RB_AVAIL_DATA, BPF_RB_RING_SIZE, ...). */
static __u64 (*const bpf_ringbuf_query)(void *ringbuf, __u64 flags) = (void *)134;
/* 181: call `callback_fn(index, callback_ctx)` up to `nr_loops` times, stopping early when it
 * returns 1. Returns the number of calls made, or -errno. */
static long (*const bpf_loop)(__u32 nr_loops, void *callback_fn, void *callback_ctx,
			      __u64 flags) = (void *)181;

/* ---- bpf_printk. ---- */

/*
 * bpf_printk("fmt", args...): trace message through bpf_trace_printk. The format string is a
 * function-local static const array, so it lives in .rodata and the helper gets its exact size.
 */
#define bpf_printk(fmt, ...)                                                                       \
	({                                                                                         \
		static const char ___kflex_fmt[] = fmt;                                            \
		bpf_trace_printk(___kflex_fmt, sizeof(___kflex_fmt), ##__VA_ARGS__);               \
	})

/* ---- Loop termination points (Linux may_goto). ---- */

/*
 * `can_loop` is true while the runtime lets the current loop keep going; `cond_break` leaves the
 * enclosing loop once it is false. Both compile to one `may_goto` instruction, which Linux (>= 6.9)
 * and kflex both treat as a termination point, so loops with no static bound still verify.
 */
#define can_loop                                                                                   \
	({                                                                                         \
		__label__ l_break, l_continue;                                                     \
		bool ret = true;                                                                   \
		asm volatile goto("may_goto %l[l_break]" :::: l_break);                            \
		goto l_continue;                                                                   \
	l_break:                                                                                   \
		ret = false;                                                                       \
	l_continue:;                                                                               \
		ret;                                                                               \
	})

#define cond_break                                                                                 \
	({                                                                                         \
		__label__ l_break, l_continue;                                                     \
		asm volatile goto("may_goto %l[l_break]" :::: l_break);                            \
		goto l_continue;                                                                   \
	l_break:                                                                                   \
		break;                                                                             \
	l_continue:;                                                                               \
	})

#endif /* KFLEX_HELPERS_H */
