/* tools/run.h - ration-run: shared types of the budgeted job runner.
 *
 * One process, two threads:
 *   dispatcher (main thread)  walks the job list in input order, takes each
 *                             job's claims (memory budget, a slot, a make
 *                             token) and spawns it; because it is the only
 *                             thread that acquires, input order is the
 *                             grant order (strict FIFO, by construction).
 *   supervisor (run_jobs.c)   one poll loop: reaps children, enforces
 *                             timeouts and halts, releases claims, passes
 *                             output through, writes the joblog, progress.
 * A job crosses from the first to the second exactly once (handoff); after
 * that only the supervisor touches it.
 */
#ifndef RATION_RUN_H
#define RATION_RUN_H

#include <ration.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/types.h>

#define RUN_NAME "ration-run"
/* Exit status: 0 all ok, 1..100 that many jobs failed, 101 more. The
 * others are sysexits.h's, apart from every job count: */
#define RUN_EXIT_USAGE       64 /* EX_USAGE: bad options or input */
#define RUN_EXIT_FAILCAP     101
#define RUN_EXIT_INTERNAL    70 /* EX_SOFTWARE: our own failure */
#define RUN_MAX_REQUEUES     4  /* --overrun requeue: then it fails */
#define RUN_SAMPLE_NS        (50 * 1000000LL)
#define RUN_BACKFILL_DEFAULT 8            /* --backfill */
#define RUN_CAP_STEP_MIN     (16LL << 20) /* a requeue-mode cap grows by more */

enum weight_src { W_NONE, W_DECLARED, W_DEFAULT, W_LEARNED };

enum halt_when { HALT_NEVER, HALT_SOON, HALT_NOW };

struct halt_spec {
	enum halt_when when;
	bool on_success; /* success=N instead of fail=N */
	unsigned n;      /* how many; >= 1 */
	bool percent;    /* n is a percentage of all jobs */
};

struct linebuf {
	char *buf;
	size_t len, cap;
};

struct job {
	/* Set by the parser, read-only afterwards. */
	unsigned seq;  /* 1-based position in the job list */
	unsigned line; /* input line, for messages */
	char *cmd;
	int64_t weight; /* bytes claimed from the budget; 0 = none */
	enum weight_src wsrc;

	/* Dispatcher until handoff, supervisor after. */
	ration_claim_t claims[2];
	size_t nclaims;
	bool token_held;     /* holds a make token read from make */
	bool js_implicit;    /* holds our implicit jobserver slot */
	unsigned char token; /* the byte read, written back as is */
	int reject;          /* -E2BIG etc.: never ran */
	int spawn_err;       /* posix_spawn failed */
	pid_t pid;
	int cg_fd;          /* its cgroup.procs, or -1 (run_cgroup.c) */
	int cg_use_fd;      /* its usage file, or -1 */
	int cg_stat_fd;     /* its memory.stat, or -1 */
	ration_ctx_t *ctx;  /* timeout + halt; child of the kill ctx */
	int out_fd, err_fd; /* temp files, or pipes with --line-buffer */
	struct linebuf out_lb, err_lb;
	int64_t start_ns, end_ns; /* CLOCK_MONOTONIC */
	double start_wall;        /* epoch seconds, for the joblog */
	int64_t kill_at_ns;       /* SIGKILL due after SIGTERM; 0 = none */
	bool term_sent, kill_sent;
	bool timed_out, cancelled;
	int wstatus;
	int64_t peak_bytes; /* measured; -1 unknown */
	struct job *next;   /* handoff queue / running list */

	/* Measurement and overruns (run_measure.c, run_overrun.c): set by
	 * the dispatcher before the spawn, by the supervisor after. */
	int64_t cap;         /* limit of its cgroup; 0 = none */
	bool cap_waits;      /* at its cap it waits (v1), not OOM */
	bool at_cap;         /* waited at its cap at the last sample */
	int64_t reserved;    /* consumed for a cap not yet raised */
	int64_t short_by;    /* started early (run_headstart.c): weight
				      not yet in its cap nor claimed; mu
				      once handed off */
	int64_t held;        /* budget acquired to start it */
	int64_t consumed;    /* budget consumed since (measured) */
	int64_t cur_bytes;   /* last sample; -1 none yet */
	int64_t oom_kills;   /* OOM kills inside its cgroup */
	unsigned attempt;    /* 0, then 1 after the first requeue... */
	unsigned bypassed;   /* jobs started before it while it was
				      the blocked head (run_sched.c) */
	bool taken;          /* dispatcher: started or handed off */
	bool alone;          /* heavier than the budget: runs alone */
	bool stopped;        /* SIGSTOPped by --overrun suspend */
	bool overrun_killed; /* killed by --overrun requeue/kill */
	bool requeue;        /* queue it again once reaped */
	bool went_over;      /* measured passed its weight */
	unsigned tries;      /* failed attempts so far (--retries) */
	bool order_done;     /* --keep-order: output waits its turn */
};

