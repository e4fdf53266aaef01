/* pipeline: three stages, each with its own bound, back-pressure end to end.
 *
 *     build/examples/pipeline [--items 200] [--budget 24M]
 *
 * fetch -> decode -> store, like a Go pipeline of goroutines joined by
 * buffered channels, except that each stage is a ration group with its own
 * pool and its own kind of bound:
 *   fetch   at most 4 at a time     (group limit: "connections")
 *   decode  at most --budget bytes  (group budget: a byte semaphore; each
 *                                    item weighs its decoded size)
 *   store   one at a time           (group limit 1: a single writer)
 * A stage hands an item on by calling ration_group_go() on the next stage
 * from inside its task; that call blocks while the next stage is full, so
 * the task keeps its own slot until the next stage takes the item. A slow
 * store therefore stalls decode, which stalls fetch, which stalls the
 * producer in main(): nothing piles up anywhere. Each stage has its own
 * pool, so a blocked hand-off never takes the thread the next stage needs
 * (docs/group.md: one pool waiting on work it queued itself can deadlock).
 * At the end it prints the high-water marks of each stage and checks them
 * against the bounds, and that every item was stored once (exit 1 if not).
 */
#include <ration.h>

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "example_args.h"

#define MIB         (INT64_C(1) << 20)
#define FETCH_LIMIT 4
#define MIN_ITEM    (256 << 10) /* decoded sizes are 256K..4M */

struct item {
	int id;
	int64_t bytes;       /* decoded size: the decode stage's weight */
	unsigned char *data; /* the decoded buffer, decode -> store */
	uint64_t sum;
};

struct stage {
	const char *name;
	ration_pool_t *pool;
	ration_group_t *g;
	_Atomic int64_t now,
		max; /* items (fetch, store) or bytes (decode) inside */
};

static struct stage fetch_st = {.name = "fetch"},
		    decode_st = {.name = "decode"},
		    store_st = {.name = "store"};
static _Atomic int64_t in_flight,
	in_flight_max; /* items anywhere in the pipeline */
static _Atomic long stored;
static uint64_t *store_log; /* checksum per item id, written by store */

static void
die_if(int rc, const char *what)
{
	if (rc != 0) {
		fprintf(stderr, "pipeline: %s: %s\n", what,
			ration_strerror(rc));
		exit(1);
	}
}

static void
sleep_us(long us)
{
	struct timespec ts = {us / 1000000, (us % 1000000) * 1000L};
	nanosleep(&ts, NULL);
}

static void
count(_Atomic int64_t *now, _Atomic int64_t *max, int64_t delta)
{
	int64_t v = atomic_fetch_add(now, delta) + delta;
	int64_t m = atomic_load(max);
	while (v > m && !atomic_compare_exchange_weak(max, &m, v))
		;
}

/* Stage 3: the single writer; slowest stage, sets the pace. */
static int
store(ration_ctx_t *ctx, void *arg)
{
	struct item *it = arg;
	(void)ctx;
	count(&store_st.now, &store_st.max, 1);
	sleep_us(2000); /* a 2 ms write */
	store_log[it->id] = it->sum;
	atomic_fetch_add(&stored, 1);
	count(&store_st.now, &store_st.max, -1);
	free(it->data);
	free(it);
	count(&in_flight, &in_flight_max, -1);
	return 0;
}

/* Stage 2: decode into a buffer of it->bytes; hand on to store. */
static int
decode(ration_ctx_t *ctx, void *arg)
{
	struct item *it = arg;
	count(&decode_st.now, &decode_st.max, it->bytes);
	it->data = malloc((size_t)it->bytes);
	if (it->data == NULL)
		return -ENOMEM;
	uint64_t h = (uint64_t)it->id * 0x9e3779b97f4a7c15u;
	for (int64_t i = 0; i < it->bytes; i += 4096) {
		it->data[i] = (unsigned char)h;
		h = h * 6364136223846793005u + 1;
	}
	it->sum = h;
	/* Blocks while store is busy: this item keeps its decode bytes until
	 * store takes it. That is the back-pressure. Once go() succeeds, store
	 * owns (and frees) it: copy what we still need first. */
	int64_t bytes = it->bytes;
	int rc = ration_group_go(store_st.g, 1, store, it);
	count(&decode_st.now, &decode_st.max, -bytes);
	if (rc != 0) {
		free(it->data);
		free(it);
	}
	(void)ctx;
	return rc;
}

/* Stage 1: "fetch" (1 ms of latency); hand on to decode. */
static int
fetch(ration_ctx_t *ctx, void *arg)
{
	struct item *it = arg;
	(void)ctx;
	count(&fetch_st.now, &fetch_st.max, 1);
	sleep_us(1000);
	int rc = ration_group_go(decode_st.g, it->bytes, decode, it);
	count(&fetch_st.now, &fetch_st.max, -1);
	if (rc != 0)
		free(it);
	return rc;
}

static void
stage_new(struct stage *st, ration_sem_t *budget, int64_t limit,
	  unsigned threads)
{
	ration_pool_opts_t po = {.threads = threads, .name = st->name};
	die_if(ration_pool_new(&po, &st->pool), "pool_new");
	ration_group_opts_t go = {
		.pool = st->pool, .budget = budget, .limit = limit};
	die_if(ration_group_new(NULL, &go, &st->g), "group_new");
}

