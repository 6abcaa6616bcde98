/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Test object of the libbpf back end (crates/linux/tests/backend_maps.rs).
 *
 *   bump (syscall): totals[key] += add (creating the entry), bumps the .data global `calls`;
 *                   returns the new total (low 32 bits) and writes it to ctx->total.
 *   swap (xdp):     swaps the first two bytes of the packet and returns XDP_TX; a packet
 *                   shorter than two bytes gets XDP_DROP.
 */
#include <kflex/types.h>
#include <kflex/helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} totals SEC(".maps");

struct bump_args {
	__u32 key;
	__u32 pad;
	__u64 add;
	__u64 total;
};

__u64 calls = 100;

SEC("syscall")
int bump(struct bump_args *a)
{
	__u32 key = a->key;
	__u64 *v = bpf_map_lookup_elem(&totals, &key);
	__u64 total = a->add;

	if (v)
		total += *v;
	bpf_map_update_elem(&totals, &key, &total, BPF_ANY);
	calls += 1;
	a->total = total;
	return (int)total;
}

SEC("xdp")
int swap(struct xdp_md *ctx)
{
	__u8 *data = (__u8 *)(long)ctx->data;
	__u8 *end = (__u8 *)(long)ctx->data_end;
	__u8 t;

	if (data + 2 > end)
		return XDP_DROP;
	t = data[0];
	data[0] = data[1];
	data[1] = t;
	return XDP_TX;
}

KFLEX_LICENSE("GPL");
