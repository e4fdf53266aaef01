/* test_shared.c - the shared-memory semaphore (ration/shared.h) with real
 * processes: fork(), SIGKILL, and a look at the segment itself where a test
 * needs to fake a state (lib/shared/shm.h).
 *
 * Children never call Check: they return a code through their exit status
 * (0 or a positive errno), reaped with a deadline. Every shm object is
 * named /ration-t-<runner pid>-<n> and main() removes any left behind. */
#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ration.h>
#include <ration/shared.h>

#include "../lib/shared/shm.h"
#include "helpers.h"
#include "procs.h"
#include "shm_helpers.h"

/* Take n, say so, and hold it until killed. */
static int
child_hold(void *arg)
{
	struct job *j = arg;
	ration_sem_t *s = child_open(j->name);
	int rc = ration_sem_acquire(s, NULL, j->n);
	atomic_store(&j->sc->ready, 1);
	if (rc != 0)
		return rc;
	for (;;)
		pause();
}

/* Wait for n (deadline optional), log the grant order, hold, release. */
static int
child_acquire_log(void *arg)
{
	struct job *j = arg;
	ration_sem_t *s = child_open(j->name);
	int rc = j->deadline_ns
			 ? ration_sem_acquire_until(s, j->deadline_ns, j->n)
			 : ration_sem_acquire(s, NULL, j->n);
	if (rc != 0)
		return rc;
	log_grant(j->sc, j->index);
	sleep_ns(j->hold_ns);
	rc = ration_sem_release(s, j->n);
	if (rc == 0)
		rc = ration_sem_free(s);
	return rc;
}

/* Occupancy checker: every holder adds its weight to a counter in another
 * shared mapping and checks it never exceeds the size. */
static int
child_occupancy(void *arg)
{
	struct job *j = arg;
	ration_sem_t *s = child_open(j->name);
	unsigned seed = (unsigned)getpid();
	while (!atomic_load(&j->sc->go))
		;
	for (int i = 0; i < j->rounds; i++) {
		int64_t n = 1 + rand_r(&seed) % j->n;
		int rc = ration_sem_acquire(s, NULL, n);
		if (rc != 0)
			return rc;
		if (atomic_fetch_add(&j->sc->occupancy, n) + n > j->n)
			atomic_fetch_add(&j->sc->violations, 1);
		for (volatile int k = 0; k < 200; k++)
			;
		atomic_fetch_sub(&j->sc->occupancy, n);
		if ((rc = ration_sem_release(s, n)) != 0)
			return rc;
	}
	return ration_sem_free(s);
}

/* ---- fixture: each test's shm object ---- */

/* The name of the test's object, fresh for each test; teardown removes the
 * object even when the test failed before its own unlink. */
static char name[64];

static void
setup(void)
{
	new_name(name, sizeof(name));
}

static void
teardown(void)
{
	(void)ration_sem_unlink_shared(name);
}

/* ---- args ---- */

START_TEST(test_shared_bad_arguments_and_enoent)
{
	ration_shared_opts_t o = {.create = true};
	ration_sem_t *s;

	ck_assert_int_eq(ration_sem_open_shared(NULL, 1, &o, &s), -EINVAL);
	ck_assert_int_eq(ration_sem_open_shared("", 1, &o, &s), -EINVAL);
	ck_assert_int_eq(ration_sem_open_shared("/a/b", 1, &o, &s), -EINVAL);
	ck_assert_int_eq(ration_sem_open_shared(name, 0, &o, &s), -EINVAL);
	ck_assert_int_eq(
		ration_sem_open_shared(name, RATION_SEM_MAX + 1, &o, &s),
		-EINVAL);
	ck_assert_int_eq(ration_sem_open_shared(name, 1, &o, NULL), -EINVAL);
	ck_assert_int_eq(ration_sem_open_shared(name, 1, NULL, &s), -ENOENT);
	ck_assert_int_eq(ration_sem_unlink_shared(name), -ENOENT);
	ck_assert_int_eq(ration_sem_unlink_shared("x/y"), -EINVAL);

	ration_sem_t *local;
	ration_lease_t l;
	ck_assert_int_eq(ration_sem_new(4, NULL, &local), 0);
	ck_assert_int_eq(ration_sem_acquire_lease(local, NULL, 1, &l), -EINVAL);
	ck_assert_int_eq(ration_lease_release(local, &l), -EINVAL);
	ck_assert_int_eq(ration_sem_available(local), 4);
	ck_assert_int_eq(ration_sem_free(local), 0);
}
END_TEST

/* The contract itself (errors, weights, resize, close, stats) is in
 * test_contract.c; here, what two handles on one object see. */
