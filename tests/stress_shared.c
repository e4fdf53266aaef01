/* stress_shared.c - the shared semaphore under fire: several worker
 * processes, several threads each, hammering acquire / acquire_until /
 * try_acquire / release / leases / resize (between 8 and 16) while the
 * parent resizes too and SIGKILLs random workers (respawning them), so
 * kills land in the fast path, in the queue and inside the mutex. Checked
 * throughout:
 *  - occupancy: every holder adds its weight to its process's counter in a
 *    scratch mapping and checks that the live processes' counters never
 *    sum above the largest size ever set (a dead process's counter is left
 *    as it was and skipped once the process is dead, which is also when
 *    the semaphore may reclaim it);
 *  - fences: each thread's lease fences strictly increase;
 *  - no worker thread sees an error other than the expected ones;
 * and at the end, with every worker gone: nothing held, nobody queued,
 * available == size (all weight of the killed came back).
 *
 * Rounds (kills) from RATION_STRESS_ROUNDS (default 150); well under 60 s. */
#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ration.h>
#include <ration/shared.h>

#include "helpers.h"
#include "procs.h"

#define WORKERS   4
#define THREADS   3
#define SIZE_MAX_ 16
#define SIZE_MIN_ 8

struct slot {
	_Atomic int pid; /* 0 = none */
	_Atomic int64_t occupancy;
};

struct board {
	_Atomic int violations;
	_Atomic int errors;
	_Atomic int last_error;
	_Atomic long ops;
	_Atomic int stop;
	struct slot slot[WORKERS];
};

static char name[64];
static struct board *bd;

/* Whether @pid is gone or a zombie: the semaphore's own test (a recycled
 * pid cannot occur here: the parent has not reaped it when it checks). */
static bool
dead(int pid)
{
	char path[64], buf[512];
	if (pid <= 0)
		return true;
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return true;
	ssize_t len = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (len <= 0)
		return true;
	buf[len] = '\0';
	char *p = strrchr(buf, ')');
	return p == NULL || p[1] != ' ' || p[2] == 'Z' || p[2] == 'X';
}

static void
check_occupancy(void)
{
	int64_t sum = 0;
	for (int i = 0; i < WORKERS; i++)
		sum += atomic_load(&bd->slot[i].occupancy);
	if (sum <= SIZE_MAX_)
		return;
	/* Over: maybe counters of the dead, whose weight was reclaimed. */
	sum = 0;
	for (int i = 0; i < WORKERS; i++)
		if (!dead(atomic_load(&bd->slot[i].pid)))
			sum += atomic_load(&bd->slot[i].occupancy);
	if (sum > SIZE_MAX_)
		atomic_fetch_add(&bd->violations, 1);
}

static void
note_error(int rc)
{
	atomic_store(&bd->last_error, rc);
	atomic_fetch_add(&bd->errors, 1);
}

struct worker {
	ration_sem_t *s;
	int idx;
};

static void *
worker_thread(void *arg)
{
	struct worker *w = arg;
	struct slot *me = &bd->slot[w->idx];
	unsigned seed = (unsigned)getpid() * 31u + (unsigned)(uintptr_t)&seed;
	uint64_t last_fence = 0;

	while (!atomic_load(&bd->stop)) {
		int64_t n = 1 + rand_r(&seed) % SIZE_MIN_;
		int op = rand_r(&seed) % 9;
		ration_lease_t l = {0};
		int rc;
		if (op == 8) { /* a resize, maybe killed inside the mutex */
			rc = ration_sem_resize(w->s, rand_r(&seed) % 2
							     ? SIZE_MAX_
							     : SIZE_MIN_);
			if (rc != 0)
				note_error(rc);
			continue;
		}
		if (op == 0)
			rc = ration_sem_acquire_lease(w->s, NULL, n, &l);
		else if (op <= 2)
			rc = ration_sem_try_acquire(w->s, n);
		else if (op == 3)
			rc = ration_sem_acquire_until(w->s,
						      ration_now() + 2 * MS, n);
		else
			rc = ration_sem_acquire_until(
				w->s, ration_now() + 500 * MS, n);
		if (rc == -EAGAIN || rc == -ETIMEDOUT)
			continue;
		if (rc != 0) {
			note_error(rc);
			continue;
		}
		if (op == 0) {
			if (l.fence <= last_fence)
				atomic_fetch_add(&bd->violations, 1);
			last_fence = l.fence;
		}
		atomic_fetch_add(&me->occupancy, n);
		check_occupancy();
		for (volatile int k = rand_r(&seed) % 500; k > 0; k--)
			;
		atomic_fetch_sub(&me->occupancy, n);
		rc = op == 0 ? ration_lease_release(w->s, &l)
			     : ration_sem_release(w->s, n);
		if (rc != 0)
			note_error(rc);
		atomic_fetch_add(&bd->ops, 1);
	}
	return NULL;
}

