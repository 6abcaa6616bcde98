// A syscall program reads its arguments and writes a result into the context: accepted.
#include <kflex/helpers.h>

struct args {
	__u64 a;
	__u64 b;
	__u64 sum;
};

SEC("syscall")
int syscall_args(struct args *args)
{
	args->sum = args->a + args->b;
	return 0;
}

KFLEX_LICENSE("GPL");