START_TEST(test_shared_second_handle_is_another_holder)
{
	ration_sem_t *s = create(name, 10), *s2;
	ck_assert_int_eq(ration_sem_open_shared(name + 1, 0, NULL, &s2),
			 0); /* no '/' */

	ck_assert_int_eq(ration_sem_acquire(s, NULL, 6), 0);
	ck_assert_int_eq(ration_sem_available(s2), 4);
	ck_assert_int_eq(ration_sem_try_acquire(s2, 5), -EAGAIN);
	ck_assert_int_eq(ration_sem_release(s2, 1),
			 -EOVERFLOW); /* s2 holds nothing */
	ck_assert_int_eq(ration_sem_release(s, INT64_MAX), -EOVERFLOW);
	ck_assert_int_eq(
		ration_sem_acquire_until(s2, ration_now() + 20 * MS, 5),
		-ETIMEDOUT);

	ration_sem_stats_t st;
	ration_sem_stats(s2, &st);
	ck_assert_int_eq(st.size, 10);
	ck_assert_int_eq(st.in_use, 6);
	ck_assert_uint_eq(st.timeouts, 1);
	ck_assert_str_eq(st.name, name + 1);

	ck_assert_int_eq(ration_sem_resize(s2, 3),
			 0); /* deficit of 3, seen by s */
	ck_assert_int_eq(ration_sem_available(s), -3);
	ck_assert_int_eq(ration_sem_release(s, 6), 0);
	ration_sem_close(s2);
	ck_assert_int_eq(ration_sem_acquire(s, NULL, 1), -EPIPE);
	ck_assert_int_eq(ration_sem_free(s2), 0);
	ck_assert_int_eq(ration_sem_free(s), 0);
	ck_assert_int_eq(ration_sem_unlink_shared(name), 0);
}
END_TEST

/* Weights are 64-bit, up to RATION_SEM_MAX, on the fast path and off it. */
START_TEST(test_shared_weights_are_64_bit)
{
	ration_sem_t *s = create(name, RATION_SEM_MAX);
	const int64_t big = (int64_t)1 << 60;

	ck_assert_int_eq(ration_sem_acquire(s, NULL, big), 0);
	ck_assert_int_eq(ration_sem_available(s), RATION_SEM_MAX - big);
	ck_assert_int_eq(ration_sem_try_acquire(s, RATION_SEM_MAX - big + 1),
			 -EAGAIN);
	ck_assert_int_eq(ration_sem_acquire(s, NULL, RATION_SEM_MAX - big), 0);
	ck_assert_int_eq(ration_sem_available(s), 0);
	ck_assert_int_eq(ration_sem_release(s, INT64_MAX), -EOVERFLOW);
	ck_assert_int_eq(ration_sem_release(s, RATION_SEM_MAX), 0);
	ck_assert_int_eq(ration_sem_acquire(s, NULL, RATION_SEM_MAX), 0);
	ck_assert_int_eq(ration_sem_acquire(s, NULL, INT64_MAX), -E2BIG);
	ck_assert_int_eq(ration_sem_release(s, RATION_SEM_MAX), 0);
	ration_sem_stats_t st;
	ration_sem_stats(s, &st);
	ck_assert_int_eq(st.available, RATION_SEM_MAX);
	ck_assert_int_eq(st.max_in_use, RATION_SEM_MAX);
	ck_assert_uint_eq(st.acquired, 3);
	ck_assert_int_eq(ration_sem_free(s), 0);
	ck_assert_int_eq(ration_sem_unlink_shared(name), 0);
}
END_TEST

START_TEST(test_shared_mode_is_applied)
{
	char path[96];
	ration_shared_opts_t o = {.create = true, .mode = 0640};
	ration_sem_t *s;
	ck_assert_int_eq(ration_sem_open_shared(name, 1, &o, &s), 0);
	struct stat st;
	snprintf(path, sizeof(path), "/dev/shm%s", name);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0640);
	ck_assert_int_eq(ration_sem_free(s), 0);
	ck_assert_int_eq(ration_sem_unlink_shared(name), 0);

	/* Only permission bits: no setuid, setgid or sticky object, and
	 * nothing is created. */
	static const unsigned bad[] = {0xffffffffu, 04777, 02600, 01600,
				       010600};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		o.mode = bad[i];
		ck_assert_int_eq(ration_sem_open_shared(name, 1, &o, &s),
				 -EINVAL);
		ck_assert_int_eq(stat(path, &st), -1);
	}
	o.mode = 0777;
	ck_assert_int_eq(ration_sem_open_shared(name, 1, &o, &s), 0);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_mode & 07777, 0777);
	ck_assert_int_eq(ration_sem_free(s), 0);
	ck_assert_int_eq(ration_sem_unlink_shared(name), 0);
}
END_TEST

/* Another user (nobody) is refused by mode 0600 and let in by 0606. */
static int
child_open_as_nobody(void *arg)
{
	struct job *j = arg;
	if (setgid(65534) != 0 || setuid(65534) != 0)
		return 77; /* cannot drop privileges here: skip */
	ration_sem_t *s;
	int rc = ration_sem_open_shared(j->name, 0, NULL, &s);
	if (rc == 0)
		rc = ration_sem_free(s);
	return rc;
}

START_TEST(test_shared_mode_refuses_other_users)
{
	ration_sem_t *s, *t;
	ration_shared_opts_t o = {.create = true}; /* mode 0 = 0600 */
	ck_assert_int_eq(ration_sem_open_shared(name, 1, &o, &s), 0);
	struct job j = {.name = name};
	int rc = reap(spawn(child_open_as_nobody, &j));
	if (getuid() == 0)
		ck_assert_int_eq(rc, -EACCES);
	ck_assert_int_eq(ration_sem_free(s), 0);
	ck_assert_int_eq(ration_sem_unlink_shared(name), 0);

	o.mode = 0606;
	ck_assert_int_eq(ration_sem_open_shared(name, 1, &o, &t), 0);
	rc = reap(spawn(child_open_as_nobody, &j));
	if (getuid() == 0)
		ck_assert_int_eq(rc, 0);
	ck_assert_int_eq(ration_sem_free(t), 0);
	ck_assert_int_eq(ration_sem_unlink_shared(name), 0);
}
END_TEST

/* ---- fifo / occupancy ---- */

