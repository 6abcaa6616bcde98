/* __arena globals with no arena map to hold them. */
#include <kflex/helpers.h>

int __arena lonely = 1;

SEC("xdp")
int prog(struct xdp_md *ctx)
{
	return lonely;
}
