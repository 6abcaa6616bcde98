/* One map of every supported type, plus arena globals. */
#include <kflex/helpers.h>

struct pair {
	__u64 a, b;
};

struct key32 {
	char k[32];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 128);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__uint(key_size, 4);
	__uint(value_size, 24);
} table SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pair);
} percpu SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1000);
	__type(key, struct key32);
	__type(value, char[64]);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} lru SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16384);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 16);
	__ulong(map_extra, 0x100000000ULL);
} heap SEC(".maps");

int __arena arena_counter = 42;
int __arena arena_other = 0x01020304;

SEC("xdp")
int use_maps(struct xdp_md *ctx)
{
	__u32 k = ctx->ingress_ifindex;
	struct key32 lk = {};
	__u64 *c, *t, *p, *l;

	c = bpf_map_lookup_elem(&counters, &k);
	t = bpf_map_lookup_elem(&table, &k);
	p = bpf_map_lookup_elem(&percpu, &k);
	l = bpf_map_lookup_elem(&lru, &lk);
	bpf_ringbuf_output(&events, &k, sizeof(k), 0);
	arena_counter++;
	arena_other += k;
	return (c ? *c : 0) + (t ? *t : 0) + (p ? *p : 0) + (l ? *l : 0);
}

KFLEX_LICENSE("GPL");
