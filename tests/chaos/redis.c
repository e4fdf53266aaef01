/* redis.c - the chaos suite's Redis backend and its scenarios: the runner
 * starts a private redis-server (a free loopback port, a directory of its
 * own) and, as the fault, kills and restarts it (with or without its
 * data), freezes it (SIGSTOP) or rolls it back to an earlier snapshot;
 * or kills holders as the other backends do. Skipped without
 * redis-server or hiredis. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ration/redis.h>

#include "chaos.h"

#define LEASE_NS    (500 * CHAOS_MS)
#define END_WAIT_NS ((int64_t)5 * 1000000000) /* a lease, a recovery, slack */

enum persistence { KEEP_NOTHING, KEEP_AOF, KEEP_RDB };

struct server {
	enum persistence keep;
	pid_t pid; /* 0 while down */
	int port;
	char dir[64];
	char uri[64];
	bool frozen;
	bool thawed;     /* after a freeze: a SAVE is due during the recovery */
	bool saved;      /* KEEP_RDB: a snapshot to roll back to */
	int64_t next_at; /* the next fault */
	int64_t back_at; /* restart / SIGCONT / SAVE due */
};

static const ration_remote_opts_t opts = {
	.lease_ns = LEASE_NS,
	.connect_timeout_ns = 100 * CHAOS_MS,
	.io_timeout_ns = 150 * CHAOS_MS,
};

static void
nap(int64_t ns)
{
	struct timespec ts = {.tv_sec = ns / 1000000000,
			      .tv_nsec = ns % 1000000000};
	nanosleep(&ts, NULL);
}

static int
free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	int port = -1;
	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

/* Send @cmd (inline) and read the reply's first bytes into @buf. */
static bool
ask(int port, const char *cmd, char *buf, size_t cap)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	size_t len = strlen(cmd);
	bool ok = fd >= 0 &&
		  connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
		  write(fd, cmd, len) == (ssize_t)len &&
		  read(fd, buf, cap - 1) > 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

/* Start (or restart, same port and directory) the server; wait until it
 * answers (a loading server answers with an error: that is up). */
static int
start(struct server *v)
{
	char port[16];
	snprintf(port, sizeof(port), "%d", v->port);
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		int devnull = open("/dev/null", O_WRONLY);
		dup2(devnull, 1);
		const char *aof = v->keep == KEEP_AOF ? "yes" : "no";
		execlp("redis-server", "redis-server", "--port", port, "--bind",
		       "127.0.0.1", "--dir", v->dir, "--save", "",
		       "--appendonly", aof, "--appendfsync", "always",
		       "--dbfilename", "dump.rdb", "--loglevel", "warning",
		       (char *)NULL);
		_exit(127);
	}
	v->pid = pid;
	for (int64_t give_up = ration_now() + 5000 * CHAOS_MS;
	     ration_now() < give_up;) {
		char buf[16] = {0};
		if (ask(v->port, "PING\r\n", buf, sizeof(buf)))
			return 0;
		if (waitpid(pid, NULL, WNOHANG) == pid) {
			v->pid = 0;
			return -ECHILD;
		}
		nap(5 * CHAOS_MS);
	}
	return -ETIMEDOUT;
}

static void
stop_server(struct server *v)
{
	if (v->pid > 0) {
		kill(v->pid, SIGKILL);
		waitpid(v->pid, NULL, 0);
		v->pid = 0;
	}
	v->frozen = false;
}

static int
setup(struct chaos_run *run, enum persistence keep)
{
	if (system("command -v redis-server >/dev/null 2>&1") != 0) {
		printf("%-24s SKIP: redis-server is not installed\n",
		       run->sc->name);
		return CHAOS_SKIP;
	}
	ration_sem_t *s;
	if (ration_sem_open_redis("redis://127.0.0.1:1", "probe", 1, NULL,
				  &s) == -ENOTSUP) {
		printf("%-24s SKIP: ration was built without hiredis\n",
		       run->sc->name);
		return CHAOS_SKIP;
	}
	struct server *v = calloc(1, sizeof(*v));
	if (v == NULL)
		return 1;
	run->backend_state = v;
	v->keep = keep;
	v->port = free_port();
	strcpy(v->dir, "/tmp/ration-chaos-XXXXXX");
	if (v->port < 0 || mkdtemp(v->dir) == NULL || start(v) != 0) {
		fprintf(stderr, "chaos: cannot start redis-server\n");
		return 1;
	}
	snprintf(v->uri, sizeof(v->uri), "redis://127.0.0.1:%d/0", v->port);
	int rc = ration_sem_open_redis(v->uri, run->name + 1, run->size, &opts,
				       &s);
	if (rc != 0) {
		fprintf(stderr, "chaos: open_redis: %s\n", ration_strerror(rc));
		return 1;
	}
	ration_sem_free(s);
	v->next_at = ration_now() + 500 * CHAOS_MS;
	return 0;
}

