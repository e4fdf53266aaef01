/* zcompress - compress a directory tree with zstd under a memory budget.
 *
 *   zcompress [options] SRC OUT
 *
 * Every regular file under SRC becomes OUT/<path>.zst. Each file is a task
 * of a ration group whose weight is what compressing it holds: zstd's
 * ZSTD_estimateCStreamSize_usingCParams() for parameters fitted to the
 * file's size, plus the I/O buffers, rounded to jemalloc's size classes
 * (ration_account_round). The budget (--budget) is a byte semaphore, so
 * small files run many at a time and a large one waits for room instead
 * of pushing the process past it. Ctrl-C (SIGINT) or SIGTERM cancels the
 * batch through ration_ctx_with_signals(): running tasks stop at their
 * next chunk, remove their partial output, and the summary still prints.
 * --deadline ends the batch the same way after that many seconds.
 *
 * The summary compares what tasks declared with what jemalloc measured
 * (under_declared, over_reserved, the declared/measured histogram).
 * --compare N runs the same tree twice in child processes, once under the
 * budget and once on a fixed pool of N threads with no budget (into
 * OUT/budget and OUT/fixed), and prints wall time and peak RSS of each.
 *
 * Exit status: 0 all files compressed, 1 a file failed, 2 bad usage,
 * 124 deadline, 130 interrupted by a signal.
 */
#include "zcompress.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../example_args.h"

#define MIB (1024.0 * 1024.0)

struct opts {
	int64_t budget;
	int threads;
	int level;
	int64_t deadline_s;
	int compare; /* N of the fixed pool, 0 = no comparison */
	bool fixed;  /* this run: a fixed pool of `threads`, no budget */
	bool progress;
	const char *src, *out;
};

static struct totals tot;
static ration_sem_t *mem;
static _Atomic int64_t declared_sum, measured_sum;

static void
on_report(const ration_task_report_t *r, void *udata)
{
	(void)udata;
	atomic_fetch_add_explicit(&declared_sum, r->declared,
				  memory_order_relaxed);
	if (r->peak_bytes > 0)
		atomic_fetch_add_explicit(&measured_sum, r->peak_bytes,
					  memory_order_relaxed);
	/* Ends by the ctx are the batch's, said once at the end; a zstd error
	 * was said by the task with zstd's words. */
	if (r->status != 0 && r->status != -ECANCELED &&
	    r->status != -ETIMEDOUT && r->status != -EPROTO)
		fprintf(stderr, "\rzcompress: %s: %s\n",
			((const struct file *)r->arg)->src,
			ration_strerror(r->status));
}

struct progress {
	ration_ctx_t *stop;
	const struct tree *t;
};

/* The progress line, every 200 ms until stop is cancelled. */
static void *
progress_main(void *arg)
{
	struct progress *p = arg;
	do {
		ration_sem_stats_t st = {0};
		if (mem != NULL)
			ration_sem_stats(mem, &st);
		fprintf(stderr,
			"\r%ld/%zu files, %.1f of %.1f MiB in, %.1f MiB out, "
			"%.1f MiB held ",
			atomic_load(&tot.done) + atomic_load(&tot.failed),
			p->t->n, (double)atomic_load(&tot.in_bytes) / MIB,
			(double)p->t->bytes / MIB,
			(double)atomic_load(&tot.out_bytes) / MIB,
			(double)st.in_use / MIB);
	} while (ration_ctx_sleep(p->stop, 200 * 1000000LL) == 0);
	fputc('\n', stderr);
	return NULL;
}

static void
print_fit(const ration_group_stats_t *gs)
{
	static const char *edge[RATION_FIT_BUCKETS] = {
		"<1/16", "1/16-1/8", "1/8-1/4", "1/4-1/2", "1/2-3/4",
		"3/4-1", "1-5/4",    "5/4-3/2", "3/2-2",   ">=2"};
	printf("  measured/declared   ");
	for (int i = 0; i < RATION_FIT_BUCKETS; i++)
		if (gs->fit_hist[i] != 0)
			printf(" %s:%llu", edge[i],
			       (unsigned long long)gs->fit_hist[i]);
	printf("\n");
}