enum overrun_mode {
	OVERRUN_WAIT,
	OVERRUN_SUSPEND,
	OVERRUN_REQUEUE,
	OVERRUN_KILL
};

/* An argument source (run_input.c). */
struct arg_source {
	const char *file;   /* -a / :::: FILE ("-" = stdin); NULL: words */
	char *const *words; /* the words after ::: */
	size_t nwords;
};

/* Where jobs come from: the command line's input language (run_input.c). */
struct input_spec {
	char *command;          /* template: the command words joined by
				      spaces; NULL: each record is a job line */
	struct arg_source *src; /* -a, :::, :::: in order; none: stdin */
	size_t nsrc;
	const char *job_file;    /* --job-file; NULL = stdin */
	unsigned max_args;       /* -N; 0 = 1 */
	bool null_sep;           /* -0: records end at NUL, not newline */
	const char *weight_expr; /* -w with {} or size(); NULL: a size */
};

enum joblog_format { JOBLOG_RATION, JOBLOG_PARALLEL };

struct run_opts {
	struct input_spec in;
	int64_t budget_bytes;   /* 0 = no memory budget */
	int64_t slots;          /* 0 = unlimited */
	int64_t default_weight; /* --weight; 0 = none */
	const char *learn_file;
	int64_t timeout_ns; /* 0 = none */
	int64_t grace_ns;
	struct halt_spec halt;
	const char *joblog;
	enum joblog_format joblog_format;
	bool resume;        /* skip the jobs the joblog has */
	bool resume_failed; /* skip those it has as succeeded */
	unsigned retries;   /* attempts per failing job; 0 = 1 */
	double timeout_pct; /* --timeout N%: of the median; 0 = none */
	bool keep_order;    /* output in input order */
	bool tag, line_buffer, progress, dry_run, report;
	bool use_jobserver;
	bool use_cgroup;           /* --no-cgroup clears it */
	bool budget_is_default;    /* no -m: 80% of MemAvailable */
	bool slots_is_default;     /* no -j: nproc */
	enum overrun_mode overrun; /* --overrun */
	double cap_margin;         /* --cap-margin: cap = weight x (1 + it) */
	bool strict_weights;       /* a job over its weight fails */
	bool alone_if_too_big;     /* run a job heavier than the budget alone */
	bool ramp;                 /* --ramp: claims follow caps (run_ramp.c) */
	bool head_start;           /* --no-head-start clears it
				      (run_headstart.c) */
	unsigned backfill;         /* --backfill: bypasses of a blocked head */
	int64_t sample_ns;         /* how often running jobs are measured */
};

/* Jobserver client state (run_jobserver.c). */
struct jobserver {
	bool active;
	bool unavailable; /* make -j but no usable fds: run serially */
	int rfd, wfd;     /* our own descriptions, rfd non-blocking */
	int wake_fd;      /* eventfd: the implicit slot came free */
	pthread_mutex_t mu;
	bool implicit_busy; /* mu */
	char desc[64];      /* for messages */
};

/* Per-job cgroups for memory.peak (run_cgroup.c); read-only once made. */
struct cgroup {
	bool active;       /* jobs get a cgroup each */
	int version;       /* 2 or 1: the hierarchy used */
	bool enabled_base; /* we turned memory on in base */
	char *base;        /* our cgroup v2 directory */
	char *run;         /* base/ration-run.PID: the jobs' parent */
	char *self;        /* base/ration-run.PID.self, if we moved */
	char why[320];     /* !active: the reason, for --report */
};

