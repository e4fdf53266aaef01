/* batch_budget.h - what the files of batch_budget share: the flags
 * (struct config), one task, one run's result, the samples of the
 * timeline, and the state one run keeps in globals (each says which file
 * defines it and who writes it). Internal to examples/batch_budget/. */
#ifndef RATION_EXAMPLE_BATCH_BUDGET_H
#define RATION_EXAMPLE_BATCH_BUDGET_H

#include <ration.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) ||     \
	__has_feature(memory_sanitizer)
#define UNDER_SANITIZER 1
#endif
#endif
#ifndef UNDER_SANITIZER
#define UNDER_SANITIZER 0
#endif

#define KIB               (INT64_C(1) << 10)
#define MIB               (INT64_C(1) << 20)
#define GIB               (INT64_C(1) << 30)
#define MAX_TASK          (128 * MIB)
#define UNBOUNDED_THREADS 4096       /* threads alive at once */
#define SAMPLE_NS         10000000LL /* timeline: every 10 ms */
#define SPARK_WIDTH       60

enum mode { MODE_BUDGET, MODE_FIXED, MODE_UNBOUNDED, MODE_ELASTIC, NMODES };
/* --compare --lie adds two honest runs (budget, elastic) after the modes. */
#define NREFS 2
extern const char *const mode_names[NMODES];

struct config {
	int64_t budget;
	int64_t io_bw; /* simulated read bandwidth per task, bytes/s; 0 = none */
	int64_t rss_slack;
	long tasks;
	unsigned threads;
	uint64_t seed;
	enum mode mode;
	bool compare, json, progress;
	bool backpressure; /* --backpressure: elastic tasks wait in malloc */
	const char *timeline;
	const char *plot; /* --plot FILE.svg */
	double lie_p,
		lie_f; /* --lie P:F: fraction P of tasks allocate F x declared */
};

struct task {
	int64_t bytes; /* declared (the weight) */
	int64_t alloc; /* allocated: bytes, or F x bytes for a liar */
	uint64_t seed;
	uint64_t sum;     /* the hash; nonzero once run */
	int64_t offer_ns; /* when it was offered (go() called, thread made) */
	int64_t wait_ns;  /* from offer to the task starting */
	_Atomic int runs; /* must end at exactly 1 */
};

/* What one run produces; crosses a pipe from the --compare children. */
struct result {
	enum mode mode;
	int ok;           /* every check passed */
	unsigned threads; /* workers (K in fixed mode) */
	long tasks, failed, reports;
	int64_t wall_ns, budget, peak_rss, rss_base, max_in_use, declared_total;
	int64_t max_held; /* most bytes held by running tasks at once */
	int64_t declared_max, measured_max, safety_net;
	double utilisation; /* time-average of in-use / budget */
	int64_t wait_p50, wait_p99;
	long under_declared;
	long max_running; /* most tasks running at once (counted in run_task) */
	long liars;       /* tasks that allocate more than they declare */
	int64_t lie_max;  /* largest alloc - declared of a liar */
	bool grouped;     /* a group ran the tasks: the two below are set */
	int64_t max_overrun, consumed_total; /* group statistics (elastic) */
	bool measured;                       /* jemalloc gave peak figures */
	bool reference; /* --compare --lie's honest run (lie off) */
	bool safety_engaged;
	char spark[SPARK_WIDTH * 3 + 1], spark_rss[SPARK_WIDTH * 3 + 1];
	int64_t spark_scale;
	char why[160]; /* first failed check */
};

struct sample {
	int64_t t_ns, in_use, rss;
	int64_t claimed; /* the budget's in_use (claims), -1 without a budget */
	long done;
};

struct sampler_arg {
	const struct config *c;
	bool show; /* print the progress line */
	bool tty;
};

/* ---- workload.c: the state of one run, written by the tasks ---- */

extern struct task *tasks;
extern _Atomic int64_t in_use, in_use_max, held_byte_ns;
extern _Atomic long done, failed_tasks;
extern _Atomic int64_t running, running_max;
extern pthread_mutex_t report_mu;
extern long reports, under_declared; /* report_mu */
extern int64_t measured_max;         /* report_mu */
extern int64_t io_bw;

void make_workload(const struct config *c);
int run_task(ration_ctx_t *ctx, void *arg);
void on_report(const ration_task_report_t *r, void *udata);

/* ---- report.c: samples (written by sampler()), output ---- */

extern struct sample *samples;
extern size_t nsamples, samples_cap;
extern _Atomic bool sampling;
extern int64_t run_t0;
extern ration_sem_t *run_budget; /* the run's budget, read by sampler() */
extern long page_size;

int64_t rss_now(void);
void *sampler(void *argp);
void sparkline(char *out, int64_t scale, bool rss);
int write_timeline(const char *path, const struct config *c);
void fmt_bytes(char *out, size_t len, int64_t b);
void fmt_ns(char *out, size_t len, int64_t ns);
void print_report(const struct config *c, const struct result *r);
void print_json_obj(const struct config *c, const struct result *r);
void print_compare(const struct result *rs, int n);
/* The run's column/panel name: "budget", "fixed (K=2)", "elastic honest". */
void run_label(const struct result *r, char *out, size_t len);

/* ---- plot.c: --plot ---- */

int write_plot(const char *path, const struct config *c,
	       const struct result *rs, struct sample *const *smp,
	       const size_t *ns, int n);

/* ---- modes.c: one run in the mode c->mode ---- */

void run(const struct config *c, struct result *r);
/* Whether the run's claims (the semaphore's max in use) are checked
 * against budget + largest overrun: elastic mode where jemalloc measures,
 * so that a task past its claim waits inside malloc (docs/elastic.md). */
bool elastic_claims_checked(const struct config *c);

/* ---- main.c ---- */

void die_if(int rc, const char *what);

#endif
