// Spins forever while holding a ring-buffer reservation: on the JIT the watchdog cancels the run
// and the reservation is discarded (counted in resources_released); the ring buffer stays usable.
#include <kflex/helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} events SEC(".maps");

SEC("syscall")
int spin(__u64 *ctx)
{
	__u64 *rec = bpf_ringbuf_reserve(&events, 8, 0);
	volatile __u64 n = 0;

	if (!rec)
		return 1;
	*rec = 42;
	while (*ctx == 0)
		n++;
	bpf_ringbuf_submit(rec, 0);
	return 0;
}

KFLEX_LICENSE("GPL");
