/* test_faults.c - every allocating public call, with its k-th allocation
 * failed for k = 1, 2, ... until it succeeds (tests/faultalloc.c).
 *
 * Each failure must return the documented code (-ENOMEM for memory;
 * -EAGAIN or -ENOMEM where a thread could not be started; -ENOMEM or
 * -EMFILE for an fd), give back everything it allocated (fa_live() == 0,
 * and LeakSanitizer in the asan build), and leave the objects it touched
 * as they were. A failure the library absorbs (a fallback) may return 0:
 * that is fine, the object is then checked and undone like a success.
 *
 * Each test prints "faults: <call>: <n> injected" so docs/reliability.md
 * can cite the counts.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

#include <ration/shared.h>

/* tests/faultalloc.c */
enum fa_kind { FA_NONE, FA_MEM, FA_THREAD, FA_FD, FA_SPACE };
void fa_arm(long k);
long fa_disarm(void);
enum fa_kind fa_failed(void);
size_t fa_live(void);
void fa_forget(void);
const char *fa_kind_name(enum fa_kind k);

/* More than this many allocations in one call would be a bug in itself. */
#define MAX_K 200

static int
fds_now(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/fd");
	if (d == NULL)
		return -1;
	for (struct dirent *e; (e = readdir(d)) != NULL;)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the DIR's own fd */
}

