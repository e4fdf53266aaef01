/* redis_bench.c - round-trip latency of the Redis backend on loopback:
 * ration_sem_acquire(1) + ration_sem_release(1) on a Redis semaphore, next
 * to a plain Redis INCR + DECR pair (two round trips, no script), the floor
 * for any two-call protocol. Also the same acquire+release with T clients
 * (own handles, threads) contending on a size-1 semaphore.
 *     build-redis/bench/redis-bench [uri] [n]   (default: own redis-server, n = 20000)
 * Without a URI it starts redis-server on a free port in a temporary
 * directory (exit 77 if redis-server is missing). Prints p50/p99 in us. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <ration.h>

static int
cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

static void
report(const char *what, int64_t *lat, long n)
{
	qsort(lat, (size_t)n, sizeof(*lat), cmp_i64);
	printf("%-34s p50 %7.1f us   p99 %7.1f us   (n=%ld)\n", what,
	       (double)lat[n / 2] / 1e3, (double)lat[n * 99 / 100] / 1e3, n);
}

static pid_t server_pid;
static char server_dir[64];

static int
start_server(char *uri, size_t cap)
{
	if (system("command -v redis-server >/dev/null 2>&1") != 0)
		return -1;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) != 0)
		return -2;
	close(fd);
	char port[16];
	snprintf(port, sizeof(port), "%d", ntohs(a.sin_port));
	strcpy(server_dir, "/tmp/ration-bench-XXXXXX");
	if (mkdtemp(server_dir) == NULL)
		return -2;
	if ((server_pid = fork()) == 0) {
		if (freopen("/dev/null", "w", stdout) == NULL)
			_exit(127);
		execlp("redis-server", "redis-server", "--port", port, "--bind",
		       "127.0.0.1", "--save", "", "--appendonly", "no", "--dir",
		       server_dir, "--loglevel", "warning", (char *)NULL);
		_exit(127);
	}
	snprintf(uri, cap, "redis://127.0.0.1:%s/0", port);
	for (int i = 0; i < 500; i++) {
		redisContext *c = redisConnect("127.0.0.1", atoi(port));
		bool up = c != NULL && c->err == 0;
		redisFree(c);
		if (up)
			return 0;
		usleep(10000);
	}
	return -2;
}

static void
stop_server(void)
{
	if (server_pid > 0) {
		kill(server_pid, SIGKILL);
		waitpid(server_pid, NULL, 0);
		char cmd[128];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", server_dir);
		(void)system(cmd);
	}
}

struct client {
	pthread_t t;
	const char *uri;
	long n;
	int64_t *lat;
};

static void *
client_main(void *arg)
{
	struct client *c = arg;
	ration_sem_t *s;
	if (ration_sem_open_redis(c->uri, "bench-contended", 1, NULL, &s) != 0)
		abort();
	for (long i = 0; i < c->n; i++) {
		int64_t t0 = ration_now();
		if (ration_sem_acquire(s, NULL, 1) != 0 ||
		    ration_sem_release(s, 1) != 0)
			abort();
		c->lat[i] = ration_now() - t0;
	}
	ration_sem_free(s);
	return NULL;
}

int
main(int argc, char **argv)
{
	char uri[128];
	long n = argc > 2 ? atol(argv[2]) : 20000;
	if (argc > 1 && strcmp(argv[1], "-") != 0) {
		snprintf(uri, sizeof(uri), "%s", argv[1]);
	} else {
		int rc = start_server(uri, sizeof(uri));
		if (rc == -1) {
			fprintf(stderr,
				"redis-server not installed: skipped\n");
			return 77;
		}
		if (rc != 0) {
			fprintf(stderr, "cannot start redis-server\n");
			stop_server();
			return 1;
		}
	}
	int64_t *lat = calloc((size_t)n * 4, sizeof(*lat));
	ration_sem_t *s;
	int rc = ration_sem_open_redis(uri, "bench", 1 << 20, NULL, &s);
	if (lat == NULL || rc != 0) {
		fprintf(stderr, "open: %s\n", ration_strerror(rc));
		stop_server();
		return 1;
	}
	printf("redis backend, loopback, %s\n", uri);
	for (int pass = 0; pass < 2; pass++) { /* the first pass warms up */
		for (long i = 0; i < n; i++) {
			int64_t t0 = ration_now();
			if (ration_sem_acquire(s, NULL, 1) != 0 ||
			    ration_sem_release(s, 1) != 0)
				abort();
			lat[i] = ration_now() - t0;
		}
	}
	report("ration acquire(1)+release(1)", lat, n);
	ration_sem_free(s);

	int port = 6379;
	char host[64] = "127.0.0.1";
	sscanf(uri, "redis://%63[^:]:%d", host, &port);
	redisContext *c = redisConnect(host, port);
	if (c == NULL || c->err) {
		stop_server();
		return 1;
	}
	for (int pass = 0; pass < 2; pass++) {
		for (long i = 0; i < n; i++) {
			int64_t t0 = ration_now();
			freeReplyObject(redisCommand(c, "INCR bench-counter"));
			freeReplyObject(redisCommand(c, "DECR bench-counter"));
			lat[i] = ration_now() - t0;
		}
	}
	report("plain INCR+DECR (hiredis)", lat, n);
	redisFree(c);

	for (int t = 2; t <= 4; t *= 2) {
		struct client cl[4];
		long per = n / 4;
		for (int i = 0; i < t; i++) {
			cl[i] = (struct client){.uri = uri,
						.n = per,
						.lat = lat + (long)i * per};
			pthread_create(&cl[i].t, NULL, client_main, &cl[i]);
		}
		for (int i = 0; i < t; i++)
			pthread_join(cl[i].t, NULL);
		char what[64];
		snprintf(what, sizeof(what), "ration, %d clients on size 1", t);
		report(what, lat, per * t);
	}
	free(lat);
	stop_server();
	return 0;
}
