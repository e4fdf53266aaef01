/* elastic_arena.c - backpressure inside the allocator for elastic groups:
 * each running task of an elastic group allocates from a jemalloc arena
 * of its own whose extent hooks see every page the arena commits, on the
 * allocating thread, before the memory is handed out. A task that commits
 * past its claim waits there for room (elastic.c, ration__claim_charge)
 * unless it is the oldest, which consumes (docs/elastic.md).
 *
 * Why the commit hook: on Linux jemalloc keeps freed address space
 * (opt.retain) and reuses it without calling the alloc hook, so alloc
 * alone sees only new address space. Our alloc hook reserves without
 * committing, our decommit hook really gives the pages back
 * (MADV_DONTNEED) and the purge hooks opt out, so every reuse of freed
 * pages goes through commit. The arenas' dirty and muzzy decay are 0, so a
 * freed page is decommitted at once instead of sitting dirty (which would
 * be reused with no hook call, and would stay in the process's RSS).
 * Measured with jemalloc 5.3 (bench/extent_hooks_probe.c, figures in
 * docs/elastic.md): malloc/free/malloc of 8 MiB in such an arena calls
 * alloc once, then commit on every malloc and decommit on every free,
 * with or without a process-wide decay setting.
 *
 * Locks held by jemalloc while the hook waits: the arena's own grow
 * mutex. Only the task's thread allocates from its arena, so the wait
 * blocks no one else; measured (the probe's "locks"): while a commit hook
 * waits, other threads allocate from other arenas, free into this arena,
 * start threads and create arenas. Allocations made inside the hook (the
 * wait's child ctx) are jemalloc-reentrant and go to arena 0, not back
 * into the hook.
 *
 * Arenas are process-wide and reused: a task takes one from the pool at
 * start and gives it back at its end (jemalloc cannot destroy an arena
 * cheaply, and a freed arena's metadata would be made again for the next
 * task). The pool grows to the largest number of elastic tasks that ran
 * at once.
 *
 * Locking: pool_mu guards the pool; the MIBs are written once under
 * pthread_once. Everything else is the calling thread's.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "internal/elastic.h"

#ifndef RATION_HAVE_JEMALLOC
#define RATION_HAVE_JEMALLOC 0
#endif

#if RATION_HAVE_JEMALLOC
#include <jemalloc/jemalloc.h>

#define PAGE_SZ ((size_t)4096)

/* New address space, reserved; committed only if jemalloc asks. */
static void *
hook_alloc(extent_hooks_t *h, void *addr, size_t size, size_t align, bool *zero,
	   bool *commit, unsigned arena)
{
	(void)h;
	if (addr != NULL)
		return NULL; /* no placement: jemalloc then maps elsewhere */
	size_t len = size + (align > PAGE_SZ ? align : 0);
	if (len < size)
		return NULL;
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	if (align > PAGE_SZ) { /* keep the aligned part only */
		size_t lead = (align - (uintptr_t)p % align) % align;
		size_t tail = len - lead - size;
		if (lead > 0)
			munmap(p, lead);
		if (tail > 0)
			munmap(p + lead + size, tail);
		p += lead;
	}
	if (*commit && ration__claim_charge(arena, (int64_t)size) != 0) {
		munmap(p, size);
		return NULL;
	}
	*zero = true;
	return p;
}

/* Keep the address space (retained, reused through commit). */
static bool
hook_dalloc(extent_hooks_t *h, void *addr, size_t size, bool committed,
	    unsigned arena)
{
	(void)h, (void)addr, (void)size, (void)committed, (void)arena;
	return true;
}

static void
hook_destroy(extent_hooks_t *h, void *addr, size_t size, bool committed,
	     unsigned arena)
{
	(void)h, (void)committed, (void)arena;
	munmap(addr, size);
}

/* The interception point: pages about to be handed out. true = refused
 * (the task's ctx ended while it waited): the allocation fails. */
static bool
hook_commit(extent_hooks_t *h, void *addr, size_t size, size_t off, size_t len,
	    unsigned arena)
{
	(void)h, (void)addr, (void)size, (void)off;
	return ration__claim_charge(arena, (int64_t)len) != 0;
}