/* No grant for a while: the next one must not have barged in. */
static void
assert_grants_stay(struct scratch *sc, int k)
{
	sleep_ns(30 * MS);
	ck_assert_int_eq(atomic_load(&sc->nclaimed), k);
}

START_TEST(test_shared_fifo_across_processes)
{
	ration_sem_t *s = create(name, 10);
	struct scratch *sc = scratch_new();
	ck_assert_int_eq(ration_sem_acquire(s, NULL, 10), 0);
	/* Queue 6, 5, 1, 5 in this order, one process each. */
	int64_t want[4] = {6, 5, 1, 5};
	struct job jobs[4];
	pid_t pid[4];
	for (int i = 0; i < 4; i++) {
		jobs[i] = (struct job){
			.name = name, .sc = sc, .n = want[i], .index = i};
		pid[i] = spawn(child_wait_log, &jobs[i]);
		wait_waiters(s, i + 1);
	}

	/* 10 free: 6 goes; 5 does not fit in 4, and the 1 behind it, which
	 * would fit, must not pass it. */
	ck_assert_int_eq(ration_sem_release(s, 10), 0);
	WAIT_FOR(atomic_load(&sc->norder) == 1);
	ck_assert_int_eq(atomic_load(&sc->order[0]), 0);
	assert_grants_stay(sc, 1);
	/* 6 back: 5 and 1 go (4 left); the last 5 waits. */
	atomic_fetch_or(&sc->go, 1 << 0);
	WAIT_FOR(atomic_load(&sc->norder) == 3);
	ck_assert_int_eq(
		atomic_load(&sc->order[1]) + atomic_load(&sc->order[2]), 1 + 2);
	assert_grants_stay(sc, 3);
	atomic_fetch_or(&sc->go, 1 << 1);
	WAIT_FOR(atomic_load(&sc->norder) == 4);
	ck_assert_int_eq(atomic_load(&sc->order[3]), 3);
	atomic_fetch_or(&sc->go, (1 << 2) | (1 << 3));

	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(reap(pid[i]), 0);
	ck_assert_int_eq(ration_sem_available(s), 10);
	ck_assert_int_eq(ration_sem_free(s), 0);
	ck_assert_int_eq(ration_sem_unlink_shared(name), 0);
}
END_TEST

START_TEST(test_shared_weights_never_exceed_size)
{
	ration_sem_t *s = create(name, 8);
	struct scratch *sc = scratch_new();
	struct job j = {.name = name,
			.sc = sc,
			.n = 8,
			.rounds = (int)stress_rounds(400)};
	pid_t pid[4];
	for (int i = 0; i < 4; i++)
		pid[i] = spawn(child_occupancy, &j);
	atomic_store(&sc->go, 1);

	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(reap(pid[i]), 0);
	ck_assert_int_eq(atomic_load(&sc->violations), 0);
	ration_sem_stats_t st;
	ration_sem_stats(s, &st);
	ck_assert_int_eq(st.available, 8);
	ck_assert_int_le(st.max_in_use, 8);
	ck_assert_uint_eq(st.acquired, 4 * (uint64_t)j.rounds);
	ck_assert_int_eq(ration_sem_free(s), 0);
	ck_assert_int_eq(ration_sem_unlink_shared(name), 0);
}
END_TEST

/* ---- crash recovery ---- */

struct killer {
	pid_t victim;
	int64_t delay_ns;
	int64_t killed_at;
};

static void *
killer_main(void *arg)
{
	struct killer *k = arg;
	sleep_ns(k->delay_ns);
	k->killed_at = ration_now();
	kill(k->victim, SIGKILL);
	return NULL;
}

/* Queue for @n in this process while another thread SIGKILLs @victim;
 * assert the grant came within RECOVERY_NS of the kill. */
static void
wait_through_kill(ration_sem_t *s, pid_t victim, int64_t n, const char *what)
{
	struct killer k = {.victim = victim, .delay_ns = 30 * MS};
	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, NULL, killer_main, &k), 0);
	int rc = ration_sem_acquire_until(s, ration_now() + TEST_WAIT_NS, n);
	int64_t granted_at = ration_now();
	pthread_join(t, NULL);
	ck_assert_int_eq(rc, 0);
	fprintf(stderr, "recovery: %s: weight back %.2f ms after SIGKILL\n",
		what, (double)(granted_at - k.killed_at) / 1e6);
	ck_assert_msg(granted_at - k.killed_at < RECOVERY_NS,
		      "weight back %lld ns after the kill",
		      (long long)(granted_at - k.killed_at));
	ck_assert_int_eq(reap(victim), 1000 + SIGKILL);
}

START_TEST(test_shared_killed_holder_weight_returns)
{
	ration_sem_t *s = create(name, 10);
	struct scratch *sc = scratch_new();
	struct job j = {.name = name, .sc = sc, .n = 7};
	pid_t victim = spawn(child_hold, &j);
	WAIT_FOR(atomic_load(&sc->ready));
	ck_assert_int_eq(ration_sem_available(s), 3);

	wait_through_kill(s, victim, 10, "holder");

	ck_assert_int_eq(ration_sem_release(s, 10), 0);
	ck_assert_int_eq(ration_sem_available(s), 10);
	ck_assert_int_eq(ration_sem_free(s), 0);
	ck_assert_int_eq(ration_sem_unlink_shared(name), 0);
}
END_TEST

