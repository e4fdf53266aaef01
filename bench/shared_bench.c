/* shared_bench.c - uncontended acquire(1)+release(1), ns/op, on:
 *   ration in-process (ration_sem_new), ration shared (ration_sem_open_shared:
 *   acquire+release, and try_acquire+release) and a POSIX named semaphore
 *   (sem_open: sem_wait + sem_post).
 *     build/bench/shared-bench [n]      (default n = 2,000,000; median of 11)
 * Prints ns/op per peer and the shared/in-process ratio (target <= 2).
 * Time is the thread's CPU time (CLOCK_THREAD_CPUTIME_ID), not wall time:
 * the loops never sleep, so CPU time is the cost, and a shared build
 * machine's preemptions do not count as ours. Runs are interleaved, so a
 * drift in machine speed hits every peer alike. */
#include <fcntl.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <ration.h>
#include <ration/shared.h>

#define RUNS 11

static int
cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static int64_t
cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static double
run_ration(ration_sem_t *s, long n)
{
	int64_t t0 = cpu_ns();
	for (long i = 0; i < n; i++) {
		if (ration_sem_acquire(s, NULL, 1) != 0 ||
		    ration_sem_release(s, 1) != 0)
			abort();
	}
	return (double)(cpu_ns() - t0) / (double)n;
}

static double
run_try(ration_sem_t *s, long n)
{
	int64_t t0 = cpu_ns();
	for (long i = 0; i < n; i++) {
		if (ration_sem_try_acquire(s, 1) != 0 ||
		    ration_sem_release(s, 1) != 0)
			abort();
	}
	return (double)(cpu_ns() - t0) / (double)n;
}

static double
run_posix(sem_t *p, long n)
{
	int64_t t0 = cpu_ns();
	for (long i = 0; i < n; i++) {
		if (sem_wait(p) != 0 || sem_post(p) != 0)
			abort();
	}
	return (double)(cpu_ns() - t0) / (double)n;
}

int
main(int argc, char **argv)
{
	long n = 2000000;
	if (argc > 1) {
		char *end;
		n = strtol(argv[1], &end, 10);
		if (argc > 2 || end == argv[1] || *end != '\0' || n < 1) {
			fprintf(stderr, "usage: shared-bench [n]   (n >= 1, "
					"default 2000000)\n");
			return 2;
		}
	}
	char name[64];
	snprintf(name, sizeof(name), "/ration-shared-bench-%d", (int)getpid());

	ration_sem_t *local, *shared;
	ration_shared_opts_t o = {.create = true};
	if (ration_sem_new(1 << 20, NULL, &local) != 0 ||
	    ration_sem_open_shared(name, 1 << 20, &o, &shared) != 0)
		return 1;
	ration_sem_unlink_shared(name);
	sem_t *p = sem_open(name, O_CREAT | O_EXCL, 0600, 1u << 20);
	if (p == SEM_FAILED)
		return 1;
	sem_unlink(name);

	double r[5][RUNS];
	for (int k = 0; k < RUNS; k++) { /* interleaved: drift hits all alike */
		r[0][k] = run_ration(local, n);
		r[1][k] = run_ration(shared, n);
		r[2][k] = run_try(shared, n);
		r[3][k] = run_posix(p, n);
		r[4][k] = r[1][k] / r[0][k]; /* ratio within one round */
	}
	for (int i = 0; i < 5; i++)
		qsort(r[i], RUNS, sizeof(double), cmp_d);
	double in = r[0][RUNS / 2], sh = r[1][RUNS / 2], tr = r[2][RUNS / 2];
	double px = r[3][RUNS / 2];
	printf("uncontended acquire(1)+release(1), n=%ld, CPU time, median of "
	       "%d\n",
	       n, RUNS);
	printf("  ration in-process      %7.1f ns/op\n", in);
	printf("  ration shared          %7.1f ns/op   (%.2fx in-process)\n",
	       sh, sh / in);
	printf("  ration shared, try     %7.1f ns/op   (%.2fx in-process)\n",
	       tr, tr / in);
	printf("  POSIX sem_open         %7.1f ns/op   (%.2fx in-process)\n",
	       px, px / in);
	printf("  shared/in-process per round: min %.2f median %.2f max %.2f\n",
	       r[4][0], r[4][RUNS / 2], r[4][RUNS - 1]);
	ration_sem_free(local);
	ration_sem_free(shared);
	sem_close(p);
	return 0;
}
