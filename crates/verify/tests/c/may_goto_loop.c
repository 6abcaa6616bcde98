// A loop ended by can_loop (may_goto): both verifiers accept it.
#include <kflex/helpers.h>

SEC("syscall")
int may_goto_loop(__u64 *arg)
{
	__u64 x = *arg, steps = 0;

	while (x > 1 && can_loop) {
		x = (x & 1) ? 3 * x + 1 : x / 2;
		steps++;
	}
	*arg = steps;
	return 0;
}

KFLEX_LICENSE("GPL");