struct runner {
	struct run_opts *o;
	struct job **jobs;          /* chunks of JOB_CHUNK (run_input.c) */
	size_t njobs;               /* written by main, then the dispatcher,
				      under mu once threads run */
	struct stream *stream;      /* input read as it arrives; NULL: whole */
	bool input_failed;          /* a bad record stopped a streamed input */
	ration_sem_t *budget;       /* NULL: no memory budget */
	ration_sem_t *slots;        /* NULL: unlimited */
	ration_ctx_t *kill_ctx;     /* cancelled: running jobs get SIGTERM */
	ration_ctx_t *dispatch_ctx; /* cancelled: start nothing more */
	struct jobserver js;
	struct cgroup cg;
	ration_learn_t *learn; /* --learn; NULL without */
	FILE *joblog;
	bool progress_tty;

	pthread_mutex_t mu;
	struct job *incoming; /* mu; handoff queue, LIFO, fixed on take */
	bool dispatch_done;   /* mu */
	size_t dispatched;    /* mu; jobs handed to the supervisor */
	struct job *requeued; /* mu; back to the dispatcher, by seq */
	size_t settled;       /* mu; handed-off jobs finished for good */
	pthread_cond_t cv;    /* requeued or settled changed */
	bool liar_running;    /* mu; a running job is past its weight
				      (run_headstart.c) */
	int wake_fd;          /* eventfd: incoming or dispatch_done */

	/* Supervisor only. */
	size_t done, failed, succeeded, cancelled, running;
	size_t under_declared;
	size_t resumed_skipped; /* main: jobs --resume left out */
	int64_t *runtimes;      /* sorted, for --timeout N% */
	size_t nruntimes, runtimes_cap;
	size_t order_pos; /* --keep-order: next job to print */
	struct job *worst_over;
	size_t oom_killed;    /* jobs OOM-killed inside their cgroup */
	size_t overrun_kills; /* jobs killed by --overrun requeue/kill */
	size_t requeues;      /* attempts queued again */
	size_t suspends;      /* SIGSTOPs by --overrun suspend */
	int64_t reserved;     /* sum of the jobs' reserved */
	bool ramp;            /* claims follow caps (run_ramp.c); set
				      before the threads start */
	int64_t bank;         /* run_ramp.c: the need beyond the caps */
	bool head_start;      /* a blocked head starts early
				      (run_headstart.c); set before the
				      threads start */
	size_t head_starts;   /* dispatcher: jobs started early */
	int64_t next_sample_ns;
	bool pgroup_scan; /* a running job has no cgroup */
	int64_t t0_ns;
	int signo; /* first SIGINT/SIGTERM/SIGHUP received */
	bool halted;
	bool stdout_broken;
};

/* run_parse.c: every parser returns 0 or a negative errno and writes *out
 * only on success. */

/* parse_size() - "512M", "1.5G", "4GiB", "100" (bytes) into @out bytes;
 * binary units. -EINVAL unparsable, -ERANGE above RATION_SEM_MAX. */
int parse_size(const char *s, int64_t *out);
/* parse_duration() - "30", "30s", "500ms", "5m", "1.5h", "1d" into ns;
 * -EINVAL unparsable or not positive, -ERANGE too long. */
int parse_duration(const char *s, int64_t *out_ns);
/* parse_timeout() - --timeout: a duration into *@out_ns, or "N%" (of
 * the median run time) into *@out_pct; the other is set to 0.
 * Return: 0, -EINVAL or -ERANGE. */
int parse_timeout(const char *s, int64_t *out_ns, double *out_pct);
/* parse_halt() - "never", [now|soon,](fail|success)=N[%], or a bare N
 * (now,fail=N) into @out; -EINVAL otherwise. */
int parse_halt(const char *s, struct halt_spec *out);
/* parse_budget() - -m: a size, "N%" of MemAvailable, or "none" (0);
 * -EINVAL unparsable, -ENOENT no MemAvailable for a percentage. */
int parse_budget(const char *s, int64_t *out);
/* mem_available_bytes() - MemAvailable of /proc/meminfo, or -1. */
int64_t mem_available_bytes(void);
/* default_slots() - the CPUs this process may run on, as nproc(1) counts
 * them (its affinity mask), at least 1. */
