/* test_internal.c - the internal building blocks under the pool and group:
 * the queue lock (lib/internal/futex_mutex.h), the statistics clock
 * (stats_clock.h), the CPU count (cpu.h), the task queue (taskq.h), the
 * semaphore's spin budget (sem.h) and the per-thread counter slots
 * (tslot.h). Each is hidden behind the
 * public API, where a bug shows only as a rare hang or a wrong statistic;
 * here each is checked directly. */
#include <check.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"
#include "internal/cpu.h"
#include "internal/futex_mutex.h"
#include "internal/sem.h"
#include "internal/stats_clock.h"
#include "internal/taskq.h"
#include "internal/tslot.h"

/* ---- lock -------------------------------------------------------------- */

#define LOCK_THREADS 4

static struct ration__lock counter_lock = RATION__LOCK_INIT;
static long counter; /* counter_lock */
static int inside;   /* counter_lock: holders right now */
static long lock_rounds;

static void *
lock_hammer(void *arg)
{
	long id = (long)(intptr_t)arg;
	for (long i = 0; i < lock_rounds; i++) {
		ration__lock(&counter_lock);
		inside++;
		ck_assert_int_eq(inside, 1);
		/* Now and then hold it long enough that the others give up
		 * spinning and sleep on the futex: the wake path runs too. */
		if ((i + id) % 4096 == 0)
			sleep_ns(200000);
		counter++;
		inside--;
		ration__unlock(&counter_lock);
	}
	return NULL;
}

START_TEST(lock_excludes_and_wakes)
{
	pthread_t th[LOCK_THREADS];

	lock_rounds = stress_rounds(200000);
	counter = 0;
	for (long i = 0; i < LOCK_THREADS; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, lock_hammer,
						(void *)(intptr_t)i),
				 0);
	for (int i = 0; i < LOCK_THREADS; i++)
		pthread_join(th[i], NULL);
	ck_assert_int_eq(counter, LOCK_THREADS * lock_rounds);
	/* Free again, with no sleeper recorded. */
	ck_assert_uint_eq(atomic_load(&counter_lock.word), 0);
}
END_TEST

static struct ration__lock held_lock = RATION__LOCK_INIT;
static _Atomic int got_it;

static void *
lock_waiter(void *arg)
{
	(void)arg;
	ration__lock(&held_lock);
	atomic_store(&got_it, 1);
	ration__unlock(&held_lock);
	return NULL;
}

START_TEST(lock_sleeper_is_woken)
{
	pthread_t th;

	ration__lock(&held_lock);
	ck_assert_int_eq(pthread_create(&th, NULL, lock_waiter, NULL), 0);
	/* Long past the spin: the waiter is asleep and marked the word. */
	WAIT_FOR(atomic_load(&held_lock.word) == 2);
	sleep_ns(20000000);
	ck_assert_int_eq(atomic_load(&got_it), 0);
	ration__unlock(&held_lock);
	WAIT_FOR(atomic_load(&got_it) == 1);
	pthread_join(th, NULL);
	ck_assert_uint_eq(atomic_load(&held_lock.word), 0);
}
END_TEST

/* ---- ticks ------------------------------------------------------------- */

START_TEST(ticks_measure_nanoseconds)
{
	ration__ticks_init();
	for (int r = 0; r < 3; r++) {
		/* Clock pairs outside and inside the tick pair bracket it,
		 * however long any thread is preempted between the reads. */
		int64_t n0 = ration_now(), t0 = ration__ticks(),
			m0 = ration_now();
		sleep_ns(20000000);
		int64_t m1 = ration_now(), t1 = ration__ticks(),
			n1 = ration_now();
		int64_t by_ticks = ration__ticks_to_ns(t1 - t0);
		int64_t inner = m1 - m0, outer = n1 - n0;
		/* 0.5 %: the calibration error is ~0.03 %. */
		ck_assert_int_ge(by_ticks, inner - inner / 200);
		ck_assert_int_le(by_ticks, outer + outer / 200);
		ck_assert_int_ge(by_ticks, 20000000 - 100000);
	}
	ck_assert_int_eq(ration__ticks_to_ns(0), 0);
	ck_assert_int_le(ration__ticks_to_ns(-5), 0);
}
END_TEST

START_TEST(ticks_never_run_backwards_on_one_thread)
{
	ration__ticks_init();
	int64_t prev = ration__ticks();
	for (int i = 0; i < 1000000; i++) {
		int64_t t = ration__ticks();
		ck_assert_int_ge(t, prev);
		prev = t;
	}
}
END_TEST

/* ---- cpu --------------------------------------------------------------- */

START_TEST(ncpu_is_the_affinity_mask)
{
	cpu_set_t set;
	ck_assert_int_eq(sched_getaffinity(0, sizeof(set), &set), 0);
	ck_assert_uint_eq(ration__ncpu(), (unsigned)CPU_COUNT(&set));
	ck_assert(ration__may_spin() == (CPU_COUNT(&set) > 1));
}
END_TEST

/* ---- sem spin budget ---------------------------------------------------- */