static int
setup_plain(struct chaos_run *run)
{
	return setup(run, KEEP_NOTHING);
}

static int
setup_aof(struct chaos_run *run)
{
	return setup(run, KEEP_AOF);
}

static int
setup_rdb(struct chaos_run *run)
{
	return setup(run, KEEP_RDB);
}

static int
open_worker(struct chaos_run *run, ration_sem_t **out)
{
	struct server *v = run->backend_state;
	return ration_sem_open_redis(v->uri, run->name + 1, 0, &opts, out);
}

/* With the server up and running again, wait until every unit is back
 * (dead sessions expire a lease later, after any recovery). */
static int64_t
held_at_end(struct chaos_run *run)
{
	struct server *v = run->backend_state;
	if (v->frozen)
		kill(v->pid, SIGCONT);
	v->frozen = false;
	if (v->pid == 0 && start(v) != 0)
		return -1;
	ration_sem_t *s;
	ration_sem_stats_t st = {0};
	int64_t give_up = ration_now() + END_WAIT_NS;
	int rc;
	while ((rc = ration_sem_open_redis(v->uri, run->name + 1, run->size,
					   &opts, &s)) != 0 &&
	       ration_now() < give_up)
		nap(20 * CHAOS_MS);
	if (rc != 0)
		return -1;
	do {
		nap(20 * CHAOS_MS);
		ration_sem_stats(s, &st);
	} while ((st.available != st.size || st.waiters != 0) &&
		 ration_now() < give_up);
	ration_sem_free(s);
	return st.size - st.available + st.waiters;
}

static void
teardown(struct chaos_run *run)
{
	struct server *v = run->backend_state;
	if (v == NULL)
		return;
	stop_server(v);
	if (v->dir[0] != '\0') {
		char cmd[96];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", v->dir);
		(void)system(cmd);
	}
	free(v);
	run->backend_state = NULL;
}

static const struct chaos_backend plain = {"redis", setup_plain, open_worker,
					   held_at_end, teardown};
static const struct chaos_backend aof = {"redis-aof", setup_aof, open_worker,
					 held_at_end, teardown};
static const struct chaos_backend rdb = {"redis-rdb", setup_rdb, open_worker,
					 held_at_end, teardown};

/* The next fault 0.8-1.6 s after now. */
static void
later(struct chaos_run *run, struct server *v)
{
	v->next_at =
		ration_now() + (int64_t)(800 + chaos_rand(run, 800)) * CHAOS_MS;
}

/* SIGKILL the server; restart it 100-400 ms later (its data as kept). */
static void
restart_server(struct chaos_run *run)
{
	struct server *v = run->backend_state;
	int64_t now = ration_now();
	if (v->pid == 0 && now >= v->back_at) {
		if (start(v) != 0)
			atomic_fetch_add(&run->led->unexpected, 1);
		later(run, v);
	} else if (v->pid > 0 && now >= v->next_at) {
		stop_server(v);
		run->kills++;
		v->back_at =
			now + (int64_t)(100 + chaos_rand(run, 300)) * CHAOS_MS;
	}
}

/* SIGSTOP the server for 0.2-1.2 s: shorter and longer than the lease. */
static void
freeze_server(struct chaos_run *run)
{
	struct server *v = run->backend_state;
	int64_t now = ration_now();
	if (v->frozen && now >= v->back_at) {
		kill(v->pid, SIGCONT);
		v->frozen = false;
		later(run, v);
	} else if (!v->frozen && now >= v->next_at) {
		kill(v->pid, SIGSTOP);
		v->frozen = true;
		run->stops++;
		v->back_at =
			now + (int64_t)(200 + chaos_rand(run, 1000)) * CHAOS_MS;
	}
}

/* SAVE a snapshot, let 0.3-1 s of grants and releases happen, then
 * SIGKILL the server and restart it from the snapshot: a rollback. */
