// A program that reserves a ring-buffer sample and never submits it (the Linux verifier would
// reject it, and so does kflex's; tests load it unverified to check that the runtime releases the
// sample after the run).
#include <kflex/helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} rb SEC(".maps");

SEC("syscall")
int leak(void *ctx)
{
	__u64 *sample = bpf_ringbuf_reserve(&rb, 2048, 0);

	if (!sample)
		return 0;
	*sample = 42;
	return 1;
}

char _license[] SEC("license") = "GPL";
