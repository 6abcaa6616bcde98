// Keeps counters in the extension heap (an arena map): accepted by kflex and by Linux.
#include <kflex/helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 4);
} heap SEC(".maps");

__u64 __arena buckets[32];

SEC("syscall")
int heap_counter(__u64 *arg)
{
	__u64 i = *arg;

	if (i >= 32)
		return -1;
	buckets[i] += 1;
	return 0;
}

KFLEX_LICENSE("GPL");
