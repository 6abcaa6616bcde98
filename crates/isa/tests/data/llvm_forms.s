r1 += r2
w1 += w2
r1 += 5
w1 += -5
r1 -= r2
r1 *= r2
r1 /= r2
r1 s/= r2
w1 s/= 3
r1 %= r2
r1 s%= r2
w1 s%= w2
r1 |= r2
r1 &= r2
r1 <<= r2
r1 >>= r2
r1 s>>= r2
w1 s>>= 3
r1 ^= r2
r1 = -r1
w1 = -w1
r1 = r2
w1 = w2
r1 = 7
w1 = -7
r1 = (s8)r2
r1 = (s16)r2
r1 = (s32)r2
w1 = (s8)w2
w1 = (s16)w2
r0 = be16 r0
r0 = be32 r0
r0 = be64 r0
r0 = le16 r0
r0 = le32 r0
r0 = le64 r0
r0 = bswap16 r0
r0 = bswap32 r0
r0 = bswap64 r0
r1 = 0x1122 ll
r1 = -1 ll
r0 = *(u8 *)(r1 + 4)
r0 = *(u16 *)(r1 - 4)
r0 = *(u32 *)(r1 + 0)
r0 = *(u64 *)(r10 - 8)
r0 = *(s8 *)(r1 + 4)
r0 = *(s16 *)(r1 + 4)
r0 = *(s32 *)(r1 + 4)
*(u8 *)(r1 + 4) = r2
*(u16 *)(r1 + 4) = r2
*(u32 *)(r1 + 4) = r2
*(u64 *)(r1 + 4) = r2
*(u8 *)(r1 + 4) = 5
*(u32 *)(r1 - 4) = -5
*(u64 *)(r10 - 8) = 0x100
lock *(u64 *)(r1 + 8) += r2
lock *(u32 *)(r1 + 8) += w2
lock *(u64 *)(r1 + 8) |= r2
lock *(u64 *)(r1 + 8) &= r2
lock *(u64 *)(r1 + 8) ^= r2
lock *(u32 *)(r1 + 8) ^= w2
r0 = atomic_fetch_add((u64 *)(r1 + 0), r0)
w0 = atomic_fetch_add((u32 *)(r1 + 0), w0)
r0 = atomic_fetch_or((u64 *)(r1 + 0), r0)
r0 = atomic_fetch_and((u64 *)(r1 + 0), r0)
r0 = atomic_fetch_xor((u64 *)(r1 + 0), r0)
r0 = xchg_64(r1 + 0, r0)
w0 = xchg32_32(r1 + 0, w0)
r0 = cmpxchg_64(r1 + 0, r0, r2)
w0 = cmpxchg32_32(r1 + 0, w0, w2)
r1 = addr_space_cast(r2, 0x1, 0x0)
goto +3
goto -3
gotol +3
if r1 == r2 goto +3
if r1 == 5 goto -3
if w1 == w2 goto +3
if w1 == -5 goto +3
if r1 > r2 goto +3
if r1 >= r2 goto +3
if r1 & r2 goto +3
if r1 != r2 goto +3
if r1 s> r2 goto +3
if r1 s>= r2 goto +3
if r1 < r2 goto +3
if r1 <= r2 goto +3
if r1 s< r2 goto +3
if r1 s<= r2 goto +3
if w1 s<= 0x7fffffff goto +3
if r1 > -1 goto +3
may_goto +2
call 1
call -1
callx r2
exit
r1 = -0x80000000 ll
r1 = 0xffffffff ll
r1 = 0x100000000 ll
r1 = -2147483648
w1 = 0xffffffff
*(u64 *)(r1 - 32768) = -2147483648
r0 = *(u64 *)(r1 + 32767)
call 0x7fffffff
call -2147483648
goto +5
goto -100
w3 = w4
w3 <<= 31
w3 >>= w4
r3 s>>= 63
w5 %= 7
w5 /= w6
w5 |= 0xff
w5 &= -1
w5 ^= w1
w5 *= 3
w5 -= w1
if w1 != 0 goto +1
if w1 > w2 goto +1
if w1 >= 3 goto +1
if w1 < w2 goto +1
if w1 <= 3 goto +1
if w1 s> w2 goto +1
if w1 s>= -3 goto +1
if w1 s< w2 goto +1
lock *(u32 *)(r1 + 8) |= w2
lock *(u32 *)(r1 + 8) &= w2
w2 = atomic_fetch_or((u32 *)(r1 - 8), w2)
w2 = atomic_fetch_and((u32 *)(r1 + 8), w2)
w2 = atomic_fetch_xor((u32 *)(r1 + 8), w2)
r9 = *(u16 *)(r10 - 2)
*(u16 *)(r10 - 2) = 0x7fff
*(u32 *)(r10 - 4) = r9
exit
