/* extent_hooks_probe.c - what jemalloc does with the extent hooks of an
 * elastic task's arena (lib/elastic_arena.c), measured, not assumed
 * (docs/elastic.md, "Backpressure inside malloc").
 *
 *   extent-hooks-probe counts
 *       takes an arena the way an elastic task does (ration__arena_enter),
 *       puts counting wrappers around its hooks (which then call ration's
 *       own), and prints which hooks a malloc/free/malloc of 8 MiB and
 *       1000 small allocations call. Run it with MALLOC_CONF empty and set
 *       to batch_budget's (dirty_decay_ms:0,muzzy_decay_ms:0); the last
 *       line repeats the small frees with the arena's decay back at
 *       jemalloc's default.
 *   extent-hooks-probe locks
 *       while a commit hook of that arena waits, a helper thread tries,
 *       one at a time: allocating from another arena (small and 16 MiB),
 *       freeing a block of the waiting arena, starting a thread, creating
 *       an arena, allocating from the waiting arena. Prints which finished
 *       within 2 s (the others are blocked by a lock the hook's caller
 *       holds).
 */
#include <jemalloc/jemalloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal/elastic.h"

static extent_hooks_t *real; /* ration's hooks */
static unsigned arena;

/* ---- counting wrappers -------------------------------------------------- */

enum { ALLOC, COMMIT, DECOMMIT, DALLOC, NHOOKS };
static const char *const hook_names[NHOOKS] = {"alloc", "commit", "decommit",
					       "dalloc"};
static long calls[NHOOKS], bytes[NHOOKS];
static void (*in_commit)(void); /* locks: the probe run inside a commit */

static void *
w_alloc(extent_hooks_t *h, void *addr, size_t size, size_t align, bool *zero,
	bool *commit, unsigned ind)
{
	calls[ALLOC]++, bytes[ALLOC] += (long)size;
	return real->alloc(h, addr, size, align, zero, commit, ind);
}

static bool
w_dalloc(extent_hooks_t *h, void *addr, size_t size, bool committed,
	 unsigned ind)
{
	calls[DALLOC]++, bytes[DALLOC] += (long)size;
	return real->dalloc(h, addr, size, committed, ind);
}

static bool
w_commit(extent_hooks_t *h, void *addr, size_t size, size_t off, size_t len,
	 unsigned ind)
{
	calls[COMMIT]++, bytes[COMMIT] += (long)len;
	void (*probe)(void) = in_commit;
	in_commit = NULL;
	if (probe != NULL)
		probe();
	return real->commit(h, addr, size, off, len, ind);
}

static bool
w_decommit(extent_hooks_t *h, void *addr, size_t size, size_t off, size_t len,
	   unsigned ind)
{
	calls[DECOMMIT]++, bytes[DECOMMIT] += (long)len;
	return real->decommit(h, addr, size, off, len, ind);
}

static extent_hooks_t wrappers;

static void
step(const char *what)
{
	printf("%-36s", what);
	for (int k = 0; k < NHOOKS; k++)
		printf(" %s %ld (%ld KiB)", hook_names[k], calls[k],
		       bytes[k] >> 10);
	printf("\n");
	memset(calls, 0, sizeof(calls));
	memset(bytes, 0, sizeof(bytes));
}

static void
set_decay(ssize_t ms)
{
	char name[64];
	snprintf(name, sizeof(name), "arena.%u.dirty_decay_ms", arena);
	(void)mallctl(name, NULL, NULL, &ms, sizeof(ms));
	snprintf(name, sizeof(name), "arena.%u.muzzy_decay_ms", arena);
	(void)mallctl(name, NULL, NULL, &ms, sizeof(ms));
}

/* Take an arena as an elastic task does and wrap its hooks. */
static int
enter_wrapped(void)
{
	unsigned old;
	if (!ration__arena_enter(&arena, &old)) {
		fprintf(stderr, "extent-hooks-probe: no arena\n");
		return -1;
	}
	char name[64];
	snprintf(name, sizeof(name), "arena.%u.extent_hooks", arena);
	size_t sz = sizeof(real);
	if (mallctl(name, &real, &sz, NULL, 0) != 0)
		return -1;
	wrappers = *real;
	wrappers.alloc = w_alloc;
	wrappers.dalloc = w_dalloc;
	wrappers.commit = w_commit;
	wrappers.decommit = w_decommit;
	extent_hooks_t *w = &wrappers;
	return mallctl(name, NULL, NULL, &w, sizeof(w)) == 0 ? 0 : -1;
}

