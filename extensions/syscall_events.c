// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * syscall_events: a syscall program that runs a Collatz walk and reports it through a ring buffer.
 *
 * The context is the caller's `struct collatz_args { n, seed, result }`. Starting from `seed`, the
 * program applies x -> x/2 (x even) or x -> 3x+1 (x odd) until x reaches 1 or `n` steps have been
 * taken (n must be at most MAX_STEPS = 10000, so the loop is bounded for the Linux verifier too),
 * and writes the number of steps taken into `result`. The loop condition includes `can_loop` (one
 * may_goto instruction) so that Linux verifies it without unrolling 10000 iterations.
 *
 * Side effects:
 *   - every STEP_BLOCK (64) steps one `struct step_event` (kind EVENT_STEP) is reserved and
 *     submitted in the ring buffer `events`;
 *   - at the end one `struct step_event` (kind EVENT_DONE: seed, steps, peak) is copied into
 *     `events` with bpf_ringbuf_output;
 *   - the .data globals `total_runs` and `total_steps` accumulate over runs;
 *   - the extension heap (the `heap` arena map) holds `steps_histogram`, runs counted by
 *     steps / 64 (last bucket: 63 * 64 steps or more), and `peak_value`, the largest x ever seen.
 *
 * Expected test-run results (return value; ctx after the run):
 *   n = 1000, seed = 27  -> 0; result = 111 (27 reaches 1 after 111 steps, peak 9232);
 *                          events: one EVENT_STEP (after step 64), then EVENT_DONE
 *   n = 1000, seed = 1   -> 0; result = 0, events: EVENT_DONE only
 *   n = 10,   seed = 27  -> 1 (1 not reached within n steps); result = 10
 *   n = 10001            -> -22 (EINVAL); ctx unchanged, nothing emitted
 *   seed = 0             -> -22 (EINVAL)
 */
#include <kflex/helpers.h>

#define MAX_STEPS 10000
#define STEP_BLOCK 64
#define HISTOGRAM_BUCKETS 64
#define EINVAL 22

/* The context: filled in by the caller, `result` written back by the program. */
struct collatz_args {
	__u64 n;
	__u64 seed;
	__u64 result;
};

enum event_kind {
	EVENT_STEP = 1,
	EVENT_DONE = 2,
};

/* One ring-buffer record. */
struct step_event {
	__u32 kind;
	__u32 step;
	__u64 seed;
	__u64 value; /* EVENT_STEP: current x; EVENT_DONE: peak x of the walk */
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

/* The extension heap: 16 pages, mappable by user space. */
struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 16);
} heap SEC(".maps");

/* Heap-resident statistics (section .addr_space.1). */
__u64 __arena steps_histogram[HISTOGRAM_BUCKETS];
__u64 __arena peak_value;

/* Running totals over all runs (.data). */
__u64 total_runs SEC(".data") = 0;
__u64 total_steps SEC(".data") = 0;

static __always_inline void emit_step(__u64 seed, __u32 step, __u64 x)
{
	struct step_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e)
		return; /* ring full: the consumer is behind, drop this progress record */
	e->kind = EVENT_STEP;
	e->step = step;
	e->seed = seed;
	e->value = x;
	bpf_ringbuf_submit(e, 0);
}

static __always_inline void record_in_heap(__u32 steps, __u64 peak)
{
	__u32 bucket = steps / STEP_BLOCK;

	if (bucket >= HISTOGRAM_BUCKETS)
		bucket = HISTOGRAM_BUCKETS - 1;
	steps_histogram[bucket] += 1;
	if (peak > peak_value)
		peak_value = peak;
}

SEC("syscall")
int syscall_events(struct collatz_args *args)
{
	__u64 n = args->n;
	__u64 seed = args->seed;
	__u64 x = seed, peak = seed;
	struct step_event done;
	__u64 left;
	__u32 steps;

	if (n > MAX_STEPS || seed == 0)
		return -EINVAL;

	/*
	 * Count down from n rather than up from 0, and keep clang from turning `n - left` back into
	 * an up-counter (barrier_var): the verifier then sees a shrinking range instead of a new
	 * constant each iteration, and `can_loop` (may_goto) lets it stop unrolling once the loop
	 * state repeats. kflex checks termination on the back-edge either way.
	 */
	for (left = n; left > 0 && can_loop; left--) {
		barrier_var(left);
		if (x == 1)
			break;
		x = (x & 1) ? 3 * x + 1 : x / 2;
		if (x > peak)
			peak = x;
		steps = n - left + 1;
		if (steps % STEP_BLOCK == 0)
			emit_step(seed, steps, x);
	}
	steps = n - left;

	args->result = steps;

	done.kind = EVENT_DONE;
	done.step = steps;
	done.seed = seed;
	done.value = peak;
	bpf_ringbuf_output(&events, &done, sizeof(done), 0);

	__sync_fetch_and_add(&total_runs, 1);
	__sync_fetch_and_add(&total_steps, steps);
	record_in_heap(steps, peak);

	return x == 1 ? 0 : 1;
}

char _license[] SEC("license") = "GPL";