START_TEST(test_shared_killed_head_waiter_gives_up_its_place)
{
	ration_sem_t *s = create(name, 10);
	struct scratch *sc = scratch_new();
	ck_assert_int_eq(ration_sem_acquire(s, NULL, 8), 0);
	struct job j = {.name = name, .sc = sc, .n = 5, .hold_ns = 0};
	pid_t victim = spawn(child_acquire_log, &j); /* head: 5 > 2 free */
	wait_waiters(s, 1);

	wait_through_kill(s, victim, 2,
			  "head waiter"); /* fits, but queued behind the head */

	ck_assert_int_eq(sem_waiters(s), 0);
	ck_assert_int_eq(atomic_load(&sc->norder), 0);
	ck_assert_int_eq(ration_sem_release(s, 10), 0);
	ck_assert_int_eq(ration_sem_available(s), 10);
	ck_assert_int_eq(ration_sem_free(s), 0);
	ck_assert_int_eq(ration_sem_unlink_shared(name), 0);
}
END_TEST

/* Granted while stopped: the weight sits in its GRANTED waiter slot, not
 * yet moved to its holder. Killed there, it must still come back. */
START_TEST(test_shared_killed_after_grant_before_taking_it)
{
	ration_sem_t *s = create(name, 10);
	struct scratch *sc = scratch_new();
	ck_assert_int_eq(ration_sem_acquire(s, NULL, 10), 0);
	struct job j = {.name = name, .sc = sc, .n = 5};
	pid_t victim = spawn(child_acquire_log, &j);
	wait_waiters(s, 1);
	int status;
	ck_assert_int_eq(kill(victim, SIGSTOP), 0);
	ck_assert_int_eq(waitpid(victim, &status, WUNTRACED), victim);
	ck_assert(WIFSTOPPED(status));

	ck_assert_int_eq(ration_sem_release(s, 10),
			 0); /* grants the stopped child */
	ck_assert_int_eq(ration_sem_available(s), 5);
	ck_assert_int_eq(sem_waiters(s), 0);
	wait_through_kill(s, victim, 10, "after grant");

	ck_assert_int_eq(atomic_load(&sc->norder), 0); /* it never ran again */
	ck_assert_int_eq(ration_sem_release(s, 10), 0);
	ck_assert_int_eq(ration_sem_available(s), 10);
	ck_assert_int_eq(ration_sem_free(s), 0);
	ck_assert_int_eq(ration_sem_unlink_shared(name), 0);
}
END_TEST

/* Take 3 on the fast path, then stop as if killed inside the next fast
 * acquire (of 2) between its CAS of the word and its lane store: the word
 * is 2 short of what the lane says, the lane busy. */
static int
child_die_in_fast_path(void *arg)
{
	struct job *j = arg;
	ration_sem_t *s = child_open(j->name);
	if (ration_sem_acquire(s, NULL, 3) != 0)
		return 1;
	int fd = shm_open(j->name, O_RDWR, 0);
	struct shm_seg *g = mmap(NULL, sizeof(*g), PROT_READ | PROT_WRITE,
				 MAP_SHARED, fd, 0);
	if (g == MAP_FAILED)
		return 2;
	struct shm_lane *l = own_lane(g, s);
	if (l == NULL || atomic_load(&l->held) != 3)
		return 3; /* the acquire did not take the fast path */
	atomic_store(&l->busy, 1);
	atomic_fetch_sub(&g->word, 2 * 2);
	atomic_store(&j->sc->ready, 1);
	for (;;)
		pause();
}

START_TEST(test_shared_killed_inside_fast_path_is_recovered)
{
	ration_sem_t *s = create(name, 10);
	struct scratch *sc = scratch_new();
	struct job j = {.name = name, .sc = sc};
	pid_t victim = spawn(child_die_in_fast_path, &j);
	WAIT_FOR(atomic_load(&sc->ready) ||
		 waitpid(victim, NULL, WNOHANG) != 0);
	ck_assert_int_eq(atomic_load(&sc->ready), 1);
	ck_assert_int_eq(ration_sem_available(s), 5);

	wait_through_kill(s, victim, 10, "inside the fast path");

	ck_assert_int_eq(ration_sem_release(s, 10), 0);
	ck_assert_int_eq(ration_sem_available(s), 10);
	ck_assert_int_eq(ration_sem_free(s), 0);
	ck_assert_int_eq(ration_sem_unlink_shared(name), 0);
}
END_TEST

/* A live thread stopped inside the fast path (lane busy) holds up a
 * recount: nothing is granted on counts it cannot trust; once the thread
 * goes on, the dead process's weight comes back. */
START_TEST(test_shared_busy_lane_delays_but_never_overgrants)
{
	ration_sem_t *s = create(name, 10);
	struct scratch *sc = scratch_new();
	struct job j = {.name = name, .sc = sc, .n = 6};
	pid_t victim = spawn(child_hold, &j);
	WAIT_FOR(atomic_load(&sc->ready));
	ck_assert_int_eq(ration_sem_try_acquire(s, 1), 0); /* binds our lane */
	struct shm_seg *g = map_seg(name);
	struct shm_lane *l = own_lane(g, s);
	ck_assert_ptr_nonnull(l);
	atomic_store(&l->busy, 1); /* "stopped" between CAS and store */
	kill_and_reap(victim);

	ck_assert_int_eq(ration_sem_acquire_until(s, ration_now() + 60 * MS, 9),
			 -ETIMEDOUT);
	ck_assert_int_eq(ration_sem_try_acquire(s, 1), -EAGAIN);
	ck_assert_uint_eq(g->dirty, 1);
	atomic_store(&l->busy, 0); /* it goes on */
	ck_assert_int_eq(
		ration_sem_acquire_until(s, ration_now() + TEST_WAIT_NS, 9), 0);
	ck_assert_int_eq(ration_sem_available(s), 0);

	ck_assert_int_eq(ration_sem_release(s, 10), 0);
	ck_assert_int_eq(ration_sem_available(s), 10);
	munmap(g, sizeof(*g));
	ck_assert_int_eq(ration_sem_free(s), 0);
	ck_assert_int_eq(ration_sem_unlink_shared(name), 0);
}
END_TEST

