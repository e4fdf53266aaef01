/* batch_budget: a heavy-tailed batch under a memory budget (the main job).
 *
 *     build/examples/batch_budget                    # 2000 tasks, 256 MiB budget
 *     build/examples/batch_budget --compare          # budget vs fixed vs unbounded
 *     build/examples/batch_budget --json --timeline mem.csv
 *     build/examples/batch_budget --help
 *
 * A built-in, seeded synthetic batch: --tasks tasks whose memory needs are
 * heavy-tailed (98% between 1 and 8 MiB, 2% between 8 and 128 MiB). Each
 * task allocates its bytes, fills every word (touching every page), waits
 * as if reading its input (--io-bw), then hashes the whole buffer. Each
 * task's declared bytes are its weight: in --mode budget,
 * ration_group_go() waits until that much of the budget is free, so the
 * bytes held by running tasks never exceed the budget, and peak RSS stays
 * within the budget plus a small fixed overhead (docs/batch_budget.md).
 *
 * The Go program it mirrors is golang.org/x/sync's weighted worker pool
 * with errgroup:
 *     sem := semaphore.NewWeighted(budget)
 *     for _, t := range tasks {
 *         sem.Acquire(ctx, t.bytes)        // FIFO: big tasks do not starve
 *         g.Go(func() error { defer sem.Release(t.bytes); return run(t) })
 *     }
 *     g.Wait()
 * which ration_group_go(g, t->bytes, run_task, t) does in one call, plus
 * what Go cannot say: each task's measured peak heap next to its weight.
 *
 * Modes:
 *   budget     ration group, opts.budget = a byte semaphore of --budget,
 *              budget_bytes = true, weight = declared bytes; --threads
 *              workers and opts.limit = --threads
 *   fixed      the classic worker pool: at most K = online CPUs tasks at a
 *              time, whatever their size
 *   unbounded  every task started at once on its own thread (as `go
 *              task()` would), no budget; a safety net of half the RAM
 *              (a semaphore) and a cap of 4096 live threads stop it from
 *              taking the machine down; the report says if the net engaged
 *
 * The program checks (exit 1 if violated): every task ran exactly once and
 * was reported, nothing failed, and in budget mode the bytes in use never
 * exceeded the budget (ration_sem_stats max_in_use) and peak RSS stayed
 * within budget + --rss-slack. Bad flags exit 2.
 *
 * Freed task memory goes back to the OS at once, so RSS follows the bytes
 * in use: with jemalloc (the default build) via malloc_conf below (purge
 * freed pages immediately); with glibc malloc, buffers of 1 MiB and more
 * are mmap'd (M_MMAP_THRESHOLD) and so munmap'd on free.
 */
#include <ration.h>

#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Read by jemalloc at start-up when it is the process allocator (ignored by
 * glibc): without it, freed pages stay resident for up to 10 s (decay) and
 * RSS would measure jemalloc's cache, not the budget. */
extern const char *malloc_conf;
const char *malloc_conf = "dirty_decay_ms:0,muzzy_decay_ms:0";

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
	__has_feature(memory_sanitizer)
#define UNDER_SANITIZER 1
#endif
#endif
#ifndef UNDER_SANITIZER
#define UNDER_SANITIZER 0
#endif

#define KIB (INT64_C(1) << 10)
#define MIB (INT64_C(1) << 20)
#define GIB (INT64_C(1) << 30)
#define MAX_TASK (128 * MIB)
#define UNBOUNDED_THREADS 4096  /* threads alive at once */
#define SAMPLE_NS 10000000LL       /* timeline: every 10 ms */
#define SPARK_WIDTH 60

enum mode { MODE_BUDGET, MODE_FIXED, MODE_UNBOUNDED };
static const char *const mode_names[] = { "budget", "fixed", "unbounded" };

struct config {
	int64_t budget;
	int64_t io_bw;       /* simulated read bandwidth per task, bytes/s; 0 = none */
	int64_t rss_slack;
	long tasks;
	unsigned threads;
	uint64_t seed;
	enum mode mode;
	bool compare, json, progress;
	const char *timeline;
};

struct task {
	int64_t bytes;      /* declared = allocated */
	uint64_t seed;
	uint64_t sum;       /* the hash; nonzero once run */
	int64_t offer_ns;   /* when it was offered (go() called, thread made) */
	int64_t wait_ns;    /* from offer to the task starting */
	_Atomic int runs;   /* must end at exactly 1 */
};

/* What one run produces; crosses a pipe from the --compare children. */
struct result {
	enum mode mode;
	int ok;              /* every check passed */
	unsigned threads;    /* workers (K in fixed mode) */
	long tasks, failed, reports;
	int64_t wall_ns, budget, peak_rss, rss_base, max_in_use, declared_total;
	int64_t max_held;    /* most bytes held by running tasks at once */
	int64_t declared_max, measured_max, safety_net;
	double utilisation;  /* time-average of in-use / budget */
	int64_t wait_p50, wait_p99;
	long over_declared;
	long max_running;    /* most tasks running at once (counted in run_task) */
	bool measured;       /* jemalloc gave peak figures */
	bool safety_engaged;
	char spark[SPARK_WIDTH * 3 + 1], spark_rss[SPARK_WIDTH * 3 + 1];
	int64_t spark_scale;
	char why[160];       /* first failed check */
};