static void *
acquire_one(void *arg)
{
	ck_assert_int_eq(ration_sem_acquire(arg, NULL, 1), 0);
	return NULL;
}

/* A head waiter whose spin runs out (nobody releases) cuts the semaphore's
 * spin budget (docs/sem.md, "Spinning"); with one CPU nobody spins. */
START_TEST(sem_lost_spin_cuts_the_spin_budget)
{
	ration_sem_t *s;
	ration_sem_stats_t st;
	pthread_t t;

	ck_assert_int_eq(ration_sem_new(1, NULL, &s), 0);
	ck_assert_int_eq(ration_sem_acquire(s, NULL, 1), 0);
	int32_t top = atomic_load_explicit(&s->spin_ns, memory_order_relaxed);
	ck_assert_int_eq(pthread_create(&t, NULL, acquire_one, s), 0);
	if (ration__may_spin()) {
		WAIT_FOR(atomic_load_explicit(&s->spin_ns,
					      memory_order_relaxed) < top);
	} else {
		WAIT_FOR((ration_sem_stats(s, &st), st.waiters == 1));
		sleep_ns(20 * MS);
		ck_assert_int_eq(
			atomic_load_explicit(&s->spin_ns, memory_order_relaxed),
			top);
	}
	ck_assert_int_eq(ration_sem_release(s, 1), 0);
	pthread_join(t, NULL);
	ck_assert_int_eq(ration_sem_release(s, 1), 0);
	ck_assert_int_eq(ration_sem_free(s), 0);
}
END_TEST

/* ---- tslot ------------------------------------------------------------- */

#define TSLOT_THREADS (RATION_TSLOTS + 3)

static pthread_barrier_t tslot_all_asked;

static void *
tslot_ask_alone(void *arg)
{
	*(unsigned *)arg = ration__tslot();
	return NULL;
}

static void *
tslot_ask(void *arg)
{
	unsigned *slot = arg;
	*slot = ration__tslot();
	/* Everyone alive at once: no slot can be handed back meanwhile. */
	pthread_barrier_wait(&tslot_all_asked);
	ck_assert_uint_eq(ration__tslot(), *slot); /* stable */
	return NULL;
}

/* Threads alive at the same time never share a slot (a slot's counters have
 * one writer); past RATION_TSLOTS threads get none; an exited thread's slot
 * goes to the next thread that asks. */
START_TEST(tslot_one_owner_each_and_handed_back_at_exit)
{
	pthread_t t[TSLOT_THREADS];
	unsigned slot[TSLOT_THREADS + 1];
	unsigned owners[RATION_TSLOTS] = {0};

	slot[TSLOT_THREADS] = ration__tslot(); /* this thread's */
	ck_assert_int_eq(
		pthread_barrier_init(&tslot_all_asked, NULL, TSLOT_THREADS), 0);
	for (int i = 0; i < TSLOT_THREADS; i++)
		ck_assert_int_eq(
			pthread_create(&t[i], NULL, tslot_ask, &slot[i]), 0);
	for (int i = 0; i < TSLOT_THREADS; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&tslot_all_asked);
	unsigned none = 0;
	for (int i = 0; i <= TSLOT_THREADS; i++) {
		ck_assert_uint_le(slot[i], RATION_TSLOTS);
		if (slot[i] == RATION_TSLOTS)
			none++;
		else
			ck_assert_uint_eq(owners[slot[i]]++, 0);
	}
	/* No other thread of this test holds a slot: all were given out. */
	ck_assert_uint_eq(none, TSLOT_THREADS + 1 - RATION_TSLOTS);
	/* The threads have exited: their slots are free again. */
	unsigned again;
	pthread_t u;
	ck_assert_int_eq(pthread_create(&u, NULL, tslot_ask_alone, &again), 0);
	pthread_join(u, NULL);
	ck_assert_uint_lt(again, RATION_TSLOTS);
	ck_assert_uint_ne(again, slot[TSLOT_THREADS]);
}
END_TEST

static pthread_barrier_t tslot_forked;

static void *
tslot_hold(void *arg)
{
	*(unsigned *)arg = ration__tslot();
	pthread_barrier_wait(&tslot_all_asked);
	pthread_barrier_wait(&tslot_forked); /* hold the slot until then */
	return NULL;
}

/* In a fork child the parent's other threads do not exist: their slots are
 * free there. The forking thread has no slot of its own, so the child's
 * first ask must find one (none would be left without the fork handler). */
static void *
tslot_fork_and_ask(void *arg)
{
	pid_t pid = fork();
	if (pid == 0)
		_exit(ration__tslot() < RATION_TSLOTS ? 0 : 1);
	int status;
	*(int *)arg = pid > 0 && waitpid(pid, &status, 0) == pid &&
		      WIFEXITED(status) && WEXITSTATUS(status) == 0;
	return NULL;
}