/* One run over the tree; the exit status. */
static int
run(const struct opts *o, const struct tree *t)
{
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	ration_ctx_t *sig, *ctx;
	ration_pool_t *pool;
	ration_group_t *g = NULL;
	int rc = ration_ctx_with_signals(NULL, &sigs, &sig);
	if (rc == 0)
		rc = o->deadline_s > 0
			     ? ration_ctx_with_timeout(
				       sig, o->deadline_s * 1000000000LL, &ctx)
			     : ration_ctx_with_cancel(sig, &ctx);
	if (rc != 0 ||
	    (rc = ration_pool_new(
		     &(ration_pool_opts_t){.threads = (unsigned)o->threads},
		     &pool)) != 0) {
		fprintf(stderr, "zcompress: %s\n", ration_strerror(rc));
		return 1;
	}
	ration_group_opts_t go = {
		.pool = pool, .on_report = on_report, .limit = o->threads};
	if (!o->fixed) {
		if ((rc = ration_sem_new(o->budget, NULL, &mem)) != 0) {
			fprintf(stderr, "zcompress: budget: %s\n",
				ration_strerror(rc));
			return 1;
		}
		go.budget = mem;
		go.budget_bytes =
			ration_account_available(); /* else -ENOTSUP */
	}
	compress_setup(o->level, &tot);
	int64_t t0 = ration_now();
	rc = ration_group_new(ctx, &go, &g);
	ration_ctx_t *stop = NULL;
	pthread_t pt;
	struct progress pr = {.t = t};
	bool progress = o->progress && rc == 0 &&
			ration_ctx_with_cancel(NULL, &stop) == 0;
	if (progress) {
		pr.stop = stop;
		progress = pthread_create(&pt, NULL, progress_main, &pr) == 0;
	}
	for (size_t i = 0; rc == 0 && i < t->n; i++)
		if (ration_group_go(g, o->fixed ? 1 : t->files[i].weight,
				    compress_file, &t->files[i]) != 0)
			break; /* wait() says why */
	if (g != NULL)
		rc = ration_group_wait(g);
	int64_t wall = ration_now() - t0;
	if (progress) {
		ration_ctx_cancel(stop);
		pthread_join(pt, NULL);
	}
	ration_ctx_unref(stop);

	ration_group_stats_t gs;
	ration_group_stats(g, &gs);
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	printf("zcompress: %s, %ld of %zu files, %.1f MiB -> %.1f MiB in %.2f "
	       "s; peak RSS %.1f MiB",
	       o->fixed ? "fixed pool" : "budget", atomic_load(&tot.done), t->n,
	       (double)atomic_load(&tot.in_bytes) / MIB,
	       (double)atomic_load(&tot.out_bytes) / MIB, (double)wall / 1e9,
	       (double)ru.ru_maxrss / 1024.0);
	if (!o->fixed)
		printf(" (budget %.0f MiB)", (double)o->budget / MIB);
	printf("\n");
	if (go.budget_bytes) {
		printf("  declared %.1f MiB in all, measured peaks %.1f MiB; "
		       "largest peak %.1f MiB\n",
		       (double)atomic_load(&declared_sum) / MIB,
		       (double)atomic_load(&measured_sum) / MIB,
		       (double)gs.max_peak_bytes / MIB);
		printf("  under-declared %llu, over-reserved %llu\n",
		       (unsigned long long)gs.under_declared,
		       (unsigned long long)gs.over_reserved);
		print_fit(&gs);
	} else if (!o->fixed) {
		printf("  (heap not measured: the process's malloc is not "
		       "jemalloc's)\n");
	}
	int signo = ration_ctx_signal(ctx);
	int status = rc == 0            ? 0
		     : signo != 0       ? 130
		     : rc == -ETIMEDOUT ? 124
					: 1;
	if (rc != 0)
		printf("zcompress: stopped: %s%s\n",
		       signo ? strsignal(signo) : ration_strerror(rc),
		       signo ? " (partial outputs removed)" : "");
	ration_group_free(g);
	ration_pool_free(pool);
	if (mem != NULL)
		(void)ration_sem_free(mem);
	ration_ctx_unref(ctx);
	ration_ctx_unref(sig);
	return status;
}