/* Hold 6, then take the segment's mutex itself and wait to be killed. */
static int
child_die_in_mutex(void *arg)
{
	struct job *j = arg;
	ration_sem_t *s = child_open(j->name);
	if (ration_sem_acquire(s, NULL, j->n) != 0)
		return 1;
	int fd = shm_open(j->name, O_RDWR, 0);
	struct shm_seg *g = mmap(NULL, sizeof(*g), PROT_READ | PROT_WRITE,
				 MAP_SHARED, fd, 0);
	if (g == MAP_FAILED || pthread_mutex_lock(&g->mu) != 0)
		return 2;
	atomic_store(&j->sc->ready, 1);
	for (;;)
		pause();
}

START_TEST(test_shared_killed_inside_mutex_is_recovered)
{
	ration_sem_t *s = create(name, 10);
	struct scratch *sc = scratch_new();
	struct job j = {.name = name, .sc = sc, .n = 6};
	pid_t victim = spawn(child_die_in_mutex, &j);
	WAIT_FOR(atomic_load(&sc->ready));

	wait_through_kill(s, victim, 10,
			  "inside the mutex"); /* EOWNERDEAD, then a recount */

	ck_assert_int_eq(ration_sem_try_acquire(s, 1), -EAGAIN);
	ck_assert_int_eq(ration_sem_release(s, 10), 0);
	ck_assert_int_eq(ration_sem_try_acquire(s, 10), 0);
	ck_assert_int_eq(ration_sem_release(s, 10), 0);
	ck_assert_int_eq(ration_sem_free(s), 0);
	ck_assert_int_eq(ration_sem_unlink_shared(name), 0);
}
END_TEST

/* A slot USED with nobody holding its lock belongs to a dead process,
 * whatever else it says: it must be reclaimed (no pid is looked at). */
START_TEST(test_shared_unlocked_slots_are_reclaimed)
{
	ration_sem_t *s = create(name, 10);
	struct shm_seg *g = map_seg(name);
	ck_assert_int_eq(pthread_mutex_lock(&g->mu), 0);
	for (int i = 0; i < 2; i++) {
		struct shm_holder *h = &g->holder[SHM_HOLDERS - 1 - i];
		ck_assert_uint_eq(atomic_load(&h->state), SLOT_FREE);
		h->token = 1000 + (uint64_t)i;
		atomic_store(&h->held, 4);
		atomic_store(&h->state, SLOT_USED);
	}
	struct shm_lane *l = &g->lane[SHM_LANES - 1]; /* and a fast-path lane */
	ck_assert_uint_eq(atomic_load(&l->state), SLOT_FREE);
	l->holder = SHM_HOLDERS - 2;
	atomic_store(&l->token, 1001);
	atomic_store(&l->held, 1);
	atomic_store(&l->busy, 1); /* as if killed between CAS and store */
	atomic_store(&l->state, SLOT_USED);
	atomic_store(&g->word, 1 * 2); /* avail 10 - 4 - 4 - 1 */
	pthread_mutex_unlock(&g->mu);
	ck_assert_int_eq(ration_sem_available(s), 1);

	int64_t t0 = ration_now();
	ck_assert_int_eq(
		ration_sem_acquire_until(s, ration_now() + TEST_WAIT_NS, 10),
		0);
	ck_assert_int_lt(ration_now() - t0, RECOVERY_NS);

	ck_assert_int_eq(ration_sem_release(s, 10), 0);
	ck_assert_int_eq(ration_sem_available(s), 10);
	munmap(g, sizeof(*g));
	ck_assert_int_eq(ration_sem_free(s), 0);
	ck_assert_int_eq(ration_sem_unlink_shared(name), 0);
}
END_TEST

/* ---- deadline / cancel / close / resize across processes ---- */

static void *
cancel_later(void *arg)
{
	sleep_ns(30 * MS);
	ration_ctx_cancel(arg);
	return NULL;
}

START_TEST(test_shared_deadline_and_cancel_while_other_process_holds)
{
	ration_sem_t *s = create(name, 4);
	struct scratch *sc = scratch_new();
	struct job j = {.name = name, .sc = sc, .n = 4};
	pid_t holder = spawn(child_hold, &j);
	WAIT_FOR(atomic_load(&sc->ready));

	int64_t t0 = ration_now();
	ck_assert_int_eq(ration_sem_acquire_until(s, t0 + 50 * MS, 1),
			 -ETIMEDOUT);
	int64_t dt = ration_now() - t0;
	ck_assert_int_ge(dt, 50 * MS);
	ck_assert_int_lt(dt, 50 * MS + TEST_LATE_NS);

	ration_ctx_t *ctx;
	pthread_t t;
	ck_assert_int_eq(ration_ctx_with_cancel(NULL, &ctx), 0);
	ck_assert_int_eq(pthread_create(&t, NULL, cancel_later, ctx), 0);
	t0 = ration_now();
	ck_assert_int_eq(ration_sem_acquire(s, ctx, 1), -ECANCELED);
	ck_assert_int_lt(ration_now() - t0, 30 * MS + TEST_LATE_NS);
	pthread_join(t, NULL);
	ck_assert_int_eq(ration_sem_acquire(s, ctx, 1),
			 -ECANCELED); /* done ctx */
	ration_ctx_unref(ctx);

	ration_sem_stats_t st;
	ration_sem_stats(s, &st);
	ck_assert_int_eq(st.waiters, 0);
	ck_assert_uint_eq(st.timeouts, 1);
	ck_assert_uint_eq(st.cancels, 1);
	kill_and_reap(holder);
	WAIT_FOR(ration_sem_try_acquire(s, 4) == 0); /* reclaimed on demand */
	ck_assert_int_eq(ration_sem_release(s, 4), 0);
	ck_assert_int_eq(ration_sem_free(s), 0);
	ck_assert_int_eq(ration_sem_unlink_shared(name), 0);
}
END_TEST

