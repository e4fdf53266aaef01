/* test_elastic.c - claims that follow real memory: ration_task_grow,
 * elastic groups (measured claims, backpressure, overrun_cancel) and
 * their reports and statistics. docs/elastic.md.
 *
 * The elastic tests run twice (loop index 0, 1): with per-task jemalloc
 * counters where jemalloc is the process allocator, and with RSS forced
 * (ration__elastic_rss_only), which is also what builds without jemalloc
 * (the sanitizer builds) use for both; opts.backpressure is on. The
 * backpressure tests run a third time (2): per-task counters with
 * opts.backpressure off, so claims are consume-only. */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <ration.h>

#include "helpers.h"

#define MIB ((int64_t)1 << 20)

/* Test-only switch in lib/elastic_measure.c (hidden; tests link the
 * static library). */
extern _Atomic bool ration__elastic_rss_only;

/* ---- a scripted task ---------------------------------------------------- */

struct job {
	int64_t alloc;    /* bytes to allocate and touch */
	bool alloc_gated; /* allocate only once grow_now is set */
	bool may_fail;    /* the allocation may fail (then alloc_null) */
	bool alloc_null;
	bool free_early; /* free them again before the gate */
	int64_t grow;    /* ration_task_grow(grow_ctx or ctx, grow) */
	ration_ctx_t *grow_ctx;
	bool grow_gated; /* grow only once grow_now is set */
	_Atomic bool grow_now;
	bool until_cancelled; /* after the above, wait for ctx; return its error */
	_Atomic int step;     /* 1 running, 2 allocated, 3 freed, 4 grew */
	_Atomic bool go_on; /* the gate: the task ends once set */
	int grow_rc;
};

static bool use_mmap; /* RSS mode: memory that leaves the process on free */
static bool with_backpressure = true; /* elastic groups: opts.backpressure */

