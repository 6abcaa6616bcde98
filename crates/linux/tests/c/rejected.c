/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Test object of the libbpf back end: `fine` is valid, `unchecked` reads the packet without a
 * bounds check, which the Linux verifier rejects (so loading the object fails, naming it).
 */
#include <kflex/types.h>
#include <kflex/helpers.h>

SEC("xdp")
int fine(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("xdp")
int unchecked(struct xdp_md *ctx)
{
	__u8 *data = (__u8 *)(long)ctx->data;

	return data[20] == 6 ? XDP_DROP : XDP_PASS;
}

KFLEX_LICENSE("GPL");
