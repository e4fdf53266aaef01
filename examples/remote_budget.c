/* remote_budget: one budget held in Redis, shared by several "machines"
 * (forked processes here, each with its own connection), and what happens
 * when one of them stalls past its lease.
 *     build/examples/remote_budget [--uri redis://host:6379/0] [--workers 4]
 *                                  [--budget 8] [--rounds 20] [--lease-ms 1000]
 * Without --uri it starts its own redis-server on a free loopback port
 * (exit 77 if redis-server is not installed). Worker 0 takes half the
 * budget on a lease and is then SIGSTOPped, like a machine that froze: it
 * stops renewing, the server reclaims its weight after the lease, and the
 * other workers, which needed it, carry on. Continued, worker 0 finds its
 * lease stale (-ESTALE): its fence is older than every later grant, so a
 * store that checks fences would refuse its writes. Progress goes to
 * stderr, the report to stdout. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ration.h>

#define MS ((int64_t)1000000)

static const char *key = "remote-budget-demo";
static pid_t main_pid; /* only the parent stops the server */
static pid_t server_pid;
static char server_dir[64];

static void
stop_server(void)
{
	if (server_pid > 0) {
		kill(server_pid, SIGKILL);
		waitpid(server_pid, NULL, 0);
		server_pid = 0;
		char cmd[128];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", server_dir);
		if (system(cmd) != 0)
			fprintf(stderr, "remote_budget: could not remove %s\n",
				server_dir);
	}
}