static void *
big_alloc_or_null(int64_t n)
{
	void *p;
	if (use_mmap) {
		p = mmap(NULL, (size_t)n, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		p = p == MAP_FAILED ? NULL : p;
	} else {
		p = malloc((size_t)n);
	}
	if (p != NULL)
		memset(p, 1, (size_t)n); /* resident, for the RSS sampler */
	return p;
}

static void *
big_alloc(int64_t n)
{
	void *p = big_alloc_or_null(n);
	ck_assert_ptr_nonnull(p);
	return p;
}

static void
big_free(void *p, int64_t n)
{
	if (p == NULL)
		return;
	if (use_mmap)
		munmap(p, (size_t)n);
	else
		free(p);
}

static int
job_main(ration_ctx_t *ctx, void *arg)
{
	struct job *j = arg;
	void *mem = NULL;
	int rc = 0;

	atomic_store(&j->step, 1);
	if (j->alloc > 0) {
		if (j->alloc_gated)
			WAIT_FOR(atomic_load(&j->grow_now));
		mem = j->may_fail ? big_alloc_or_null(j->alloc)
				  : big_alloc(j->alloc);
		j->alloc_null = mem == NULL;
		atomic_store(&j->step, 2);
	}
	if (j->free_early) {
		big_free(mem, j->alloc);
		mem = NULL;
		atomic_store(&j->step, 3);
	}
	if (j->grow > 0) {
		if (j->grow_gated)
			WAIT_FOR(atomic_load(&j->grow_now));
		j->grow_rc = ration_task_grow(j->grow_ctx ? j->grow_ctx : ctx,
					      j->grow);
		atomic_store(&j->step, 4);
	}
	if (j->until_cancelled) {
		ration_ctx_t *bounded;
		ck_assert_int_eq(
			ration_ctx_with_timeout(ctx, TEST_WAIT_NS, &bounded),
			0);
		(void)ration_ctx_wait(bounded);
		ration_ctx_unref(bounded);
		rc = ration_ctx_err(ctx);
	} else {
		WAIT_FOR(atomic_load(&j->go_on));
	}
	big_free(mem, j->alloc);
	return rc;
}

static _Atomic int64_t max_report_overrun;

static void
on_report(const ration_task_report_t *r, void *udata)
{
	int64_t m = atomic_load(&max_report_overrun);
	while (r->overrun_bytes > m &&
	       !atomic_compare_exchange_weak(&max_report_overrun, &m,
					     r->overrun_bytes))
		;
}

/* ---- fixtures ----------------------------------------------------------- */

static ration_sem_t *budget;
static ration_pool_t *pool;
static ration_group_t *grp;

static int64_t
in_use(void)
{
	ration_sem_stats_t st;
	ration_sem_stats(budget, &st);
	return st.in_use;
}

/* A group of @threads workers (and as many slots) on a budget of @size. */
static void
group_up(int64_t size, unsigned threads, bool elastic, double overrun_cancel)
{
	atomic_store(&max_report_overrun, 0);
	ck_assert_int_eq(ration_sem_new(size, NULL, &budget), 0);
	ck_assert_int_eq(
		ration_pool_new(&(ration_pool_opts_t){.threads = threads},
				&pool),
		0);
	ration_group_opts_t o = {.pool = pool,
				 .budget = budget,
				 .limit = threads,
				 .keep_going = true,
				 .elastic = elastic,
				 .backpressure = elastic && with_backpressure,
				 .overrun_cancel = overrun_cancel,
				 .on_report = on_report};
	ck_assert_int_eq(ration_group_new(NULL, &o, &grp), 0);
}

/* Free everything and check that every unit came back. */
static void
group_down(void)
{
	ration_group_free(grp);
	ck_assert_int_eq(in_use(), 0);
	ration_pool_free(pool);
	ck_assert_int_eq(ration_sem_free(budget), 0);
	atomic_store(&ration__elastic_rss_only, false);
}

static void
go(struct job *j, int64_t weight)
{
	ck_assert_int_eq(ration_group_go(grp, weight, job_main, j), 0);
	WAIT_FOR(atomic_load(&j->step) >= 1);
}

static uint64_t
tasks_done(void)
{
	ration_group_stats_t st;
	ration_group_stats(grp, &st);
	return st.tasks;
}

/* A group that is not elastic ranks its tasks by age from its first grow
 * on (docs/elastic.md): one short task that grows. */
static void
rank_from_now(void)
{
	static struct job w;
	w = (struct job){.grow = 1};
	atomic_store(&w.go_on, true);
	go(&w, 1);
	/* step 4 is stored after grow_rc: its load orders the read */
	WAIT_FOR(atomic_load(&w.step) == 4);
	ck_assert_int_eq(w.grow_rc, 0);
	WAIT_FOR(tasks_done() == 1);
}

/* Loop index 1 forces RSS (and memory that leaves the process on free). */
static void
pick_mode(int i)
{
	atomic_store(&ration__elastic_rss_only, i == 1);
	use_mmap = i == 1 || !ration_account_available();
	with_backpressure = i != 2;
}

/* ---- args --------------------------------------------------------------- */

START_TEST(test_elastic_bad_options_are_einval)
{
	ration_sem_t *s;
	ration_group_t *g;
	ck_assert_int_eq(ration_sem_new(100, NULL, &s), 0);

	ck_assert_int_eq(
		ration_group_new(NULL, &(ration_group_opts_t){.elastic = true},
				 &g),
		-EINVAL);
	ck_assert_int_eq(
		ration_group_new(NULL,
				 &(ration_group_opts_t){.budget = s,
							.elastic = true,
							.overrun_cancel = 0.5},
				 &g),
		-EINVAL);
	ck_assert_int_eq(
		ration_group_new(NULL,
				 &(ration_group_opts_t){.budget = s,
							.elastic = true,
							.overrun_cancel = -1},
				 &g),
		-EINVAL);
	ck_assert_int_eq(
		ration_group_new(NULL,
				 &(ration_group_opts_t){.budget = s,
							.elastic = true,
							.sample_ns = -1},
				 &g),
		-EINVAL);
	ck_assert_int_eq(
		ration_group_new(NULL,
				 &(ration_group_opts_t){.budget = s,
							.backpressure = true},
				 &g),
		-EINVAL);

	ck_assert_int_eq(ration_sem_free(s), 0);
}
END_TEST

static _Atomic int grow_rc_seen;

static int
task_grow_once(ration_ctx_t *ctx, void *arg)
{
	atomic_store(&grow_rc_seen, ration_task_grow(ctx, *(int64_t *)arg));
	return 0;
}

START_TEST(test_grow_outside_a_budget_task_is_eperm)
{
	ration_group_t *g;
	int64_t n = 1;
	ck_assert_int_eq(ration_task_grow(NULL, 1), -EPERM);
	ck_assert_int_eq(ration_group_new(NULL, NULL, &g), 0);

	ck_assert_int_eq(ration_group_go(g, 1, task_grow_once, &n), 0);
	ck_assert_int_eq(ration_group_wait(g), 0);

	ck_assert_int_eq(atomic_load(&grow_rc_seen), -EPERM);
	ration_group_free(g);
}
END_TEST

START_TEST(test_grow_of_zero_is_einval)
{
	int64_t n = 0;
	group_up(100, 1, false, 0);

	ck_assert_int_eq(ration_group_go(grp, 10, task_grow_once, &n), 0);
	ck_assert_int_eq(ration_group_wait(grp), 0);

	ck_assert_int_eq(atomic_load(&grow_rc_seen), -EINVAL);
	group_down();
}
END_TEST

/* ---- grow --------------------------------------------------------------- */

START_TEST(test_grow_takes_units_until_the_task_ends)
{
	struct job a = {.grow = 30};
	group_up(100, 1, false, 0);

	go(&a, 10);
	WAIT_FOR(atomic_load(&a.step) == 4);

	ck_assert_int_eq(a.grow_rc, 0);
	ck_assert_int_eq(in_use(), 40);
	atomic_store(&a.go_on, true);
	ck_assert_int_eq(ration_group_wait(grp), 0);
	ration_group_stats_t st;
	ration_group_stats(grp, &st);
	ck_assert_uint_eq(st.overrun_tasks, 1);
	ck_assert_int_eq(st.max_overrun_bytes, 30);
	ck_assert_int_eq(st.consumed_total, 30);
	ck_assert_int_eq(atomic_load(&max_report_overrun), 30);
	group_down();
}
END_TEST

START_TEST(test_grow_past_size_is_e2big_unless_oldest)
{
	struct job a = {0}, b = {.grow = 95};
	group_up(100, 2, false, 0);
	rank_from_now();
	go(&a, 10);

	go(&b, 10); /* younger: 10 + 95 can never fit */
	WAIT_FOR(atomic_load(&b.step) == 4);
	ck_assert_int_eq(b.grow_rc, -E2BIG);
	ck_assert_int_eq(in_use(), 20);

	atomic_store(&b.go_on, true);
	atomic_store(&a.go_on, true);
	ck_assert_int_eq(ration_group_wait(grp), 0);
	group_down();
}
END_TEST

START_TEST(test_grow_of_the_oldest_never_waits)
{
	struct job a = {.grow = 150};
	group_up(100, 1, false, 0);

	go(&a, 50);
	WAIT_FOR(atomic_load(&a.step) == 4);

	ck_assert_int_eq(a.grow_rc, 0);
	ck_assert_int_eq(in_use(), 200); /* past size: consumed */
	atomic_store(&a.go_on, true);
	ck_assert_int_eq(ration_group_wait(grp), 0);
	group_down();
}
END_TEST

/* A grow queues behind an earlier go() even when it would fit now; when
 * the oldest ends, the grow proceeds. */
START_TEST(test_grow_keeps_fifo_with_go)
{
	struct job a = {0}, b = {.grow = 10, .grow_gated = true}, c = {0};
	struct bg_go gc;
	group_up(100, 3, false, 0);
	rank_from_now();
	go(&a, 60);
	go(&b, 20);
	/* 80 in use: 30 does not fit, queued */
	bg_go(&gc, grp, 30, job_main, &c);
	wait_waiters(budget, 1);

	atomic_store(&b.grow_now, true); /* 10 would fit, but c is first */
	wait_waiters(budget, 2);
	ck_assert_int_eq(atomic_load(&b.step), 1);
	atomic_store(&a.go_on, true);

	ck_assert_int_eq(bg_go_join(&gc), 0);
	WAIT_FOR(atomic_load(&b.step) == 4);
	ck_assert_int_eq(b.grow_rc, 0);
	ck_assert_int_eq(in_use(), 60);
	atomic_store(&b.go_on, true);
	atomic_store(&c.go_on, true);
	ck_assert_int_eq(ration_group_wait(grp), 0);
	group_down();
}
END_TEST

/* Every running task grows at once and the budget is full: each grow
 * proceeds when its task becomes the oldest. */
START_TEST(test_grow_by_every_task_at_once_does_not_deadlock)
{
	enum { N = 4 };
	struct job j[N];
	group_up(100, N, false, 0);
	for (int i = 0; i < N; i++) {
		j[i] = (struct job){.grow = 20, .grow_gated = true};
		go(&j[i], 25);
	}

	for (int i = 0; i < N; i++)
		atomic_store(&j[i].grow_now, true);
	WAIT_FOR(atomic_load(&j[0].step) == 4);
	for (int i = 0; i < N; i++) {
		atomic_store(&j[i].go_on, true); /* each ends after its grow */
		WAIT_FOR(atomic_load(&j[i].step) == 4);
		ck_assert_int_eq(j[i].grow_rc, 0);
	}

	ck_assert_int_eq(ration_group_wait(grp), 0);
	ration_group_stats_t st;
	ration_group_stats(grp, &st);
	ck_assert_int_eq(st.consumed_total, 20 * N);
	group_down();
}
END_TEST

START_TEST(test_grow_cancelled_while_waiting_keeps_the_claim)
{
	ration_ctx_t *ctx;
	ck_assert_int_eq(ration_ctx_with_cancel(NULL, &ctx), 0);
	struct job a = {0}, b = {.grow = 30, .grow_ctx = ctx};
	group_up(100, 2, false, 0);
	rank_from_now();
	go(&a, 60);
	go(&b, 20);
	wait_waiters(budget, 1);

	ration_ctx_cancel(ctx);
	WAIT_FOR(atomic_load(&b.step) == 4);

	ck_assert_int_eq(b.grow_rc, -ECANCELED);
	ck_assert_int_eq(in_use(), 80);
	ck_assert_int_eq(sem_waiters(budget), 0);
	atomic_store(&a.go_on, true);
	atomic_store(&b.go_on, true);
	ck_assert_int_eq(ration_group_wait(grp), 0);
	ration_group_stats_t st;
	ration_group_stats(grp, &st);
	ck_assert_uint_eq(st.overrun_tasks,
			  1); /* rank_from_now()'s task only */
	ration_ctx_unref(ctx);
	group_down();
}
END_TEST

/* ---- elastic ------------------------------------------------------------- */

/* A task using far more than it declared holds that much of the budget
 * while it runs, so a go() that no longer fits waits for it to end. */
START_TEST(test_elastic_claim_follows_measured_memory)
{
	struct job a = {.alloc = 48 * MIB}, b = {0};
	struct bg_go gb;
	pick_mode(_i);
	group_up(64 * MIB, 2, true, 0);
	go(&a, 4 * MIB);
	WAIT_FOR(atomic_load(&a.step) == 2);
	WAIT_FOR(in_use() >= 40 * MIB);

	/* would fit beside the declared 4 MiB */
	bg_go(&gb, grp, 24 * MIB, job_main, &b);
	wait_waiters(budget, 1);
	ck_assert_int_eq(atomic_load(&b.step), 0);
	atomic_store(&a.go_on, true);

	ck_assert_int_eq(bg_go_join(&gb), 0);
	atomic_store(&b.go_on, true);
	ck_assert_int_eq(ration_group_wait(grp), 0);
	ration_group_stats_t st;
	ration_group_stats(grp, &st);
	ck_assert_uint_eq(st.overrun_tasks, 1);
	ck_assert_int_ge(st.max_overrun_bytes, 36 * MIB);
	ck_assert_int_ge(st.consumed_total, 36 * MIB);
	ck_assert_int_eq(atomic_load(&max_report_overrun),
			 st.max_overrun_bytes);
	group_down();
}
END_TEST

START_TEST(test_elastic_memory_freed_early_goes_back_early)
{
	struct job a = {.alloc = 48 * MIB, .free_early = true};
	pick_mode(_i);
	group_up(256 * MIB, 1, true, 0);
	go(&a, 4 * MIB);
	WAIT_FOR(atomic_load(&a.step) == 3);

	WAIT_FOR(in_use() <= 5 * MIB);

	ck_assert_int_ge(in_use(), 4 * MIB);
	atomic_store(&a.go_on, true);
	ck_assert_int_eq(ration_group_wait(grp), 0);
	group_down();
}
END_TEST

START_TEST(test_elastic_overrun_cancel_is_enomem)
{
	struct job a = {.alloc = 32 * MIB, .until_cancelled = true};
	pick_mode(_i);
	group_up(256 * MIB, 1, true, 2.0);

	go(&a, 4 * MIB);

	ck_assert_int_eq(ration_group_wait(grp), -ENOMEM);
	group_down();
}
END_TEST

/* The oldest task never waits, even past the whole budget. */
START_TEST(test_elastic_oldest_allocates_past_the_budget)
{
	struct job a = {.alloc = 96 * MIB};
	pick_mode(_i);
	group_up(64 * MIB, 1, true, 0);

	go(&a, 4 * MIB);
	WAIT_FOR(atomic_load(&a.step) == 2);

	WAIT_FOR(in_use() >= 80 * MIB);
	atomic_store(&a.go_on, true);
	ck_assert_int_eq(ration_group_wait(grp), 0);
	group_down();
}
END_TEST

/* ---- backpressure --------------------------------------------------------- */

/* Per-task arenas (docs/elastic.md) exist where jemalloc is the process
 * allocator and opts.backpressure is on; elsewhere, with RSS forced or
 * with the option off, claims are consume-only. */
static bool
backpressure(int i)
{
	return i == 0 && ration_account_available();
}

/* A task that allocates past its claim while the budget is full waits
 * inside malloc until room comes back; consume-only, it goes on at once. */
START_TEST(test_backpressure_waits_for_room)
{
	struct job a = {0}, c = {0}, b = {.alloc = 24 * MIB};
	pick_mode(_i);
	group_up(64 * MIB, 3, true, 0);
	go(&a, 16 * MIB); /* the oldest */
	go(&c, 36 * MIB);
	go(&b, 8 * MIB); /* in use 60 MiB: no room for its 16 more */

	if (backpressure(_i)) {
		wait_waiters(budget, 1);
		ck_assert_int_eq(atomic_load(&b.step), 1);
		atomic_store(&c.go_on, true); /* room: b is granted */
		WAIT_FOR(atomic_load(&b.step) == 2);
		ck_assert_int_le(in_use(), 64 * MIB);
	} else {
		WAIT_FOR(atomic_load(&b.step) == 2);
		ck_assert_int_eq(sem_waiters(budget), 0);
		atomic_store(&c.go_on, true);
	}
	atomic_store(&a.go_on, true);
	atomic_store(&b.go_on, true);
	ck_assert_int_eq(ration_group_wait(grp), 0);
	group_down();
}
END_TEST

/* The oldest task allocates past its claim while the budget is full of
 * younger tasks: it consumes and goes on (they hold what they have). */
START_TEST(test_backpressure_oldest_goes_on_while_full)
{
	struct job a = {.alloc = 48 * MIB, .alloc_gated = true}, b = {0};
	pick_mode(_i);
	group_up(64 * MIB, 2, true, 0);
	go(&a, 8 * MIB); /* the oldest */
	go(&b, 56 * MIB);

	atomic_store(&a.grow_now, true);
	WAIT_FOR(atomic_load(&a.step) == 2);
	ck_assert_int_eq(sem_waiters(budget), 0);
	ck_assert_int_eq(atomic_load(&b.step), 1);
	atomic_store(&a.go_on, true);
	atomic_store(&b.go_on, true);
	ck_assert_int_eq(ration_group_wait(grp), 0);
	group_down();
}
END_TEST

/* An allocation that ration makes under one of its own locks never waits
 * (internal/nowait.h): the oldest task may need that lock to end. Here a
 * learn table's key copy, made under the table's lock, past the claim of
 * a task that is not the oldest while the budget is full. */
struct record_job {
	ration_learn_t *l;
	const char *key;
	int rc;
	_Atomic bool done;
};

static int
record_main(ration_ctx_t *ctx, void *arg)
{
	(void)ctx;
	struct record_job *r = arg;
	r->rc = ration_learn_record(r->l, r->key, 1);
	atomic_store(&r->done, true);
	return 0;
}

START_TEST(test_backpressure_never_waits_under_a_ration_lock)
{
	enum { KEYLEN = 4 << 20 };
	char *key = malloc(KEYLEN + 1);
	ck_assert_ptr_nonnull(key);
	memset(key, 'k', KEYLEN);
	key[KEYLEN] = '\0';
	struct job a = {0};
	struct record_job r = {.key = key};
	ck_assert_int_eq(ration_learn_open(NULL, &r.l), 0);
	pick_mode(_i);
	group_up(64 * MIB, 2, true, 0);
	go(&a, 63 * MIB); /* the oldest, and the budget is full */

	ck_assert_int_eq(ration_group_go(grp, 1 * MIB, record_main, &r), 0);
	WAIT_FOR(atomic_load(&r.done));
	ck_assert_int_eq(r.rc, 0);
	ck_assert_int_eq(atomic_load(&a.step), 1);
	atomic_store(&a.go_on, true);
	ck_assert_int_eq(ration_group_wait(grp), 0);
	group_down();
	ration_learn_free(r.l);
	free(key);
}
END_TEST

/* A task waiting inside malloc whose ctx ends gets NULL (ENOMEM). */
START_TEST(test_backpressure_cancelled_while_waiting_is_null)
{
	struct job a = {0}, b = {.alloc = 48 * MIB, .may_fail = true};
	pick_mode(_i);
	group_up(64 * MIB, 2, true, 0);
	go(&a, 56 * MIB); /* the oldest */
	go(&b, 8 * MIB);

	if (backpressure(_i)) {
		wait_waiters(budget, 1);
		ration_ctx_cancel(ration_group_ctx(grp));
		WAIT_FOR(atomic_load(&b.step) == 2);
		ck_assert(b.alloc_null);
	} else {
		WAIT_FOR(atomic_load(&b.step) == 2);
		ck_assert(!b.alloc_null);
	}
	atomic_store(&a.go_on, true);
	atomic_store(&b.go_on, true);
	(void)ration_group_wait(grp);
	group_down();
}
END_TEST

/* Every running task allocating past its claim at once: the oldest goes
 * on, and as each ends the next oldest does; nothing deadlocks. */
START_TEST(test_backpressure_every_task_past_its_claim_at_once)
{
	enum { N = 4 };
	struct job j[N];
	pick_mode(_i);
	group_up(64 * MIB, N, true, 0);
	for (int k = 0; k < N; k++) {
		j[k] = (struct job){.alloc = 32 * MIB, .alloc_gated = true};
		atomic_store(&j[k].go_on, true);
		go(&j[k], 16 * MIB);
	}
	for (int k = 0; k < N; k++)
		atomic_store(&j[k].grow_now, true);

	ck_assert_int_eq(ration_group_wait(grp), 0);
	ration_group_stats_t st;
	ration_group_stats(grp, &st);
	ck_assert_uint_eq(st.tasks, N);
	group_down();
}
END_TEST

/* ---- suite --------------------------------------------------------------- */

static Suite *
elastic_suite(void)
{
	Suite *s = suite_create("elastic");
	TCase *tc = tcase_create("args");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_elastic_bad_options_are_einval);
	tcase_add_test(tc, test_grow_outside_a_budget_task_is_eperm);
	tcase_add_test(tc, test_grow_of_zero_is_einval);
	suite_add_tcase(s, tc);

	tc = tcase_create("grow");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_grow_takes_units_until_the_task_ends);
	tcase_add_test(tc, test_grow_past_size_is_e2big_unless_oldest);
	tcase_add_test(tc, test_grow_of_the_oldest_never_waits);
	tcase_add_test(tc, test_grow_keeps_fifo_with_go);
	tcase_add_test(tc, test_grow_by_every_task_at_once_does_not_deadlock);
	tcase_add_test(tc, test_grow_cancelled_while_waiting_keeps_the_claim);
	suite_add_tcase(s, tc);

	tc = tcase_create("elastic");
	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, test_elastic_claim_follows_measured_memory, 0,
			    2);
	tcase_add_loop_test(tc, test_elastic_memory_freed_early_goes_back_early,
			    0, 2);
	tcase_add_loop_test(tc, test_elastic_overrun_cancel_is_enomem, 0, 2);
	tcase_add_loop_test(tc, test_elastic_oldest_allocates_past_the_budget,
			    0, 2);
	suite_add_tcase(s, tc);

	tc = tcase_create("backpressure");
	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, test_backpressure_waits_for_room, 0, 3);
	tcase_add_loop_test(tc, test_backpressure_oldest_goes_on_while_full, 0,
			    3);
	tcase_add_loop_test(
		tc, test_backpressure_never_waits_under_a_ration_lock, 0, 3);
	tcase_add_loop_test(
		tc, test_backpressure_cancelled_while_waiting_is_null, 0, 3);
	tcase_add_loop_test(
		tc, test_backpressure_every_task_past_its_claim_at_once, 0, 3);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return run_suite(elastic_suite()) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
