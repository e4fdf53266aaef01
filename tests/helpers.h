/* helpers.h - shared by the Check suites: background callers and bounded
 * waits, so that a bug fails a test instead of hanging it. */
#ifndef RATION_TESTS_HELPERS_H
#define RATION_TESTS_HELPERS_H

#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <ration.h>

#define MS ((int64_t)1000000)

/* Everything a test waits for must happen within this. */
#define TEST_WAIT_NS ((int64_t)10 * 1000000000)

/* How late a timed wake-up may come before a test calls it broken: wide,
 * because CI runs the suites in parallel under sanitizers on 2 cores. */
#define TEST_LATE_NS (1000 * MS)

/* Run every test of @s; the number that failed. With RATION_TEST_TAP set
 * (meson sets it: tests/meson.build) the results go to stdout as TAP, one
 * line a test, and Check prints nothing else there; otherwise Check's own
 * report, as verbose as CK_VERBOSITY asks (silent, minimal, normal,
 * verbose). stdout is then TAP's: a test's own notes go to stderr. */
static inline int
run_suite(Suite *s)
{
	SRunner *sr = srunner_create(s);
	bool tap = getenv("RATION_TEST_TAP") != NULL;
	if (tap)
		srunner_set_tap(sr, "-");
	srunner_run_all(sr, tap ? CK_SILENT : CK_ENV);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed;
}

/* Skip a whole suite that cannot run here, saying @why: a TAP plan of no
 * tests under meson (RATION_TEST_TAP), else Automake's exit code 77. */
static inline int
skip_suite(const char *why)
{
	if (getenv("RATION_TEST_TAP") != NULL) {
		printf("1..0 # SKIP %s\n", why);
		return 0;
	}
	printf("SKIP: %s\n", why);
	return 77;
}

/* Rounds for loops that stress races: RATION_STRESS_ROUNDS overrides
 * (sanitizer runs use fewer). */
static inline long
stress_rounds(long dflt)
{
	const char *e = getenv("RATION_STRESS_ROUNDS");
	long v = e ? atol(e) : 0;
	return v > 0 ? (v < dflt ? v : dflt) : dflt;
}

/* A pool of exactly @threads threads (the test fails if none is made). */
static inline ration_pool_t *
pool_of(unsigned threads)
{
	ration_pool_t *p;
	ck_assert_int_eq(
		ration_pool_new(&(ration_pool_opts_t){.threads = threads}, &p),
		0);
	return p;
}

/* Resident set size, from /proc/self/statm. */
static inline int64_t
rss_bytes(void)
{
	long pages = 0, resident = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fscanf(f, "%ld %ld", &pages, &resident), 2);
	fclose(f);
	return (int64_t)resident * sysconf(_SC_PAGESIZE);
}

static inline void
sleep_ns(int64_t ns)
{
	struct timespec ts = {.tv_sec = ns / 1000000000,
			      .tv_nsec = ns % 1000000000};
	nanosleep(&ts, NULL);
}

/* Poll @cond until true or TEST_WAIT_NS passes (then the test fails). */
#define WAIT_FOR(cond)                                                         \
	do {                                                                   \
		int64_t wf_deadline_ = ration_now() + TEST_WAIT_NS;            \
		while (!(cond)) {                                              \
			ck_assert_msg(ration_now() < wf_deadline_,             \
				      "timed out waiting for: %s", #cond);     \
			sleep_ns(100000);                                      \
		}                                                              \
	} while (0)

static inline int64_t
sem_waiters(ration_sem_t *s)
{
	ration_sem_stats_t st;
	ration_sem_stats(s, &st);
	return st.waiters;
}

#define wait_waiters(s, k) WAIT_FOR(sem_waiters(s) == (k))

/* A caller of ration_sem_acquire (or _until) on its own thread. */
struct bg {
	pthread_t t;
	ration_sem_t *s;
	ration_ctx_t *ctx;
	int64_t n;
	int64_t deadline_ns; /* used when use_until */
	bool use_until;
	_Atomic bool done;
	int rc;
};

static inline void *
bg_main(void *arg)
{
	struct bg *b = arg;
	b->rc = b->use_until
			? ration_sem_acquire_until(b->s, b->deadline_ns, b->n)
			: ration_sem_acquire(b->s, b->ctx, b->n);
	atomic_store(&b->done, true);
	return NULL;
}

static inline void
bg_start(struct bg *b)
{
	atomic_init(&b->done, false);
	ck_assert_int_eq(pthread_create(&b->t, NULL, bg_main, b), 0);
}

/* Usage: struct bg a; bg_acquire(&a, s, ctx, 10); */
static inline void
bg_acquire(struct bg *b, ration_sem_t *s, ration_ctx_t *ctx, int64_t n)
{
	*b = (struct bg){.s = s, .ctx = ctx, .n = n};
	bg_start(b);
}

static inline void
bg_acquire_until(struct bg *b, ration_sem_t *s, int64_t deadline_ns, int64_t n)
{
	*b = (struct bg){
		.s = s, .n = n, .deadline_ns = deadline_ns, .use_until = true};
	bg_start(b);
}

/* Join with a deadline; returns the acquire's result. */
static inline int
bg_join(struct bg *b)
{
	WAIT_FOR(atomic_load(&b->done));
	pthread_join(b->t, NULL);
	return b->rc;
}

/* A caller of ration_group_go() on its own thread (go may block). */
struct bg_go {
	pthread_t t;
	ration_group_t *g;
	int64_t weight;
	ration_group_fn fn;
	void *arg;
	_Atomic bool done;
	int rc;
};

static inline void *
bg_go_main(void *arg)
{
	struct bg_go *b = arg;
	b->rc = ration_group_go(b->g, b->weight, b->fn, b->arg);
	atomic_store(&b->done, true);
	return NULL;
}

static inline void
bg_go(struct bg_go *b, ration_group_t *g, int64_t weight, ration_group_fn fn,
      void *arg)
{
	*b = (struct bg_go){.g = g, .weight = weight, .fn = fn, .arg = arg};
	atomic_init(&b->done, false);
	ck_assert_int_eq(pthread_create(&b->t, NULL, bg_go_main, b), 0);
}

static inline int
bg_go_join(struct bg_go *b)
{
	WAIT_FOR(atomic_load(&b->done));
	pthread_join(b->t, NULL);
	return b->rc;
}

#endif
