/* worker_pool: Go by Example's "Worker Pools", ported: 3 workers, 9 jobs.
 *
 *     build/examples/worker_pool [--workers 3] [--jobs 9] [--fail 5]
 *
 * In Go this is a jobs channel, a results channel and three goroutines;
 * adding an errors channel that nobody drains is the classic way to make
 * it deadlock. Here the workers are a ration pool of 3 threads, the jobs
 * go through a group (limit 3, keep_going so every job still runs), each
 * job writes its result into its own slot (so results come out in job
 * order, whatever order they finish in) and the failure travels back as
 * the task's return value: ration_group_wait() returns it. No channel, no
 * deadlock. Job --fail (default 5) fails on purpose; exits 0 when exactly
 * that job is reported as failed and every other result is right.
 */
#include <ration.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "example_args.h"

struct job {
	int id;
	int fail;   /* make this one fail */
	int result; /* written by the worker */
	int err;    /* 0 or negative errno */
};

static void
die_if(int rc, const char *what)
{
	if (rc != 0) {
		fprintf(stderr, "worker_pool: %s: %s\n", what,
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

/* The worker body: "expensive" job that doubles its input. */
static int
worker(ration_ctx_t *ctx, void *arg)
{
	struct job *j = arg;
	(void)ctx;
	fprintf(stderr, "job %d started\n", j->id);
	sleep_ms(20 + 10 * (j->id % 3)); /* finish out of order */
	if (j->fail) {
		j->err = -EIO;
		fprintf(stderr, "job %d failed\n", j->id);
		return j->err;
	}
	j->result = j->id * 2;
	fprintf(stderr, "job %d finished\n", j->id);
	return 0;
}

static void
usage(FILE *f)
{
	fprintf(f,
		"usage: worker_pool [--workers N] [--jobs N] [--fail J]\n"
		"  --workers N  pool threads, default 3\n"
		"  --jobs N     jobs, default 9\n"
		"  --fail J     job J fails with EIO (0 = none), default 5\n");
}

int
main(int argc, char **argv)
{
	int workers = 3, njobs = 9, fail = 5;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(a, "--workers") && v) {
			workers = arg_int(v), i++;
		} else if (!strcmp(a, "--jobs") && v) {
			njobs = arg_int(v), i++;
		} else if (!strcmp(a, "--fail") && v) {
			fail = arg_int(v), i++;
		} else {
			fprintf(stderr, "worker_pool: bad argument '%s'\n", a);
			usage(stderr);
			return 2;
		}
	}
	if (workers < 1 || workers > 256 || njobs < 1 || njobs > 100000 ||
	    fail < 0) {
		fprintf(stderr, "worker_pool: need 1 <= --workers <= 256, 1 <= "
				"--jobs <= 100000\n");
		return 2;
	}

	ration_pool_t *pool;
	ration_pool_opts_t po = {.threads = (unsigned)workers,
				 .name = "worker"};
	die_if(ration_pool_new(&po, &pool), "pool_new");
	ration_group_t *g;
	ration_group_opts_t go = {
		.pool = pool, .limit = workers, .keep_going = true};
	die_if(ration_group_new(NULL, &go, &g), "group_new");

	struct job *jobs = calloc((size_t)njobs, sizeof *jobs);
	if (jobs == NULL)
		die_if(-ENOMEM, "calloc");
	for (int i = 0; i < njobs; i++) {
		jobs[i].id = i + 1;
		jobs[i].fail = (i + 1 == fail);
		die_if(ration_group_go(g, 1, worker, &jobs[i]), "group_go");
	}
	int err = ration_group_wait(g);

	/* Results in job order, whatever order the workers finished in. */
	int bad = 0, failed = 0;
	for (int i = 0; i < njobs; i++) {
		if (jobs[i].err) {
			printf("job %d: error: %s\n", jobs[i].id,
			       ration_strerror(jobs[i].err));
			failed++;
			bad += !jobs[i].fail;
		} else {
			printf("job %d: result %d\n", jobs[i].id,
			       jobs[i].result);
			bad += jobs[i].fail || jobs[i].result != jobs[i].id * 2;
		}
	}
	printf("group: %s\n", err ? ration_strerror(err) : "ok");

	ration_group_stats_t gs;
	ration_group_stats(g, &gs);
	printf("%d jobs, %llu finished, %llu failed\n", njobs,
	       (unsigned long long)gs.tasks, (unsigned long long)gs.failed);
	int expect_fail = fail >= 1 && fail <= njobs;
	bad += gs.tasks != (uint64_t)njobs ||
	       gs.failed != (uint64_t)expect_fail || failed != expect_fail ||
	       (err != 0) != expect_fail;

	ration_group_free(g);
	ration_pool_free(pool);
	free(jobs);
	return bad ? 1 : 0;
}