static int
threads_now(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/task");
	if (d == NULL)
		return -1;
	for (struct dirent *e; (e = readdir(d)) != NULL;)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/* The codes a failure of @kind may turn into. */
static bool
code_ok(enum fa_kind kind, int rc)
{
	switch (kind) {
	case FA_MEM:
		return rc == -ENOMEM;
	case FA_THREAD:
		return rc == -EAGAIN || rc == -ENOMEM;
	case FA_FD:
		return rc == -ENOMEM || rc == -EMFILE;
	case FA_SPACE:
		return rc == -ENOSPC;
	default:
		return false;
	}
}

/* One k-loop: call(st) with the k-th allocation failing, for k = 1...
 * until a call succeeds with nothing failed. After a failure: @check
 * (state unchanged) runs. After a success with an absorbed failure:
 * @undo runs and the loop goes on. Returns the number of failure points. */
struct fcase {
	const char *name;
	int (*call)(void *st);
	void (*check)(void *st, int rc); /* after a failed call; may be NULL */
	void (*undo)(void *st); /* after a successful call; may be NULL */
	bool keep;              /* success may keep blocks (tracked) */
	bool quiet;             /* the caller prints a sum */
};

static long
fault_loop(const struct fcase *fc, void *st, bool final_undo)
{
	long injected = 0, absorbed = 0;

	for (long k = 1;; k++) {
		ck_assert_msg(k < MAX_K, "%s: more than %d allocations",
			      fc->name, MAX_K);
		fa_arm(k);
		int rc = fc->call(st);
		long seen = fa_disarm();
		enum fa_kind kind = fa_failed();
		if (kind == FA_NONE) {
			ck_assert_msg(rc == 0,
				      "%s: failed (%d) with no fault injected",
				      fc->name, rc);
			ck_assert_int_lt(seen, k);
			fa_forget();
			if (final_undo && fc->undo != NULL)
				fc->undo(st);
			break;
		}
		injected++;
		if (rc == 0) {
			/* A fallback absorbed the failure: still a valid object. */
			absorbed++;
			fa_forget();
			if (fc->undo != NULL)
				fc->undo(st);
			continue;
		}
		ck_assert_msg(code_ok(kind, rc),
			      "%s: %s #%ld failed -> %d (%s)", fc->name,
			      fa_kind_name(kind), k, rc, ration_strerror(rc));
		if (!fc->keep)
			ck_assert_msg(
				fa_live() == 0,
				"%s: %zu blocks leaked when %s #%ld failed",
				fc->name, fa_live(), fa_kind_name(kind), k);
		fa_forget();
		if (fc->check != NULL)
			fc->check(st, rc);
	}
	if (!fc->quiet) {
		printf("faults: %s: %ld injected (%ld absorbed by a "
		       "fallback)\n",
		       fc->name, injected, absorbed);
		fflush(stdout);
	}
	return injected;
}

/* ---- ctx --------------------------------------------------------------- */

struct ctx_st {
	ration_ctx_t *parent;
	bool parent_done;
	ration_ctx_t *out;
	int which; /* 0 cancel, 1 deadline, 2 timeout */
};

#define SENTINEL ((ration_ctx_t *)(uintptr_t)0x5a5a)

static int
ctx_call(void *p)
{
	struct ctx_st *s = p;
	s->out = SENTINEL;
	switch (s->which) {
	case 0:
		return ration_ctx_with_cancel(s->parent, &s->out);
	case 1:
		return ration_ctx_with_deadline(
			s->parent, ration_now() + 3600 * (int64_t)1000000000,
			&s->out);
	default:
		return ration_ctx_with_timeout(s->parent, 1000000000, &s->out);
	}
}

static void
ctx_check(void *p, int rc)
{
	struct ctx_st *s = p;
	ck_assert_ptr_eq(s->out, SENTINEL);
	if (s->parent != NULL)
		ck_assert_int_eq(ration_ctx_err(s->parent),
				 s->parent_done ? -ECANCELED : 0);
}

static void
ctx_undo(void *p)
{
	struct ctx_st *s = p;
	ck_assert_ptr_ne(s->out, SENTINEL);
	/* The new child follows its parent. */
	if (s->parent != NULL && ration_ctx_err(s->parent) != 0)
		ck_assert_int_ne(ration_ctx_err(s->out), 0);
	ration_ctx_unref(s->out);
}

START_TEST(faults_ctx_with)
{
	static const char *names[] = {"ration_ctx_with_cancel",
				      "ration_ctx_with_deadline",
				      "ration_ctx_with_timeout"};
	for (int which = 0; which < 3; which++) {
		for (int par = 0; par < 3; par++) {
			struct ctx_st s = {.which = which};
			char name[96];
			if (par >= 1)
				ck_assert_int_eq(
					ration_ctx_with_cancel(NULL, &s.parent),
					0);
			if (par == 2) {
				ration_ctx_cancel(
					s.parent); /* child born done */
				s.parent_done = true;
			}
			snprintf(name, sizeof(name), "%s(%s parent)",
				 names[which],
				 par == 0   ? "no"
				 : par == 1 ? "live"
					    : "done");
			struct fcase fc = {name,     ctx_call, ctx_check,
					   ctx_undo, false,    false};
			fault_loop(&fc, &s, true);
			if (s.parent != NULL) {
				ration_ctx_cancel(s.parent);
				ration_ctx_unref(s.parent);
			}
		}
	}
}
END_TEST

static _Atomic int after_runs[512];

static void
after_fn(void *arg)
{
	atomic_fetch_add(&after_runs[(intptr_t)arg], 1);
}

struct after_st {
	ration_ctx_t *ctx;
	intptr_t slot;
	bool accepted[512];
};

static int
after_call(void *p)
{
	struct after_st *s = p;
	uint64_t id;
	return ration_ctx_after(s->ctx, after_fn, (void *)s->slot, &id);
}

static void
after_check(void *p, int rc)
{
	struct after_st *s = p;
	ck_assert_int_eq(atomic_load(&after_runs[s->slot]), 0);
}

static void
after_undo(void *p)
{
	struct after_st *s = p;
	s->accepted[s->slot] = true;
}

START_TEST(faults_ctx_after)
{
	/* 130 deadline ctxs with a pending after-func each: the first may
	 * start the timer thread, the 65th and 129th grow its heap. */
	enum { N = 130 };
	static struct after_st s;
	ration_ctx_t *ctxs[N];
	memset(&s, 0, sizeof(s));
	for (int i = 0; i < 512; i++)
		atomic_store(&after_runs[i], 0);
	long total = 0;
	for (int i = 0; i < N; i++) {
		ck_assert_int_eq(
			ration_ctx_with_timeout(
				NULL, (int64_t)3600 * 1000000000, &ctxs[i]),
			0);
		s.ctx = ctxs[i];
		s.slot = i;
		struct fcase fc = {"ration_ctx_after(deadline ctx)",
				   after_call,
				   after_check,
				   after_undo,
				   false,
				   i != 0 && i != 64 && i != 128};
		/* Printed for the first and the two that grow the timer heap. */
		total += fault_loop(&fc, &s, true);
	}
	/* A plain cancel ctx (no timer) and a done one (fn runs inline). */
	ration_ctx_t *c;
	ck_assert_int_eq(ration_ctx_with_cancel(NULL, &c), 0);
	s.ctx = c;
	s.slot = N;
	struct fcase fc = {"ration_ctx_after(cancel ctx)",
			   after_call,
			   after_check,
			   after_undo,
			   false,
			   false};
	total += fault_loop(&fc, &s, true);
	ration_ctx_t *d;
	ck_assert_int_eq(ration_ctx_with_cancel(NULL, &d), 0);
	ration_ctx_cancel(d);
	s.ctx = d;
	s.slot = N + 1;
	struct fcase fd = {"ration_ctx_after(done ctx)",
			   after_call,
			   after_check,
			   after_undo,
			   false,
			   false};
	total += fault_loop(&fd, &s, true);
	ck_assert_int_eq(atomic_load(&after_runs[N + 1]), 1);

	for (int i = 0; i < N; i++)
		ration_ctx_cancel(ctxs[i]);
	ration_ctx_cancel(c);
	/* Every accepted after-func ran exactly once; refused ones never. */
	for (int i = 0; i < N + 2; i++)
		ck_assert_int_eq(atomic_load(&after_runs[i]),
				 s.accepted[i] ? 1 : 0);
	for (int i = 0; i < N; i++)
		ration_ctx_unref(ctxs[i]);
	ration_ctx_unref(c);
	ration_ctx_unref(d);
	printf("faults: ration_ctx_after total: %ld injected\n", total);
}
END_TEST

struct fd_st {
	ration_ctx_t *ctx;
};

static int
fd_call(void *p)
{
	struct fd_st *s = p;
	int rc = ration_ctx_fd(s->ctx);
	return rc >= 0 ? 0 : rc;
}

static void
fd_check(void *p, int rc)
{
	struct fd_st *s = p;
	ck_assert_int_eq(ration_ctx_err(s->ctx), 0);
}

START_TEST(faults_ctx_fd)
{
	for (int dl = 0; dl < 2; dl++) {
		struct fd_st s;
		if (dl)
			ck_assert_int_eq(ration_ctx_with_timeout(
						 NULL, 200 * 1000000, &s.ctx),
					 0);
		else
			ck_assert_int_eq(ration_ctx_with_cancel(NULL, &s.ctx),
					 0);
		struct fcase fc = {dl ? "ration_ctx_fd(deadline ctx)"
				      : "ration_ctx_fd(cancel ctx)",
				   fd_call,
				   fd_check,
				   NULL,
				   false,
				   false};
		fault_loop(&fc, &s, false);
		int fd = ration_ctx_fd(s.ctx);
		ck_assert_int_ge(fd, 0);
		if (!dl)
			ration_ctx_cancel(s.ctx);
		/* The fd still fires: by the cancel, or by the timer thread. */
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		ck_assert_int_eq(poll(&pfd, 1, 10000), 1);
		ration_ctx_unref(s.ctx);
	}
}
END_TEST

/* ---- sem --------------------------------------------------------------- */

struct sem_st {
	ration_sem_t *s;
	const char *name;
	int64_t size;
};

static int
sem_new_call(void *p)
{
	struct sem_st *s = p;
	s->s = NULL;
	return ration_sem_new(s->size, &(ration_sem_opts_t){.name = "faults"},
			      &s->s);
}

static void
sem_new_check(void *p, int rc)
{
	struct sem_st *s = p;
	ck_assert_ptr_null(s->s);
}

static void
sem_undo(void *p)
{
	struct sem_st *s = p;
	ck_assert_int_eq(ration_sem_available(s->s), s->size);
	ck_assert_int_eq(ration_sem_free(s->s), 0);
}

START_TEST(faults_sem_new)
{
	struct sem_st s = {.size = 10};
	struct fcase fc = {"ration_sem_new", sem_new_call, sem_new_check,
			   sem_undo,         false,        false};
	fault_loop(&fc, &s, true);
}
END_TEST

static int
sem_open_call(void *p)
{
	struct sem_st *s = p;
	s->s = NULL;
	return ration_sem_open(s->name, s->size, &s->s);
}

static void
sem_open_check(void *p, int rc)
{
	struct sem_st *s = p;
	ck_assert_ptr_null(s->s);
	/* Registry unchanged: the next open creates afresh, with its size. */
	ration_sem_t *x;
	ck_assert_int_eq(ration_sem_open(s->name, s->size + 7, &x), 0);
	ck_assert_int_eq(ration_sem_available(x), s->size + 7);
	ck_assert_int_eq(ration_sem_free(x), 0);
}

START_TEST(faults_sem_open)
{
	struct sem_st s = {.name = "faults.open", .size = 5};
	struct fcase fc = {"ration_sem_open(new name)",
			   sem_open_call,
			   sem_open_check,
			   NULL,
			   false,
			   false};
	fault_loop(&fc, &s, false);
	ration_sem_t *first = s.s;
	ck_assert_int_eq(ration_sem_available(first), 5);
	/* A second open of a known name allocates nothing. */
	struct fcase fc2 = {"ration_sem_open(known name)",
			    sem_open_call,
			    NULL,
			    NULL,
			    false,
			    false};
	ck_assert_int_eq(fault_loop(&fc2, &s, false), 0);
	ck_assert_ptr_eq(s.s, first);
	ck_assert_int_eq(ration_sem_free(s.s), 0);
	ck_assert_int_eq(ration_sem_free(first), 0);
}
END_TEST

struct all_st {
	ration_sem_t *sems[40];
	ration_claim_t claims[48];
	size_t count;
};

static int
all_call(void *p)
{
	struct all_st *s = p;
	return ration_acquire_all(NULL, s->claims, s->count);
}

static void
all_check(void *p, int rc)
{
	struct all_st *s = p;
	for (int i = 0; i < 40; i++)
		ck_assert_int_eq(ration_sem_available(s->sems[i]), 4);
}

static void
all_undo(void *p)
{
	struct all_st *s = p;
	ration_release_all(s->claims, s->count);
	all_check(p, 0);
}

START_TEST(faults_acquire_all)
{
	struct all_st s;
	for (int i = 0; i < 40; i++)
		ck_assert_int_eq(ration_sem_new(4, NULL, &s.sems[i]), 0);
	/* 17 (just past the inline buffer) and 40 distinct, plus duplicates. */
	size_t counts[] = {RATION_CLAIMS_INLINE, RATION_CLAIMS_INLINE + 1, 40,
			   48};
	for (int c = 0; c < 4; c++) {
		s.count = counts[c];
		for (size_t i = 0; i < s.count; i++)
			s.claims[i] = (ration_claim_t){s.sems[i % 40], 1};
		char name[64];
		snprintf(name, sizeof(name), "ration_acquire_all(%zu claims)",
			 s.count);
		struct fcase fc = {name,     all_call, all_check,
				   all_undo, false,    false};
		long n = fault_loop(&fc, &s, true);
		ck_assert_int_eq(n, s.count > RATION_CLAIMS_INLINE ? 1 : 0);
	}
	for (int i = 0; i < 40; i++)
		ck_assert_int_eq(ration_sem_free(s.sems[i]), 0);
}
END_TEST

/* ---- pool -------------------------------------------------------------- */

struct pool_st {
	ration_pool_opts_t opts;
	ration_pool_t *p;
	int threads0;
};

static int
pool_new_call(void *p)
{
	struct pool_st *s = p;
	s->p = NULL;
	return ration_pool_new(&s->opts, &s->p);
}

static void
pool_new_check(void *p, int rc)
{
	struct pool_st *s = p;
	ck_assert_ptr_null(s->p);
	/* "nothing is left running": the workers started before the failure
	 * have exited (they are detached: give them a moment). */
	WAIT_FOR(threads_now() == s->threads0);
}

static void
pool_undo(void *p)
{
	struct pool_st *s = p;
	ration_pool_free(s->p);
	WAIT_FOR(threads_now() == s->threads0);
}

START_TEST(faults_pool_new)
{
	static const char *names[] = {"ration_pool_new(defaults)",
				      "ration_pool_new(min_threads 3)",
				      "ration_pool_new(unbounded queue)"};
	ration_pool_opts_t opts[] = {
		{0},
		{.threads = 4, .min_threads = 3},
		{.threads = 2, .queue_cap = SIZE_MAX},
	};
	for (int i = 0; i < 3; i++) {
		struct pool_st s = {.opts = opts[i], .threads0 = threads_now()};
		struct fcase fc = {names[i],  pool_new_call, pool_new_check,
				   pool_undo, false,         false};
		fault_loop(&fc, &s, true);
	}
}
END_TEST

enum { NTASKS = 1200 };
static _Atomic int task_runs[NTASKS];
static _Atomic int task_cancelled[NTASKS];
static _Atomic bool gate_open;

static void
count_task(void *arg, int status)
{
	intptr_t id = (intptr_t)arg;
	if (status == 0)
		atomic_fetch_add(&task_runs[id], 1);
	else
		atomic_fetch_add(&task_cancelled[id], 1);
}

static void
gate_task(void *arg, int status)
{
	while (status == 0 && !atomic_load(&gate_open))
		sleep_ns(100000);
	count_task(arg, status);
}

struct submit_st {
	ration_pool_t *p;
	intptr_t id;
	bool try_;
	bool accepted[NTASKS];
	ration_pool_stats_t before;
};

static int
submit_call(void *p)
{
	struct submit_st *s = p;
	ration_pool_stats(s->p, &s->before);
	ration_task_fn fn = s->id == 0 ? gate_task : count_task;
	return s->try_ ? ration_pool_try_submit(s->p, fn, (void *)s->id)
		       : ration_pool_submit(s->p, NULL, fn, (void *)s->id);
}

static void
submit_check(void *p, int rc)
{
	struct submit_st *s = p;
	ration_pool_stats_t st;
	ration_pool_stats(s->p, &st);
	ck_assert_uint_eq(st.submitted, s->before.submitted);
	ck_assert_int_eq(atomic_load(&task_runs[s->id]) +
				 atomic_load(&task_cancelled[s->id]),
			 0);
}

static void
submit_undo(void *p)
{
	struct submit_st *s = p;
	s->accepted[s->id] = true;
}

static uint64_t
pool_running(ration_pool_t *p)
{
	ration_pool_stats_t st;
	ration_pool_stats(p, &st);
	return st.running;
}

static void
pool_submit_growth(bool bounded, bool try_, enum ration_shutdown mode)
{
	static struct submit_st s;
	memset(&s, 0, sizeof(s));
	for (int i = 0; i < NTASKS; i++) {
		atomic_store(&task_runs[i], 0);
		atomic_store(&task_cancelled[i], 0);
	}
	atomic_store(&gate_open, false);
	ration_pool_opts_t o = {.threads = 1,
				.idle_timeout_ns = (int64_t)3600 * 1000000000,
				.queue_cap = bounded ? NTASKS + 10 : SIZE_MAX};
	ck_assert_int_eq(ration_pool_new(&o, &s.p), 0);
	s.try_ = try_;
	char name[96];
	snprintf(name, sizeof(name), "ration_pool_%ssubmit(%s queue, %d tasks)",
		 try_ ? "try_" : "", bounded ? "bounded" : "unbounded", NTASKS);
	long injected = 0;
	for (intptr_t id = 0; id < NTASKS; id++) {
		s.id = id;
		struct fcase fc = {name,        submit_call, submit_check,
				   submit_undo, false,       true};
		injected += fault_loop(&fc, &s, true);
		if (id == 0)
			WAIT_FOR(pool_running(s.p) == 1);
	}
	printf("faults: %s: %ld injected\n", name, injected);
	ration_pool_stats_t st;
	ration_pool_stats(s.p, &st);
	ck_assert_uint_eq(st.submitted, NTASKS);
	if (mode == RATION_DRAIN) {
		atomic_store(&gate_open, true);
		ck_assert_int_eq(ration_pool_shutdown(s.p, mode, NULL), 0);
	} else {
		/* The gate task still runs: the wait ends by the ctx, the
		 * queued tasks are discarded all the same. */
		ration_ctx_t *c;
		ck_assert_int_eq(ration_ctx_with_timeout(NULL, 20000000, &c),
				 0);
		ck_assert_int_eq(ration_pool_shutdown(s.p, mode, c),
				 -ETIMEDOUT);
		ration_ctx_unref(c);
	}
	atomic_store(&gate_open, true);
	ration_pool_free(s.p);
	/* Nothing lost: every accepted task's fn was called exactly once. */
	for (int i = 0; i < NTASKS; i++) {
		ck_assert(s.accepted[i]);
		ck_assert_int_eq(atomic_load(&task_runs[i]) +
					 atomic_load(&task_cancelled[i]),
				 1);
	}
}

START_TEST(faults_pool_submit)
{
	pool_submit_growth(true, false, RATION_DRAIN);
	pool_submit_growth(false, false, RATION_DISCARD);
	pool_submit_growth(true, true, RATION_DISCARD);
}
END_TEST

/* The default pool: a failure at first use must not make it NULL for
 * ever (a later call retries). */
START_TEST(faults_pool_default)
{
	long injected = 0;
	ration_pool_t *p = NULL;
	for (long k = 1; k < MAX_K; k++) {
		fa_arm(k);
		p = ration_pool_default();
		fa_disarm();
		if (fa_failed() == FA_NONE) {
			ck_assert_ptr_nonnull(p);
			break;
		}
		injected++;
		if (p != NULL)
			break; /* absorbed */
		ck_assert_msg(fa_live() == 0,
			      "ration_pool_default leaked %zu blocks",
			      fa_live());
	}
	fa_forget();
	ck_assert_ptr_nonnull(p);
	ck_assert_ptr_eq(ration_pool_default(), p);
	printf("faults: ration_pool_default: %ld injected\n", injected);
}
END_TEST

/* ---- shared (cross-process) semaphore ----------------------------------- */

struct shared_st {
	char name[64];
	bool create;
	ration_sem_t *s;
	ration_sem_t *other; /* a handle opened before, if any */
	int fds0;
};

static int
shared_call(void *p)
{
	struct shared_st *s = p;
	s->s = NULL;
	ration_shared_opts_t o = {.create = s->create};
	return ration_sem_open_shared(s->name, 10, &o, &s->s);
}

static void
shared_check(void *p, int rc)
{
	struct shared_st *s = p;
	ck_assert_ptr_null(s->s);
	ck_assert_int_eq(fds_now(), s->fds0);
	if (s->other != NULL) {
		/* The handle opened before is untouched. */
		ck_assert_int_eq(ration_sem_available(s->other), 10);
	} else {
		/* A failed create leaves no object behind: the name is free. */
		ration_sem_t *x = NULL;
		int rc2 = ration_sem_open_shared(s->name, 10, NULL, &x);
		if (rc2 == 0) {
			ck_assert_int_eq(ration_sem_free(x), 0);
			ck_assert_int_eq(ration_sem_unlink_shared(s->name), 0);
		}
		/* Finding F2 (docs/reliability.md): a create that failed after
		 * shm_open used to leave the object behind. */
		ck_assert_msg(rc2 == -ENOENT,
			      "ration_sem_open_shared(create) failed with %s "
			      "but left %s behind",
			      ration_strerror(rc), s->name);
	}
}

static void
shared_undo(void *p)
{
	struct shared_st *s = p;
	ck_assert_ptr_nonnull(s->s);
	ck_assert_int_eq(ration_sem_available(s->s), 10);
	ck_assert_int_eq(ration_sem_try_acquire(s->s, 3), 0);
	ck_assert_int_eq(ration_sem_release(s->s, 3), 0);
	ck_assert_int_eq(ration_sem_free(s->s), 0);
	ck_assert_int_eq(fds_now(), s->fds0);
	if (s->other == NULL)
		ck_assert_int_eq(ration_sem_unlink_shared(s->name), 0);
}

START_TEST(faults_sem_open_shared)
{
	struct shared_st s = {.create = true};
	snprintf(s.name, sizeof(s.name), "ration-faults-%d", (int)getpid());
	(void)ration_sem_unlink_shared(s.name);
	s.fds0 = fds_now();
	struct fcase fc = {"ration_sem_open_shared(create)",
			   shared_call,
			   shared_check,
			   shared_undo,
			   false,
			   false};
	fault_loop(&fc, &s, true);

	/* Opening an existing object, with another handle already open. */
	ration_shared_opts_t o = {.create = true};
	ck_assert_int_eq(ration_sem_open_shared(s.name, 10, &o, &s.other), 0);
	s.create = false;
	s.fds0 = fds_now();
	struct fcase fo = {"ration_sem_open_shared(existing)",
			   shared_call,
			   shared_check,
			   shared_undo,
			   false,
			   false};
	fault_loop(&fo, &s, true);
	ck_assert_int_eq(ration_sem_available(s.other), 10);
	ck_assert_int_eq(ration_sem_free(s.other), 0);
	ck_assert_int_eq(ration_sem_unlink_shared(s.name), 0);
}
END_TEST

/* ---- account ------------------------------------------------------------ */

/* begin/end allocate nothing (contract §9: per-task overhead, no malloc);
 * only ration_account_available()'s one-time probe may. */
START_TEST(faults_account_begin_end)
{
	(void)ration_account_available(); /* the probe, outside the armed window */
	ration_account_t a;
	ration_task_report_t r;
	fa_arm(1);
	ration_account_begin(&a);
	ration_account_end(&a, &r);
	long seen = fa_disarm();
	fa_forget();
	ck_assert_int_eq(seen, 0);
	ck_assert_int_eq(fa_failed(), FA_NONE);
	ck_assert_int_ge(r.run_ns, 0);
	if (!ration_account_available())
		ck_assert_int_eq(r.peak_bytes, -1);
	printf("faults: ration_account_begin/end: 0 allocations (nothing to "
	       "inject)\n");
}
END_TEST

/* The one-time probe of ration_account_available() failing must not turn
 * accounting off for the life of the process: the answer is "false" only
 * while it cannot be known, and a later call asks again (finding F3 of
 * docs/reliability.md: a pthread_once probe failed this). Needs its own
 * process (fork mode): the probe runs once per process. */
START_TEST(faults_account_probe)
{
	long injected = 0;
	for (long k = 1; k < MAX_K; k++) {
		fa_arm(k);
		bool avail = ration_account_available();
		fa_disarm();
		fa_forget();
		if (fa_failed() == FA_NONE)
			break;
		injected++;
		(void)avail;
	}
	printf("faults: ration_account_available (probe): %ld injected\n",
	       injected);
	/* Only meaningful where the answer should be true: jemalloc built in
	 * (mallctl linked) and the probe needed an allocation. */
	if (injected > 0 && dlsym(RTLD_DEFAULT, "mallctl") != NULL)
		ck_assert_msg(ration_account_available(),
			      "a failed probe allocation turned accounting off "
			      "for good");
}
END_TEST

/* ---- group ------------------------------------------------------------- */

struct group_st {
	ration_sem_t *budget;
	ration_pool_t *pool;
	ration_group_t *g;
	int64_t avail;
};

static _Atomic int group_runs;

static int
group_task(ration_ctx_t *ctx, void *arg)
{
	atomic_fetch_add(&group_runs, 1);
	return 0;
}

static int
group_new_call(void *p)
{
	struct group_st *s = p;
	s->g = NULL;
	ration_group_opts_t o = {
		.pool = s->pool, .budget = s->budget, .limit = 2};
	return ration_group_new(NULL, &o, &s->g);
}

static void
group_new_check(void *p, int rc)
{
	struct group_st *s = p;
	ck_assert_ptr_null(s->g);
}

static void
group_undo(void *p)
{
	struct group_st *s = p;
	ck_assert_int_eq(ration_group_wait(s->g), 0);
	ration_group_free(s->g);
}

struct go_st {
	ration_group_t *g;
	ration_sem_t *budget;
	bool try_;
	int accepted;
};

static int
go_call(void *p)
{
	struct go_st *s = p;
	return s->try_ ? ration_group_try_go(s->g, 3, group_task, NULL)
		       : ration_group_go(s->g, 3, group_task, NULL);
}

static void
go_check(void *p, int rc)
{
	struct go_st *s = p;
	/* The weight went back: wait for the accepted tasks to finish. */
	WAIT_FOR(atomic_load(&group_runs) == s->accepted);
	WAIT_FOR(ration_sem_available(s->budget) == 10);
}

static void
go_undo(void *p)
{
	struct go_st *s = p;
	s->accepted++;
}

START_TEST(faults_group)
{
	struct group_st s = {0};
	ck_assert_int_eq(ration_sem_new(10, NULL, &s.budget), 0);
	ck_assert_int_eq(
		ration_pool_new(&(ration_pool_opts_t){.threads = 2}, &s.pool),
		0);
	struct fcase fc = {"ration_group_new", group_new_call, group_new_check,
			   group_undo,         false,          false};
	fault_loop(&fc, &s, false);
	ration_group_t *fresh = NULL;
	long injected_in[2] = {0, 0};
	for (int t = 0; t < 2; t++) {
		/* try_go on a group of its own: a group keeps finished task
		 * nodes for reuse, so after go's 50 calls it would allocate
		 * nothing and no fault could be injected. */
		if (t) {
			ration_group_opts_t o = {
				.pool = s.pool, .budget = s.budget, .limit = 2};
			ck_assert_int_eq(ration_group_new(NULL, &o, &fresh), 0);
		}
		struct go_st g = {
			.g = t ? fresh : s.g, .budget = s.budget, .try_ = t};
		atomic_store(&group_runs, 0);
		long injected = 0;
		for (int i = 0; i < 50; i++) {
			struct fcase fg = {t ? "ration_group_try_go"
					     : "ration_group_go",
					   go_call,
					   go_check,
					   go_undo,
					   true,
					   true};
			if (t) {
				/* try_go may find no room: make room first. */
				WAIT_FOR(atomic_load(&group_runs) ==
					 g.accepted);
			}
			injected += fault_loop(&fg, &g, true);
		}
		printf("faults: %s (50 calls): %ld injected\n",
		       t ? "ration_group_try_go" : "ration_group_go", injected);
		WAIT_FOR(atomic_load(&group_runs) == g.accepted);
		injected_in[t] = injected;
	}
	/* A go() that failed is each group's result (group.h). */
	int werr = ration_group_wait(fresh);
	ck_assert(injected_in[1] > 0 ? werr == -ENOMEM || werr == -EAGAIN
				     : werr == 0);
	ration_group_free(fresh);
	werr = ration_group_wait(s.g);
	ck_assert(injected_in[0] > 0 ? werr == -ENOMEM || werr == -EAGAIN
				     : werr == 0);
	ration_group_free(s.g);
	ck_assert_int_eq(ration_sem_available(s.budget), 10);
	ration_pool_free(s.pool);
	ck_assert_int_eq(ration_sem_free(s.budget), 0);
}
END_TEST

static Suite *
faults_suite(void)
{
	Suite *s = suite_create("faults");
	TCase *tc = tcase_create("alloc");
	tcase_set_timeout(tc, 120);
	/* The default pool first: nothing else here touches it. */
	tcase_add_test(tc, faults_pool_default);
	tcase_add_test(tc, faults_ctx_after);
	tcase_add_test(tc, faults_ctx_with);
	tcase_add_test(tc, faults_ctx_fd);
	tcase_add_test(tc, faults_sem_new);
	tcase_add_test(tc, faults_sem_open);
	tcase_add_test(tc, faults_acquire_all);
	tcase_add_test(tc, faults_pool_new);
	tcase_add_test(tc, faults_pool_submit);
	tcase_add_test(tc, faults_sem_open_shared);
	tcase_add_test(tc, faults_account_begin_end);
	/* A fresh process is needed for the one-time probe: fork mode only. */
	const char *fork_env = getenv("CK_FORK");
	if (fork_env == NULL || strcmp(fork_env, "no") != 0)
		tcase_add_test(tc, faults_account_probe);
	tcase_add_test(tc, faults_group);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	int failed = run_suite(faults_suite());
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