static void
roll_back_server(struct chaos_run *run)
{
	struct server *v = run->backend_state;
	int64_t now = ration_now();
	if (v->pid == 0) {
		restart_server(run);
	} else if (!v->saved && now >= v->next_at) {
		char buf[16] = {0};
		v->saved = ask(v->port, "SAVE\r\n", buf, sizeof(buf)) &&
			   buf[0] == '+';
		v->next_at =
			now + (int64_t)(300 + chaos_rand(run, 700)) * CHAOS_MS;
	} else if (v->saved && now >= v->next_at) {
		v->saved = false;
		restart_server(run);
	}
}

/* Freeze the server for 0.3-0.45 s (over half the lease: a recovery
 * follows), SAVE 50-200 ms after it is back (during that recovery), then
 * roll back to that snapshot as above: restored, it says "recovering"
 * with a marker the holders have answered, and lacks what they
 * re-asserted and did since. */
static void
roll_back_mid_recovery(struct chaos_run *run)
{
	struct server *v = run->backend_state;
	int64_t now = ration_now();
	if (v->frozen) {
		if (now >= v->back_at) {
			kill(v->pid, SIGCONT);
			v->frozen = false;
			v->thawed = true;
			v->next_at =
				now +
				(int64_t)(50 + chaos_rand(run, 150)) * CHAOS_MS;
		}
	} else if (v->thawed) {
		if (now >= v->next_at) {
			v->thawed = false;
			roll_back_server(run); /* the SAVE */
		}
	} else if (v->pid > 0 && !v->saved && now >= v->next_at) {
		kill(v->pid, SIGSTOP);
		v->frozen = true;
		run->stops++;
		v->back_at =
			now + (int64_t)(300 + chaos_rand(run, 150)) * CHAOS_MS;
	} else {
		roll_back_server(run); /* the restart from the snapshot */
	}
}

static void
kill_holders(struct chaos_run *run)
{
	chaos_fault_kill_holder(run);
}

/* A server that is down, frozen or loading fails a call at its deadline
 * (-EIO, -ECONNREFUSED), and try_acquire says -EAGAIN or -EIO. */
static bool
server_faults_allowed(int rc, int op)
{
	return (op == OP_ACQUIRE || op == OP_TRY) &&
	       (rc == -EIO || rc == -ECONNREFUSED);
}

/* Server faults hold grants up to 0.4 s: holders keep running across the
 * fault, which is what a recovery must protect. The snapshot taken during
 * a recovery has holders of up to 1.5 s, past the fault and the recovery
 * after it, in workers of one thread: a holder makes no call while it
 * holds (its renewer only renews), so only a recovery its handle sees
 * makes it re-assert what the restored snapshot lacks. */
const struct chaos_scenario chaos_redis_scenarios[] = {
	{"redis-kill-holders", "SIGKILL holders (reclaimed at the 0.5 s lease)",
	 &plain, 6, 2, 0, 10, 4, kill_holders, NULL},
	{"redis-restart",
	 "SIGKILL the server, restart it empty 0.1-0.4 s later", &plain, 6, 2,
	 CHAOS_LONG_HOLD, 10, 4, restart_server, server_faults_allowed},
	{"redis-restart-aof", "the same, restarted from its AOF (fsync always)",
	 &aof, 6, 2, CHAOS_LONG_HOLD, 10, 4, restart_server,
	 server_faults_allowed},
	{"redis-freeze",
	 "SIGSTOP the server for 0.2-1.2 s (the lease is 0.5 s)", &plain, 6, 2,
	 CHAOS_LONG_HOLD, 10, 4, freeze_server, server_faults_allowed},
	{"redis-rdb-restore", "roll the server back to a snapshot 0.3-1 s old",
	 &rdb, 6, 2, CHAOS_LONG_HOLD, 10, 4, roll_back_server,
	 server_faults_allowed},
	{"redis-rdb-mid-recovery",
	 "freeze the server 0.3-0.45 s, snapshot it during the recovery that "
	 "follows, roll back to that snapshot 0.3-1 s later",
	 &rdb, 8, 1, CHAOS_LEASES_HOLD, 10, 4, roll_back_mid_recovery,
	 server_faults_allowed},
};
const unsigned chaos_redis_nscenarios =
	sizeof(chaos_redis_scenarios) / sizeof(chaos_redis_scenarios[0]);