START_TEST(test_shared_waiter_in_child_times_out_closes_and_e2big)
{
	ration_sem_t *s = create(name, 10);
	struct scratch *sc = scratch_new();
	ck_assert_int_eq(ration_sem_acquire(s, NULL, 10), 0);

	struct job a = {.name = name,
			.sc = sc,
			.n = 3,
			.deadline_ns = ration_now() + 40 * MS};
	ck_assert_int_eq(reap(spawn(child_acquire_log, &a)), -ETIMEDOUT);

	struct job b = {.name = name, .sc = sc, .n = 8};
	pid_t pb = spawn(child_acquire_log, &b);
	wait_waiters(s, 1);
	ck_assert_int_eq(ration_sem_resize(s, 5), 0); /* 8 > 5: fails at once */
	ck_assert_int_eq(reap(pb), -E2BIG);
	ck_assert_int_eq(ration_sem_available(s), -5);

	struct job c = {.name = name, .sc = sc, .n = 2};
	pid_t pc = spawn(child_acquire_log, &c);
	wait_waiters(s, 1);
	ration_sem_close(s);
	ck_assert_int_eq(reap(pc), -EPIPE);
	ck_assert_int_eq(ration_sem_release(s, 10),
			 0); /* release works closed */
	ck_assert_int_eq(ration_sem_available(s), 5);
	ck_assert_int_eq(ration_sem_free(s), 0);
	ck_assert_int_eq(ration_sem_unlink_shared(name), 0);
}
END_TEST

/* ---- threads: the fast path's lanes ---- */

struct lane_job {
	ration_sem_t *s;
	_Atomic int phase;
};

static void *
take_and_wait(void *arg)
{
	struct lane_job *j = arg;
	if (ration_sem_acquire(j->s, NULL, 4) != 0)
		return (void *)1;
	atomic_store(&j->phase, 1);
	while (atomic_load(&j->phase) != 2)
		sleep_ns(100000);
	return NULL;
}

/* Weight taken by one thread (fast path, its lane) may be released by
 * another (slow path, the handle's holder); the thread's exit folds its
 * lane into the holder, and the handle is then idle. */
START_TEST(test_shared_weight_taken_by_one_thread_released_by_another)
{
	ration_sem_t *s = create(name, 10);
	struct lane_job j = {.s = s};
	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, NULL, take_and_wait, &j), 0);
	WAIT_FOR(atomic_load(&j.phase) == 1);
	ck_assert_int_eq(ration_sem_available(s), 6);
	ck_assert_int_eq(ration_sem_free(s), -EBUSY);

	ck_assert_int_eq(ration_sem_release(s, 5), -EOVERFLOW);
	ck_assert_int_eq(ration_sem_release(s, 4), 0);
	ck_assert_int_eq(ration_sem_available(s), 10);
	ck_assert_int_eq(ration_sem_release(s, 1), -EOVERFLOW);
	atomic_store(&j.phase, 2);
	void *ret;
	pthread_join(t, &ret);
	ck_assert_ptr_null(ret);

	ration_sem_stats_t st;
	ration_sem_stats(s, &st);
	ck_assert_uint_eq(st.acquired, 1);
	ck_assert_int_eq(st.in_use, 0);
	ck_assert_int_eq(ration_sem_release(s, 1), -EOVERFLOW);
	ck_assert_int_eq(ration_sem_free(s), 0);
	ck_assert_int_eq(ration_sem_unlink_shared(name), 0);
}
END_TEST

struct hammer {
	ration_sem_t *s;
	int64_t size;
	long rounds;
	_Atomic int64_t *occupancy;
	_Atomic int *violations;
};

static void *
hammer_main(void *arg)
{
	struct hammer *h = arg;
	unsigned seed = (unsigned)(uintptr_t)&seed;
	for (long i = 0; i < h->rounds; i++) {
		int64_t n = 1 + rand_r(&seed) % h->size;
		int rc = i % 3 == 0 ? ration_sem_try_acquire(h->s, n)
				    : ration_sem_acquire(h->s, NULL, n);
		if (rc == -EAGAIN)
			continue;
		if (rc != 0)
			return (void *)1;
		if (atomic_fetch_add(h->occupancy, n) + n > h->size)
			atomic_fetch_add(h->violations, 1);
		atomic_fetch_sub(h->occupancy, n);
		if (ration_sem_release(h->s, n) != 0)
			return (void *)2;
	}
	return NULL;
}

/* Threads of one process on the fast and slow paths at once: the
 * occupancy never exceeds the size and the counts come out exact. */
