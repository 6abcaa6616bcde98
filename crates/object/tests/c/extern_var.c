/* A reference to a variable no section defines. */
#include <kflex/helpers.h>

extern int missing_value;

SEC("xdp")
int prog(struct xdp_md *ctx)
{
	return missing_value;
}