static void
worker_main(int idx)
{
	ration_sem_t *s;
	if (ration_sem_open_shared(name, 0, NULL, &s) != 0)
		_exit(2);
	struct worker w = {.s = s, .idx = idx};
	pthread_t t[THREADS];
	for (int i = 0; i < THREADS; i++)
		if (pthread_create(&t[i], NULL, worker_thread, &w) != 0)
			_exit(3);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	_exit(ration_sem_free(s) == 0 ? 0 : 4);
}

static pid_t
spawn_worker(int idx)
{
	atomic_store(&bd->slot[idx].occupancy, 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		worker_main(idx);
	atomic_store(&bd->slot[idx].pid, pid);
	return pid;
}

START_TEST(test_stress_shared_kills_under_load)
{
	ration_sem_t *s;
	ration_shared_opts_t o = {.create = true};
	snprintf(name, sizeof(name), "/ration-stress-%d", (int)getpid());
	ration_sem_unlink_shared(name);
	ck_assert_int_eq(ration_sem_open_shared(name, SIZE_MAX_, &o, &s), 0);
	bd = mmap(NULL, sizeof(*bd), PROT_READ | PROT_WRITE,
		  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(bd, MAP_FAILED);
	memset(bd, 0, sizeof(*bd));

	pid_t pid[WORKERS];
	for (int i = 0; i < WORKERS; i++)
		pid[i] = spawn_worker(i);
	long rounds = stress_rounds(150);
	unsigned seed = 12345;
	for (long r = 0; r < rounds; r++) {
		sleep_ns((20 + rand_r(&seed) % 80) * MS);
		if (r % 5 == 4) /* shrink (deficit possible) and grow back */
			ck_assert_int_eq(
				ration_sem_resize(s, r % 10 == 4 ? SIZE_MIN_
								 : SIZE_MAX_),
				0);
		int v = rand_r(&seed) % WORKERS;
		kill(pid[v], SIGKILL);
		ck_assert_int_eq(reap_within(pid[v], TEST_WAIT_NS),
				 1000 + SIGKILL);
		pid[v] = spawn_worker(v);
	}
	atomic_store(&bd->stop, 1);
	for (int i = 0; i < WORKERS; i++)
		ck_assert_int_eq(reap_within(pid[i], TEST_WAIT_NS), 0);
	ck_assert_int_eq(ration_sem_resize(s, SIZE_MAX_),
			 0); /* workers resize too */

	long ops = atomic_load(&bd->ops);
	int violations = atomic_load(&bd->violations),
	    errors = atomic_load(&bd->errors);
	fprintf(stderr, "stress_shared: %ld kills, %ld ops\n", rounds, ops);
	ck_assert_msg(violations == 0, "%d occupancy/fence violations",
		      violations);
	ck_assert_msg(errors == 0, "%d errors, last %d", errors,
		      atomic_load(&bd->last_error));
	/* Everyone gone: every killed worker's weight must be back. */
	int64_t deadline = ration_now() + TEST_WAIT_NS;
	ration_sem_stats_t st;
	for (;;) {
		ration_sem_stats(s, &st); /* also scans for the dead */
		if (st.available == SIZE_MAX_ || ration_now() > deadline)
			break;
		sleep_ns(5 * MS);
	}
	ck_assert_int_eq(st.size, SIZE_MAX_);
	ck_assert_int_eq(st.available, SIZE_MAX_);
	ck_assert_int_eq(st.in_use, 0);
	ck_assert_int_eq(st.waiters, 0);
	ck_assert_int_eq(st.waiting_weight, 0);
	ck_assert_int_le(st.max_in_use, SIZE_MAX_);
	ck_assert_int_eq(ration_sem_try_acquire(s, SIZE_MAX_), 0);
	ck_assert_int_eq(ration_sem_release(s, SIZE_MAX_), 0);
	ck_assert_int_eq(ration_sem_free(s), 0);
	ck_assert_int_eq(ration_sem_unlink_shared(name), 0);
	munmap(bd, sizeof(*bd));
}
END_TEST

int
main(void)
{
	Suite *su = suite_create("stress_shared");
	TCase *tc = tcase_create("kills");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_stress_shared_kills_under_load);
	suite_add_tcase(su, tc);
	int failed = run_suite(su);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
