/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * kflex SDK: fixed-width types, program contexts and ABI constants for extensions.
 *
 * Self-contained: needs no system, kernel or libbpf header, so an extension builds with nothing but
 * `clang -target bpf -I sdk/include`. Every layout and number below follows the Linux UAPI
 * (include/uapi/linux/bpf.h, pkt_cls.h), so the same object also loads into Linux through libbpf.
 */
#ifndef KFLEX_TYPES_H
#define KFLEX_TYPES_H

/* ---- Fixed-width integers (the kernel's __uN / __sN spellings). ---- */

typedef unsigned char __u8;
typedef signed char __s8;
typedef unsigned short __u16;
typedef signed short __s16;
typedef unsigned int __u32;
typedef signed int __s32;
typedef unsigned long long __u64;
typedef signed long long __s64;

/* Big-endian (network order) quantities and checksums: plain integers, the name documents intent. */
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u64 __be64;
typedef __u32 __wsum;

_Static_assert(sizeof(__u8) == 1, "__u8 is 1 byte");
_Static_assert(sizeof(__u16) == 2, "__u16 is 2 bytes");
_Static_assert(sizeof(__u32) == 4, "__u32 is 4 bytes");
_Static_assert(sizeof(__u64) == 8, "__u64 is 8 bytes");

#ifndef NULL
#define NULL ((void *)0)
#endif

#ifndef __cplusplus
#ifndef bool
#define bool _Bool
#define true 1
#define false 0
#endif
#endif

/*
 * A pointer field in a context struct: always 8 bytes and 8-byte aligned, whatever the pointer width
 * of the compiling target, so user-space and BPF views of the struct agree (Linux's __bpf_md_ptr).
 */
#define __kflex_md_ptr(type, name)                                                                 \
	union {                                                                                    \
		type name;                                                                         \
		__u64 : 64;                                                                        \
	} __attribute__((aligned(8)))

/* ---- Program contexts. ---- */

struct bpf_flow_keys;
struct bpf_sock;

/* Context of BPF_PROG_TYPE_XDP programs. `data`..`data_end` is the packet, `data_meta`..`data` is
 * the metadata area in front of it. */
struct xdp_md {
	__u32 data;
	__u32 data_end;
	__u32 data_meta;
	__u32 ingress_ifindex;
	__u32 rx_queue_index;
	__u32 egress_ifindex;
};

/* Context of socket filter, tc (sched_cls) and sk_skb programs: the UAPI mirror of an sk_buff. */
struct __sk_buff {
	__u32 len;
	__u32 pkt_type;
	__u32 mark;
	__u32 queue_mapping;
	__u32 protocol;
	__u32 vlan_present;
	__u32 vlan_tci;
	__u32 vlan_proto;
	__u32 priority;
	__u32 ingress_ifindex;
	__u32 ifindex;
	__u32 tc_index;
	__u32 cb[5];
	__u32 hash;
	__u32 tc_classid;
	__u32 data;
	__u32 data_end;
	__u32 napi_id;

	/* Socket fields, readable by sk_skb programs. */
	__u32 family;
	__u32 remote_ip4;
	__u32 local_ip4;
	__u32 remote_ip6[4];
	__u32 local_ip6[4];
	__u32 remote_port;
	__u32 local_port;

	__u32 data_meta;
	__kflex_md_ptr(struct bpf_flow_keys *, flow_keys);
	__u64 tstamp;
	__u32 wire_len;
	__u32 gso_segs;
	__kflex_md_ptr(struct bpf_sock *, sk);
	__u32 gso_size;
	__u8 tstamp_type;
	__u32 : 24;
	__u64 hwtstamp;
};

#define __kflex_offsetof(type, member) __builtin_offsetof(type, member)

_Static_assert(sizeof(struct xdp_md) == 24, "struct xdp_md is 24 bytes");
_Static_assert(__kflex_offsetof(struct xdp_md, data_end) == 4, "xdp_md.data_end at 4");
_Static_assert(__kflex_offsetof(struct xdp_md, data_meta) == 8, "xdp_md.data_meta at 8");
_Static_assert(__kflex_offsetof(struct xdp_md, egress_ifindex) == 20, "xdp_md.egress_ifindex at 20");