START_TEST(test_shared_threads_mix_fast_and_slow_paths)
{
	ration_sem_t *s = create(name, 6);
	_Atomic int64_t occ = 0;
	_Atomic int viol = 0;
	struct hammer h = {.s = s,
			   .size = 6,
			   .rounds = stress_rounds(20000),
			   .occupancy = &occ,
			   .violations = &viol};
	pthread_t t[4];
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, hammer_main, &h),
				 0);
	for (int i = 0; i < 4; i++) {
		void *ret;
		pthread_join(t[i], &ret);
		ck_assert_ptr_null(ret);
	}
	ck_assert_int_eq(atomic_load(&viol), 0);
	ration_sem_stats_t st;
	ration_sem_stats(s, &st);
	ck_assert_int_eq(st.available, 6);
	ck_assert_int_eq(st.waiters, 0);
	ck_assert_int_le(st.max_in_use, 6);
	ck_assert_int_eq(ration_sem_free(s), 0);
	ck_assert_int_eq(ration_sem_unlink_shared(name), 0);
}
END_TEST

/* ---- segments ---- */

START_TEST(test_shared_bad_segments_are_refused)
{
	ration_sem_t *s, *t;
	s = create(name, 4);
	struct shm_seg *g = map_seg(name);

	g->version = SHM_VERSION + 1;
	ck_assert_int_eq(ration_sem_open_shared(name, 0, NULL, &t), -EPROTO);
	g->version = SHM_VERSION;
	g->seg_size += 8;
	ck_assert_int_eq(ration_sem_open_shared(name, 0, NULL, &t), -EPROTO);
	g->seg_size -= 8;
	ck_assert_int_eq(ration_sem_open_shared(name, 0, NULL, &t), 0);
	ck_assert_int_eq(ration_sem_free(t), 0);
	munmap(g, sizeof(*g));
	ck_assert_int_eq(ration_sem_free(s), 0);

	int fd = shm_open(name, O_RDWR, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, 4096), 0); /* truncated */
	close(fd);
	ck_assert_int_eq(ration_sem_open_shared(name, 0, NULL, &t), -EPROTO);
	ck_assert_int_eq(ration_sem_unlink_shared(name), 0);

	/* Not ours at all: another program's object of the right size. */
	fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, sizeof(struct shm_seg)), 0);
	ck_assert_int_eq(pwrite(fd, "not ration", 10, 0), 10);
	close(fd);
	ck_assert_int_eq(ration_sem_open_shared(name, 0, NULL, &t), -EPROTO);
	ck_assert_int_eq(ration_sem_unlink_shared(name), 0);
}
END_TEST

START_TEST(test_shared_unlink_keeps_open_handles)
{
	ration_sem_t *t;
	ration_sem_t *s = create(name, 4);
	ck_assert_int_eq(ration_sem_unlink_shared(name), 0);
	ck_assert_int_eq(ration_sem_open_shared(name, 0, NULL, &t), -ENOENT);
	ck_assert_int_eq(ration_sem_acquire(s, NULL, 4), 0);
	ck_assert_int_eq(ration_sem_release(s, 4), 0);
	ck_assert_int_eq(ration_sem_free(s), 0);
}
END_TEST

static int
child_create_race(void *arg)
{
	struct job *j = arg;
	ration_shared_opts_t o = {.create = true};
	ration_sem_t *s;
	atomic_fetch_add(&j->sc->ready, 1);
	while (!atomic_load(&j->sc->go))
		;
	int rc = ration_sem_open_shared(j->name, 5, &o, &s);
	if (rc != 0)
		return rc;
	if ((rc = ration_sem_acquire(s, NULL, 1)) != 0)
		return rc;
	if ((rc = ration_sem_release(s, 1)) != 0)
		return rc;
	return ration_sem_free(s);
}

START_TEST(test_shared_concurrent_create_is_safe)
{
	struct scratch *sc = scratch_new();
	struct job j = {.name = name, .sc = sc};
	pid_t pid[6];
	for (int i = 0; i < 6; i++)
		pid[i] = spawn(child_create_race, &j);
	WAIT_FOR(atomic_load(&sc->ready) == 6);
	atomic_store(&sc->go, 1);

	for (int i = 0; i < 6; i++)
		ck_assert_int_eq(reap(pid[i]), 0);
	ration_sem_t *s;
	ck_assert_int_eq(ration_sem_open_shared(name, 0, NULL, &s), 0);
	ration_sem_stats_t st;
	ration_sem_stats(s, &st);
	ck_assert_int_eq(st.size, 5);
	ck_assert_int_eq(st.available, 5);
	ck_assert_uint_eq(st.acquired, 6);
	ck_assert_int_eq(ration_sem_free(s), 0);
	ck_assert_int_eq(ration_sem_unlink_shared(name), 0);
}
END_TEST

/* ---- leases and fork ---- */

