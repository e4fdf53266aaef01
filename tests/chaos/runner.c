/* runner.c - the chaos suite's runner: for each scenario, make the budget,
 * start the workers, apply the scenario's fault every 20-100 ms, replace
 * workers that die, and at the end check the three pass criteria:
 *   - zero over-grants: the ledger never showed occupancy > size;
 *   - zero lost weight: with every worker gone, the budget is whole again;
 *   - no call returned more than 250 ms past its deadline (try_acquire's
 *     deadline is the moment it was called), stopped callers excepted, and
 *     less the time the caller was runnable but had no CPU (schedstat).
 * Also: no result a scenario does not allow, every worker stops when told.
 *
 * Usage: chaos [--list] [--scenario NAME] [--seconds S] [--long]
 *   --seconds S  run each scenario S seconds (default 4)
 *   --long       one hour in all, split over the scenarios run
 * Exit: 0 all passed, 1 a criterion failed, 77 every scenario run was
 * skipped (e.g. PID namespaces not permitted), 2 usage.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "chaos.h"
#include "pidns.h"

#define TICK_MIN_NS    (20 * CHAOS_MS)
#define TICK_MAX_NS    (100 * CHAOS_MS)
#define FREEZE_WAIT_NS ((int64_t)1000000000) /* a SIGSTOP to take hold */
#define STOP_GRACE_NS                                                          \
	((int64_t)10 * 1000000000) /* workers to exit at the end */

struct table {
	const struct chaos_scenario *sc;
	const unsigned *n;
};
static const struct table tables[] = {
	{chaos_shared_scenarios, &chaos_shared_nscenarios},
	{chaos_redis_scenarios, &chaos_redis_nscenarios},
};

/* The process the runner waits for per worker: the worker itself, or the
 * launcher that put it in a PID namespace of its own. */
static pid_t child[CHAOS_MAX_WORKERS];

static void
sleep_ns(int64_t ns)
{
	struct timespec ts = {.tv_sec = ns / 1000000000,
			      .tv_nsec = ns % 1000000000};
	nanosleep(&ts, NULL);
}

uint64_t
chaos_rand(struct chaos_run *run, uint64_t below)
{
	run->rng ^= run->rng << 13;
	run->rng ^= run->rng >> 7;
	run->rng ^= run->rng << 17;
	return below ? run->rng % below : 0;
}

int
chaos_pick(struct chaos_run *run, int doing)
{
	unsigned nw = run->sc->workers, nt = run->sc->threads;
	unsigned first = (unsigned)chaos_rand(run, nw);
	for (unsigned k = 0; k < nw; k++) {
		unsigned i = (first + k) % nw;
		struct chaos_worker *w = &run->led->w[i];
		if (atomic_load(&w->pid) == 0 || atomic_load(&w->stopped) ||
		    !atomic_load(&w->ready))
			continue;
		if (doing == DOING_NOTHING)
			return (int)i;
		for (unsigned t = 0; t < nt; t++)
			if (atomic_load(&w->doing[t]) == doing)
				return (int)i;
	}
	return -1;
}

