/* modes.c - one run: the budget / fixed / unbounded runners (group on a
 * byte budget, a fixed worker pool, a thread per task behind a safety
 * net), the end-of-run checks, and the wait percentiles. */
#include "batch_budget.h"

#include <stdarg.h>
#include <sys/resource.h>

/* ---- unbounded: a thread per task ---- */

static ration_sem_t *safety_net;

/* The unbounded mode's task thread: no group, so it does by hand what a
 * group does for each task (acquire, account, report, release). */
static void *
unbounded_thread(void *arg)
{
	struct task *t = arg;
	ration_task_report_t rep = {.declared = t->bytes};
	int rc = ration_sem_acquire(safety_net, NULL, t->bytes);
	if (rc == 0) {
		ration_account_t acc;
		ration_account_begin(&acc);
		rc = run_task(NULL, t);
		ration_account_end(&acc, &rep);
		ration_sem_release(safety_net, t->bytes);
	} else {
		atomic_fetch_add(&failed_tasks, 1);
	}
	rep.wait_ns = t->wait_ns;
	rep.status = rc;
	on_report(&rep, NULL);
	return NULL;
}

/* Start every task on its own thread at once (at most UNBOUNDED_THREADS
 * alive: beyond that, each new thread first joins the oldest). */
static long
run_unbounded(const struct config *c, int *err)
{
	pthread_t *th = calloc((size_t)c->tasks, sizeof *th);
	if (th == NULL)
		die_if(-ENOMEM, "calloc");
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, (size_t)256 * 1024);
	long started = 0, joined = 0;
	for (long i = 0; i < c->tasks; i++) {
		if (started - joined == UNBOUNDED_THREADS)
			pthread_join(th[joined++], NULL);
		tasks[i].offer_ns = ration_now();
		int rc;
		while ((rc = pthread_create(&th[i], &attr, unbounded_thread,
					    &tasks[i])) != 0 &&
		       rc == EAGAIN && joined < started)
			pthread_join(th[joined++],
				     NULL); /* out of threads: wait for one */
		if (rc != 0) {
			*err = -rc;
			break;
		}
		started++;
	}
	while (joined < started)
		pthread_join(th[joined++], NULL);
	pthread_attr_destroy(&attr);
	free(th);
	return started;
}

static int
cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

/* Exact p50/p99 of the tasks' waits (offer -> start). */
static void
wait_percentiles(long n, int64_t *p50, int64_t *p99)
{
	int64_t *w = malloc((size_t)n * sizeof *w);
	*p50 = *p99 = -1;
	if (w == NULL)
		return;
	for (long i = 0; i < n; i++)
		w[i] = tasks[i].wait_ns;
	qsort(w, (size_t)n, sizeof *w, cmp_i64);
	*p50 = w[(n - 1) / 2];
	*p99 = w[(n - 1) * 99 / 100];
	free(w);
}

/* ---- one run ---- */

static int64_t
phys_ram(void)
{
	long pages = sysconf(_SC_PHYS_PAGES);
	return pages > 0 ? (int64_t)pages * page_size : 8 * GIB;
}

static void
fail_check(struct result *r, const char *fmt, ...)
{
	if (!r->ok)
		return; /* keep the first */
	r->ok = 0;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->why, sizeof r->why, fmt, ap);
	va_end(ap);
}

bool
elastic_claims_checked(const struct config *c)
{
	return c->mode == MODE_ELASTIC && c->backpressure &&
	       ration_account_available();
}