static int
child_leases(void *arg)
{
	struct job *j = arg;
	ration_sem_t *s = child_open(j->name);
	for (int i = 0; i < 4; i++) {
		ration_lease_t l;
		int rc = ration_sem_acquire_lease(s, NULL, 1, &l);
		if (rc != 0)
			return rc;
		atomic_store(&j->sc->fence[j->index * 4 + i], l.fence);
		if ((rc = ration_lease_release(s, &l)) != 0)
			return rc;
	}
	return ration_sem_free(s);
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

START_TEST(test_shared_lease_fences_increase_across_processes)
{
	ration_sem_t *s = create(name, 3);
	struct scratch *sc = scratch_new();
	ration_lease_t a, b;

	ck_assert_int_eq(ration_sem_acquire_lease(s, NULL, 2, &a), 0);
	ck_assert_int_eq(a.n, 2);
	ck_assert_int_eq(a.expires_ns, RATION_FOREVER);
	ck_assert_int_eq(ration_sem_acquire_lease(s, NULL, 1, &b), 0);
	ck_assert_uint_gt(b.fence, a.fence);
	ck_assert_int_eq(ration_lease_release(s, &a), 0);
	ck_assert_int_eq(ration_lease_release(s, &a), -ESTALE); /* twice */
	ration_lease_t forged = {.n = 1, .fence = b.fence + 100};
	ck_assert_int_eq(ration_lease_release(s, &forged), -ESTALE);

	/* A fork child does not own its parent's lease. */
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(-ration_lease_release(s, &b) == ESTALE &&
				      ration_sem_release(s, 1) == -EOVERFLOW
			      ? 0
			      : 1);
	ck_assert_int_eq(reap(pid), 0);
	ck_assert_int_eq(ration_lease_release(s, &b), 0);
	ck_assert_int_eq(ration_sem_available(s), 3);

	struct job jobs[3];
	pid_t pids[3];
	for (int i = 0; i < 3; i++) {
		jobs[i] = (struct job){.name = name, .sc = sc, .index = i};
		pids[i] = spawn(child_leases, &jobs[i]);
	}
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(reap(pids[i]), 0);
	uint64_t f[12];
	for (int i = 0; i < 12; i++)
		f[i] = atomic_load(&sc->fence[i]);
	qsort(f, 12, sizeof(f[0]), cmp_u64);
	ck_assert_uint_gt(f[0], b.fence);
	for (int i = 1; i < 12; i++)
		ck_assert_uint_gt(f[i], f[i - 1]); /* all distinct */
	ck_assert_int_eq(ration_sem_free(s), 0);
	ck_assert_int_eq(ration_sem_unlink_shared(name), 0);
}
END_TEST

START_TEST(test_shared_handle_inherited_over_fork_is_a_new_holder)
{
	ration_sem_t *s = create(name, 5);
	ck_assert_int_eq(ration_sem_acquire(s, NULL, 2), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int ok = ration_sem_release(s, 1) == -EOVERFLOW &&
			 ration_sem_acquire(s, NULL, 3) == 0 &&
			 ration_sem_available(s) == 0;
		_exit(ok ? 0 : 1); /* dies holding 3 */
	}
	ck_assert_int_eq(reap(pid), 0);
	ck_assert_int_eq(
		ration_sem_acquire_until(s, ration_now() + TEST_WAIT_NS, 3), 0);
	ck_assert_int_eq(ration_sem_release(s, 5), 0);
	ck_assert_int_eq(ration_sem_free(s), 0);
	ck_assert_int_eq(ration_sem_unlink_shared(name), 0);
}
END_TEST

static Suite *
shared_suite(void)
{
	Suite *s = suite_create("shared");
	TCase *tc;

	tc = tcase_create("args");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 20);
	tcase_add_test(tc, test_shared_bad_arguments_and_enoent);
	tcase_add_test(tc, test_shared_second_handle_is_another_holder);
	tcase_add_test(tc, test_shared_weights_are_64_bit);
	tcase_add_test(tc, test_shared_mode_is_applied);
	tcase_add_test(tc, test_shared_mode_refuses_other_users);
	suite_add_tcase(s, tc);

	tc = tcase_create("fifo");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_shared_fifo_across_processes);
	tcase_add_test(tc, test_shared_weights_never_exceed_size);
	suite_add_tcase(s, tc);

	tc = tcase_create("recovery");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_shared_killed_holder_weight_returns);
	tcase_add_test(tc, test_shared_killed_head_waiter_gives_up_its_place);
	tcase_add_test(tc, test_shared_killed_inside_mutex_is_recovered);
	tcase_add_test(tc, test_shared_unlocked_slots_are_reclaimed);
	tcase_add_test(tc, test_shared_killed_after_grant_before_taking_it);
	tcase_add_test(tc, test_shared_killed_inside_fast_path_is_recovered);
	tcase_add_test(tc, test_shared_busy_lane_delays_but_never_overgrants);
	suite_add_tcase(s, tc);

	tc = tcase_create("wait");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(
		tc, test_shared_deadline_and_cancel_while_other_process_holds);
	tcase_add_test(tc,
		       test_shared_waiter_in_child_times_out_closes_and_e2big);
	suite_add_tcase(s, tc);

	tc = tcase_create("threads");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(
		tc, test_shared_weight_taken_by_one_thread_released_by_another);
	tcase_add_test(tc, test_shared_threads_mix_fast_and_slow_paths);
	suite_add_tcase(s, tc);

	tc = tcase_create("segment");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_shared_bad_segments_are_refused);
	tcase_add_test(tc, test_shared_unlink_keeps_open_handles);
	tcase_add_test(tc, test_shared_concurrent_create_is_safe);
	suite_add_tcase(s, tc);

	tc = tcase_create("lease");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_shared_lease_fences_increase_across_processes);
	tcase_add_test(tc,
		       test_shared_handle_inherited_over_fork_is_a_new_holder);
	suite_add_tcase(s, tc);
	return s;
}

/* Remove whatever a failed test left in /dev/shm. */
int
main(void)
{
	runner_pid = getpid();
	int failed = run_suite(shared_suite());
	remove_leftovers();
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
