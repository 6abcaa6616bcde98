// SPDX-License-Identifier: MIT OR Apache-2.0
/* Prints the allocator layout of alloc.h as `name value` lines, for tests/layout.rs. */
#include <stdio.h>
#include <stddef.h>
#include <kflex/kflex.h>

#define P(name, v) printf("%s %llu\n", name, (unsigned long long)(v))

int main(void)
{
	P("sizeof_alloc", sizeof(struct kflex_alloc));
	P("sizeof_cpu", sizeof(struct kflex_alloc_cpu));
	P("sizeof_lock", sizeof(struct kflex_lock));
	P("alloc.magic", offsetof(struct kflex_alloc, magic));
	P("alloc.version", offsetof(struct kflex_alloc, version));
	P("alloc.cpu", offsetof(struct kflex_alloc, cpu));
	P("cpu.free_head", offsetof(struct kflex_alloc_cpu, free_head));
	P("cpu.free_count", offsetof(struct kflex_alloc_cpu, free_count));
	P("cpu.refill", offsetof(struct kflex_alloc_cpu, refill));
	P("cpu.starved", offsetof(struct kflex_alloc_cpu, starved));
	P("cpu.journal", offsetof(struct kflex_alloc_cpu, journal));
	P("cpu.journal_pos", offsetof(struct kflex_alloc_cpu, journal_pos));
	P("cpu.held_locks", offsetof(struct kflex_alloc_cpu, held_locks));
	P("cpu.scratch", offsetof(struct kflex_alloc_cpu, scratch));
	P("cpu.self_id", offsetof(struct kflex_alloc_cpu, self_id));
	P("cpu.keep", offsetof(struct kflex_alloc_cpu, keep));
	P("cpu.giveback", offsetof(struct kflex_alloc_cpu, giveback));
	P("max_cpus", KFLEX_MAX_CPUS);
	P("nr_classes", KFLEX_NR_CLASSES);
	P("journal_len", KFLEX_JOURNAL_LEN);
	P("held_locks", KFLEX_HELD_LOCKS);
	P("max_alloc", KFLEX_MAX_ALLOC);
	P("block_header", KFLEX_BLOCK_HEADER);
	P("alloc_magic", KFLEX_ALLOC_MAGIC);
	P("alloc_version", KFLEX_ALLOC_VERSION);
	P("block_magic", KFLEX_BLOCK_MAGIC);
	P("hdr_allocated", KFLEX_HDR_ALLOCATED);
	P("hdr_host", KFLEX_HDR_HOST);
	P("class_size_3", KFLEX_CLASS_SIZE(3));
	P("size_class_100", kflex_size_class(100));
	P("size_class_4096", kflex_size_class(4096));
	return 0;
}
