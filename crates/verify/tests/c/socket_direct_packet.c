// Socket filters may not read packet data directly: rejected at the read of skb->data.
#include <kflex/helpers.h>

SEC("socket")
int socket_direct_packet(struct __sk_buff *skb)
{
	__u8 *data = (void *)(long)skb->data;
	__u8 *data_end = (void *)(long)skb->data_end;

	if (data + 1 > data_end)
		return 0;
	return data[0];
}

KFLEX_LICENSE("GPL");
