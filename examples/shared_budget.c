/* shared_budget: one memory budget shared by separate processes, and what
 * happens when one of them is killed while holding part of it.
 *     build/examples/shared_budget --workers 4 --budget 64M
 * Each forked worker repeatedly takes a slice of the budget (its weight),
 * allocates and touches that much memory, frees it, and gives the slice
 * back. Worker 0 takes half the budget and is SIGKILLed while holding it;
 * the parent then asks for the whole budget and gets it as soon as the
 * survivors hand back their slices: the waiters noticed the death and
 * returned the half within 100 ms, with no daemon. Progress goes to
 * stderr, results to stdout. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ration.h>
#include <ration/shared.h>

#include "example_args.h"

static void
die_if(int rc, const char *what)
{
	if (rc != 0) {
		fprintf(stderr, "shared_budget: %s: %s\n", what,
			ration_strerror(rc));
		exit(1);
	}
}

static void
sleep_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000,
			      .tv_nsec = (ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

/* A worker: rounds of acquire slice, touch it, release. */
static int
worker(const char *name, int id, int64_t budget, int rounds)
{
	ration_sem_t *s;
	die_if(ration_sem_open_shared(name, 0, NULL, &s), "open (worker)");
	if (id == 0) {
		/* The victim: holds half the budget until it is killed. */
		die_if(ration_sem_acquire(s, NULL, budget / 2),
		       "acquire (victim)");
		for (;;)
			pause();
	}
	unsigned seed = (unsigned)getpid();
	for (int i = 0; i < rounds; i++) {
		int64_t n = budget / 16 +
			    (int64_t)(rand_r(&seed) % 4) * (budget / 16);
		ration_ctx_t *ctx;
		die_if(ration_ctx_with_timeout(NULL, 5 * (int64_t)1000000000,
					       &ctx),
		       "ctx");
		die_if(ration_sem_acquire(s, ctx, n), "acquire");
		ration_ctx_unref(ctx);
		char *mem = malloc((size_t)n);
		if (mem != NULL)
			memset(mem, id, (size_t)n);
		free(mem);
		sleep_ms(5);
		die_if(ration_sem_release(s, n), "release");
	}
	die_if(ration_sem_free(s), "free");
	return 0;
}

int
main(int argc, char **argv)
{
	int workers = 4, rounds = 40;
	int64_t budget = 64 << 20;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--workers") == 0 && i + 1 < argc)
			workers = atoi(argv[++i]);
		else if (strcmp(argv[i], "--budget") == 0 && i + 1 < argc)
			budget = parse_size(argv[++i]);
		else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
			rounds = atoi(argv[++i]);
		else {
			printf("usage: shared_budget [--workers N>=2] "
			       "[--budget 64M] [--rounds 40]\n");
			return strcmp(argv[i], "--help") == 0 ? 0 : 2;
		}
	}
	if (workers < 2 || workers > 64 || budget < 16 || rounds < 1) {
		fprintf(stderr, "shared_budget: bad arguments (--help)\n");
		return 2;
	}

	char name[64];
	snprintf(name, sizeof(name), "/ration-shared-budget-%d", (int)getpid());
	ration_shared_opts_t o = {.create = true, .mode = 0600};
	ration_sem_t *s;
	die_if(ration_sem_open_shared(name, budget, &o, &s), "create");

	pid_t pid[64];
	for (int i = 0; i < workers; i++) {
		pid[i] = fork();
		if (pid[i] < 0) {
			perror("fork");
			return 1;
		}
		if (pid[i] == 0)
			_exit(worker(name, i, budget, rounds));
	}
	/* Let the victim take its half and the others get going. */
	while (ration_sem_available(s) > budget / 2)
		sleep_ms(1);
	sleep_ms(50);

	ration_sem_stats_t st;
	ration_sem_stats(s, &st);
	printf("before kill: budget %lld MiB, in use %lld MiB (victim holds "
	       "%lld MiB), "
	       "%lld waiting\n",
	       (long long)(budget >> 20), (long long)(st.in_use >> 20),
	       (long long)(budget / 2 >> 20), (long long)st.waiters);

	int64_t t_kill = ration_now();
	kill(pid[0], SIGKILL);
	fprintf(stderr, "shared_budget: SIGKILLed worker 0 (pid %d)\n",
		(int)pid[0]);
	/* Ask for the whole budget: granted (FIFO: the survivors queue behind
	 * us) once they hand back their slices and the victim's half is
	 * reclaimed from its dead process. */
	die_if(ration_sem_acquire_until(s, t_kill + 2 * (int64_t)1000000000,
					budget),
	       "acquire whole budget after the kill");
	printf("whole budget free again %.1f ms after the kill\n",
	       (double)(ration_now() - t_kill) / 1e6);
	die_if(ration_sem_release(s, budget), "release");

	int failed = 0;
	for (int i = 1; i < workers; i++) {
		int status;
		waitpid(pid[i], &status, 0);
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			failed++;
	}
	waitpid(pid[0], NULL, 0);
	/* The survivors only finish if they got the victim's half back. */
	int64_t t_done = ration_now();
	while (ration_sem_available(s) != budget &&
	       ration_now() - t_done < 1000000000)
		sleep_ms(1), ration_sem_stats(s, &st); /* a look reclaims too */
	ration_sem_stats(s, &st);
	printf("after kill:  %d surviving workers finished %d rounds each in "
	       "%.0f ms; "
	       "available %lld of %lld MiB; max in use %lld MiB; %llu "
	       "acquires, "
	       "%llu waited\n",
	       workers - 1 - failed, rounds, (double)(t_done - t_kill) / 1e6,
	       (long long)(st.available >> 20), (long long)(budget >> 20),
	       (long long)(st.max_in_use >> 20),
	       (unsigned long long)st.acquired,
	       (unsigned long long)st.contended);

	bool ok = failed == 0 && st.available == budget &&
		  st.max_in_use <= budget;
	printf("%s\n", ok ? "budget recovered" : "budget NOT recovered");
	die_if(ration_sem_free(s), "free");
	die_if(ration_sem_unlink_shared(name), "unlink");
	return ok ? 0 : 1;
}