void
run(const struct config *c, struct result *r)
{
	memset(r, 0, sizeof *r);
	r->ok = 1;
	r->mode = c->mode;
	r->tasks = c->tasks;
	r->budget = c->budget;
	io_bw = c->io_bw;
	tasks = calloc((size_t)c->tasks, sizeof *tasks);
	if (tasks == NULL)
		die_if(-ENOMEM, "calloc");
	make_workload(c);
	for (long i = 0; i < c->tasks; i++) {
		r->declared_total += tasks[i].bytes;
		if (tasks[i].bytes > r->declared_max)
			r->declared_max = tasks[i].bytes;
		if (tasks[i].alloc > tasks[i].bytes) {
			r->liars++;
			if (tasks[i].alloc - tasks[i].bytes > r->lie_max)
				r->lie_max = tasks[i].alloc - tasks[i].bytes;
		}
	}

	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	ration_pool_opts_t po = {.name = "batch", .queue_cap = SIZE_MAX};
	ration_group_opts_t go = {.keep_going = true, .on_report = on_report};
	ration_sem_t *sem = NULL;
	ration_pool_t *pool = NULL;
	ration_group_t *g = NULL;
	switch (c->mode) {
	case MODE_BUDGET:
	case MODE_ELASTIC:
		/* limit = workers: go() takes a slot before the bytes, so only
		 * tasks that have a worker reserve budget; without it, tasks
		 * queued for a busy pool would sit on budget they do not use. */
		po.threads = c->threads;
		go.limit = c->threads;
		die_if(ration_sem_new(
			       c->budget,
			       &(ration_sem_opts_t){.name = "batch.memory"},
			       &sem),
		       "sem_new");
		go.budget = sem;
		go.budget_bytes =
			ration_account_available(); /* -ENOTSUP else */
		/* elastic: a task's claim follows what it really allocates, so
		 * a liar holds back go() until its memory is back; with
		 * backpressure a liar that is not the oldest waits inside
		 * malloc while the budget is full (safe here: the task body
		 * allocates holding no lock). */
		go.elastic = c->mode == MODE_ELASTIC;
		go.backpressure = go.elastic && c->backpressure;
		run_budget = sem;
		break;
	case MODE_FIXED:
	case NMODES:
		po.threads = (unsigned)(ncpu > 0 ? ncpu : 1);
		go.limit = po.threads;
		break;
	case MODE_UNBOUNDED:
		/* One thread per task, like `go task()` for each: only a thread
		 * cap and the safety net stand between it and the machine. */
		po.threads = c->tasks < UNBOUNDED_THREADS ? (unsigned)c->tasks
							  : UNBOUNDED_THREADS;
		r->safety_net = phys_ram() / 2;
		die_if(ration_sem_new(
			       r->safety_net,
			       &(ration_sem_opts_t){.name = "safety.net"},
			       &sem),
		       "sem_new");
		safety_net = sem;
		break;
	}
	r->threads = po.threads;
	if (c->mode != MODE_UNBOUNDED) {
		die_if(ration_pool_new(&po, &pool), "pool_new");
		go.pool = pool;
		die_if(ration_group_new(NULL, &go, &g), "group_new");
	}

	r->rss_base = rss_now();
	r->measured = ration_account_available();
	struct sampler_arg sa = {c, c->progress || isatty(2), isatty(2)};
	pthread_t sth;
	run_t0 = ration_now();
	atomic_store(&sampling, true);
	die_if(-pthread_create(&sth, NULL, sampler, &sa), "pthread_create");

	long offered = 0, finished = 0;
	int err = 0;
	if (g != NULL) {
		for (long i = 0; i < c->tasks; i++) {
			tasks[i].offer_ns = ration_now();
			int rc = ration_group_go(g, tasks[i].bytes, run_task,
						 &tasks[i]);
			if (rc != 0) {
				fail_check(
					r,
					"task %ld (%lld bytes) not started: %s",
					i, (long long)tasks[i].bytes,
					ration_strerror(rc));
				break;
			}
			offered++;
		}
		err = ration_group_wait(g);
	} else {
		offered = run_unbounded(c, &err);
	}
	r->wall_ns = ration_now() - run_t0;
	atomic_store(&sampling, false);
	pthread_join(sth, NULL);

	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	r->peak_rss = (int64_t)ru.ru_maxrss * KIB;

	if (g != NULL) {
		ration_group_stats_t gs;
		ration_group_stats(g, &gs);
		finished = (long)gs.tasks;
		r->failed = (long)gs.failed;
		r->grouped = true;
		r->max_overrun = gs.max_overrun_bytes;
		r->consumed_total = gs.consumed_total;
		if (gs.under_declared != (uint64_t)under_declared &&
		    run_budget != NULL)
			fail_check(
				r,
				"group counted %llu over-declared, reports %ld",
				(unsigned long long)gs.under_declared,
				under_declared);
	} else {
		finished = reports;
		r->failed = atomic_load(&failed_tasks);
	}
	r->reports = reports;
	r->under_declared = under_declared;
	r->measured_max = measured_max;
	r->max_in_use = r->max_held = atomic_load(&in_use_max);
	r->max_running = (long)atomic_load(&running_max);
	r->utilisation = (double)atomic_load(&held_byte_ns) * MIB /
			 ((double)c->budget * (double)r->wall_ns);
	wait_percentiles(c->tasks, &r->wait_p50, &r->wait_p99);

	/* ---- the checks ---- */
	if (sem != NULL) {
		ration_sem_stats_t ss;
		ration_sem_stats(sem, &ss);
		if (run_budget != NULL) {
			/* The semaphore's figure is authoritative: it counts
			 * weight from grant to release, ours only inside fn.
			 * An elastic group's claims may pass the budget (the
			 * oldest task consumes): checked through RSS below. */
			r->max_in_use = ss.max_in_use;
			if (c->mode == MODE_BUDGET && ss.max_in_use > c->budget)
				fail_check(r, "max in use %lld > budget %lld",
					   (long long)ss.max_in_use,
					   (long long)c->budget);
			/* Elastic with backpressure and jemalloc: a task past
			 * its claim waits inside malloc unless it is the
			 * oldest, so the claims stay within the budget + one
			 * task's overrun + less than one 64 KiB claim step per
			 * running task. */
			int64_t bound = c->budget + r->max_overrun +
					(int64_t)r->max_running * (64 << 10);
			if (elastic_claims_checked(c) && ss.max_in_use > bound)
				fail_check(r,
					   "max in use %lld > budget + largest "
					   "overrun + 64 KiB per running task "
					   "%lld",
					   (long long)ss.max_in_use,
					   (long long)bound);
		} else {
			r->safety_engaged = ss.contended > 0;
		}
		if (ss.in_use != 0)
			fail_check(r, "%lld bytes still held at the end",
				   (long long)ss.in_use);
	}
	if (atomic_load(&in_use_max) > r->max_in_use &&
	    c->mode == MODE_BUDGET && r->liars == 0)
		fail_check(r, "tasks held more than the semaphore granted");
	if (err != 0)
		fail_check(r, "group: %s", ration_strerror(err));
	if (offered != c->tasks || finished != c->tasks ||
	    reports != c->tasks ||
	    atomic_load(&done) + atomic_load(&failed_tasks) != c->tasks)
		fail_check(
			r,
			"tasks not all accounted: offered %ld, finished %ld, "
			"reported %ld, done %ld of %ld",
			offered, finished, reports, atomic_load(&done),
			c->tasks);
	for (long i = 0; i < c->tasks; i++)
		if (atomic_load(&tasks[i].runs) != 1 || tasks[i].sum == 0) {
			fail_check(r, "task %ld ran %d times", i,
				   atomic_load(&tasks[i].runs));
			break;
		}
	if (r->failed != 0)
		fail_check(r, "%ld tasks failed", r->failed);
#if !UNDER_SANITIZER
	/* (A sanitizer's shadow memory is not the budget's business.) */
	/* Liars take budget mode past the budget: that is what it shows. */
	if (c->mode == MODE_BUDGET && r->liars == 0 && c->rss_slack > 0 &&
	    r->peak_rss > c->budget + c->rss_slack)
		fail_check(r, "peak RSS %lld > budget + slack %lld",
			   (long long)r->peak_rss,
			   (long long)(c->budget + c->rss_slack));
	/* Elastic: within the budget plus one task's overrun (the oldest
	 * consumes) plus the fixed slack. */
	if (c->mode == MODE_ELASTIC && c->rss_slack > 0 &&
	    r->peak_rss > c->budget + r->max_overrun + c->rss_slack)
		fail_check(r,
			   "peak RSS %lld > budget + largest overrun %lld + "
			   "slack %lld",
			   (long long)r->peak_rss, (long long)r->max_overrun,
			   (long long)c->rss_slack);
#endif

	int64_t peak_rss_seen = 0;
	for (size_t i = 0; i < nsamples; i++)
		if (samples[i].rss > peak_rss_seen)
			peak_rss_seen = samples[i].rss;
	r->spark_scale = c->budget;
	if (r->max_in_use > r->spark_scale)
		r->spark_scale = r->max_in_use;
	if (peak_rss_seen > r->spark_scale)
		r->spark_scale = peak_rss_seen;
	sparkline(r->spark, r->spark_scale, false);
	sparkline(r->spark_rss, r->spark_scale, true);
	if (c->timeline != NULL) {
		int rc = write_timeline(c->timeline, c);
		if (rc != 0)
			fprintf(stderr, "batch_budget: %s: %s\n", c->timeline,
				strerror(-rc));
	}

	ration_group_free(g);
	ration_pool_free(pool);
	safety_net = NULL;
	run_budget = NULL;
	if (sem != NULL)
		die_if(ration_sem_free(sem), "sem_free");
	free(tasks);
}
