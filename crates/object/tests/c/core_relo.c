/* A CO-RE field access, which kflex does not support yet. */
#include <kflex/helpers.h>

struct task {
	int pid;
	int tgid;
} __attribute__((preserve_access_index));

SEC("syscall")
int prog(struct task *t)
{
	return t->tgid;
}