/* ---- shared state of one run ---- */

static struct task *tasks;
static _Atomic int64_t in_use, in_use_max, held_byte_ns;
static _Atomic long done, failed_tasks;
static _Atomic int64_t running, running_max;
static pthread_mutex_t report_mu = PTHREAD_MUTEX_INITIALIZER;
static long reports, over_declared;
static int64_t measured_max = -1;
static int64_t io_bw;

static void
die_if(int rc, const char *what)
{
	if (rc != 0) {
		fprintf(stderr, "batch_budget: %s: %s\n", what, ration_strerror(rc));
		exit(1);
	}
}

static uint64_t
splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15u);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

/* ---- the task ---- */

static void
add_max(_Atomic int64_t *now, _Atomic int64_t *max, int64_t delta)
{
	int64_t v = atomic_fetch_add_explicit(now, delta, memory_order_relaxed) + delta;
	int64_t m = atomic_load_explicit(max, memory_order_relaxed);
	while (v > m && !atomic_compare_exchange_weak_explicit(max, &m, v, memory_order_relaxed,
							       memory_order_relaxed))
		;
}

static void
note_in_use(int64_t delta)
{
	add_max(&in_use, &in_use_max, delta);
	add_max(&running, &running_max, delta > 0 ? 1 : -1);
}

/* Load, wait for "I/O", process: allocate and fill the buffer, sleep
 * bytes / io_bw, then hash every word of it. */
static int
run_task(ration_ctx_t *ctx, void *arg)
{
	struct task *t = arg;
	(void)ctx;
	int64_t t0 = ration_now();
	t->wait_ns = t0 - t->offer_ns;
	atomic_fetch_add(&t->runs, 1);
	note_in_use(t->bytes);

	size_t words = (size_t)t->bytes / sizeof(uint64_t);
	uint64_t *buf = malloc((size_t)t->bytes);
	if (buf == NULL) {
		note_in_use(-t->bytes);
		atomic_fetch_add(&failed_tasks, 1);
		return -ENOMEM;
	}
	uint64_t x = t->seed;
	for (size_t i = 0; i < words; i += 8) {
		uint64_t r = splitmix64(&x);
		for (size_t j = 0; j < 8; j++)
			buf[i + j] = r + j * 0x9e3779b97f4a7c15u;
	}
	if (io_bw > 0) {
		int64_t ns = (int64_t)((double)t->bytes * 1e9 / (double)io_bw);
		struct timespec ts = { ns / 1000000000, ns % 1000000000 };
		nanosleep(&ts, NULL);
	}
	uint64_t h[4] = { 1, 2, 3, 4 };
	for (size_t i = 0; i < words; i += 4)
		for (size_t j = 0; j < 4; j++) {
			h[j] = (h[j] ^ buf[i + j]) * 0x100000001b3u;
			h[j] ^= h[j] >> 29;
		}
	t->sum = (h[0] ^ h[1] * 3 ^ h[2] * 5 ^ h[3] * 7) | 1;
	free(buf);

	note_in_use(-t->bytes);
	atomic_fetch_add_explicit(&held_byte_ns, t->bytes / KIB * (ration_now() - t0) / 1024,
				  memory_order_relaxed);
	atomic_fetch_add(&done, 1);
	return 0;
}

/* Called by the group after each task, on the worker, no lock held. */
static void
on_report(const ration_task_report_t *r, void *udata)
{
	(void)udata;
	pthread_mutex_lock(&report_mu);
	reports++;
	if (r->peak_bytes >= 0) {
		if (r->peak_bytes > measured_max)
			measured_max = r->peak_bytes;
		if (r->peak_bytes > r->declared)
			over_declared++;
	}
	pthread_mutex_unlock(&report_mu);
}

/* ---- the workload ---- */

/* Round up to jemalloc's large size classes (4 per doubling), so that the
 * declared bytes are exactly what the allocator hands out and measured
 * peaks are comparable with declarations. */
static int64_t
size_class(int64_t n)
{
	int64_t p = 1;
	while (p * 2 < n)
		p *= 2;
	int64_t step = p / 4 > 4096 ? p / 4 : 4096;
	return (n + step - 1) / step * step;
}