/* Whether every thread of @pid is stopped (or gone). */
static bool
frozen(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	DIR *d = opendir(path);
	if (d == NULL)
		return true;
	bool all = true;
	struct dirent *e;
	while (all && (e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		char stat[96], buf[512];
		snprintf(stat, sizeof(stat), "/proc/%d/task/%.32s/stat",
			 (int)pid, e->d_name);
		FILE *f = fopen(stat, "r");
		if (f == NULL)
			continue;
		size_t len = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[len] = '\0';
		const char *p = strrchr(buf, ')');
		all = p == NULL || p[1] != ' ' || strchr("TtZXx", p[2]) != NULL;
	}
	closedir(d);
	return all;
}

/* The ledger must stop counting a worker before the budget can see it
 * dead (else the budget hands its weight on while the ledger still counts
 * it): stop it, wait until it is stopped, drop its ledger units, kill. */
void
chaos_kill(struct chaos_run *run, int i)
{
	struct chaos_worker *w = &run->led->w[i];
	pid_t pid = atomic_load(&w->pid);
	if (pid <= 0)
		return;
	if (!atomic_load(&w->stopped)) {
		atomic_fetch_add(&w->stops, 1);
		if (kill(pid, SIGSTOP) != 0)
			return;
	}
	int64_t give_up = ration_now() + FREEZE_WAIT_NS;
	while (!frozen(pid) && ration_now() < give_up)
		sleep_ns(CHAOS_MS / 10);
	atomic_fetch_sub(&run->led->occupancy, atomic_exchange(&w->held, 0));
	if (kill(pid, SIGKILL) == 0)
		run->kills++;
}

void
chaos_stop(struct chaos_run *run, int i, int64_t ns)
{
	struct chaos_worker *w = &run->led->w[i];
	pid_t pid = atomic_load(&w->pid);
	if (pid <= 0 || atomic_load(&w->stopped))
		return;
	atomic_fetch_add(&w->stops, 1); /* odd before the stop: see chaos.h */
	if (kill(pid, SIGSTOP) != 0) {
		atomic_fetch_add(&w->stops, 1);
		return;
	}
	w->cont_at = ration_now() + ns;
	atomic_store(&w->stopped, true);
	run->stops++;
}

int
chaos_worker_of_tid(struct chaos_run *run, pid_t tid)
{
	for (unsigned i = 0; i < run->sc->workers; i++) {
		pid_t pid = atomic_load(&run->led->w[i].pid);
		if (pid <= 0)
			continue;
		char path[64];
		snprintf(path, sizeof(path), "/proc/%d/task/%d", (int)pid,
			 (int)tid);
		struct stat st;
		if (pid == tid || stat(path, &st) == 0)
			return (int)i;
	}
	return -1;
}

void
chaos_fault_kill_holder(struct chaos_run *run)
{
	int i = chaos_pick(run, DOING_HOLD);
	if (i >= 0)
		chaos_kill(run, i);
}

void
chaos_fault_kill_waiter(struct chaos_run *run)
{
	int i = chaos_pick(run, DOING_WAIT);
	if (i >= 0)
		chaos_kill(run, i);
}

void
chaos_fault_stop_holder(struct chaos_run *run)
{
	int i = chaos_pick(run, DOING_HOLD);
	if (i >= 0)
		chaos_stop(run, i,
			   (int64_t)(50 + chaos_rand(run, 250)) * CHAOS_MS);
}

void
chaos_fault_stop_waiter(struct chaos_run *run)
{
	int i = chaos_pick(run, DOING_WAIT);
	if (i >= 0)
		chaos_stop(run, i,
			   (int64_t)(50 + chaos_rand(run, 250)) * CHAOS_MS);
}

static void
spawn(struct chaos_run *run, int i)
{
	struct chaos_worker *w = &run->led->w[i];
	atomic_store(&w->ready, false);
	atomic_store(&w->stopped, false);
	atomic_store(&w->stops, 0);
	for (unsigned t = 0; t < CHAOS_MAX_THREADS; t++)
		atomic_store(&w->doing[t], DOING_NOTHING);
	pid_t pid = fork();
	if (pid < 0) {
		perror("chaos: fork");
		exit(1);
	}
	if (pid == 0) {
		if (run->sc->flags & CHAOS_PIDNS)
			chaos_pidns_launch(run, i); /* does not return */
		atomic_store(&w->pid, getpid());
		chaos_worker_main(run, i);
	}
	child[i] = pid;
	if (!(run->sc->flags & CHAOS_PIDNS))
		atomic_store(&w->pid, pid);
}

/* A worker is gone: what the ledger counted for it goes. */
static void
gone(struct chaos_run *run, int i, int status, bool stopping)
{
	struct chaos_worker *w = &run->led->w[i];
	atomic_fetch_sub(&run->led->occupancy, atomic_exchange(&w->held, 0));
	atomic_store(&w->pid, 0);
	child[i] = 0;
	bool killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
	bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
	if (!killed && !clean) {
		fprintf(stderr, "chaos: worker %d ended with status 0x%x\n", i,
			status);
		atomic_fetch_add(&run->led->unexpected, 1);
	}
	if (!stopping)
		spawn(run, i);
}

static void
reap(struct chaos_run *run, bool stopping)
{
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
		for (unsigned i = 0; i < run->sc->workers; i++)
			if (child[i] == pid)
				gone(run, (int)i, status, stopping);
}

static void
continue_due(struct chaos_run *run, bool all)
{
	int64_t now = ration_now();
	for (unsigned i = 0; i < run->sc->workers; i++) {
		struct chaos_worker *w = &run->led->w[i];
		if (atomic_load(&w->stopped) && (all || now >= w->cont_at)) {
			pid_t pid = atomic_load(&w->pid);
			if (pid > 0)
				kill(pid, SIGCONT);
			atomic_store(&w->stopped, false);
			atomic_fetch_add(&w->stops, 1); /* even again */
		}
	}
}

/* Tell the workers to stop and wait for them; false if one would not. */
static bool
finish(struct chaos_run *run)
{
	continue_due(run, true);
	atomic_store(&run->led->stop, true);
	int64_t give_up = ration_now() + STOP_GRACE_NS;
	for (;;) {
		reap(run, true);
		bool any = false;
		for (unsigned i = 0; i < run->sc->workers; i++)
			any |= child[i] != 0;
		if (!any)
			return true;
		if (ration_now() > give_up)
			break;
		sleep_ns(CHAOS_MS);
	}
	for (unsigned i = 0; i < run->sc->workers; i++) {
		if (child[i] != 0) {
			fprintf(stderr, "chaos: worker %u did not stop\n", i);
			kill(child[i], SIGKILL);
			waitpid(child[i], NULL, 0);
			child[i] = 0;
		}
	}
	return false;
}

/* Run one scenario for @ns; 0 passed, 1 failed, CHAOS_SKIP skipped. */
static int
run_scenario(const struct chaos_scenario *sc, int64_t ns)
{
	static unsigned seq;
	struct chaos_run run = {.sc = sc, .size = sc->size};
	run.rng = (uint64_t)getpid() * 0x9e3779b97f4a7c15u + ++seq;
	snprintf(run.name, sizeof(run.name), "/ration-chaos-%d-%u",
		 (int)getpid(), seq);
	if ((sc->flags & CHAOS_PIDNS) && !chaos_pidns_permitted())
		return CHAOS_SKIP;
	run.led = mmap(NULL, sizeof(*run.led), PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (run.led == MAP_FAILED) {
		perror("chaos: mmap");
		return 1;
	}
	run.led->size = sc->size;
	int rc = sc->backend->setup(&run);
	if (rc != 0) {
		munmap(run.led, sizeof(*run.led));
		return rc == CHAOS_SKIP ? CHAOS_SKIP : 1;
	}
	for (unsigned i = 0; i < sc->workers; i++)
		spawn(&run, (int)i);
	int64_t t0 = ration_now(), end = t0 + ns;
	while (ration_now() < end) {
		sleep_ns(TICK_MIN_NS +
			 (int64_t)chaos_rand(&run, TICK_MAX_NS - TICK_MIN_NS));
		reap(&run, false);
		continue_due(&run, false);
		sc->fault(&run);
	}
	bool stopped = finish(&run);
	int64_t lost = sc->backend->held_at_end(&run);
	sc->backend->teardown(&run);

	struct chaos_ledger *led = run.led;
	int64_t late = atomic_load(&led->max_late_ns);
	bool pass = stopped && atomic_load(&led->overgrants) == 0 &&
		    lost == 0 && atomic_load(&led->late_calls) == 0 &&
		    atomic_load(&led->unexpected) == 0;
	printf("%-24s %s %5.1f s: %llu grants, %llu timeouts, %llu failed "
	       "tries, "
	       "%llu kills, %llu stops; occupancy max %lld of %lld, "
	       "over-grants %llu "
	       "in %llu snapshots; lost %lld; latest return %.1f ms past its "
	       "deadline "
	       "(%.1f ms with CPU waits; %llu over %lld ms); unexpected %llu",
	       sc->name, pass ? "PASS" : "FAIL",
	       (double)(ration_now() - t0) / 1e9,
	       (unsigned long long)led->grants,
	       (unsigned long long)led->timeouts,
	       (unsigned long long)led->tries_failed,
	       (unsigned long long)run.kills, (unsigned long long)run.stops,
	       (long long)led->max_occupancy, (long long)sc->size,
	       (unsigned long long)led->overgrants,
	       (unsigned long long)led->snapshots, (long long)lost,
	       (double)late / 1e6,
	       (double)atomic_load(&led->max_late_raw_ns) / 1e6,
	       (unsigned long long)led->late_calls,
	       (long long)(CHAOS_LATE_NS / CHAOS_MS),
	       (unsigned long long)led->unexpected);
	if (led->unexpected)
		printf(" (first: %d from op %d)", led->first_unexpected,
		       led->first_unexpected_op);
	printf("\n");
	fflush(stdout);
	munmap(run.led, sizeof(*run.led));
	return pass ? 0 : 1;
}

static const struct chaos_scenario *
find(const char *name)
{
	for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++)
		for (unsigned k = 0; k < *tables[t].n; k++)
			if (strcmp(tables[t].sc[k].name, name) == 0)
				return &tables[t].sc[k];
	return NULL;
}

int
main(int argc, char **argv)
{
	const char *only = NULL;
	double secs = 4;
	bool longrun = false;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--scenario") == 0 && i + 1 < argc) {
			only = argv[++i];
		} else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
			secs = atof(argv[++i]);
		} else if (strcmp(argv[i], "--long") == 0) {
			longrun = true;
		} else if (strcmp(argv[i], "--list") == 0) {
			for (size_t t = 0;
			     t < sizeof(tables) / sizeof(tables[0]); t++)
				for (unsigned k = 0; k < *tables[t].n; k++)
					printf("%-24s %s\n",
					       tables[t].sc[k].name,
					       tables[t].sc[k].what);
			return 0;
		} else {
			fprintf(stderr,
				"usage: %s [--list] [--scenario NAME] "
				"[--seconds S] "
				"[--long]\n",
				argv[0]);
			return 2;
		}
	}
	unsigned count = 0;
	for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++)
		count += only ? 0 : *tables[t].n;
	if (only && find(only) == NULL) {
		fprintf(stderr, "chaos: no scenario %s (see --list)\n", only);
		return 2;
	}
	if (only)
		count = 1;
	int64_t ns = (int64_t)((longrun ? 3600.0 / count : secs) * 1e9);
	signal(SIGPIPE, SIG_IGN);
	int failed = 0, ran = 0;
	for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++) {
		for (unsigned k = 0; k < *tables[t].n; k++) {
			const struct chaos_scenario *sc = &tables[t].sc[k];
			if (only && strcmp(sc->name, only) != 0)
				continue;
			int rc = run_scenario(sc, ns);
			if (rc == CHAOS_SKIP)
				continue;
			ran++;
			failed += rc != 0;
		}
	}
	if (ran == 0)
		return CHAOS_SKIP;
	return failed ? 1 : 0;
}
