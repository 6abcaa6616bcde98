/* A small program exercising common code generation patterns. */
static __attribute__((noinline)) int helper(int x) { return x * 3 + 1; }

struct pkt { unsigned char data[64]; long len; };

int entry(struct pkt *p) {
    long sum = 0;
    for (int i = 0; i < 32; i++) {
        short v = p->data[i];
        sum += (signed char)p->data[i + 1] * v;
        if (sum > 1000)
            sum ^= p->len;
    }
    __sync_fetch_and_add(&p->len, 1);
    sum += __sync_fetch_and_or(&p->len, 2);
    sum += __builtin_bswap32((unsigned)sum) + helper(sum);
    return sum >> 3;
}
