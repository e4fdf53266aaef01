/* w1_sem.c - W1: one thread, n x (acquire 1; release 1), size 2^20.
 * Metric: ns per op (op = acquire + release). */
#include <stdio.h>

#include "peers_sem.h"

ration_sem_t *bench_rsem;
sem_t bench_psem;
wsem_t bench_wsem;

/* One loop per peer, so the calls inline (or are direct) in each. */
#define W1_LOOP(acq, rel)                                                      \
	for (long long i = 0; i < bench_n; i++) {                              \
		acq();                                                         \
		rel();                                                         \
	}

int
w1_sem(void)
{
	if (bench_n < 0)
		bench_n = 10000000;
	if (bench_size < 0)
		bench_size = 1 << 20;
	enum sem_peer p = sem_peer_init(bench_size);
	snprintf(bench_params, sizeof bench_params, "n=%lld size=%lld", bench_n,
		 bench_size);

	double t0 = now_ns();
	switch (p) {
	case SEM_RATION:
		W1_LOOP(ration_acq1, ration_rel1);
		break;
	case SEM_POSIX:
		W1_LOOP(posix_acq1, posix_rel1);
		break;
	case SEM_WSEM:
		W1_LOOP(wsem_acq1, wsem_rel1);
		break;
	}
	double dt = now_ns() - t0;
	out("ns_per_op", dt / (double)bench_n, "ns");
	if (p == SEM_RATION && ration_sem_free(bench_rsem) != 0)
		die("ration_sem_free: units still held");
	return 0;
}