_Static_assert(sizeof(struct __sk_buff) == 192, "struct __sk_buff is 192 bytes");
_Static_assert(__kflex_offsetof(struct __sk_buff, mark) == 8, "__sk_buff.mark at 8");
_Static_assert(__kflex_offsetof(struct __sk_buff, protocol) == 16, "__sk_buff.protocol at 16");
_Static_assert(__kflex_offsetof(struct __sk_buff, priority) == 32, "__sk_buff.priority at 32");
_Static_assert(__kflex_offsetof(struct __sk_buff, cb) == 48, "__sk_buff.cb at 48");
_Static_assert(__kflex_offsetof(struct __sk_buff, hash) == 68, "__sk_buff.hash at 68");
_Static_assert(__kflex_offsetof(struct __sk_buff, data) == 76, "__sk_buff.data at 76");
_Static_assert(__kflex_offsetof(struct __sk_buff, data_end) == 80, "__sk_buff.data_end at 80");
_Static_assert(__kflex_offsetof(struct __sk_buff, family) == 88, "__sk_buff.family at 88");
_Static_assert(__kflex_offsetof(struct __sk_buff, remote_ip6) == 100, "__sk_buff.remote_ip6 at 100");
_Static_assert(__kflex_offsetof(struct __sk_buff, local_port) == 136, "__sk_buff.local_port at 136");
_Static_assert(__kflex_offsetof(struct __sk_buff, data_meta) == 140, "__sk_buff.data_meta at 140");
_Static_assert(__kflex_offsetof(struct __sk_buff, flow_keys) == 144, "__sk_buff.flow_keys at 144");
_Static_assert(__kflex_offsetof(struct __sk_buff, tstamp) == 152, "__sk_buff.tstamp at 152");
_Static_assert(__kflex_offsetof(struct __sk_buff, wire_len) == 160, "__sk_buff.wire_len at 160");
_Static_assert(__kflex_offsetof(struct __sk_buff, sk) == 168, "__sk_buff.sk at 168");
_Static_assert(__kflex_offsetof(struct __sk_buff, gso_size) == 176, "__sk_buff.gso_size at 176");
_Static_assert(__kflex_offsetof(struct __sk_buff, tstamp_type) == 180, "__sk_buff.tstamp_type at 180");
_Static_assert(__kflex_offsetof(struct __sk_buff, hwtstamp) == 184, "__sk_buff.hwtstamp at 184");

/* ---- Maps and locks. ---- */

/* A spin lock embedded in a map value (one per value, first-class in the verifier). */
struct bpf_spin_lock {
	__u32 val;
};

_Static_assert(sizeof(struct bpf_spin_lock) == 4, "struct bpf_spin_lock is 4 bytes");

/* Map types (Linux `enum bpf_map_type` numbers; only the ones kflex implements). */
enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_RINGBUF = 27,
	BPF_MAP_TYPE_ARENA = 33,
};

/* `flags` of bpf_map_update_elem. */
enum {
	BPF_ANY = 0,     /* create or update */
	BPF_NOEXIST = 1, /* create only */
	BPF_EXIST = 2,   /* update only */
	BPF_F_LOCK = 4,  /* take the value's spin lock while updating */
};

/* `map_flags` of a map definition. */
enum {
	BPF_F_NO_PREALLOC = (1U << 0),
	BPF_F_RDONLY_PROG = (1U << 7),
	BPF_F_MMAPABLE = (1U << 10),
};

/* Ring buffer: `flags` of submit/discard/output, and the `flags` selector of bpf_ringbuf_query. */
enum {
	BPF_RB_NO_WAKEUP = (1ULL << 0),
	BPF_RB_FORCE_WAKEUP = (1ULL << 1),
};

enum {
	BPF_RB_AVAIL_DATA = 0,
	BPF_RB_RING_SIZE = 1,
	BPF_RB_CONS_POS = 2,
	BPF_RB_PROD_POS = 3,
};

/* ---- Program return codes. ---- */

/* XDP verdicts. */
enum xdp_action {
	XDP_ABORTED = 0,
	XDP_DROP = 1,
	XDP_PASS = 2,
	XDP_TX = 3,
	XDP_REDIRECT = 4,
};

/* tc (sched_cls) actions, from linux/pkt_cls.h. */
#define TC_ACT_UNSPEC (-1)
#define TC_ACT_OK 0
#define TC_ACT_RECLASSIFY 1
#define TC_ACT_SHOT 2
#define TC_ACT_PIPE 3
#define TC_ACT_STOLEN 4
#define TC_ACT_QUEUED 5
#define TC_ACT_REPEAT 6
#define TC_ACT_REDIRECT 7
#define TC_ACT_TRAP 8

/* sk_skb verdicts. */
enum sk_action {
	SK_DROP = 0,
	SK_PASS = 1,
};

#endif /* KFLEX_TYPES_H */