/* ---- counts ---------------------------------------------------------------- */

static void *volatile sink;

static int
counts(void)
{
	step("(the probe's own setup)");
	for (int r = 0; r < 3; r++) {
		char *p = malloc(8 << 20);
		memset(p, 1, 8 << 20);
		sink = p;
		step(r == 0 ? "first malloc(8 MiB)" : "later malloc(8 MiB)");
		free(p);
		step("its free");
	}
	static void *v[1000];
	for (int pass = 0; pass < 2; pass++) {
		if (pass == 1)
			set_decay(10000); /* jemalloc's default */
		for (int i = 0; i < 1000; i++)
			v[i] = malloc(1000);
		step("1000 x malloc(1000)");
		for (int i = 0; i < 1000; i++)
			free(v[i]);
		/* the thread cache holds some: give them to the arena */
		(void)mallctl("thread.tcache.flush", NULL, NULL, NULL, 0);
		step(pass == 0 ? "their free (arena decay 0)"
			       : "their free (arena decay 10 s)");
	}
	for (int i = 0; i < 1000; i++)
		v[i] = malloc(1000);
	step("1000 x malloc(1000) again (dirty)");
	return 0;
}

/* ---- locks ----------------------------------------------------------------- */

static _Atomic bool helper_done;
static void *victim; /* a block of the waiting arena */
static int what;

static void *
noop(void *arg)
{
	return arg;
}

static void *
helper(void *arg)
{
	(void)arg;
	void *p;
	pthread_t t;
	unsigned ind;
	size_t sz = sizeof(ind);
	switch (what) {
	case 0:
		for (int i = 0; i < 10000; i++)
			free(malloc(100));
		break;
	case 1:
		p = malloc(16 << 20);
		memset(p, 1, 1 << 20);
		free(p);
		break;
	case 2:
		free(victim);
		break;
	case 3:
		if (pthread_create(&t, NULL, noop, NULL) == 0)
			pthread_join(t, NULL);
		break;
	case 4:
		(void)mallctl("arenas.create", &ind, &sz, NULL, 0);
		break;
	case 5:
		free(mallocx(16 << 20,
			     MALLOCX_ARENA(arena) | MALLOCX_TCACHE_NONE));
		break;
	}
	atomic_store(&helper_done, true);
	return NULL;
}

static const char *const helper_names[] = {"another arena: 10000 x malloc(100)",
					   "another arena: malloc(16 MiB)",
					   "free a block of the waiting arena",
					   "start a thread",
					   "arenas.create",
					   "the waiting arena: malloc(16 MiB)"};

static void
wait_in_commit(void)
{
	pthread_t t;
	atomic_store(&helper_done, false);
	if (pthread_create(&t, NULL, helper, NULL) != 0)
		return;
	for (int k = 0; k < 200 && !atomic_load(&helper_done); k++)
		usleep(10000);
	bool done = atomic_load(&helper_done);
	printf("%-36s %s\n", helper_names[what],
	       done ? "finished" : "BLOCKED (2 s)");
	if (done)
		pthread_join(t, NULL);
	else
		pthread_detach(t);
}

static int
locks(void)
{
	victim = malloc(12 << 20);
	for (what = 0; what < 6; what++) {
		in_commit = wait_in_commit;
		char *p = malloc(8 << 20); /* commits: the probe runs */
		sink = p;
		free(p);
	}
	fflush(stdout);
	_exit(0); /* a blocked helper holds the arena: no clean exit */
}

int
main(int argc, char **argv)
{
	if (argc != 2 ||
	    (strcmp(argv[1], "counts") && strcmp(argv[1], "locks"))) {
		fprintf(stderr, "usage: extent-hooks-probe counts|locks\n");
		return 2;
	}
	if (enter_wrapped() != 0)
		return 1;
	return strcmp(argv[1], "counts") == 0 ? counts() : locks();
}
