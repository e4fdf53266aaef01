/* redis_server.h - a real redis-server for the Redis suites
 * (test_redis.c, test_redis_faults.c): started on a free loopback port in
 * a temporary directory, killed, stopped, restarted on the same port and
 * directory (so a persistent one reloads its data). */
#ifndef RATION_TESTS_REDIS_SERVER_H
#define RATION_TESTS_REDIS_SERVER_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ration.h>

#include "helpers.h"

/* ---- the server ---- */

struct server {
	pid_t pid;
	int port;
	char dir[64];
	char uri[128];
	/* Extra redis-server arguments (NULL-terminated, at most 8), e.g.
	 * persistence or a password; NULL = none. */
	const char *const *extra;
};

static struct server main_srv;
static _Atomic int key_seq;

static inline bool
have_redis_server(void)
{
	return system("command -v redis-server >/dev/null 2>&1") == 0;
}

static inline int
free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
		perror("free_port");
		exit(1);
	}
	close(fd);
	return ntohs(a.sin_port);
}

/* Send one inline command by hand (the test needs no hiredis of its own);
 * return the connected fd (reply unread) or -1. */
static inline int
send_cmd(int port, const char *cmd)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	size_t len = strlen(cmd);
	if (fd >= 0 && (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
			write(fd, cmd, len) != (ssize_t)len)) {
		close(fd);
		fd = -1;
	}
	return fd;
}

/* Read a status reply; true if it starts with @want. */
static inline bool
read_reply(int fd, const char *want)
{
	char buf[32] = {0};
	bool ok = fd >= 0 && read(fd, buf, sizeof(buf) - 1) > 0 &&
		  strncmp(buf, want, strlen(want)) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

/* Whether anything answers a PING on @port (a server asking for a
 * password or still loading its data answers with an error). */
static inline bool
answers(int port)
{
	return read_reply(send_cmd(port, "PING\r\n"), "");
}

/* Start redis-server on @port (0 = a free one) in @s->dir (made if empty). */
static inline int
server_start(struct server *s, int port)
{
	if (s->dir[0] == '\0') {
		strcpy(s->dir, "/tmp/ration-redis-XXXXXX");
		if (mkdtemp(s->dir) == NULL)
			return -errno;
	}
	s->port = port ? port : free_port();
	snprintf(s->uri, sizeof(s->uri), "redis://127.0.0.1:%d/0", s->port);
	char ports[16];
	snprintf(ports, sizeof(ports), "%d", s->port);
	s->pid = fork();
	if (s->pid < 0)
		return -errno;
	if (s->pid == 0) {
		int devnull = open("/dev/null", O_WRONLY);
		dup2(devnull, 1);
		const char *argv[32] = {"redis-server",
					"--port",
					ports,
					"--bind",
					"127.0.0.1",
					"--save",
					"",
					"--appendonly",
					"no",
					"--dir",
					s->dir,
					"--loglevel",
					"warning",
					"--enable-debug-command",
					"yes"};
		int argc = 15;
		for (int i = 0;
		     s->extra != NULL && s->extra[i] != NULL && i < 8; i++)
			argv[argc++] = s->extra[i];
		execvp("redis-server", (char *const *)argv);
		_exit(127);
	}
	for (int64_t until = ration_now() + 10000 * MS; ration_now() < until;) {
		if (answers(s->port))
			return 0;
		int st;
		if (waitpid(s->pid, &st, WNOHANG) == s->pid)
			return -ECHILD; /* it died: port taken? */
		sleep_ns(10 * MS);
	}
	return -ETIMEDOUT;
}

static inline void
server_kill(struct server *s)
{
	if (s->pid > 0) {
		kill(s->pid, SIGKILL);
		waitpid(s->pid, NULL, 0);
		s->pid = 0;
	}
}

static inline void
server_cleanup(struct server *s)
{
	server_kill(s);
	if (s->dir[0] != '\0') {
		char cmd[128];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", s->dir);
		(void)system(cmd);
		s->dir[0] = '\0';
	}
}

/* ---- helpers ---- */

static inline void
new_key(char *buf, size_t cap)
{
	snprintf(buf, cap, "t-%d-%d", (int)getpid(),
		 atomic_fetch_add(&key_seq, 1));
}

static inline ration_sem_t *
open_lease(const char *uri, const char *key, int64_t size, int64_t lease_ns)
{
	ration_remote_opts_t o = {.lease_ns = lease_ns};
	ration_sem_t *s = NULL;
	ck_assert_int_eq(ration_sem_open_redis(uri, key, size, &o, &s), 0);
	return s;
}

static inline ration_sem_t *
open_sem(const char *uri, const char *key, int64_t size)
{
	return open_lease(uri, key, size, 0);
}

/* A Redis suite's main(): skip (77) without redis-server or hiredis,
 * else run @suite against main_srv, started for it. */
static inline int
redis_suite_main(Suite *(*suite)(void))
{
	if (!have_redis_server()) {
		return skip_suite("redis-server is not installed (Debian: "
				  "apt-get install redis-server)");
	}
	ration_sem_t *probe;
	if (ration_sem_open_redis("redis://127.0.0.1:1", "probe", 1, NULL,
				  &probe) == -ENOTSUP) {
		return skip_suite("ration was built without hiredis (-Dredis)");
	}
	int rc = server_start(&main_srv, 0);
	if (rc != 0) {
		fprintf(stderr, "cannot start redis-server: %s\n",
			strerror(-rc));
		server_cleanup(&main_srv);
		return EXIT_FAILURE;
	}
	int failed = run_suite(suite());
	server_cleanup(&main_srv);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

#endif
