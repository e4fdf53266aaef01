/* shared_bench.c - uncontended acquire(1)+release(1), ns/op, on:
 *   ration in-process (ration_sem_new), ration shared (ration_sem_open_shared)
 *   and a POSIX named semaphore (sem_open: sem_wait + sem_post).
 *     build/bench/shared-bench [n]      (default n = 5,000,000; median of 5)
 * Prints ns/op per peer and the shared/in-process ratio (target <= 2). */
#include <fcntl.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <ration.h>
#include <ration/shared.h>

#define RUNS 5

static int
cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double
run_ration(ration_sem_t *s, long n)
{
	int64_t t0 = ration_now();
	for (long i = 0; i < n; i++) {
		if (ration_sem_acquire(s, NULL, 1) != 0 || ration_sem_release(s, 1) != 0)
			abort();
	}
	return (double)(ration_now() - t0) / (double)n;
}

static double
run_posix(sem_t *p, long n)
{
	int64_t t0 = ration_now();
	for (long i = 0; i < n; i++) {
		if (sem_wait(p) != 0 || sem_post(p) != 0)
			abort();
	}
	return (double)(ration_now() - t0) / (double)n;
}

int
main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 5000000;
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

	double r[3][RUNS];
	for (int k = 0; k < RUNS; k++) { /* interleaved: drift hits all alike */
		r[0][k] = run_ration(local, n);
		r[1][k] = run_ration(shared, n);
		r[2][k] = run_posix(p, n);
	}
	for (int i = 0; i < 3; i++)
		qsort(r[i], RUNS, sizeof(double), cmp_d);
	double in = r[0][RUNS / 2], sh = r[1][RUNS / 2], px = r[2][RUNS / 2];
	printf("uncontended acquire(1)+release(1), n=%ld, median of %d\n", n, RUNS);
	printf("  ration in-process   %7.1f ns/op\n", in);
	printf("  ration shared       %7.1f ns/op   (%.2fx in-process)\n", sh, sh / in);
	printf("  POSIX sem_open      %7.1f ns/op   (%.2fx in-process)\n", px, px / in);
	ration_sem_free(local);
	ration_sem_free(shared);
	sem_close(p);
	return 0;
}