static void
make_workload(const struct config *c)
{
	uint64_t x = c->seed;
	int64_t cap = c->budget < MAX_TASK ? c->budget : MAX_TASK;
	for (long i = 0; i < c->tasks; i++) {
		/* Heavy-tailed, Pareto-like: each octave is rarer than the one
		 * below; uniform within an octave. 98% in [1, 8) MiB, 2% in
		 * [8, 128) MiB. Percent per octave: */
		static const int64_t lo[] = { 1, 2, 4, 8, 16, 32, 64 };
		static const int pct10[] = { 490, 294, 196, 10, 5, 3, 2 }; /* in 0.1% */
		int pick = (int)(splitmix64(&x) % 1000), o = 0;
		while (o < 6 && pick >= pct10[o])
			pick -= pct10[o++];
		int64_t base = lo[o] * MIB;
		int64_t b = size_class(base + (int64_t)(splitmix64(&x) % (uint64_t)base));
		tasks[i].bytes = b < cap ? b : cap / 4096 * 4096;
		tasks[i].seed = splitmix64(&x);
		tasks[i].sum = 0;
		atomic_store(&tasks[i].runs, 0);
	}
}

/* ---- sampling: timeline, progress line ---- */

struct sample {
	int64_t t_ns, in_use, rss;
	long done;
};

static struct sample *samples;
static size_t nsamples, samples_cap;
static _Atomic bool sampling;
static int64_t run_t0;
static long page_size;

static int64_t
rss_now(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	long long size = 0, res = 0;
	if (f == NULL)
		return -1;
	if (fscanf(f, "%lld %lld", &size, &res) != 2)
		res = -1;
	fclose(f);
	return res < 0 ? -1 : res * page_size;
}

static void
fmt_bytes(char *out, size_t len, int64_t b)
{
	if (b < 0)
		snprintf(out, len, "n/a");
	else if (b >= 10 * GIB)
		snprintf(out, len, "%.0f GiB", (double)b / GIB);
	else if (b >= GIB)
		snprintf(out, len, "%.2f GiB", (double)b / GIB);
	else if (b >= MIB)
		snprintf(out, len, "%.1f MiB", (double)b / MIB);
	else
		snprintf(out, len, "%.0f KiB", (double)b / KIB);
}

struct sampler_arg {
	const struct config *c;
	bool show;   /* print the progress line */
	bool tty;
};

static void *
sampler(void *argp)
{
	struct sampler_arg *a = argp;
	int64_t last_print = 0;
	while (atomic_load(&sampling)) {
		struct timespec ts = { 0, SAMPLE_NS };
		nanosleep(&ts, NULL);
		int64_t now = ration_now();
		struct sample s = { now - run_t0, atomic_load(&in_use), rss_now(),
				    atomic_load(&done) };
		if (nsamples == samples_cap) {
			size_t cap = samples_cap ? samples_cap * 2 : 1024;
			struct sample *n = realloc(samples, cap * sizeof *n);
			if (n == NULL)
				continue;  /* keep running; the timeline gets coarser */
			samples = n, samples_cap = cap;
		}
		samples[nsamples++] = s;

		/* At most 10 lines a second on a terminal, 1 otherwise. */
		int64_t every = a->tty ? 100000000LL : 1000000000LL;
		if (a->show && now - last_print >= every) {
			last_print = now;
			double secs = (double)s.t_ns / 1e9;
			double rate = secs > 0 ? (double)s.done / secs : 0;
			double eta = rate > 0 ? (double)(a->c->tasks - s.done) / rate : 0;
			char iu[32], bu[32];
			fmt_bytes(iu, sizeof iu, s.in_use);
			fmt_bytes(bu, sizeof bu, a->c->budget);
			fprintf(stderr, "%s[%s] %ld/%ld tasks  in use %s / %s  %.0f tasks/s  "
				"ETA %.1fs%s", a->tty ? "\r\033[K" : "",
				mode_names[a->c->mode], s.done, a->c->tasks, iu, bu, rate, eta,
				a->tty ? "" : "\n");
		}
	}
	if (a->show && a->tty)
		fprintf(stderr, "\r\033[K");   /* the report follows */
	else if (a->show)
		fprintf(stderr, "[%s] %ld/%ld tasks done in %.2f s\n", mode_names[a->c->mode],
			atomic_load(&done), a->c->tasks, (double)(ration_now() - run_t0) / 1e9);
	return NULL;
}

/* ▁▂▃▄▅▆▇█ of the per-column maximum of @field against @scale. */
static void
sparkline(char *out, int64_t scale, bool rss)
{
	static const char *const bars[] = { "▁", "▂", "▃", "▄", "▅", "▆", "▇", "█" };
	out[0] = '\0';
	if (nsamples == 0 || scale <= 0)
		return;
	size_t cols = nsamples < SPARK_WIDTH ? nsamples : SPARK_WIDTH;
	for (size_t c = 0; c < cols; c++) {
		size_t a = c * nsamples / cols, b = (c + 1) * nsamples / cols;
		int64_t m = 0;
		for (size_t i = a; i < b; i++) {
			int64_t v = rss ? samples[i].rss : samples[i].in_use;
			m = v > m ? v : m;
		}
		int lvl = (int)((double)m * 8 / (double)scale);
		lvl = lvl < 0 ? 0 : lvl > 7 ? 7 : lvl;
		strcat(out, bars[lvl]);
	}
}