static void
die_if(int rc, const char *what)
{
	if (rc != 0) {
		fprintf(stderr, "remote_budget: %s: %s\n", what,
			ration_strerror(rc));
		if (getpid() == main_pid)
			stop_server();
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

static bool
ping(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	char buf[8] = {0};
	bool ok = fd >= 0 &&
		  connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
		  write(fd, "PING\r\n", 6) == 6 && read(fd, buf, 5) == 5 &&
		  strncmp(buf, "+PONG", 5) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

/* redis-server on a free loopback port, in a temporary directory. */
static int
start_server(char *uri, size_t cap)
{
	if (system("command -v redis-server >/dev/null 2>&1") != 0)
		return -ENOENT;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) != 0)
		return -EIO;
	close(fd);
	int port = ntohs(a.sin_port);
	char ports[16];
	snprintf(ports, sizeof(ports), "%d", port);
	strcpy(server_dir, "/tmp/ration-example-XXXXXX");
	if (mkdtemp(server_dir) == NULL)
		return -EIO;
	if ((server_pid = fork()) == 0) {
		if (freopen("/dev/null", "w", stdout) == NULL)
			_exit(127);
		execlp("redis-server", "redis-server", "--port", ports,
		       "--bind", "127.0.0.1", "--save", "", "--appendonly",
		       "no", "--dir", server_dir, "--loglevel", "warning",
		       (char *)NULL);
		_exit(127);
	}
	snprintf(uri, cap, "redis://127.0.0.1:%d/0", port);
	for (int i = 0; i < 1000; i++, sleep_ms(10))
		if (ping(port))
			return 0;
	return -EIO;
}

static ration_sem_t *
open_budget(const char *uri, int64_t size, int64_t lease_ms)
{
	ration_remote_opts_t o = {.lease_ns = lease_ms * MS};
	ration_sem_t *s;
	die_if(ration_sem_open_redis(uri, key, size, &o, &s), "open");
	return s;
}

/* Worker 0: half the budget on a lease, then frozen by the parent. */
static int
victim(const char *uri, int64_t budget, int64_t lease_ms, int fd)
{
	ration_sem_t *s = open_budget(uri, budget, lease_ms);
	die_if(ration_sem_resize(s, budget),
	       "resize"); /* a rerun on an old key */
	ration_lease_t l;
	die_if(ration_sem_acquire_lease(s, NULL, budget / 2, &l),
	       "acquire (victim)");
	if (write(fd, &l.fence, sizeof(l.fence)) != (ssize_t)sizeof(l.fence))
		return 1;
	sleep_ms(3 * lease_ms); /* stopped meanwhile: wakes late */
	int rc = ration_lease_release(s, &l);
	fprintf(stderr,
		"worker 0: back after the stall; release of fence %llu: %s\n",
		(unsigned long long)l.fence, ration_strerror(rc));
	die_if(ration_sem_free(s), "free (victim)");
	return rc == -ESTALE ? 0 : 2;
}

/* Workers 1..: rounds of lease, work, release. */
static int
worker(const char *uri, int id, int64_t budget, int rounds, int64_t lease_ms)
{
	ration_sem_t *s = open_budget(uri, budget, lease_ms);
	unsigned seed = (unsigned)getpid();
	uint64_t first = 0, last = 0;
	for (int i = 0; i < rounds; i++) {
		int64_t n = 1 + rand_r(&seed) %
					(budget /
					 2); /* may need the victim's share */
		ration_ctx_t *ctx;
		ration_lease_t l;
		die_if(ration_ctx_with_timeout(NULL, 30000 * MS, &ctx), "ctx");
		die_if(ration_sem_acquire_lease(s, ctx, n, &l), "acquire");
		ration_ctx_unref(ctx);
		if (first == 0)
			first = l.fence;
		last = l.fence;
		sleep_ms(10); /* the work, writing with fence l.fence */
		die_if(ration_lease_release(s, &l), "release");
	}
	fprintf(stderr, "worker %d: %d rounds, fences %llu..%llu\n", id, rounds,
		(unsigned long long)first, (unsigned long long)last);
	die_if(ration_sem_free(s), "free");
	return 0;
}

static void
usage(void)
{
	printf("usage: remote_budget [--uri redis://host:port/db] [--workers "
	       "N] [--budget N]\n"
	       "                     [--rounds N] [--lease-ms MS]\n");
}

int
main(int argc, char **argv)
{
	char uri[160] = "";
	int workers = 4, rounds = 20;
	main_pid = getpid();
	int64_t budget = 8, lease_ms = 1000;
	for (int i = 1; i < argc; i += 2) { /* flag, value */
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(argv[i], "--help") == 0) {
			usage();
			return 0;
		} else if (v != NULL && strcmp(argv[i], "--uri") == 0) {
			snprintf(uri, sizeof(uri), "%s", v);
		} else if (v != NULL && strcmp(argv[i], "--workers") == 0) {
			workers = atoi(v);
		} else if (v != NULL && strcmp(argv[i], "--budget") == 0) {
			budget = atoll(v);
		} else if (v != NULL && strcmp(argv[i], "--rounds") == 0) {
			rounds = atoi(v);
		} else if (v != NULL && strcmp(argv[i], "--lease-ms") == 0) {
			lease_ms = atoll(v);
		} else {
			usage();
			return 2;
		}
	}
	if (workers < 2 || budget < 2 || rounds < 1 || lease_ms < 100) {
		usage();
		return 2;
	}
	if (uri[0] == '\0') {
		int rc = start_server(uri, sizeof(uri));
		if (rc == -ENOENT) {
			printf("remote_budget: redis-server is not installed: "
			       "skipped\n");
			return 77;
		}
		die_if(rc, "start redis-server");
	}

	/* The parent opens its handle only after the last fork: a handle
	 * runs a thread, and a process should not fork while threaded. */
	int pfd[2];
	if (pipe(pfd) != 0)
		die_if(-errno, "pipe");
	pid_t pid[64];
	if (workers > 64)
		workers = 64;
	if ((pid[0] = fork()) == 0)
		_exit(victim(uri, budget, lease_ms, pfd[1]));
	uint64_t victim_fence = 0;
	if (read(pfd[0], &victim_fence, sizeof(victim_fence)) !=
	    (ssize_t)sizeof(victim_fence))
		die_if(-EIO, "victim");
	kill(pid[0], SIGSTOP);
	int64_t t_stop = ration_now();
	fprintf(stderr,
		"worker 0: holds %lld of %lld (fence %llu), now stopped\n",
		(long long)(budget / 2), (long long)budget,
		(unsigned long long)victim_fence);

	for (int i = 1; i < workers; i++)
		if ((pid[i] = fork()) == 0)
			_exit(worker(uri, i, budget, rounds, lease_ms));
	ration_sem_t *s = open_budget(uri, budget, lease_ms);
	int failed = 0;
	for (int i = 1; i < workers; i++) {
		int st;
		waitpid(pid[i], &st, 0);
		failed += !WIFEXITED(st) || WEXITSTATUS(st) != 0;
	}

	/* The whole budget is ours only once the stopped worker's lease is gone. */
	ration_lease_t all;
	die_if(ration_sem_acquire_lease(s, NULL, budget, &all), "acquire all");
	int64_t reclaimed_ms = (ration_now() - t_stop) / MS;
	die_if(ration_lease_release(s, &all), "release all");
	kill(pid[0], SIGCONT);
	int st;
	waitpid(pid[0], &st, 0);
	bool stale_seen = WIFEXITED(st) && WEXITSTATUS(st) == 0;

	ration_sem_stats_t sst;
	ration_sem_stats(s, &sst);
	printf("budget %lld across %d processes, lease %lld ms\n",
	       (long long)budget, workers, (long long)lease_ms);
	printf("  workers done: %d of %d, %d rounds each\n",
	       workers - 1 - failed, workers - 1, rounds);
	printf("  stopped worker's fence %llu; a later grant's %llu (fences "
	       "only grow)\n",
	       (unsigned long long)victim_fence, (unsigned long long)all.fence);
	printf("  whole budget free again %lld ms after the stop (lease %lld "
	       "ms)\n",
	       (long long)reclaimed_ms, (long long)lease_ms);
	printf("  stopped worker's release after waking: %s\n",
	       stale_seen ? "-ESTALE, as it must" : "NOT stale (wrong)");
	printf("  acquired %llu, contended %llu, max in use %lld of %lld, wait "
	       "total %.1f ms\n",
	       (unsigned long long)sst.acquired,
	       (unsigned long long)sst.contended, (long long)sst.max_in_use,
	       (long long)sst.size, (double)sst.wait_ns_total / 1e6);
	die_if(ration_sem_free(s), "free");
	stop_server();
	return failed == 0 && stale_seen && all.fence > victim_fence ? 0 : 1;
}
