/* shared_limit: two modules share one memory limit without passing a handle.
 *
 *     build/examples/shared_limit [--limit 16M] [--threads 3] [--rounds 50]
 *
 * An "image decoder" and a "network fetcher" are written as if they lived
 * in separate libraries: neither knows about the other, and main() never
 * hands them a semaphore. Each calls ration_sem_open("process.memory", ...)
 * and gets the same process-wide semaphore, so the buffers of both stay
 * under one limit. Threads of both modules run at once; at the end the
 * program prints the semaphore's high-water mark (ration_sem_stats
 * max_in_use), checks it never exceeded the limit (exit 1 otherwise) and
 * frees both references: the second free is the one that frees.
 *
 * In Go the two packages would import a third that exports one
 * `var Memory = semaphore.NewWeighted(16 << 20)`; in C there is no such
 * shared package, so the semaphore is found by name instead.
 */
#include <ration.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "example_args.h"

#define MIB (INT64_C(1) << 20)

static void
die_if(int rc, const char *what)
{
	if (rc != 0) {
		fprintf(stderr, "shared_limit: %s: %s\n", what,
			ration_strerror(rc));
		exit(1);
	}
}

/* Our own view of the bytes held, to cross-check the semaphore's. */
static _Atomic int64_t held_now, held_max;

static void
note_held(int64_t delta)
{
	int64_t now = atomic_fetch_add(&held_now, delta) + delta;
	int64_t max = atomic_load(&held_max);
	while (now > max && !atomic_compare_exchange_weak(&held_max, &max, now))
		;
}

/* Fill a buffer and fold it to one word: stands in for real work. */
static uint64_t
touch_and_sum(unsigned char *buf, size_t len, uint64_t seed)
{
	uint64_t h = seed | 1;
	for (size_t i = 0; i < len; i += 64) {
		buf[i] = (unsigned char)(h >> 56);
		h = h * 6364136223846793005u + 1442695040888963407u;
	}
	for (size_t i = 0; i < len; i += 64)
		h ^= buf[i] + (h << 6) + (h >> 2);
	return h;
}

/* ---- module 1: an image decoder (knows nothing of the fetcher) ---- */

static ration_sem_t *decoder_mem; /* its own reference to process.memory */

static void
decoder_init(int64_t limit)
{
	die_if(ration_sem_open("process.memory", limit, &decoder_mem),
	       "decoder: open process.memory");
}

/* Decode one image: a pixel buffer of width*height*4 bytes. */
static uint64_t
decoder_decode(unsigned w, unsigned h)
{
	int64_t bytes = (int64_t)w * h * 4;
	die_if(ration_sem_acquire(decoder_mem, NULL, bytes),
	       "decoder: acquire");
	note_held(bytes);
	unsigned char *px = malloc((size_t)bytes);
	if (px == NULL)
		die_if(-ENOMEM, "decoder: malloc");
	uint64_t sum = touch_and_sum(px, (size_t)bytes, w * 31u + h);
	free(px);
	note_held(-bytes);
	die_if(ration_sem_release(decoder_mem, bytes), "decoder: release");
	return sum;
}

static void
decoder_fini(void)
{
	die_if(ration_sem_free(decoder_mem), "decoder: free");
}

/* ---- module 2: a network fetcher (knows nothing of the decoder) ---- */

static ration_sem_t *fetch_mem;

static void
fetcher_init(void)
{
	/* Size 0: "use whatever limit the process set up". */
	die_if(ration_sem_open("process.memory", 0, &fetch_mem),
	       "fetcher: open process.memory");
}

/* Fetch one response body of @bytes into a buffer. */
static uint64_t
fetcher_get(int64_t bytes)
{
	die_if(ration_sem_acquire(fetch_mem, NULL, bytes), "fetcher: acquire");
	note_held(bytes);
	unsigned char *body = malloc((size_t)bytes);
	if (body == NULL)
		die_if(-ENOMEM, "fetcher: malloc");
	uint64_t sum = touch_and_sum(body, (size_t)bytes, (uint64_t)bytes);
	free(body);
	note_held(-bytes);
	die_if(ration_sem_release(fetch_mem, bytes), "fetcher: release");
	return sum;
}