int64_t default_slots(void);
/* format_size() - @bytes as "512M", "1.5G", "100B"; "?" if negative. */
void format_size(int64_t bytes, char *buf, size_t len);
/* looks_like_weight() - whether the first @len bytes of @s parse as a
 * size: a command word like that is a misplaced weight. */
bool looks_like_weight(const char *s, size_t len);

/* run_options.c */

/* options_parse() - the command line into @o, defaults filled in; exits
 * RUN_EXIT_USAGE with a message on a usage error, 0 after --help or
 * --version. */
void options_parse(int argc, char **argv, struct run_opts *o);
/* usage_error() - print "ration-run: " and @fmt with @arg, a hint to
 * --help, and exit RUN_EXIT_USAGE. */
void usage_error(const char *fmt, const char *arg);

/* run_input.c */

/* input_add_file() - -a FILE: one more argument source. 0 or -ENOMEM. */
int input_add_file(struct input_spec *in, const char *file);
/* input_parse_words() - the words after the options: the command
 * template, then ::: WORDS and :::: FILES sources. @why gets the reason
 * of an -EINVAL (a usage error). Return: 0, -EINVAL or -ENOMEM. */
int input_parse_words(struct input_spec *in, int argc, char **argv, char *why,
		      size_t whylen);
/* input_free() - frees what input_parse_words() made. */
void input_free(struct input_spec *in);
/* Jobs live in chunks that never move: the supervisor holds pointers
 * to them while the dispatcher adds more (streamed input). */
#define JOB_CHUNK      1024
#define JOB_CHUNKS_MAX 32768

/* job_at() - job @i (0-based) of @r. */
static inline struct job *
job_at(const struct runner *r, size_t i)
{
	return &r->jobs[i / JOB_CHUNK][i % JOB_CHUNK];
}
/* job_new() - the next job slot, zeroed; counted only by job_commit().
 * NULL when out of memory or past JOB_CHUNK * JOB_CHUNKS_MAX jobs. */
struct job *job_new(struct runner *r);
/* job_commit() - count the job job_new() gave (under r->mu). */
void job_commit(struct runner *r);
/* jobs_seen() - r->njobs, read under r->mu (the supervisor's view). */
size_t jobs_seen(struct runner *r);
/* job_weigh() - @j's weight when it declares none: learnt, else -w. */
void job_weigh(struct runner *r, struct job *j);
/* make_job() - fill @j from the records @args (@n of them): a job line
 * joined from them, or the template expanded; then a --weight
 * expression. @src and @lineno name the first record in messages.
 * Return: 0, 1 (a blank job line: no job), or a negative errno after a
 * message. */
int make_job(const struct input_spec *in, char *const *args, size_t n,
	     const char *src, unsigned lineno, unsigned seq, struct job *j);
/* read_jobs() - every job of r->o's input into r->jobs, numbered from 1
 * and weighed; a bad record is reported on stderr naming it. Return: 0,
 * or a negative errno once every record was checked. */
int read_jobs(struct runner *r);
/* free_jobs() - frees r->jobs and the jobs' buffers. */
void free_jobs(struct runner *r);

/* run_stream.c */

/* stream_open() - when the input is a pipe or terminal read as it
 * arrives (stdin the only source; not --dry-run or --resume), set up
 * r->stream. Return: 0 (r->stream may stay NULL: read it whole) or
 * -ENOMEM. */
int stream_open(struct runner *r);
/* stream_more() - dispatcher: read until one more job is in r->jobs,
 * waiting for input but not past r->dispatch_ctx. Return: 1, 0 at the
 * end of input (or the ctx done), or -EINVAL after a bad record
 * (r->input_failed; its message printed). */
int stream_more(struct runner *r);
/* stream_close() - frees r->stream. */
void stream_close(struct runner *r);

/* run_expand.c */

/* A growing string, NUL-terminated once non-empty; err sticks at the
 * first -ENOMEM. Zero-initialised = empty. */
struct sbuf {
	char *buf;
	size_t len, cap;
	int err;
};
/* sbuf_add() - append @n bytes of @s to @b. */
void sbuf_add(struct sbuf *b, const char *s, size_t n);
/* expand() - the template [@tmpl, @tmpl+@tlen) with GNU parallel's
 * replacement strings filled from @args (@nargs) and @seq, appended to
 * @out; values shell-quoted when @quote. *@replaced: whether the
 * template had any replacement string. */
