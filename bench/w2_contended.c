/* w2_contended.c - W2: T threads, each n x (acquire 1; counter++ on its own
 * cache line; release 1) on a semaphore of size 2. The clock starts when
 * every thread waits on the start barrier. Metric: wall / (T * n).
 *
 * futex-pingpong is the floor for what a strict-FIFO semaphore must do
 * once its waiters sleep: two threads pass one token back and forth,
 * each turn a FUTEX_WAKE by the giver and a FUTEX_WAIT (a real sleep) by
 * the other. It prints the W2 line for t=2 (size=1: one token).
 */
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "peers_sem.h"

typedef struct {
	long long count;
	char pad[56];
} counter_t;

struct w2_arg {
	counter_t *c;
	enum sem_peer peer;
	int index;
};

static pthread_barrier_t ready, go; /* main reads the clock between the two */

#define W2_LOOP(acq, rel)                                                      \
	for (long long i = 0; i < bench_n; i++) {                              \
		acq();                                                         \
		me->count++;                                                   \
		rel();                                                         \
	}

static void *
w2_thread(void *arg)
{
	struct w2_arg *a = arg;
	counter_t *me = a->c;

	pthread_barrier_wait(&ready);
	pthread_barrier_wait(&go);
	switch (a->peer) {
	case SEM_RATION:
		W2_LOOP(ration_acq1, ration_rel1);
		break;
	case SEM_POSIX:
		W2_LOOP(posix_acq1, posix_rel1);
		break;
	case SEM_WSEM:
		W2_LOOP(wsem_acq1, wsem_rel1);
		break;
	}
	return NULL;
}

/* ---- futex-pingpong ---------------------------------------------------- */

static _Atomic uint32_t turn; /* whose turn: thread 0 or 1 */

static void
futex_wait(_Atomic uint32_t *w, uint32_t expected)
{
	syscall(SYS_futex, w, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
}

static void
futex_wake(_Atomic uint32_t *w)
{
	syscall(SYS_futex, w, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static void *
pingpong_thread(void *arg)
{
	struct w2_arg *a = arg;
	counter_t *me = a->c;
	uint32_t mine = (uint32_t)a->index, other = mine ^ 1;

	pthread_barrier_wait(&ready);
	pthread_barrier_wait(&go);
	for (long long i = 0; i < bench_n; i++) {
		/* acquire: pairs with the release store of the other thread. */
		while (atomic_load_explicit(&turn, memory_order_acquire) !=
		       mine)
			futex_wait(&turn, other);
		me->count++;
		atomic_store_explicit(&turn, other, memory_order_release);
		futex_wake(&turn);
	}
	return NULL;
}

int
w2_contended(void)
{
	bool pingpong = !strcmp(bench_peer, "futex-pingpong");
	enum sem_peer peer = SEM_RATION;

	if (bench_n < 0)
		bench_n = 1000000;
	if (pingpong) {
		if (bench_t != 2)
			die("futex-pingpong is two threads: -t 2");
		bench_size = 1;
	} else {
		if (bench_size < 0)
			bench_size = 2;
		peer = sem_peer_init(bench_size);
	}
	snprintf(bench_params, sizeof bench_params, "t=%lld n=%lld size=%lld",
		 bench_t, bench_n, bench_size);

	pthread_t *th = calloc((size_t)bench_t, sizeof(*th));
	struct w2_arg *args = calloc((size_t)bench_t, sizeof(*args));
	counter_t *c = aligned_alloc(64, sizeof(counter_t) * (size_t)bench_t);
	if (th == NULL || args == NULL || c == NULL)
		die("out of memory");
	memset(c, 0, sizeof(counter_t) * (size_t)bench_t);
	pthread_barrier_init(&ready, NULL, (unsigned)bench_t + 1);
	pthread_barrier_init(&go, NULL, (unsigned)bench_t + 1);
	for (long long i = 0; i < bench_t; i++) {
		args[i] = (struct w2_arg){
			.c = &c[i], .peer = peer, .index = (int)i};
		if (pthread_create(&th[i], NULL,
				   pingpong ? pingpong_thread : w2_thread,
				   &args[i]) != 0)
			die("pthread_create");
	}
	pthread_barrier_wait(&ready);
	double t0 = now_ns();
	pthread_barrier_wait(&go);
	for (long long i = 0; i < bench_t; i++)
		pthread_join(th[i], NULL);
	double dt = now_ns() - t0;
	for (long long i = 0; i < bench_t; i++)
		if (c[i].count != bench_n)
			die("lost increments");
	double ops = (double)bench_n * (double)bench_t;
	out("ns_per_op", dt / ops, "ns");
	out("ops_per_s", ops / dt * 1e9, "ops/s");
	if (!pingpong && peer == SEM_RATION && ration_sem_free(bench_rsem) != 0)
		die("ration_sem_free: units still held");
	free(th);
	free(args);
	free(c);
	return 0;
}
