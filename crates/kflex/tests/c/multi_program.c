// Three programs for `kflex run --program A --program B ...`: `store` leaves a value in a hash map
// and in the extension heap, `bump` increments both, `load` returns what the earlier runs left
// behind (map value * 1000 + heap value). Each run sees the previous runs' writes only if the
// programs share one runtime instance.
#include <kflex/helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} shared SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 4);
} heap SEC(".maps");

__u64 __arena heap_value;
/* A heap pointer kept in the heap: accesses through it (loaded from memory, so untrusted) need an
 * SFI guard, which the guard-count checks of the CLI tests rely on. */
__u64 __arena *__arena heap_ptr;

SEC("syscall")
int store(void *ctx)
{
	__u32 key = 7;
	__u64 value = 5;

	bpf_map_update_elem(&shared, &key, &value, BPF_ANY);
	heap_ptr = &heap_value;
	barrier(); /* reload heap_ptr from the heap */
	*heap_ptr = 3;
	return 0;
}

SEC("syscall")
int bump(void *ctx)
{
	__u32 key = 7;
	__u64 *v = bpf_map_lookup_elem(&shared, &key);

	if (!v)
		return -1;
	*v += 1;
	heap_value += 1;
	return 0;
}

SEC("syscall")
int load(void *ctx)
{
	__u32 key = 7;
	__u64 *v = bpf_map_lookup_elem(&shared, &key);

	if (!v)
		return -1;
	return *v * 1000 + *heap_ptr;
}

KFLEX_LICENSE("GPL");