static int
write_timeline(const char *path, const struct config *c)
{
	FILE *f = fopen(path, "w");
	if (f == NULL)
		return -errno;
	fprintf(f, "t_ms,in_use_bytes,rss_bytes,budget_bytes,done,mode\n");
	for (size_t i = 0; i < nsamples; i++)
		fprintf(f, "%.1f,%lld,%lld,%lld,%ld,%s\n", (double)samples[i].t_ns / 1e6,
			(long long)samples[i].in_use, (long long)samples[i].rss,
			(long long)c->budget, samples[i].done, mode_names[c->mode]);
	return fclose(f) == 0 ? 0 : -EIO;
}

/* ---- unbounded: a thread per task ---- */

static ration_sem_t *safety_net;

/* The unbounded mode's task thread: no group, so it does by hand what a
 * group does for each task (acquire, account, report, release). */
static void *
unbounded_thread(void *arg)
{
	struct task *t = arg;
	ration_task_report_t rep = { .declared = t->bytes };
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
		while ((rc = pthread_create(&th[i], &attr, unbounded_thread, &tasks[i])) != 0 &&
		       rc == EAGAIN && joined < started)
			pthread_join(th[joined++], NULL);  /* out of threads: wait for one */
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
		return;  /* keep the first */
	r->ok = 0;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->why, sizeof r->why, fmt, ap);
	va_end(ap);
}

static void
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
	}

	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	ration_pool_opts_t po = { .name = "batch", .queue_cap = SIZE_MAX };
	ration_group_opts_t go = { .keep_going = true, .on_report = on_report };
	ration_sem_t *sem = NULL;
	ration_pool_t *pool = NULL;
	ration_group_t *g = NULL;
	switch (c->mode) {
	case MODE_BUDGET:
		/* limit = workers: go() takes a slot before the bytes, so only
		 * tasks that have a worker reserve budget; without it, tasks
		 * queued for a busy pool would sit on budget they do not use. */
		po.threads = c->threads;
		go.limit = c->threads;
		die_if(ration_sem_new(c->budget, &(ration_sem_opts_t){ .name = "batch.memory" },
				      &sem), "sem_new");
		go.budget = sem;
		go.budget_bytes = true;
		break;
	case MODE_FIXED:
		po.threads = (unsigned)(ncpu > 0 ? ncpu : 1);
		go.limit = po.threads;
		break;
	case MODE_UNBOUNDED:
		/* One thread per task, like `go task()` for each: only a thread
		 * cap and the safety net stand between it and the machine. */
		po.threads = c->tasks < UNBOUNDED_THREADS ? (unsigned)c->tasks : UNBOUNDED_THREADS;
		r->safety_net = phys_ram() / 2;
		die_if(ration_sem_new(r->safety_net, &(ration_sem_opts_t){ .name = "safety.net" },
				      &sem), "sem_new");
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
	struct sampler_arg sa = { c, c->progress || isatty(2), isatty(2) };
	pthread_t sth;
	run_t0 = ration_now();
	atomic_store(&sampling, true);
	die_if(-pthread_create(&sth, NULL, sampler, &sa), "pthread_create");

	long offered = 0, finished = 0;
	int err = 0;
	if (g != NULL) {
		for (long i = 0; i < c->tasks; i++) {
			tasks[i].offer_ns = ration_now();
			int rc = ration_group_go(g, tasks[i].bytes, run_task, &tasks[i]);
			if (rc != 0) {
				fail_check(r, "task %ld (%lld bytes) not started: %s", i,
					   (long long)tasks[i].bytes, ration_strerror(rc));
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
		if (gs.over_declared != (uint64_t)over_declared && c->mode == MODE_BUDGET)
			fail_check(r, "group counted %llu over-declared, reports %ld",
				   (unsigned long long)gs.over_declared, over_declared);
	} else {
		finished = reports;
		r->failed = atomic_load(&failed_tasks);
	}
	r->reports = reports;
	r->over_declared = over_declared;
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
		if (c->mode == MODE_BUDGET) {
			/* The semaphore's figure is authoritative: it counts
			 * weight from grant to release, ours only inside fn. */
			r->max_in_use = ss.max_in_use;
			if (ss.max_in_use > c->budget)
				fail_check(r, "max in use %lld > budget %lld",
					   (long long)ss.max_in_use, (long long)c->budget);
		} else {
			r->safety_engaged = ss.contended > 0;
		}
		if (ss.in_use != 0)
			fail_check(r, "%lld bytes still held at the end", (long long)ss.in_use);
	}
	if (atomic_load(&in_use_max) > r->max_in_use && c->mode == MODE_BUDGET)
		fail_check(r, "tasks held more than the semaphore granted");
	if (err != 0)
		fail_check(r, "group: %s", ration_strerror(err));
	if (offered != c->tasks || finished != c->tasks || reports != c->tasks ||
	    atomic_load(&done) + atomic_load(&failed_tasks) != c->tasks)
		fail_check(r, "tasks not all accounted: offered %ld, finished %ld, "
			   "reported %ld, done %ld of %ld", offered, finished, reports,
			   atomic_load(&done), c->tasks);
	for (long i = 0; i < c->tasks; i++)
		if (atomic_load(&tasks[i].runs) != 1 || tasks[i].sum == 0) {
			fail_check(r, "task %ld ran %d times", i, atomic_load(&tasks[i].runs));
			break;
		}
	if (r->failed != 0)
		fail_check(r, "%ld tasks failed", r->failed);
#if !UNDER_SANITIZER
	/* (A sanitizer's shadow memory is not the budget's business.) */
	if (c->mode == MODE_BUDGET && c->rss_slack > 0 && r->peak_rss > c->budget + c->rss_slack)
		fail_check(r, "peak RSS %lld > budget + slack %lld", (long long)r->peak_rss,
			   (long long)(c->budget + c->rss_slack));
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
			fprintf(stderr, "batch_budget: %s: %s\n", c->timeline, strerror(-rc));
	}

	ration_group_free(g);
	ration_pool_free(pool);
	safety_net = NULL;
	if (sem != NULL)
		die_if(ration_sem_free(sem), "sem_free");
	free(tasks);
	free(samples);
	samples = NULL, nsamples = samples_cap = 0;
}

