/* fanout_errgroup: Go's errgroup.WithContext fan-out, ported: the first
 * error cancels the rest, and the rest notice because they watch their ctx.
 *
 *     build/examples/fanout_errgroup [--tasks 8] [--fail 3] [--fail-after-ms 50]
 *
 * --tasks "replica queries" start at once on a group; each needs 2 s of
 * work, done in 10 ms slices, and between slices it sleeps on its ctx
 * (ration_ctx_with_timeout on the group ctx, then ration_ctx_wait: the
 * sleep ends early if the group is cancelled). Task --fail returns -EIO
 * after --fail-after-ms. The group (keep_going = false) records that error
 * first and then cancels its ctx, so every other task stops within a
 * slice and returns -ECANCELED; ration_group_wait() returns -EIO, not a
 * sibling's -ECANCELED. Exit 0 when that holds and everything stopped well
 * before the 2 s the work would have taken.
 */
#include <ration.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "example_args.h"

#define SLICE_NS 10000000LL   /* 10 ms */
#define WORK_NS  2000000000LL /* 2 s if nobody cancels */

struct query {
	int id;
	int64_t fail_after_ns; /* 0 = never fails */
	int rc;
	int64_t stopped_ns; /* when it returned, from the start */
};

static int64_t t0;

static void
die_if(int rc, const char *what)
{
	if (rc != 0) {
		fprintf(stderr, "fanout_errgroup: %s: %s\n", what,
			ration_strerror(rc));
		exit(1);
	}
}

/* Sleep @ns unless @ctx ends first: 0 after a full sleep, else ctx's error. */
static int
sleep_ctx(ration_ctx_t *ctx, int64_t ns)
{
	ration_ctx_t *nap;
	int rc = ration_ctx_with_timeout(ctx, ns, &nap);
	if (rc != 0)
		return rc;
	rc = ration_ctx_wait(nap);
	ration_ctx_unref(nap);
	if (rc == -ETIMEDOUT && ration_ctx_err(ctx) == 0)
		return 0; /* our own nap ran out: slept in full */
	return ration_ctx_err(ctx) ? ration_ctx_err(ctx) : rc;
}

static int
query(ration_ctx_t *ctx, void *arg)
{
	struct query *q = arg;
	int64_t start = ration_now();
	int rc = 0;
	while (ration_now() - start < WORK_NS) {
		if (q->fail_after_ns &&
		    ration_now() - start >= q->fail_after_ns) {
			rc = -EIO;
			fprintf(stderr, "query %d: failing with %s\n", q->id,
				ration_strerror(rc));
			break;
		}
		rc = sleep_ctx(ctx, SLICE_NS); /* one slice of "work" */
		if (rc != 0)
			break;
	}
	q->rc = rc;
	q->stopped_ns = ration_now() - t0;
	return rc;
}

static void
usage(FILE *f)
{
	fprintf(f, "usage: fanout_errgroup [--tasks N] [--fail I] "
		   "[--fail-after-ms MS]\n"
		   "  --tasks N          queries started at once, default 8\n"
		   "  --fail I           query I fails with EIO (0 = none), "
		   "default 3\n"
		   "  --fail-after-ms MS when it fails, default 50\n");
}

int
main(int argc, char **argv)
{
	int ntasks = 8, fail = 3, fail_ms = 50;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(a, "--tasks") && v) {
			ntasks = arg_int(v), i++;
		} else if (!strcmp(a, "--fail") && v) {
			fail = arg_int(v), i++;
		} else if (!strcmp(a, "--fail-after-ms") && v) {
			fail_ms = arg_int(v), i++;
		} else {
			fprintf(stderr, "fanout_errgroup: bad argument '%s'\n",
				a);
			usage(stderr);
			return 2;
		}
	}
	if (ntasks < 1 || ntasks > 256 || fail < 0 || fail_ms < 1 ||
	    fail_ms > 1000) {
		fprintf(stderr, "fanout_errgroup: need 1 <= --tasks <= 256, "
				"1 <= --fail-after-ms <= 1000\n");
		return 2;
	}

	/* One thread per query so they all run at once, as goroutines would. */
	ration_pool_t *pool;
	ration_pool_opts_t po = {.threads = (unsigned)ntasks, .name = "query"};
	die_if(ration_pool_new(&po, &pool), "pool_new");
	ration_group_t *g;
	ration_group_opts_t go = {.pool = pool}; /* keep_going = false */
	die_if(ration_group_new(NULL, &go, &g), "group_new");

	struct query *qs = calloc((size_t)ntasks, sizeof *qs);
	if (qs == NULL)
		die_if(-ENOMEM, "calloc");
	t0 = ration_now();
	int launched = 0;
	for (int i = 0; i < ntasks; i++) {
		qs[i].id = i + 1;
		qs[i].fail_after_ns = (i + 1 == fail) ? fail_ms * 1000000LL : 0;
		int rc = ration_group_go(g, 1, query, &qs[i]);
		if (rc != 0) { /* already cancelled: stop fanning out */
			fprintf(stderr, "query %d not started: %s\n", i + 1,
				ration_strerror(rc));
			break;
		}
		launched++;
	}
	int err = ration_group_wait(g);
	int64_t wall = ration_now() - t0;

	int cancelled = 0, failed = 0, done = 0;
	int64_t last_stop = 0;
	for (int i = 0; i < launched; i++) {
		printf("query %d: %-10s after %4lld ms\n", qs[i].id,
		       qs[i].rc ? ration_strerror(qs[i].rc) : "done",
		       (long long)(qs[i].stopped_ns / 1000000));
		cancelled += qs[i].rc == -ECANCELED;
		failed += qs[i].rc == -EIO;
		done += qs[i].rc == 0;
		if (qs[i].rc == -ECANCELED && qs[i].stopped_ns > last_stop)
			last_stop = qs[i].stopped_ns;
	}
	int ok;
	if (fail >= 1 && fail <= ntasks) {
		printf("group wait: %s; %d cancelled, the last %.0f ms after "
		       "the failure; "
		       "wall %.0f ms\n",
		       err ? ration_strerror(err) : "ok", cancelled,
		       cancelled
			       ? (double)(last_stop - fail_ms * 1000000LL) / 1e6
			       : 0.0,
		       (double)wall / 1e6);
		ok = err == -EIO && failed == 1 &&
		     cancelled + failed == launched && wall < WORK_NS / 2;
		printf("first error won, the rest stopped early: %s\n",
		       ok ? "yes" : "NO");
	} else {
		printf("group wait: %s; wall %.0f ms\n",
		       err ? ration_strerror(err) : "ok", (double)wall / 1e6);
		ok = err == 0 && done == launched && launched == ntasks;
		printf("no error, every query ran to the end: %s\n",
		       ok ? "yes" : "NO");
	}
	ration_group_free(g);
	ration_pool_free(pool);
	free(qs);
	return ok ? 0 : 1;
}
