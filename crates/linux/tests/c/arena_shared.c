/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Test object of the libbpf back end (crates/linux/tests/backend_arena.rs): arena globals, a heap
 * shared with user space at identical addresses, and syscall programs reporting through ctx.
 *
 *   globals: reports the user addresses of the __arena globals `marker` and `buf`, marker's value
 *            and a run counter kept in the heap; fills buf[i] = 3 * i; returns 7.
 *   walk:    follows a linked list that user space built in the heap (head in ctx, `next` fields
 *            holding user addresses) and reports the number of nodes and the sum of their values.
 *            It counts its runs in the __arena global `walks`: Linux accepts addr_space_cast only
 *            in a program that references the arena map, which an arena global does.
 */
#include <kflex/types.h>
#include <kflex/helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 8);
} heap SEC(".maps");

struct node {
	__u64 value;
	struct node __arena *next;
};

struct args {
	__u64 head;
	__u64 sum;
	__u64 nodes;
	__u64 marker_addr;
	__u64 marker;
	__u64 counter;
	__u64 buf_addr;
};

#define BUF_LEN 32

__u64 __arena runs;
__u64 __arena walks;
__u64 __arena marker = 0x6b666c6578ULL;
__u64 __arena buf[BUF_LEN];

SEC("syscall")
int globals(struct args *a)
{
	a->marker_addr = (__u64)&marker;
	a->buf_addr = (__u64)buf;
	a->marker = marker;
	runs += 1;
	a->counter = runs;
	for (int i = 0; i < BUF_LEN; i++)
		buf[i] = (__u64)i * 3;
	return 7;
}

SEC("syscall")
int walk(struct args *a)
{
	struct node __arena *n = (struct node __arena *)a->head;
	__u64 sum = 0, count = 0;

	while (n) {
		sum += n->value;
		count++;
		n = n->next;
		cond_break;
	}
	walks += 1;
	a->sum = sum;
	a->nodes = count;
	return 0;
}

KFLEX_LICENSE("GPL");
