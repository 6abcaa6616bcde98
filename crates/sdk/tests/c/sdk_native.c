// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * The program side of the allocator and lock built natively (gcc -O2 -shared), driven by
 * crates/sdk/tests/native.rs against the Rust host side. Each thread picks its CPU id with
 * sdk_set_cpu() (KFLEX_NATIVE_CPU), like distinct kflex workers.
 */
static __thread unsigned sdk_cpu;
#define KFLEX_NATIVE_CPU() sdk_cpu
#include <kflex/kflex.h>

KFLEX_ALLOCATOR();

struct kflex_lock sdk_lock_word;

void sdk_set_cpu(unsigned cpu)
{
	sdk_cpu = cpu;
}

__u64 sdk_state(void)
{
	return (__u64)&kflex_alloc_state;
}

__u64 sdk_lock_addr(void)
{
	return (__u64)&sdk_lock_word;
}

#define LIVE 256

static __u64 next_rand(__u64 *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Fills the payload with a pattern naming the block, checks it on free. */
static void stamp(__u64 *p, __u64 size, __u64 tag)
{
	__u64 i;

	for (i = 0; i < size / 8; i++)
		p[i] = tag ^ i;
}

static __u64 check(const __u64 *p, __u64 size, __u64 tag)
{
	__u64 i, bad = 0;

	for (i = 0; i < size / 8; i++)
		bad += p[i] != (tag ^ i);
	return bad;
}

/*
 * `iters` random malloc/free steps keeping up to LIVE blocks of random sizes, each stamped
 * with its own pattern and checked when freed (a block handed out twice, or carved over another,
 * shows up as a broken pattern). Every block is freed at the end. Returns the mallocs that
 * succeeded; *failed counts NULL returns, *corrupt broken patterns.
 */
__u64 sdk_churn(__u64 iters, __u64 seed, __u64 *failed, __u64 *corrupt)
{
	__u64 *live[LIVE] = {0};
	__u64 sizes[LIVE] = {0};
	__u64 ok = 0, i, s = seed | 1;

	*failed = 0;
	*corrupt = 0;
	for (i = 0; i < iters; i++) {
		__u64 r = next_rand(&s), slot = r % LIVE;

		if (live[slot]) {
			*corrupt += check(live[slot], sizes[slot], (__u64)live[slot]);
			kflex_free(live[slot]);
			live[slot] = 0;
		} else {
			__u64 size = 8 + (r >> 20) % ((r >> 40) % 8 == 0 ? 4096 : 256);
			__u64 *p = kflex_malloc(size);

			if (!p) {
				*failed += 1;
				continue;
			}
			size &= ~7ULL;
			stamp(p, size, (__u64)p);
			live[slot] = p;
			sizes[slot] = size;
			ok++;
		}
		kflex_commit();
	}
	for (i = 0; i < LIVE; i++) {
		if (live[i]) {
			*corrupt += check(live[i], sizes[i], (__u64)live[i]);
			kflex_free(live[i]);
		}
	}
	kflex_commit();
	return ok;
}

/*
 * What a cancelled invocation leaves behind: takes the lock, allocates `n` blocks of `size`
 * bytes without committing, frees the first `freed` of them again, and returns without
 * unlocking. Returns the number of blocks allocated.
 */
__u64 sdk_abandon(__u64 n, __u64 size, __u64 freed)
{
	void *blocks[64];
	__u64 i, got = 0;

	if (kflex_lock(&sdk_lock_word))
		return 0;
	for (i = 0; i < n && i < 64; i++) {
		blocks[i] = kflex_malloc(size);
		if (blocks[i])
			got++;
	}
	for (i = 0; i < freed && i < n && i < 64; i++)
		kflex_free(blocks[i]);
	return got;
}

/* Takes and releases the lock: 0 on success. */
int sdk_lock_cycle(void)
{
	if (kflex_lock(&sdk_lock_word))
		return -1;
	kflex_unlock(&sdk_lock_word);
	return 0;
}

/* Frees p (for double-free and foreign-pointer checks). */
void sdk_free(void *p)
{
	kflex_free(p);
}

void *sdk_malloc(__u64 size)
{
	void *p = kflex_malloc(size);

	kflex_commit();
	return p;
}

/* Benchmark body: `n` times kflex_malloc(size) + kflex_free + kflex_commit; returns the mallocs
 * that succeeded. */
__u64 sdk_pairs(__u64 n, __u64 size)
{
	__u64 i, ok = 0;

	for (i = 0; i < n; i++) {
		void *p = kflex_malloc(size);

		ok += p != 0;
		kflex_free(p);
		kflex_commit();
	}
	return ok;
}

/* Benchmark body: `n` (at most 4096) mallocs of `size` bytes, then frees them all. */
__u64 sdk_bulk(__u64 n, __u64 size)
{
	static void *held[4096];
	__u64 i, ok = 0;

	for (i = 0; i < n && i < 4096; i++) {
		held[i] = kflex_malloc(size);
		ok += held[i] != 0;
	}
	kflex_commit();
	for (i = 0; i < n && i < 4096; i++)
		kflex_free(held[i]);
	return ok;
}

/* Benchmark body: `n` lock/unlock pairs. */
__u64 sdk_lock_pairs(__u64 n)
{
	__u64 i, ok = 0;

	for (i = 0; i < n; i++) {
		ok += kflex_lock(&sdk_lock_word) == 0;
		kflex_unlock(&sdk_lock_word);
	}
	return ok;
}

/* Allocates up to `n` blocks of `size` bytes into out[]; returns how many it got. */
__u64 sdk_alloc_many(__u64 n, __u64 size, void **out)
{
	__u64 i;

	for (i = 0; i < n; i++) {
		out[i] = kflex_malloc(size);
		if (!out[i])
			break;
	}
	kflex_commit();
	return i;
}

/* Frees the `n` blocks in ptrs[]. */
void sdk_free_many(__u64 n, void **ptrs)
{
	__u64 i;

	for (i = 0; i < n; i++)
		kflex_free(ptrs[i]);
}

/* Within one uncommitted "invocation": allocates `n` blocks into out[], frees the `fill_n`
 * blocks in fill[] (filling the private list), then frees out[]; returns how many it got. */
__u64 sdk_uncommitted_after_fill(__u64 n, __u64 size, void **out, __u64 fill_n, void **fill)
{
	__u64 i, got;

	for (got = 0; got < n; got++) {
		out[got] = kflex_malloc(size);
		if (!out[got])
			break;
	}
	for (i = 0; i < fill_n; i++)
		kflex_free(fill[i]);
	for (i = 0; i < got; i++)
		kflex_free(out[i]);
	return got;
}