/* ---- output ---- */

static void
fmt_ns(char *out, size_t len, int64_t ns)
{
	if (ns >= 1000000000LL)
		snprintf(out, len, "%.2f s", (double)ns / 1e9);
	else if (ns >= 1000000)
		snprintf(out, len, "%.1f ms", (double)ns / 1e6);
	else if (ns >= 1000)
		snprintf(out, len, "%.1f us", (double)ns / 1e3);
	else
		snprintf(out, len, "%lld ns", (long long)ns);
}

static void
print_report(const struct config *c, const struct result *r)
{
	char b1[32], b2[32], b3[32], b4[32];
	if (r->mode == MODE_UNBOUNDED)
		printf("batch_budget: mode unbounded, %ld tasks, seed %llu, a thread per task\n",
		       r->tasks, (unsigned long long)c->seed);
	else
		printf("batch_budget: mode %s, %ld tasks, seed %llu, %u threads\n",
		       mode_names[r->mode], r->tasks, (unsigned long long)c->seed, r->threads);
	printf("  %-22s %ld done, %ld failed, %ld reported\n", "tasks",
	       r->tasks - r->failed, r->failed, r->reports);
	fmt_ns(b1, sizeof b1, r->wall_ns);
	printf("  %-22s %s (%.0f tasks/s; at most %ld running at once)\n", "wall time", b1,
	       (double)r->tasks * 1e9 / (double)r->wall_ns, r->max_running);
	fmt_bytes(b1, sizeof b1, r->max_in_use);
	fmt_bytes(b2, sizeof b2, r->budget);
	fmt_bytes(b3, sizeof b3, r->max_held);
	printf("  %-22s %s of %s (%.0f%%)%s; held by running tasks: %s\n", "max in use", b1,
	       b2, 100.0 * (double)r->max_in_use / (double)r->budget,
	       r->max_in_use > r->budget ? " OVER BUDGET" : "", b3);
	printf("  %-22s %.0f%% (time-average of in-use / budget)\n", "budget utilisation",
	       100.0 * r->utilisation);
	fmt_bytes(b1, sizeof b1, r->peak_rss);
	fmt_bytes(b3, sizeof b3, r->peak_rss - r->budget);
	fmt_bytes(b4, sizeof b4, r->rss_base);
	if (r->peak_rss > r->budget)
		printf("  %-22s %s vs budget %s (%.0f%%: %s over; %s before the run)\n",
		       "peak RSS", b1, b2, 100.0 * (double)r->peak_rss / (double)r->budget, b3,
		       b4);
	else
		printf("  %-22s %s vs budget %s (%.0f%%; %s before the run)\n", "peak RSS", b1,
		       b2, 100.0 * (double)r->peak_rss / (double)r->budget, b4);
	fmt_bytes(b1, sizeof b1, r->declared_max);
	fmt_bytes(b3, sizeof b3, r->declared_total);
	if (r->measured && r->measured_max >= 0) {
		fmt_bytes(b2, sizeof b2, r->measured_max);
		printf("  %-22s declared max %s, measured max %s (jemalloc); %s declared "
		       "in all\n", "task peaks", b1, b2, b3);
	} else {
		printf("  %-22s declared max %s, measured n/a (no jemalloc); %s declared "
		       "in all\n", "task peaks", b1, b3);
	}
	fmt_ns(b1, sizeof b1, r->wait_p50);
	fmt_ns(b2, sizeof b2, r->wait_p99);
	printf("  %-22s p50 %s, p99 %s (offered until started)\n", "wait", b1, b2);
	if (r->measured)
		printf("  %-22s %ld (measured peak > declared)\n", "over-declared tasks",
		       r->over_declared);
	else
		printf("  %-22s n/a (no jemalloc)\n", "over-declared tasks");
	if (r->mode == MODE_UNBOUNDED) {
		fmt_bytes(b1, sizeof b1, r->safety_net);
		printf("  %-22s %s (half the RAM): %s\n", "safety net", b1,
		       r->safety_engaged ? "ENGAGED, tasks had to wait" : "never reached");
	}
	fmt_bytes(b1, sizeof b1, r->spark_scale);
	printf("  %-22s %s  (█ = %s)\n", "in use over time", r->spark, b1);
	printf("  %-22s %s\n", "RSS over time", r->spark_rss);
	if (r->ok)
		printf("  %-22s ok: every task accounted%s%s\n", "checks",
		       r->mode == MODE_BUDGET ? ", max in use <= budget" : "",
		       r->mode != MODE_BUDGET ? "" : UNDER_SANITIZER || c->rss_slack == 0 ?
		       " (RSS not checked)" : ", peak RSS <= budget + slack");
	else
		printf("  %-22s FAILED: %s\n", "checks", r->why);
}