START_TEST(tslot_fork_child_frees_the_parents_other_slots)
{
	pthread_t t[RATION_TSLOTS], f;
	unsigned slot[RATION_TSLOTS];
	int ok = 0;

	(void)ration__tslot();
	ck_assert_int_eq(
		pthread_barrier_init(&tslot_all_asked, NULL, RATION_TSLOTS), 0);
	ck_assert_int_eq(
		pthread_barrier_init(&tslot_forked, NULL, RATION_TSLOTS), 0);
	/* This thread and RATION_TSLOTS - 1 holders: every slot is owned. */
	for (int i = 0; i < RATION_TSLOTS - 1; i++)
		ck_assert_int_eq(
			pthread_create(&t[i], NULL, tslot_hold, &slot[i]), 0);
	pthread_barrier_wait(&tslot_all_asked);
	ck_assert_int_eq(pthread_create(&f, NULL, tslot_fork_and_ask, &ok), 0);
	pthread_join(f, NULL);
	pthread_barrier_wait(&tslot_forked);
	for (int i = 0; i < RATION_TSLOTS - 1; i++) {
		pthread_join(t[i], NULL);
		ck_assert_uint_lt(slot[i], RATION_TSLOTS);
	}
	pthread_barrier_destroy(&tslot_all_asked);
	pthread_barrier_destroy(&tslot_forked);
	ck_assert(ok);
}
END_TEST

/* ---- taskq ------------------------------------------------------------- */

static void
noop(void *arg, int status)
{
	(void)arg;
	(void)status;
}

static void
push_n(struct queue *q, struct spares *sp, uintptr_t from, uintptr_t n)
{
	for (uintptr_t i = from; i < from + n; i++)
		ck_assert(queue_push(q, sp, noop, (void *)i));
}

static void
pop_expect(struct queue *q, struct spares *sp, uintptr_t from, uintptr_t n)
{
	for (uintptr_t i = from; i < from + n; i++) {
		ck_assert_uint_ne(q->len, 0);
		struct task t = queue_pop(q, sp);
		ck_assert(t.fn == noop);
		ck_assert_uint_eq((uintptr_t)t.arg, i);
	}
}

START_TEST(taskq_fifo_across_chunks)
{
	struct queue q = {0};
	struct spares sp = {0};

	/* Several chunks, drained past chunk boundaries while refilled. */
	push_n(&q, &sp, 0, 3 * CHUNK_TASKS + 7);
	pop_expect(&q, &sp, 0, CHUNK_TASKS + 3);
	push_n(&q, &sp, 3 * CHUNK_TASKS + 7, 2 * CHUNK_TASKS);
	pop_expect(&q, &sp, CHUNK_TASKS + 3, 4 * CHUNK_TASKS + 4);
	ck_assert_uint_eq(q.len, 0);
	ck_assert_uint_le(sp.n, SPARE_CHUNKS);
	queue_free(&q, &sp);
	ck_assert_ptr_null(q.first);
	ck_assert_ptr_null(sp.list);
}
END_TEST

START_TEST(taskq_empty_queue_keeps_its_chunk)
{
	struct queue q = {0};
	struct spares sp = {0};

	/* Oscillating around empty, as a pool keeping up with its submitter
	 * does: one chunk, rewound each time, no allocation, no spares. */
	for (uintptr_t i = 0; i < 10 * CHUNK_TASKS; i += 3) {
		push_n(&q, &sp, i, 3);
		pop_expect(&q, &sp, i, 3);
		ck_assert_uint_eq(q.head, 0);
		ck_assert_uint_eq(q.tail, 0);
	}
	ck_assert_ptr_nonnull(q.first);
	ck_assert_ptr_eq(q.first, q.last);
	ck_assert_uint_eq(sp.n, 0);
	/* Exactly one chunk's worth, popped to empty at the chunk's end. */
	push_n(&q, &sp, 0, CHUNK_TASKS);
	pop_expect(&q, &sp, 0, CHUNK_TASKS);
	ck_assert_ptr_eq(q.first, q.last);
	push_n(&q, &sp, 0, 1);
	pop_expect(&q, &sp, 0, 1);
	queue_free(&q, &sp);
}
END_TEST

static Suite *
internal_suite(void)
{
	Suite *s = suite_create("internal");
	TCase *tc = tcase_create("lock");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, lock_excludes_and_wakes);
	tcase_add_test(tc, lock_sleeper_is_woken);
	suite_add_tcase(s, tc);
	tc = tcase_create("tick");
	tcase_add_test(tc, ticks_measure_nanoseconds);
	tcase_add_test(tc, ticks_never_run_backwards_on_one_thread);
	suite_add_tcase(s, tc);
	tc = tcase_create("cpu");
	tcase_add_test(tc, ncpu_is_the_affinity_mask);
	suite_add_tcase(s, tc);
	tc = tcase_create("sem");
	tcase_add_test(tc, sem_lost_spin_cuts_the_spin_budget);
	suite_add_tcase(s, tc);
	tc = tcase_create("tslot");
	tcase_add_test(tc, tslot_one_owner_each_and_handed_back_at_exit);
	tcase_add_test(tc, tslot_fork_child_frees_the_parents_other_slots);
	suite_add_tcase(s, tc);
	tc = tcase_create("taskq");
	tcase_add_test(tc, taskq_fifo_across_chunks);
	tcase_add_test(tc, taskq_empty_queue_keeps_its_chunk);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	int failed = run_suite(internal_suite());
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