/* Scan, make the output directories, run; the exit status. */
static int
scan_and_run(const struct opts *o)
{
	struct tree t;
	int rc = tree_scan(o->src, o->out, o->level, &t);
	if (rc == 0)
		rc = tree_mkdirs(&t);
	if (rc != 0) {
		fprintf(stderr, "zcompress: %s: %s\n", o->src,
			ration_strerror(rc));
		tree_free(&t);
		return 1;
	}
	rc = run(o, &t);
	tree_free(&t);
	return rc;
}

/* --compare: each mode in a child of its own (peak RSS is per process),
 * writing under OUT/budget and OUT/fixed, so that both create their files
 * (creating thousands of files costs more than overwriting them). */
static int
compare(struct opts o)
{
	int status = 0;
	for (int fixed = 0; fixed < 2; fixed++) {
		fflush(stdout);
		pid_t pid = fork();
		if (pid == 0) {
			char out[4096];
			snprintf(out, sizeof(out), "%s/%s", o.out,
				 fixed ? "fixed" : "budget");
			o.out = out;
			o.fixed = fixed;
			if (fixed)
				o.threads = o.compare;
			exit(scan_and_run(&o));
		}
		int st;
		if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st))
			return 1;
		if (WEXITSTATUS(st) != 0)
			status = WEXITSTATUS(st);
	}
	return status;
}

static void
usage(int code)
{
	fprintf(code ? stderr : stdout,
		"usage: zcompress [options] SRC OUT\n"
		"  --budget SIZE   memory budget (default 256M)\n"
		"  --threads N     worker threads (default 16)\n"
		"  --level L       zstd level 1..19 (default 3)\n"
		"  --deadline S    stop after S seconds (exit 124)\n"
		"  --compare N     also run on a fixed pool of N threads, no "
		"budget\n"
		"  --progress      progress line on stderr even when not a "
		"terminal\n"
		"  --quiet         no progress line\n");
	exit(code);
}

int
main(int argc, char **argv)
{
	struct opts o = {.budget = 256 << 20,
			 .threads = 16,
			 .level = 3,
			 .progress = isatty(STDERR_FILENO)};
	int pos = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--help"))
			usage(0);
		if (!strcmp(a, "--progress") || !strcmp(a, "--quiet")) {
			o.progress = a[2] == 'p';
			continue;
		}
		if (a[0] == '-' && a[1] == '-') {
			if (i + 1 == argc)
				usage(2);
			const char *v = argv[++i];
			if (!strcmp(a, "--budget"))
				o.budget = parse_size(v);
			else if (!strcmp(a, "--threads"))
				o.threads = arg_int(v);
			else if (!strcmp(a, "--level"))
				o.level = arg_int(v);
			else if (!strcmp(a, "--deadline"))
				o.deadline_s = arg_int(v);
			else if (!strcmp(a, "--compare"))
				o.compare = arg_int(v);
			else
				usage(2);
			continue;
		}
		if (pos == 0)
			o.src = a;
		else if (pos == 1)
			o.out = a;
		pos++;
	}
	if (pos != 2 || o.budget < (1 << 20) || o.threads < 1 || o.level < 1 ||
	    o.level > 19 || o.deadline_s < 0 || o.compare < 0)
		usage(2);

	return o.compare > 0 ? compare(o) : scan_and_run(&o);
}
