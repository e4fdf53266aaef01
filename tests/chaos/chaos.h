/* chaos.h - the chaos suite: worker processes share one budget while the
 * runner kills and stops them (and, for a server backend, the server);
 * an external ledger, a shared mapping of its own, says at every change
 * whether more was granted than the size.
 *
 * A scenario is a backend (how to make the budget and how a worker opens
 * it) plus a fault (what the runner does every tick). Backends and
 * scenarios live in their own files (shared.c, ...) and are listed in
 * runner.c's table. See tests/chaos/README.md.
 *
 * The ledger is written by the workers right after a grant returns and
 * right before a release, so what it counts is always at most what the
 * budget has handed out to live workers: a worker killed between grant
 * and ledger write, or between ledger write and release, makes it count
 * less, never more. An over-grant is therefore real whenever the ledger
 * shows occupancy > size.
 */
#ifndef RATION_CHAOS_H
#define RATION_CHAOS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <ration.h>

#define CHAOS_MAX_WORKERS 16
#define CHAOS_MAX_THREADS 4
#define CHAOS_SKIP        77 /* exit code meson reads as "skipped" */
#define CHAOS_MS          ((int64_t)1000000)
#define CHAOS_LATE_NS     (250 * CHAOS_MS) /* pass criterion */

/* What each worker is doing, for faults that pick their target. */
enum chaos_doing { DOING_NOTHING, DOING_WAIT, DOING_HOLD };

struct chaos_worker {
	_Atomic pid_t pid;    /* in the runner's pid namespace; 0 = none */
	_Atomic int64_t held; /* ledger units of this worker */
	_Atomic int doing[CHAOS_MAX_THREADS];
	/* Bumped by the runner before it stops the worker and again after
	 * it continues it (odd: stopped, or about to be): a call that starts
	 * at an odd count or sees it change is not timed (the caller itself
	 * was not running). The SIGSTOP can land well after the bump when
	 * the runner is preempted in between. */
	_Atomic uint32_t stops;
	_Atomic bool stopped; /* runner: SIGSTOPped, SIGCONT due at cont_at */
	int64_t cont_at;      /* runner only */
	_Atomic bool ready;   /* opened its handle */
};

/* The ledger: one MAP_SHARED mapping, made by the runner before any
 * worker, seen by every process (a fork child inherits it). */
struct chaos_ledger {
	int64_t size;              /* immutable */
	_Atomic int64_t occupancy; /* ledger units of all live workers */
	_Atomic int64_t max_occupancy;
	_Atomic uint64_t snapshots;  /* ledger changes checked */
	_Atomic uint64_t overgrants; /* snapshots with occupancy > size */
	_Atomic uint64_t grants, timeouts, tries_failed, calls;
	/* Worst return past a deadline, less the time the caller spent
	 * runnable but waiting for a CPU; and without that correction. */
	_Atomic int64_t max_late_ns, max_late_raw_ns;
	_Atomic uint64_t late_calls;  /* calls past CHAOS_LATE_NS */
	_Atomic uint64_t unexpected;  /* results no scenario allows */
	_Atomic int first_unexpected; /* its code, and the operation: */
	_Atomic int first_unexpected_op;
	_Atomic bool stop; /* workers: release and exit */
	struct chaos_worker w[CHAOS_MAX_WORKERS];
};

struct chaos_run;

/* How the budget is made and opened. */
struct chaos_backend {
	const char *name;
	/* Runner, before the first worker: make a budget of run->size.
	 * 0, CHAOS_SKIP (after printing why) or another value to fail. */
	int (*setup)(struct chaos_run *run);
	/* Worker (a fork child), before its loop: its own handle. */
	int (*open)(struct chaos_run *run, ration_sem_t **out);
	/* Runner, at the end with every worker gone: the units the budget
	 * still counts as held (lost weight), waiting a little for its own
	 * recovery to finish. */
	int64_t (*held_at_end)(struct chaos_run *run);
	/* Runner, last: remove what setup made (also on failure). */
	void (*teardown)(struct chaos_run *run);
};

/* Scenario flags. */
#define CHAOS_MAIN_EXIT 1u /* workers' main thread pthread_exit()s */
#define CHAOS_PIDNS     2u /* each worker in a PID namespace of its own */
#define CHAOS_LONG_HOLD                                                        \
	4u /* hold grants 0-400 ms (else 0-3 ms): holders keep
			    * running across a server fault */
#define CHAOS_LEASES_HOLD                                                      \
	8u /* hold grants 0-1.5 s: across a fault and the recovery
			    * after it (three 0.5 s leases) */

struct chaos_scenario {
	const char *name;
	const char *what; /* one line for --list and the report */
	const struct chaos_backend *backend;
	unsigned workers, threads, flags;
	int64_t size, max_n;
	/* The fault, called by the runner every tick (20..100 ms). */
	void (*fault)(struct chaos_run *run);
	/* Results a worker may also see here (e.g. -EIO while a server is
	 * down); NULL = only 0, -ETIMEDOUT and -EAGAIN. */
	bool (*allowed)(int rc, int op);
};

/* Operations, for allowed() and the report. */
enum chaos_op { OP_ACQUIRE, OP_TRY, OP_RELEASE, OP_OPEN };

/* The run, in the runner (workers see a copy made by fork). */
struct chaos_run {
	const struct chaos_scenario *sc;
	struct chaos_ledger *led;
	int64_t size;
	char name[64];         /* unique per run: "/ration-chaos-<pid>" */
	uint64_t rng;          /* runner's random state */
	uint64_t kills, stops; /* faults done */
	void *backend_state;   /* the backend's own */
};

/* Runner helpers for faults. */
uint64_t chaos_rand(struct chaos_run *run, uint64_t below);
/* A live, running worker doing @doing (DOING_NOTHING = any), or -1. */
int chaos_pick(struct chaos_run *run, int doing);
/* SIGKILL worker @i (stopped first: see runner.c); the runner reaps and
 * replaces it. */
void chaos_kill(struct chaos_run *run, int i);
/* SIGSTOP worker @i for @ns; SIGCONT comes on a later tick. */
void chaos_stop(struct chaos_run *run, int i, int64_t ns);
/* The worker whose thread @tid is (a tid in the runner's namespace), or -1. */
int chaos_worker_of_tid(struct chaos_run *run, pid_t tid);

/* Faults any backend can use. */
void chaos_fault_kill_holder(struct chaos_run *run);
void chaos_fault_kill_waiter(struct chaos_run *run);
void chaos_fault_stop_holder(struct chaos_run *run);
void chaos_fault_stop_waiter(struct chaos_run *run);

/* The worker's loop (worker.c): never returns. */
void chaos_worker_main(struct chaos_run *run, int index)
	__attribute__((noreturn));

/* Backends (one file each) and their scenarios. */
extern const struct chaos_scenario chaos_shared_scenarios[];
extern const unsigned chaos_shared_nscenarios;
extern const struct chaos_scenario chaos_redis_scenarios[];
extern const unsigned chaos_redis_nscenarios;

#endif
