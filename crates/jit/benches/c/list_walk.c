// Pointer-chasing heap workload for the SFI benchmark.
//
// `list_build` links NODES nodes of a heap array into one list in a scrambled order (so the walk
// chases pointers across the whole array instead of streaming through it); `list_walk` follows
// the `next` pointers and sums the values. The same source is compiled twice:
//  * for kflex: clang-19 -O2 -target bpf -mcpu=v4 (the nodes live in the extension heap, an
//    arena map; every `next` pointer loaded from the heap is untrusted and guarded);
//  * natively: gcc -O2 -shared (no BPF toolchain macros: `__arena` is defined away).
#ifdef __bpf__
#include <kflex/helpers.h>
#else
#define __arena
#define SEC(name)
typedef unsigned long long __u64;
#endif

#define NODES 100000
/* Multiplier coprime with NODES: i -> (i * STEP) % NODES visits every slot exactly once. */
#define STEP 7919

struct node {
	struct node __arena *next;
	__u64 value;
};

#ifdef __bpf__
struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1024); /* pages: 4 MiB */
} heap SEC(".maps");
#endif

struct node __arena nodes[NODES];
struct node __arena *__arena list_head;

SEC("syscall")
int list_build(void *ctx)
{
	struct node __arena *prev = 0;
	__u64 slot = 0;

	for (__u64 i = 0; i < NODES; i++) {
		struct node __arena *n = &nodes[slot];

		n->value = i * 3 + 1;
		n->next = prev;
		prev = n;
		slot += STEP;
		if (slot >= NODES)
			slot -= NODES;
	}
	list_head = prev;
	return 0;
}

SEC("syscall")
__u64 list_walk(void *ctx)
{
	__u64 sum = 0;

	for (struct node __arena *n = list_head; n; n = n->next)
		sum += n->value;
	return sum;
}

#ifdef __bpf__
KFLEX_LICENSE("GPL");
#endif
