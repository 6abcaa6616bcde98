/* Every kind of global-data section, with string literals. */
#include <kflex/helpers.h>

int counter = 7;
const volatile int limit = 100;
__u64 scratch[4];
int custom SEC(".data.custom") = 3;
const char greeting[] = "hi there";

SEC("socket")
int use_globals(struct __sk_buff *skb)
{
	const char *lit = "literal string";

	counter++;
	scratch[skb->len & 3] = limit;
	custom += 1;
	return lit[skb->len & 7] + greeting[skb->len & 3];
}
