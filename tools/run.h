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
#define RUN_EXIT_USAGE 2
#define RUN_EXIT_FAILCAP 101
#define RUN_EXIT_INTERNAL 255

enum weight_src { W_NONE, W_DECLARED, W_DEFAULT, W_LEARNED };

enum halt_when { HALT_NEVER, HALT_SOON, HALT_NOW };

struct halt_spec {
	enum halt_when when;
	bool on_success;   /* success=N instead of fail=N */
	unsigned n;        /* how many; >= 1 */
	bool percent;      /* n is a percentage of all jobs */
};

struct linebuf {
	char *buf;
	size_t len, cap;
};

struct job {
	/* Set by the parser, read-only afterwards. */
	unsigned seq;              /* 1-based position in the job list */
	unsigned line;             /* input line, for messages */
	char *cmd;
	int64_t weight;            /* bytes claimed from the budget; 0 = none */
	enum weight_src wsrc;

	/* Dispatcher until handoff, supervisor after. */
	ration_claim_t claims[2];
	size_t nclaims;
	bool token_held;           /* holds a make token read from make */
	bool js_implicit;          /* holds our implicit jobserver slot */
	unsigned char token;       /* the byte read, written back as is */
	int reject;                /* -E2BIG etc.: never ran */
	int spawn_err;             /* posix_spawn failed */
	pid_t pid;
	ration_ctx_t *ctx;         /* timeout + halt; child of the kill ctx */
	int out_fd, err_fd;        /* temp files, or pipes with --line-buffer */
	struct linebuf out_lb, err_lb;
	int64_t start_ns, end_ns;  /* CLOCK_MONOTONIC */
	double start_wall;         /* epoch seconds, for the joblog */
	int64_t kill_at_ns;        /* SIGKILL due after SIGTERM; 0 = none */
	bool term_sent, kill_sent;
	bool timed_out, cancelled;
	int wstatus;
	int64_t peak_bytes;        /* measured; -1 unknown */
	struct job *next;          /* handoff queue / running list */
};

struct run_opts {
	const char *arg_file;      /* NULL = stdin */
	int64_t budget_bytes;      /* 0 = no memory budget */
	int64_t slots;             /* 0 = unlimited */
	int64_t default_weight;    /* --weight; 0 = none */
	const char *learn_file;
	int64_t timeout_ns;        /* 0 = none */
	int64_t grace_ns;
	struct halt_spec halt;
	const char *joblog;
	bool tag, line_buffer, progress, dry_run, report;
	bool use_jobserver;
};

/* Jobserver client state (run_jobserver.c). */
struct jobserver {
	bool active;
	bool unavailable;          /* make -j but no usable fds: run serially */
	int rfd, wfd;              /* our own descriptions, rfd non-blocking */
	int wake_fd;               /* eventfd: the implicit slot came free */
	pthread_mutex_t mu;
	bool implicit_busy;        /* mu */
	char desc[64];             /* for messages */
};

struct learn_entry {
	char *cmd;
	int64_t peak_bytes;
};

struct learn {
	struct learn_entry *v;     /* sorted by cmd */
	size_t n, cap;
};

struct runner {
	struct run_opts *o;
	struct job *jobs;
	size_t njobs;
	ration_sem_t *budget;      /* NULL: no memory budget */
	ration_sem_t *slots;       /* NULL: unlimited */
	ration_ctx_t *kill_ctx;    /* cancelled: running jobs get SIGTERM */
	ration_ctx_t *dispatch_ctx;/* cancelled: start nothing more */
	struct jobserver js;
	struct learn learn;
	FILE *joblog;
	bool progress_tty;

	pthread_mutex_t mu;
	struct job *incoming;      /* mu; handoff queue, LIFO, fixed on take */
	bool dispatch_done;        /* mu */
	size_t dispatched;         /* mu; jobs handed to the supervisor */
	int wake_fd;               /* eventfd: incoming or dispatch_done */

	/* Supervisor only. */
	size_t done, failed, succeeded, cancelled, running;
	size_t over_declared;
	struct job *worst_over;
	int64_t t0_ns;
	int signo;                 /* first SIGINT/SIGTERM/SIGHUP received */
	bool halted;
	bool stdout_broken;
};

/* run_parse.c */
int parse_size(const char *s, int64_t *out);
int parse_duration(const char *s, int64_t *out_ns);
int parse_halt(const char *s, struct halt_spec *out);
int parse_budget(const char *s, int64_t *out);
int64_t mem_available_bytes(void);
void format_size(int64_t bytes, char *buf, size_t len);
int read_jobs(const struct run_opts *o, struct job **out, size_t *count);
void free_jobs(struct job *jobs, size_t count);

/* run_jobserver.c */
int js_init(struct jobserver *js, const char *makeflags);
int js_acquire(struct jobserver *js, ration_ctx_t *ctx, struct job *j);
void js_release(struct jobserver *js, struct job *j);
void js_fini(struct jobserver *js);

/* run_learn.c */
int learn_load(struct learn *l, const char *path);
int64_t learn_lookup(const struct learn *l, const char *cmd);
int learn_record(struct learn *l, const char *cmd, int64_t peak_bytes);
int learn_save(const struct learn *l, const char *path);
void learn_free(struct learn *l);

/* run_jobs.c */
int job_spawn(struct runner *r, struct job *j);
void job_handoff(struct runner *r, struct job *j);
void *supervise(void *arg);

/* run_output.c */
int out_open(struct runner *r, struct job *j, int child_fds[2]);
void out_pump(struct runner *r, struct job *j, int *fd, struct linebuf *lb,
	      int to_fd, bool eof);
void out_finish(struct runner *r, struct job *j);
void out_write(struct runner *r, int fd, const char *buf, size_t len);
void progress_clear(struct runner *r);
void progress_draw(struct runner *r, bool final);

#endif /* RATION_RUN_H */
