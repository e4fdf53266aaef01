/* workpool_stats: the GoingGo workpool, ported: a bounded queue that says
 * "at capacity" instead of blocking, with live counters.
 *
 *     build/examples/workpool_stats [--threads 3] [--queue 10] [--jobs 60]
 *
 * goinggo/workpool's PostWork returns ErrCapacity once its queue is full,
 * and the program watches QueuedWork() and ActiveRoutines(). Here the pool
 * has --threads workers and a queue of --queue slots; main posts --jobs
 * jobs with ration_pool_try_submit(), which returns -EAGAIN when the queue
 * is full ("at capacity": the job is dropped and counted, the poster never
 * blocks), and prints the counters from ration_pool_stats() as it goes
 * (threads/running/queued/submitted/completed). Then it drains the pool
 * and checks that every accepted job ran exactly once (exit 1 if not).
 * Each posting round also waits a little, so later jobs find room again.
 */
#include <ration.h>

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "example_args.h"

static _Atomic unsigned long ran;

static void
die_if(int rc, const char *what)
{
	if (rc != 0) {
		fprintf(stderr, "workpool_stats: %s: %s\n", what,
			ration_strerror(rc));
		exit(1);
	}
}

static void
sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* The work: pretend to do 10-30 ms of I/O. */
static void
do_work(void *arg, int status)
{
	long id = (long)(intptr_t)arg;
	if (status != 0)
		return; /* discarded at shutdown: nothing to free */
	sleep_ms(10 + id % 3 * 10);
	atomic_fetch_add(&ran, 1);
}

static void
print_stats(ration_pool_t *p, const char *when)
{
	ration_pool_stats_t s;
	ration_pool_stats(p, &s);
	printf("%-10s threads %2llu  running %2llu  queued %3llu  submitted "
	       "%4llu  "
	       "completed %4llu  rejected %3llu\n",
	       when, (unsigned long long)s.threads,
	       (unsigned long long)s.running, (unsigned long long)s.queued,
	       (unsigned long long)s.submitted, (unsigned long long)s.completed,
	       (unsigned long long)s.rejected);
}

static void
usage(FILE *f)
{
	fprintf(f,
		"usage: workpool_stats [--threads N] [--queue N] [--jobs N]\n"
		"  --threads N  workers, default 3\n"
		"  --queue N    queue capacity, default 10\n"
		"  --jobs N     jobs to post, default 60\n");
}

int
main(int argc, char **argv)
{
	int threads = 3, queue = 10, njobs = 60;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(a, "--threads") && v) {
			threads = arg_int(v), i++;
		} else if (!strcmp(a, "--queue") && v) {
			queue = arg_int(v), i++;
		} else if (!strcmp(a, "--jobs") && v) {
			njobs = arg_int(v), i++;
		} else {
			fprintf(stderr, "workpool_stats: bad argument '%s'\n",
				a);
			usage(stderr);
			return 2;
		}
	}
	if (threads < 1 || threads > 256 || queue < 1 || njobs < 1 ||
	    njobs > 1000000) {
		fprintf(stderr, "workpool_stats: need 1 <= --threads <= 256, "
				"--queue >= 1, "
				"1 <= --jobs <= 1000000\n");
		return 2;
	}

	ration_pool_t *p;
	ration_pool_opts_t po = {.threads = (unsigned)threads,
				 .queue_cap = (size_t)queue,
				 .name = "workpool"};
	die_if(ration_pool_new(&po, &p), "pool_new");
	print_stats(p, "start");

	unsigned long accepted = 0, rejected = 0;
	for (long id = 1; id <= njobs; id++) {
		int rc = ration_pool_try_submit(p, do_work,
						(void *)(intptr_t)id);
		if (rc == -EAGAIN) {
			rejected++;
			fprintf(stderr,
				"job %ld: at capacity (%d queued), dropped\n",
				id, queue);
		} else {
			die_if(rc, "try_submit");
			accepted++;
		}
		if (id % 10 == 0) {
			char when[32];
			snprintf(when, sizeof when, "after %ld", id);
			print_stats(p, when);
			sleep_ms(
				40); /* the poster pauses: the queue drains a bit */
		}
	}
	die_if(ration_pool_shutdown(p, RATION_DRAIN, NULL), "shutdown");
	print_stats(p, "drained");

	ration_pool_stats_t s;
	ration_pool_stats(p, &s);
	printf("posted %d: accepted %lu, at capacity %lu; ran %lu\n", njobs,
	       accepted, rejected, atomic_load(&ran));
	int ok = s.submitted == accepted && s.completed == accepted &&
		 atomic_load(&ran) == accepted &&
		 accepted + rejected == (unsigned long)njobs &&
		 s.rejected == rejected && s.max_queued <= (uint64_t)queue &&
		 s.max_running <= (uint64_t)threads;
	printf("every accepted job ran once, queue stayed <= %d: %s\n", queue,
	       ok ? "yes" : "NO");
	ration_pool_free(p);
	return ok ? 0 : 1;
}