static void
print_json_obj(const struct config *c, const struct result *r)
{
	printf("{\"mode\": \"%s\", \"tasks\": %ld, \"failed\": %ld, \"wall_ns\": %lld, "
	       "\"budget_bytes\": %lld, \"peak_rss_bytes\": %lld, \"max_in_use_bytes\": %lld, "
	       "\"utilisation\": %.4f, \"wait_p50_ns\": %lld, \"wait_p99_ns\": %lld, "
	       "\"over_declared\": ", mode_names[r->mode], r->tasks, r->failed,
	       (long long)r->wall_ns, (long long)r->budget, (long long)r->peak_rss,
	       (long long)r->max_in_use, r->utilisation, (long long)r->wait_p50,
	       (long long)r->wait_p99);
	if (r->measured)
		printf("%ld, \"measured_peak_max_bytes\": %lld", r->over_declared,
		       (long long)r->measured_max);
	else
		printf("null, \"measured_peak_max_bytes\": null");
	printf(", \"max_held_bytes\": %lld, \"max_running\": %ld, \"declared_max_bytes\": %lld, "
	       "\"declared_total_bytes\": %lld, "
	       "\"rss_before_bytes\": %lld, \"threads\": %u, \"seed\": %llu, \"ok\": %s}",
	       (long long)r->max_held, r->max_running, (long long)r->declared_max,
	       (long long)r->declared_total, (long long)r->rss_base, r->threads,
	       (unsigned long long)c->seed, r->ok ? "true" : "false");
}

static void
print_compare(const struct result *rs, int n)
{
	char b[3][32], h[3][32];
	for (int i = 0; i < n; i++) {
		if (rs[i].mode == MODE_FIXED)
			snprintf(h[i], sizeof h[i], "fixed (K=%u)", rs[i].threads);
		else
			snprintf(h[i], sizeof h[i], "%s", mode_names[rs[i].mode]);
	}
	fmt_bytes(b[0], sizeof b[0], rs[0].budget);
	printf("batch_budget --compare: %ld tasks, budget %s\n", rs[0].tasks, b[0]);
	printf("  %-24s %-16s %-16s %-16s\n", "", h[0], h[1], h[2]);
#define ROW(label, ...)                                                         \
	do {                                                                    \
		printf("  %-24s", label);                                       \
		for (int i = 0; i < n; i++) {                                   \
			const struct result *r = &rs[i];                        \
			char cell[40];                                          \
			__VA_ARGS__;                                            \
			printf(" %-16s", cell);                                 \
		}                                                               \
		printf("\n");                                                   \
	} while (0)
	ROW("wall time", fmt_ns(cell, sizeof cell, r->wall_ns));
	ROW("peak RSS", fmt_bytes(cell, sizeof cell, r->peak_rss));
	ROW("peak RSS / budget",
	    snprintf(cell, sizeof cell, "%.0f%%", 100.0 * (double)r->peak_rss / (double)r->budget));
	ROW("max in use", fmt_bytes(cell, sizeof cell, r->max_in_use));
	ROW("tasks running at once", snprintf(cell, sizeof cell, "<= %ld", r->max_running));
	ROW("budget utilisation",
	    snprintf(cell, sizeof cell, "%.0f%%", 100.0 * r->utilisation));
	ROW("wait p50", fmt_ns(cell, sizeof cell, r->wait_p50));
	ROW("wait p99", fmt_ns(cell, sizeof cell, r->wait_p99));
	ROW("tasks done/failed", snprintf(cell, sizeof cell, "%ld/%ld",
					 r->tasks - r->failed, r->failed));
	ROW("checks", snprintf(cell, sizeof cell, "%s", r->ok ? "ok" : "FAILED"));
#undef ROW
	for (int i = 0; i < n; i++) {
		fmt_bytes(b[0], sizeof b[0], rs[i].spark_scale);
		printf("  %-14s %s  (█ = %s)\n", h[i], rs[i].spark, b[0]);
		if (!rs[i].ok)
			printf("  %-14s FAILED: %s\n", "", rs[i].why);
	}
}

