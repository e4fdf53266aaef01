/* redis_conn.h - the Redis backend's scripts and connection helpers,
 * shared by the files of lib/redis/. */
#ifndef RATION_INTERNAL_REDIS_CONN_H
#define RATION_INTERNAL_REDIS_CONN_H

#include <stdbool.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

/* One Lua script per operation (redis_scripts.c). Every script takes
 * KEYS[1] = "ration:{key}" and ARGV = sid, lease_us, init_size, min_fence,
 * then its own arguments; it first expires stale sessions by the server's
 * TIME, and answers {code, incarnation, size, a, b}. */
enum redis_script {
	RS_ACQUIRE, /* n, mode (0 wait, 1 try, 2 check only), lease (0/1) */
	RS_LEAVE,   /* ticket, reason (t/c/o) */
	RS_RELEASE, /* n, fence (0 = plain release) */
	RS_RESIZE,  /* new size */
	RS_CLOSE,
	RS_RENEW, /* ticket ("" = none): a = 1 if it is still pending */
	RS_STATS, /* a long reply, see redis_lifecycle.c */
	RS_SYNC,  /* held as the handle counts it, mode (e/r), leases */
	RS_BYE,
	RS_CONSUME, /* n: taken now, past the size if need be */
	RS_LIVE,    /* fence: a = 1 if that lease is live */
	RS_COUNT
};

/* Script result codes (first element of every reply). */
enum {
	RC_OK = 0,
	RC_QUEUED = 1, /* acquire: queued, a = ticket */
	RC_CLOSED = -1,
	RC_TOOBIG = -2,
	RC_AGAIN = -3,
	RC_OVERFLOW = -4,
	RC_STALE = -5,
	RC_NOENT = -6,
};

extern const char *const ration__redis_script[RS_COUNT];

/* Where and how to connect: parsed once from the URI. */
struct redis_conf {
	char host[256];
	int port;
	int db;
	char user[128];
	char pass[256];
	int64_t connect_timeout_ns;
	int64_t io_timeout_ns;
};

/* Parse "redis://[[user]:pass@]host[:port][/db]". Return 0 or -EINVAL. */
int ration__redis_parse_uri(const char *uri, struct redis_conf *cf);

/* Connect, AUTH, SELECT, all by @deadline_ns at the latest. Return 0 or
 * -ECONNREFUSED / -EIO (also: the deadline passed) / -EPROTO / -EAGAIN (the
 * server is loading its data: unavailable for now). */
int ration__redis_connect(const struct redis_conf *cf, int64_t deadline_ns,
			  redisContext **out);

/* SCRIPT LOAD every script into @shas (one pipelined round trip), by
 * @deadline_ns. Errors as ration__redis_connect(). */
int ration__redis_load(redisContext *c, const struct redis_conf *cf,
		       int64_t deadline_ns, char shas[RS_COUNT][41]);

/* The negative errno for a failed context (connection refused or other). */
int ration__redis_io_err(const redisContext *c);

/* Whether @c failed because the server closed it (a restart, a kill), as
 * opposed to a timeout. */
bool ration__redis_gone(const redisContext *c);

/* redisCommandArgv() with SIGPIPE held off (a server gone away must not
 * kill the process). NULL: the context failed. */
redisReply *ration__redis_command(redisContext *c, int argc, const char **argv);

/* Bound the next reply by @ns (at least 1 ms). */
void ration__redis_timeout(redisContext *c, int64_t ns);

/* EVALSHA @script (SCRIPT LOAD again on NOSCRIPT), each reply bounded by
 * @deadline_ns and io_timeout. @args are ARGV. On 0, *out is an array
 * reply the caller frees. -EIO etc. mean the connection is unusable;
 * -EPROTO an error reply and -EAGAIN a loading server (connection still
 * fine). */
int ration__redis_eval(redisContext *c, const struct redis_conf *cf,
		       int64_t deadline_ns, char shas[RS_COUNT][41],
		       enum redis_script script, const char *key, int nargs,
		       const char *const *args, redisReply **out);

#endif