void expand(const char *tmpl, size_t tlen, char *const *args, size_t nargs,
	    unsigned seq, bool quote, struct sbuf *out, bool *replaced);
/* expand_command() - the command of job @seq: @tmpl expanded, or with the
 * quoted arguments appended if it has no replacement string. *@out is
 * new. Return: 0 or -ENOMEM. */
int expand_command(const char *tmpl, char *const *args, size_t nargs,
		   unsigned seq, char **out);

/* run_weight.c */

/* weight_is_expr() - whether a --weight value is an expression rather
 * than a plain size. */
bool weight_is_expr(const char *s);
/* weight_eval() - the --weight expression @text for a job's @args and
 * @seq into *@out bytes; @check: syntax only (no files read). @why gets
 * the reason of an error. Return: 0, -EINVAL (syntax, not a regular
 * file, not a size), -ERANGE (negative or too large), -ENOMEM, or
 * stat()'s -errno for size(FILE). */
int weight_eval(const char *text, char *const *args, size_t nargs, unsigned seq,
		bool check, int64_t *out, char *why, size_t whylen);

/* run_joblog.c */

/* joblog_open() - --joblog: with --resume(-failed), read the log and
 * drop from r->jobs what it says is done, then open it to append; else
 * start it afresh. Return: 0, or a negative errno after a message. */
int joblog_open(struct runner *r);
/* joblog_line() - one --joblog line for an attempt of @j, flushed at
 * once. @runtime: seconds; @exitval: exit code, -1 if killed or not run;
 * @sig: the signal that ended it, 0 if none. */
void joblog_line(struct runner *r, const struct job *j, double runtime,
		 int exitval, int sig);

/* run_retry.c */

/* retry_due() - whether @j, which ended @ok or not, is to run again
 * (--retries); says so on stderr. */
bool retry_due(struct runner *r, struct job *j, bool ok);
/* timeout_note_end() - count the run time of @j's attempt towards the
 * median of --timeout N%. */
void timeout_note_end(struct runner *r, const struct job *j);
/* timeout_check() - --timeout N%: time @j out (cancel its ctx with
 * -ETIMEDOUT) if it is past due at @now. Return: when it will be due,
 * RATION_FOREVER if never or already. */
int64_t timeout_check(struct runner *r, struct job *j, int64_t now);

/* run_order.c */

/* order_finish() - pass on @j's output (after its @last attempt), at
 * once or, with --keep-order, in input order; a @retried attempt's
 * output is dropped, as parallel drops it. */
void order_finish(struct runner *r, struct job *j, bool last, bool retried);
/* order_flush_rest() - --keep-order, once the supervisor has ended:
 * the output still waiting, passing over jobs that never ran. */
void order_flush_rest(struct runner *r);

/* run_jobserver.c */

/* js_init() - find a jobserver in @makeflags (NULL: none) and open it;
 * one that is named but unusable sets js->unavailable and warns.
 * Return: 0, or a negative errno for failures of our own (eventfd). */
int js_init(struct jobserver *js, const char *makeflags);
/* js_acquire() - blocks until @j holds the implicit slot or a make token,
 * or @ctx is done. Return: 0, the ctx error, -EPIPE (make went away). */
int js_acquire(struct jobserver *js, ration_ctx_t *ctx, struct job *j);
/* js_release() - gives back what @j holds from the jobserver, if any. */
void js_release(struct jobserver *js, struct job *j);
/* js_fini() - closes what js_init() opened. */
void js_fini(struct jobserver *js);

/* run_cgroup.c */

/* cg_init() - make the cgroup the jobs' cgroups go in, cgroup v2 or the
 * v1 memory hierarchy, when the host allows; else cg->why says why not.
 * Always 0: the run then measures the jobs' process groups. */
int cg_init(struct cgroup *cg);
/* cg_job_open() - make @j's cgroup, capped at j->cap bytes if that is
 * > 0, open its cgroup.procs as j->cg_fd, its usage file as j->cg_use_fd
 * and its memory.stat as j->cg_stat_fd (all -1 when inactive or on
 * error). Return: 0 or a
 * negative errno; on error @j still runs, measured by its process group. */
int cg_job_open(const struct cgroup *cg, struct job *j);
/* cg_job_current() - @j's memory in use now, in bytes, less page cache
 * it is not using (inactive file pages); -1 if unknown. */