/* ---- flags ---- */

static int64_t
parse_size(const char *s)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || v < 0)
		return -1;
	int shift = 0;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	}
	if (*end == 'i' && shift)
		end++;
	if (*end == 'B')
		end++;
	if (*end != '\0' || v > (INT64_MAX >> shift))
		return -1;
	return (int64_t)v << shift;
}

static long long
parse_num(const char *s, long long lo, long long hi)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
		return lo - 1;
	return v;
}

static void
usage(FILE *f)
{
	fprintf(f,
"usage: batch_budget [options]\n"
"Run a seeded, heavy-tailed batch of memory-hungry tasks under a byte budget.\n"
"\n"
"  --budget SIZE     memory budget, K/M/G suffixes (default 256M; at least 1M)\n"
"  --tasks N         number of tasks (default 2000); a task larger than the\n"
"                    budget is cut down to the budget\n"
"  --threads N       worker threads in budget mode (default 64)\n"
"  --seed S          workload seed (default 1)\n"
"  --mode M          budget | fixed | unbounded (default budget)\n"
"                      budget:    weight = declared bytes on a --budget semaphore\n"
"                      fixed:     at most K = online CPUs tasks at a time\n"
"                      unbounded: a thread per task, all at once (safety net RAM/2)\n"
"  --compare         run all three modes, each in a fresh child process, side by side\n"
"  --json            print one JSON object instead of the report (with --compare:\n"
"                    {\"compare\": [budget, fixed, unbounded]})\n"
"  --timeline FILE   write in-use/RSS samples (every 10 ms) as CSV; with --compare\n"
"                    one file per mode: FILE with -budget/-fixed/-unbounded inserted\n"
"  --progress        progress line on stderr even when it is not a terminal\n"
"  --io-bw SIZE      simulated input read speed per task, bytes/s (default 512M;\n"
"                    0 = no I/O wait, pure CPU)\n"
"  --rss-slack SIZE  budget mode fails if peak RSS > budget + this (default 32M;\n"
"                    0 = do not check)\n"
"  --help            this text\n"
"\n"
"Exit status: 0 ok, 1 a check failed (see the report), 2 bad usage.\n");
}

_Noreturn static void
bad_usage(const char *fmt, const char *arg)
{
	fprintf(stderr, "batch_budget: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\nTry 'batch_budget --help'.\n");
	exit(2);
}

static void
parse_args(int argc, char **argv, struct config *c)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		bool flag = !strcmp(a, "--compare") || !strcmp(a, "--json") ||
			    !strcmp(a, "--progress") || !strcmp(a, "--help") || !strcmp(a, "-h");
		const char *v = NULL;
		if (!flag) {
			static const char *const with_value[] = {
				"--budget", "--tasks", "--threads", "--seed", "--mode",
				"--timeline", "--io-bw", "--rss-slack",
			};
			if (strncmp(a, "--", 2) != 0)
				bad_usage("unexpected argument '%s'", a);
			const char *eq = strchr(a, '=');
			static char name[64];
			if (eq != NULL) {   /* --budget=256M */
				snprintf(name, sizeof name, "%.*s", (int)(eq - a), a);
				v = eq + 1;
				a = name;
			}
			bool known = false;
			for (size_t k = 0; k < sizeof with_value / sizeof *with_value; k++)
				known |= !strcmp(a, with_value[k]);
			if (!known && (!strcmp(a, "--compare") || !strcmp(a, "--json") ||
				       !strcmp(a, "--progress")))
				bad_usage("option '%s' takes no value", a);
			if (!known)
				bad_usage("unknown option '%s'", a);
			if (v != NULL) {
				/* value given after '=' */
			} else if (i + 1 < argc) {
				v = argv[++i];
			} else {
				bad_usage("option '%s' needs a value", a);
			}
		}
		if (v == NULL)
			v = "";  /* a flag without a value: never read below */
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			exit(0);
		} else if (!strcmp(a, "--compare")) {
			c->compare = true;
		} else if (!strcmp(a, "--json")) {
			c->json = true;
		} else if (!strcmp(a, "--progress")) {
			c->progress = true;
		} else if (!strcmp(a, "--budget")) {
			c->budget = parse_size(v);
			if (c->budget < MIB || c->budget > RATION_SEM_MAX)
				bad_usage("--budget: '%s' is not a size of at least 1M "
					  "(e.g. 256M, 2G)", v);
		} else if (!strcmp(a, "--tasks")) {
			c->tasks = (long)parse_num(v, 1, 10000000);
			if (c->tasks < 1)
				bad_usage("--tasks: '%s' is not a number in 1..10000000", v);
		} else if (!strcmp(a, "--threads")) {
			c->threads = (unsigned)parse_num(v, 1, 4096);
			if (c->threads < 1)
				bad_usage("--threads: '%s' is not a number in 1..4096", v);
		} else if (!strcmp(a, "--seed")) {
			char *end;
			errno = 0;
			c->seed = strtoull(v, &end, 0);
			if (errno != 0 || end == v || *end != '\0' || *v == '-')
				bad_usage("--seed: '%s' is not an unsigned number", v);
		} else if (!strcmp(a, "--mode")) {
			if (!strcmp(v, "budget"))
				c->mode = MODE_BUDGET;
			else if (!strcmp(v, "fixed"))
				c->mode = MODE_FIXED;
			else if (!strcmp(v, "unbounded"))
				c->mode = MODE_UNBOUNDED;
			else
				bad_usage("--mode: '%s' is not one of budget, fixed, unbounded", v);
		} else if (!strcmp(a, "--timeline")) {
			if (*v == '\0')
				bad_usage("--timeline: empty file name%s", "");
			c->timeline = v;
		} else if (!strcmp(a, "--io-bw")) {
			c->io_bw = parse_size(v);
			if (c->io_bw < 0)
				bad_usage("--io-bw: '%s' is not a size per second "
					  "(e.g. 512M, 0)", v);
		} else if (!strcmp(a, "--rss-slack")) {
			c->rss_slack = parse_size(v);
			if (c->rss_slack < 0)
				bad_usage("--rss-slack: '%s' is not a size (e.g. 32M, 0)", v);
		} else {
			bad_usage("unknown option '%s'", a);
		}
	}
}