static void
fetcher_fini(void)
{
	die_if(ration_sem_free(fetch_mem), "fetcher: free");
}

/* ---- the application: threads of both modules, then the check ---- */

static int rounds = 50;

static void *
decode_thread(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg;
	uint64_t sum = 0;
	for (int i = 0; i < rounds; i++) {
		seed = seed * 1103515245u + 12345u;
		unsigned w = 64 + (seed >> 8) % 961; /* 64..1024 px */
		unsigned h = 64 + (seed >> 16) % 961;
		sum += decoder_decode(w, h);
	}
	return (void *)(uintptr_t)sum;
}

static void *
fetch_thread(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg;
	uint64_t sum = 0;
	for (int i = 0; i < rounds; i++) {
		seed = seed * 1103515245u + 12345u;
		sum += fetcher_get(64 * 1024 +
				   (int64_t)((seed >> 4) % (4 * MIB)));
	}
	return (void *)(uintptr_t)sum;
}

static void
usage(FILE *f)
{
	fprintf(f, "usage: shared_limit [--limit SIZE] [--threads N] [--rounds "
		   "N]\n"
		   "  --limit SIZE   the process-wide memory limit (K/M/G), "
		   "default 16M\n"
		   "  --threads N    threads per module, default 3\n"
		   "  --rounds N     buffers per thread, default 50\n");
}

int
main(int argc, char **argv)
{
	int64_t limit = 16 * MIB;
	int nthreads = 3;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			return 0;
		} else if (strcmp(a, "--limit") == 0 && v) {
			limit = parse_size(v);
			i++;
		} else if (strcmp(a, "--threads") == 0 && v) {
			nthreads = arg_int(v);
			i++;
		} else if (strcmp(a, "--rounds") == 0 && v) {
			rounds = arg_int(v);
			i++;
		} else {
			fprintf(stderr, "shared_limit: bad argument '%s'\n", a);
			usage(stderr);
			return 2;
		}
	}
	/* The largest single buffer is 1024*1024*4 = 4 MiB. */
	if (limit < 4 * MIB || nthreads < 1 || nthreads > 64 || rounds < 1) {
		fprintf(stderr, "shared_limit: need --limit >= 4M, 1 <= "
				"--threads <= 64, "
				"--rounds >= 1\n");
		return 2;
	}

	decoder_init(limit);
	fetcher_init();
	printf("decoder and fetcher share one semaphore: %s\n",
	       decoder_mem == fetch_mem ? "yes" : "NO");

	pthread_t th[128];
	int n = 0;
	for (int i = 0; i < nthreads; i++) {
		die_if(-pthread_create(&th[n++], NULL, decode_thread,
				       (void *)(uintptr_t)(i + 1)),
		       "pthread_create");
		die_if(-pthread_create(&th[n++], NULL, fetch_thread,
				       (void *)(uintptr_t)(i + 101)),
		       "pthread_create");
	}
	fprintf(stderr,
		"shared_limit: %d decoder + %d fetcher threads, %d rounds "
		"each\n",
		nthreads, nthreads, rounds);
	for (int i = 0; i < n; i++)
		die_if(-pthread_join(th[i], NULL), "pthread_join");

	ration_sem_stats_t st;
	ration_sem_stats(decoder_mem, &st);
	printf("limit            %8.1f MiB\n", (double)st.size / MIB);
	printf("max in use       %8.1f MiB (sem)  %.1f MiB (counted by the "
	       "modules)\n",
	       (double)st.max_in_use / MIB,
	       (double)atomic_load(&held_max) / MIB);
	printf("acquires         %8llu (%llu had to wait)\n",
	       (unsigned long long)st.acquired,
	       (unsigned long long)st.contended);
	printf("in use at end    %8lld\n", (long long)st.in_use);

	int ok = st.max_in_use <= st.size &&
		 atomic_load(&held_max) <= st.size && st.in_use == 0 &&
		 st.acquired == 2 * (uint64_t)nthreads * (uint64_t)rounds &&
		 decoder_mem == fetch_mem;
	printf("in-use never exceeded the limit: %s\n", ok ? "yes" : "NO");

	/* Two opens, two frees: the first drops a reference, the second frees. */
	fetcher_fini();
	decoder_fini();
	return ok ? 0 : 1;
}