int64_t cg_job_current(const struct cgroup *cg, const struct job *j);
/* cg_job_oom() - how many of @j's processes the kernel OOM-killed in its
 * cgroup so far (-1 if unknown); *@waiting: whether they wait at its cap
 * (v1 with j->cap_waits). */
int64_t cg_job_oom(const struct cgroup *cg, const struct job *j, bool *waiting);
/* cg_job_set_cap() - limit @j's cgroup to @bytes and note it in j->cap.
 * Return: 0 or a negative errno (EBUSY: it uses more already). */
int cg_job_set_cap(const struct cgroup *cg, struct job *j, int64_t bytes);
/* cg_job_close() - close @j's cgroup fds, if open. */
void cg_job_close(struct job *j);
/* cg_job_end() - after @j was reaped: its peak in bytes (-1 if none),
 * its OOM kills in *@oom_kills (-1 unknown); closes its fds and removes
 * its cgroup. */
int64_t cg_job_end(const struct cgroup *cg, struct job *j, int64_t *oom_kills);
/* cg_fini() - remove what cg_init() and cg_job_open() made and go back
 * to the cgroup ration-run started in. */
void cg_fini(struct cgroup *cg);

/* run_jobs.c */

/* job_spawn() - start @j: output files, its ctx, its cgroup, then
 * /bin/sh -c CMD in its own process group. Dispatcher thread.
 * Return: 0 or a negative errno (nothing of @j is left open). */
int job_spawn(struct runner *r, struct job *j);
/* job_handoff() - pass @j (started or rejected) to the supervisor. */
void job_handoff(struct runner *r, struct job *j);
/* supervise() - the supervisor thread (run.h); returns when every
 * dispatched job is finished and the dispatcher is done. @arg: runner. */
void *supervise(void *arg);

/* run_measure.c and run_overrun.c: supervisor thread only. */

/* measure_jobs() - sample the memory of every @running job: its cgroup's
 * usage, else the summed RSS of its process group; updates cur_bytes,
 * peak_bytes and went_over. */
void measure_jobs(struct runner *r, struct job *running);
/* measure_end() - after @j was reaped (@ru from wait4): its final peak
 * (the cgroup's, else the samples' or its largest process's) and OOM
 * kills; removes its cgroup. */
void measure_end(struct runner *r, struct job *j, const struct rusage *ru);
/* overrun_tick() - measure the @running jobs (oldest first), grow their
 * claims on the budget to what they use, and act by --overrun. */
void overrun_tick(struct runner *r, struct job *running);
/* run_headstart.c: with r->head_start (--overrun requeue, cgroup v1,
 * no --ramp), a blocked head job starts capped at the free room. */
int64_t head_start(struct runner *r, struct job *j, int64_t w);
/* head_start_cancel() - dispatcher: job @j, started early, could not get
 * its capped cgroup: wait for the rest of its weight instead. Return: 0,
 * or the dispatch ctx's error. */
int head_start_cancel(struct runner *r, struct job *j);
/* head_start_short() - dispatcher: whether @j, started early, is still
 * short of its weight, after waiting up to @wait_ns for it not to be. */
bool head_start_short(struct runner *r, const struct job *j, int64_t wait_ns);
/* head_start_raise() - supervisor: raise the cap of @j (one of
 * @running, oldest first, started early) toward its weight as far as the
 * budget's free room allows, once no older job waits for room. Return:
 * whether it stays waiting at its cap (@waiting: it waits there now). */
bool head_start_raise(struct runner *r, const struct job *running,
		      struct job *j, bool waiting);
/* head_start_note() - supervisor, each sample: whether one of the
 * @running jobs is past its weight, for head_start(). */
void head_start_note(struct runner *r, const struct job *running);
/* head_start_leave() - supervisor: @j ends; it is short of nothing
 * (the dispatcher stops waiting for it). */
void head_start_leave(struct runner *r, struct job *j);

/* run_ramp.c: with r->ramp (--overrun requeue, cgroup v1), a running
 * job's claim on the budget is its cap, raised as it uses it. */

/* ramp_first() - dispatcher: the first cap of job @j: its weight, or
 * less with r->ramp. */
