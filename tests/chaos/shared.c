/* shared.c - the chaos suite's shared-memory backend and its scenarios.
 * The runner maps the segment too (lib/shared/shm.h), to find the
 * process that owns its mutex. */
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdio.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <ration/shared.h>

#include "../../lib/shared/shm.h"
#include "chaos.h"

#define END_WAIT_NS ((int64_t)2 * 1000000000) /* recovery after the last kill */

static int
shm_setup(struct chaos_run *run)
{
	ration_shared_opts_t o = {.create = true};
	ration_sem_t *s;
	int rc = ration_sem_open_shared(run->name, run->size, &o, &s);
	if (rc != 0) {
		fprintf(stderr, "chaos: open_shared: %s\n",
			ration_strerror(rc));
		return 1;
	}
	ration_sem_free(s);
	int fd = shm_open(run->name, O_RDWR, 0);
	struct shm_seg *g =
		fd < 0 ? MAP_FAILED
		       : mmap(NULL, sizeof(*g), PROT_READ, MAP_SHARED, fd, 0);
	if (fd >= 0)
		close(fd);
	if (g == MAP_FAILED) {
		perror("chaos: map segment");
		ration_sem_unlink_shared(run->name);
		return 1;
	}
	run->backend_state = g;
	return 0;
}

static int
shm_open_worker(struct chaos_run *run, ration_sem_t **out)
{
	return ration_sem_open_shared(run->name, 0, NULL, out);
}

static int64_t
shm_held_at_end(struct chaos_run *run)
{
	ration_sem_t *s;
	if (ration_sem_open_shared(run->name, 0, NULL, &s) != 0)
		return -1;
	ration_sem_stats_t st;
	int64_t give_up = ration_now() + END_WAIT_NS;
	do {
		struct timespec ts = {.tv_nsec = 5000000};
		nanosleep(&ts, NULL);
		ration_sem_stats(s, &st); /* runs the dead scan */
	} while ((st.available != st.size || st.waiters != 0) &&
		 ration_now() < give_up);
	ration_sem_free(s);
	return st.size - st.available + st.waiters;
}

static void
shm_teardown(struct chaos_run *run)
{
	if (run->backend_state != NULL)
		munmap(run->backend_state, sizeof(struct shm_seg));
	ration_sem_unlink_shared(run->name);
}

static const struct chaos_backend shm_backend = {
	.name = "shared",
	.setup = shm_setup,
	.open = shm_open_worker,
	.held_at_end = shm_held_at_end,
	.teardown = shm_teardown,
};

static void
kill_holders_and_waiters(struct chaos_run *run)
{
	if (chaos_rand(run, 3) == 0)
		chaos_fault_kill_waiter(run);
	else
		chaos_fault_kill_holder(run);
}

static void
stop_holders_and_waiters(struct chaos_run *run)
{
	if (chaos_rand(run, 2) == 0)
		chaos_fault_stop_waiter(run);
	else
		chaos_fault_stop_holder(run);
}

/* Watch the segment's robust mutex for up to 30 ms; stop (or, one time in
 * three, kill) the worker whose thread owns it. Weights up to 8 of 10 in
 * this scenario keep callers queueing, i.e. on the mutex. */
static void
hit_mutex_owner(struct chaos_run *run)
{
	struct shm_seg *g = run->backend_state;
	int64_t give_up = ration_now() + 30 * CHAOS_MS;
	while (ration_now() < give_up) {
		/* glibc keeps the owner's tid in the lock word. */
		pid_t tid = (pid_t)(__atomic_load_n(&g->mu.__data.__lock,
						    __ATOMIC_RELAXED) &
				    FUTEX_TID_MASK);
		int i = tid != 0 ? chaos_worker_of_tid(run, tid) : -1;
		if (i >= 0 && !atomic_load(&run->led->w[i].stopped)) {
			if (chaos_rand(run, 3) == 0)
				chaos_kill(run, i);
			else
				chaos_stop(
					run, i,
					(int64_t)(100 + chaos_rand(run, 400)) *
						CHAOS_MS);
			return;
		}
		sched_yield(); /* a sleep would miss most holds of the mutex */
	}
}

const struct chaos_scenario chaos_shared_scenarios[] = {
	{"shm-kill", "SIGKILL holders and waiters", &shm_backend, 6, 2, 0, 10,
	 4, kill_holders_and_waiters, NULL},
	{"shm-stop", "SIGSTOP holders and waiters for 50-300 ms", &shm_backend,
	 6, 2, 0, 10, 4, stop_holders_and_waiters, NULL},
	{"shm-mutex-owner",
	 "SIGSTOP (100-500 ms) or SIGKILL the owner of the segment's mutex",
	 &shm_backend, 6, 2, 0, 10, 8, hit_mutex_owner, NULL},
	{"shm-main-exit",
	 "workers' main thread exits (zombie leader); SIGKILL holders",
	 &shm_backend, 6, 2, CHAOS_MAIN_EXIT, 10, 4, kill_holders_and_waiters,
	 NULL},
	{"shm-pidns",
	 "each worker pid 1 of its own PID namespace; SIGKILL holders",
	 &shm_backend, 6, 2, CHAOS_PIDNS, 10, 4, kill_holders_and_waiters,
	 NULL},
};
const unsigned chaos_shared_nscenarios =
	sizeof(chaos_shared_scenarios) / sizeof(chaos_shared_scenarios[0]);