/* "mem.csv" + "fixed" -> "mem-fixed.csv" */
static char *
timeline_name(const char *path, const char *mode)
{
	size_t len = strlen(path) + strlen(mode) + 2;
	char *out = malloc(len);
	if (out == NULL)
		die_if(-ENOMEM, "malloc");
	const char *dot = strrchr(path, '.');
	const char *slash = strrchr(path, '/');
	if (dot == NULL || (slash != NULL && dot < slash))
		dot = path + strlen(path);
	snprintf(out, len, "%.*s-%s%s", (int)(dot - path), path, mode, dot);
	return out;
}

int
main(int argc, char **argv)
{
	struct config c = {
		.budget = 256 * MIB, .io_bw = 512 * MIB, .rss_slack = 32 * MIB,
		.tasks = 2000, .threads = 64, .seed = 1, .mode = MODE_BUDGET,
	};
	parse_args(argc, argv, &c);
	page_size = sysconf(_SC_PAGESIZE);
	/* glibc malloc: every task buffer (>= 1 MiB) is its own mmap, so free()
	 * gives it straight back to the OS. Without this, glibc's dynamic
	 * threshold rises after the first free and buffers up to 32 MiB would
	 * stay in the heap. (jemalloc: see malloc_conf above.) */
	mallopt(M_MMAP_THRESHOLD, 1 << 20);

	if (!c.compare) {
		struct result r;
		run(&c, &r);
		if (c.json) {
			print_json_obj(&c, &r);
			printf("\n");
		} else {
			print_report(&c, &r);
		}
		return r.ok ? 0 : 1;
	}

	/* --compare: each mode in its own child, so each gets a fresh process
	 * (ru_maxrss is a high-water mark that never goes down). No thread of
	 * ours exists yet, so fork() is safe. */
	struct result rs[3];
	int ok = 1;
	for (int m = 0; m < 3; m++) {
		int fds[2];
		if (pipe(fds) != 0)
			die_if(-errno, "pipe");
		fflush(NULL);
		pid_t pid = fork();
		if (pid < 0)
			die_if(-errno, "fork");
		if (pid == 0) {
			close(fds[0]);
			struct config cc = c;
			cc.mode = (enum mode)m;
			if (c.timeline != NULL)
				cc.timeline = timeline_name(c.timeline, mode_names[m]);
			struct result r;
			run(&cc, &r);
			ssize_t w = write(fds[1], &r, sizeof r);
			_exit(w == (ssize_t)sizeof r ? 0 : 3);
		}
		close(fds[1]);
		ssize_t got = 0, n;
		while (got < (ssize_t)sizeof rs[m] &&
		       (n = read(fds[0], (char *)&rs[m] + got, sizeof rs[m] - (size_t)got)) > 0)
			got += n;
		close(fds[0]);
		int status;
		waitpid(pid, &status, 0);
		if (got != (ssize_t)sizeof rs[m] || !WIFEXITED(status) ||
		    WEXITSTATUS(status) != 0) {
			fprintf(stderr, "batch_budget: the %s run died (status %d)\n",
				mode_names[m], status);
			return 1;
		}
		if (!c.json)
			fprintf(stderr, "batch_budget: %s done in %.2f s\n", mode_names[m],
				(double)rs[m].wall_ns / 1e9);
		ok &= rs[m].ok;
	}
	if (c.json) {
		printf("{\"compare\": [");
		for (int m = 0; m < 3; m++) {
			fputs(m ? ", " : "", stdout);
			print_json_obj(&c, &rs[m]);
		}
		printf("]}\n");
	} else {
		print_compare(rs, 3);
	}
	return ok ? 0 : 1;
}