int64_t ramp_first(const struct runner *r, const struct job *j);
/* ramp_start() - supervisor: job @j has started, its weight acquired (so
 * it fit the budget whole); from now on it claims only its cap. Call
 * ramp_sync() after. */
void ramp_start(struct runner *r, struct job *j);
/* ramp_sync() - supervisor: hold on the budget what the @running jobs
 * (oldest first) need beyond their caps, so each can reach its weight,
 * oldest first. Call after jobs start and after caps change. */
void ramp_sync(struct runner *r, const struct job *running);
/* ramp_leave() - supervisor: @j has ended and is off @running; move to
 * the reserve what the others need now from @j's claim, before that
 * goes back. */
void ramp_leave(struct runner *r, const struct job *running, struct job *j);
/* ramp_raise() - supervisor: raise the cap of @j (one of @running, below
 * its weight) if it nears it or waits there (@waiting), as far as the
 * budget allows. Return: whether it stays waiting at its cap. */
bool ramp_raise(struct runner *r, struct job *running, struct job *j,
		bool waiting);
/* overrun_requeue_weight() - the weight a job killed for its overrun
 * comes back with: measured peak + 25%, at least double its weight. */
int64_t overrun_requeue_weight(const struct job *j);
/* parse_overrun() - "wait", "suspend", "requeue" or "kill" into @out;
 * -EINVAL otherwise. */
int parse_overrun(const char *s, enum overrun_mode *out);

/* run_sched.c: the dispatcher thread. */

/* dispatch() - start the jobs, strict FIFO for the head job with bounded
 * backfill behind it, requeued jobs first; returns when everything has
 * been started and settled, or the dispatch ctx is done. Return: how
 * many jobs were started at least once and not left queued. */
size_t dispatch(struct runner *r);
/* sched_requeue() - supervisor: give @j back to the dispatcher. */
void sched_requeue(struct runner *r, struct job *j);
/* sched_settled() - supervisor: @j is finished for good. */
void sched_settled(struct runner *r);
/* job_budget_claim() - @j's claim on the budget among its claims (the
 * dispatcher makes at most one), or NULL when it holds none (no budget,
 * or weight 0). */
ration_claim_t *job_budget_claim(const struct runner *r, struct job *j);
/* runner_wait() - with r->mu held, wait on r->cv (CLOCK_MONOTONIC) for
 * at most @ns; wake-ups may be spurious. */
void runner_wait(struct runner *r, int64_t ns);

/* run_output.c: supervisor thread only, once jobs run. */

/* out_open() - make @j's output files (pipes with --line-buffer) and give
 * the ends for the child's stdout/stderr in @child_fds. */
int out_open(struct runner *r, struct job *j, int child_fds[2]);
/* out_pump() - --line-buffer: pass on the whole lines that arrived on
 * *@fd (everything when @eof) to @to_fd; closes *@fd at its end. */
void out_pump(struct runner *r, struct job *j, int *fd, struct linebuf *lb,
	      int to_fd, bool eof);
/* out_finish() - after @j was reaped: pass on its output, close files. */
void out_finish(struct runner *r, struct job *j);
/* out_write() - all of @buf to @fd; a broken stdout is noted, not fatal. */
void out_write(struct runner *r, int fd, const char *buf, size_t len);
/* progress_clear() - erase the progress line from the terminal, if shown. */
void progress_clear(struct runner *r);
/* progress_draw() - the progress line (done, running, queued, memory in
 * use vs budget, ETA); @final: the last one, with the time taken. */
void progress_draw(struct runner *r, bool final);

/* run_report.c: the main thread, before or after the run. */

/* report_dry_run() - -n: each job's number, weight, its source and
 * command on stdout, and the limits the run would have on stderr; @r has
 * its jobs read and weighed. */
void report_dry_run(const struct runner *r);
/* report_summary() - the end-of-run summary (--report): counts, the most
 * memory claimed at once, how jobs were measured; and, always, their
 * overruns and the jobs that used more than they declared. @started:
 * jobs dispatched. */
void report_summary(struct runner *r, size_t started);
/* report_exit_status() - the exit status of a run that ended, as --help
 * says: 128+N after signal N, 64 after a bad streamed record, else the
 * failed jobs, at most RUN_EXIT_FAILCAP. */
int report_exit_status(const struct runner *r);

#endif /* RATION_RUN_H */