/* Really give the pages back, so that their reuse commits again. */
static bool
hook_decommit(extent_hooks_t *h, void *addr, size_t size, size_t off,
	      size_t len, unsigned arena)
{
	(void)h, (void)size, (void)arena;
	return madvise((char *)addr + off, len, MADV_DONTNEED) != 0;
}

static bool
hook_split(extent_hooks_t *h, void *addr, size_t size, size_t a, size_t b,
	   bool committed, unsigned arena)
{
	(void)h, (void)addr, (void)size, (void)a, (void)b, (void)committed,
		(void)arena;
	return false;
}

static bool
hook_merge(extent_hooks_t *h, void *a, size_t sa, void *b, size_t sb,
	   bool committed, unsigned arena)
{
	(void)h, (void)a, (void)sa, (void)b, (void)sb, (void)committed,
		(void)arena;
	return false;
}

static extent_hooks_t hooks = {
	.alloc = hook_alloc,
	.dalloc = hook_dalloc,
	.destroy = hook_destroy,
	.commit = hook_commit,
	.decommit = hook_decommit,
	.purge_lazy = NULL, /* opt out: freed pages are decommitted */
	.purge_forced = NULL,
	.split = hook_split,
	.merge = hook_merge,
};

static pthread_once_t mib_once = PTHREAD_ONCE_INIT;
static size_t arena_mib[2], arena_len = 2; /* thread.arena */
static bool mib_ok;

static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned *pool; /* pool_mu: idle arenas */
static size_t npool, pool_cap;

static void
mib_init(void)
{
	mib_ok = mallctlnametomib("thread.arena", arena_mib, &arena_len) == 0;
}

/* A new arena with our hooks and no decay; false if jemalloc refuses. */
static bool
arena_create(unsigned *out)
{
	unsigned ind;
	size_t sz = sizeof(ind);
	extent_hooks_t *hp = &hooks;
	/* The new value is the pointer itself, hence its size. */
	size_t hp_len = sizeof(hp); /* NOLINT(bugprone-sizeof-expression) */
	if (mallctl("arenas.create", &ind, &sz, &hp, hp_len) != 0)
		return false;
	ssize_t zero = 0;
	char name[64];
	snprintf(name, sizeof(name), "arena.%u.dirty_decay_ms", ind);
	(void)mallctl(name, NULL, NULL, &zero, sizeof(zero));
	snprintf(name, sizeof(name), "arena.%u.muzzy_decay_ms", ind);
	(void)mallctl(name, NULL, NULL, &zero, sizeof(zero));
	*out = ind;
	return true;
}

static bool
pool_take(unsigned *out)
{
	pthread_mutex_lock(&pool_mu);
	bool got = npool > 0;
	if (got)
		*out = pool[--npool];
	pthread_mutex_unlock(&pool_mu);
	return got || arena_create(out);
}

/* Give @ind back; an arena that finds no room in the pool is kept by
 * jemalloc, unused (only when the pool itself cannot grow). */
static void
pool_give(unsigned ind)
{
	pthread_mutex_lock(&pool_mu);
	if (npool == pool_cap) {
		size_t cap = pool_cap ? pool_cap * 2 : 16;
		unsigned *p = realloc(pool, cap * sizeof(*p));
		if (p != NULL) {
			pool = p;
			pool_cap = cap;
		}
	}
	if (npool < pool_cap)
		pool[npool++] = ind;
	pthread_mutex_unlock(&pool_mu);
}

bool
ration__arena_enter(unsigned *arena, unsigned *old)
{
	pthread_once(&mib_once, mib_init);
	unsigned ind, prev;
	size_t sz = sizeof(prev);
	if (!mib_ok || !pool_take(&ind))
		return false;
	if (mallctlbymib(arena_mib, arena_len, &prev, &sz, &ind, sizeof(ind)) !=
	    0) {
		pool_give(ind);
		return false;
	}
	*arena = ind;
	*old = prev;
	return true;
}

void
ration__arena_leave(unsigned arena, unsigned old)
{
	(void)mallctlbymib(arena_mib, arena_len, NULL, NULL, &old, sizeof(old));
	pool_give(arena);
}

#else /* no jemalloc: consume-only (docs/elastic.md) */

bool
ration__arena_enter(unsigned *arena, unsigned *old)
{
	(void)arena, (void)old;
	return false;
}

void
ration__arena_leave(unsigned arena, unsigned old)
{
	(void)arena, (void)old;
}

#endif