static void
usage(FILE *f)
{
	fprintf(f, "usage: pipeline [--items N] [--budget SIZE]\n"
		   "  --items N      items through the pipeline, default 200\n"
		   "  --budget SIZE  bytes the decode stage may hold (K/M/G), "
		   "default 24M\n");
}

int
main(int argc, char **argv)
{
	int nitems = 200;
	int64_t budget = 24 * MIB;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(a, "--items") && v) {
			nitems = arg_int(v), i++;
		} else if (!strcmp(a, "--budget") && v) {
			budget = parse_size(v), i++;
		} else {
			fprintf(stderr, "pipeline: bad argument '%s'\n", a);
			usage(stderr);
			return 2;
		}
	}
	if (nitems < 1 || nitems > 1000000 || budget < 4 * MIB) {
		fprintf(stderr, "pipeline: need 1 <= --items <= 1000000, "
				"--budget >= 4M\n");
		return 2;
	}

	ration_sem_t *mem;
	ration_sem_opts_t so = {.name = "decode.bytes"};
	die_if(ration_sem_new(budget, &so, &mem), "sem_new");
	/* Decode holds as many items as fit in its bytes; 8 threads work on
	 * them, the rest wait in its pool's queue with their bytes reserved. */
	stage_new(&fetch_st, NULL, FETCH_LIMIT, FETCH_LIMIT);
	stage_new(&decode_st, mem, 0, 8);
	stage_new(&store_st, NULL, 1, 1);
	store_log = calloc((size_t)nitems, sizeof *store_log);
	if (store_log == NULL)
		die_if(-ENOMEM, "calloc");

	int64_t t0 = ration_now(), blocked_ns = 0;
	for (int id = 0; id < nitems; id++) {
		struct item *it = calloc(1, sizeof *it);
		if (it == NULL)
			die_if(-ENOMEM, "calloc");
		it->id = id;
		it->bytes = (int64_t)(256 + (id * 7919) % 3840)
			    << 10; /* 256K..4M */
		count(&in_flight, &in_flight_max, 1);
		int64_t t = ration_now();
		int rc = ration_group_go(fetch_st.g, 1, fetch, it);
		blocked_ns += ration_now() - t;
		if (rc != 0)
			free(it);
		die_if(rc, "go fetch");
		if (id % 50 == 49)
			fprintf(stderr, "pipeline: %d items in, %ld stored\n",
				id + 1, atomic_load(&stored));
	}
	/* Each stage's tasks finish only after handing on, so wait in order. */
	die_if(ration_group_wait(fetch_st.g), "fetch");
	die_if(ration_group_wait(decode_st.g), "decode");
	die_if(ration_group_wait(store_st.g), "store");
	int64_t wall = ration_now() - t0;

	ration_sem_stats_t ms;
	ration_sem_stats(mem, &ms);
	printf("%d items in %.2f s; producer blocked %.2f s by back-pressure\n",
	       nitems, (double)wall / 1e9, (double)blocked_ns / 1e9);
	printf("stage   bound        max inside\n");
	printf("fetch   %-12d %lld\n", FETCH_LIMIT,
	       (long long)atomic_load(&fetch_st.max));
	printf("decode  %-8.1f MiB %.1f MiB (sem max_in_use %.1f MiB)\n",
	       (double)budget / (double)MIB,
	       (double)atomic_load(&decode_st.max) / (double)MIB,
	       (double)ms.max_in_use / (double)MIB);
	printf("store   %-12d %lld\n", 1,
	       (long long)atomic_load(&store_st.max));
	/* Decode is bounded in bytes, so in items by budget / smallest item. */
	int64_t bound = FETCH_LIMIT + budget / MIN_ITEM + 1 + 1;
	printf("items in the pipeline at once: at most %lld (bound %lld: %d "
	       "fetch + "
	       "%lld decode + 1 store + 1 in the producer's hand)\n",
	       (long long)atomic_load(&in_flight_max), (long long)bound,
	       FETCH_LIMIT, (long long)(budget / MIN_ITEM));

	int ok = atomic_load(&stored) == nitems &&
		 atomic_load(&in_flight_max) <= bound &&
		 atomic_load(&fetch_st.max) <= FETCH_LIMIT &&
		 atomic_load(&store_st.max) <= 1 && ms.max_in_use <= budget &&
		 atomic_load(&decode_st.max) <= budget && ms.in_use == 0;
	for (int id = 0; id < nitems; id++)
		ok &= store_log[id] != 0;
	printf("every item stored once, every stage within its bound: %s\n",
	       ok ? "yes" : "NO");

	ration_group_free(fetch_st.g);
	ration_group_free(decode_st.g);
	ration_group_free(store_st.g);
	ration_pool_free(fetch_st.pool);
	ration_pool_free(decode_st.pool);
	ration_pool_free(store_st.pool);
	die_if(ration_sem_free(mem), "sem_free");
	free(store_log);
	return ok ? 0 : 1;
}
