/* test_redis_faults.c - the Redis backend under server faults (issue 19),
 * each against a private redis-server (redis_server.h): restart without
 * data, restart with data (loading), RDB restore (also of a snapshot taken
 * during a recovery), a frozen server, a stall longer than the lease; plus
 * consume, the URI and huge timeouts. Without redis-server or hiredis the
 * program exits 77 (skipped). */
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ration.h>

#include "helpers.h"
#include "redis_server.h"

#define LEASE_NS (1000 * MS)

static const ration_remote_opts_t lease_opts = {.lease_ns = LEASE_NS};

static void
open2(const struct server *srv, const char *key, int64_t size, ration_sem_t **s,
      ration_sem_t **t)
{
	ck_assert_int_eq(
		ration_sem_open_redis(srv->uri, key, size, &lease_opts, s), 0);
	ck_assert_int_eq(
		ration_sem_open_redis(srv->uri, key, 0, &lease_opts, t), 0);
}

/* Servers that can be rolled back: SAVE writes dump.rdb, a restart reads it. */
static const char *const rdb_extra[] = {"--dbfilename", "dump.rdb", NULL};

/* Start @srv and open three handles of a new semaphore of @size on it. */
static void
open3(struct server *srv, int64_t size, ration_sem_t **s, ration_sem_t **t,
      ration_sem_t **u)
{
	ck_assert_int_eq(server_start(srv, 0), 0);
	char key[64];
	new_key(key, sizeof(key));
	open2(srv, key, size, s, t);
	ck_assert_int_eq(
		ration_sem_open_redis(srv->uri, key, 0, &lease_opts, u), 0);
}

/* Free open3()'s handles (each holds nothing) and its server. */
static void
free3(struct server *srv, ration_sem_t *s, ration_sem_t *t, ration_sem_t *u)
{
	ck_assert_int_eq(ration_sem_free(s), 0);
	ck_assert_int_eq(ration_sem_free(t), 0);
	ck_assert_int_eq(ration_sem_free(u), 0);
	server_cleanup(srv);
}

/* Ask the server @cmd (no password); true on a reply starting with @want. */
static bool
server_says(const struct server *srv, const char *cmd, const char *want)
{
	return read_reply(send_cmd(srv->port, cmd), want);
}

/* try_acquire @n on @s until it succeeds; fails the test if it does not
 * within @within_ns, if @never ever succeeds on the way (an over-grant),
 * or if a try takes longer than its bound. */
static void
try_until_granted(ration_sem_t *s, int64_t n, int64_t never, int64_t within_ns)
{
	int64_t until = ration_now() + within_ns;
	for (;;) {
		int64_t t0 = ration_now();
		int rc = ration_sem_try_acquire(s, never);
		ck_assert_msg(rc != 0, "%lld granted: an over-grant",
			      (long long)never);
		ck_assert_msg(rc == -EAGAIN || rc == -EIO, "%s",
			      ration_strerror(rc));
		rc = ration_sem_try_acquire(s, n);
		ck_assert_int_lt(ration_now() - t0,
				 2 * 250 * MS + TEST_LATE_NS);
		if (rc == 0)
			return;
		/* -EIO: the first call on a connection the restart broke */
		ck_assert_msg(rc == -EAGAIN || rc == -EIO, "%s",
			      ration_strerror(rc));
		ck_assert_msg(ration_now() < until, "%lld never granted",
			      (long long)n);
		sleep_ns(20 * MS);
	}
}

/* ---- consume ---- */

START_TEST(test_redis_consume_past_size_and_fifo_after)
{
	char key[64];
	new_key(key, sizeof(key));
	ration_sem_t *s, *t;
	open2(&main_srv, key, 10, &s, &t);
	ck_assert_int_eq(ration_sem_consume(s, 12), 0); /* past the size */
	ck_assert_int_eq(ration_sem_available(t), -2);
	ck_assert_int_eq(ration_sem_try_acquire(t, 1), -EAGAIN);

	struct bg b;
	bg_acquire_until(&b, t, ration_now() + TEST_WAIT_NS, 3);
	wait_waiters(s, 1);
	ck_assert_int_eq(ration_sem_release(s, 4),
			 0); /* in_use 8: 3 does not fit */
	sleep_ns(100 * MS);
	ck_assert(!atomic_load(&b.done));
	ck_assert_int_eq(ration_sem_release(s, 1), 0); /* in_use 7: it fits */
	ck_assert_int_eq(bg_join(&b), 0);

	ration_sem_stats_t st;
	ration_sem_stats(t, &st);
	ck_assert_uint_eq(st.consumed, 12);
	ck_assert_int_eq(st.in_use, 10);
	ck_assert_int_eq(ration_sem_release(s, 7), 0);
	ck_assert_int_eq(ration_sem_release(t, 3), 0);
	ck_assert_int_eq(ration_sem_available(s), 10);
	ck_assert_int_eq(ration_sem_free(s), 0);
	ck_assert_int_eq(ration_sem_free(t), 0);
}
END_TEST

/* ---- fences with size > 1 ---- */

/* Two holders at once both have valid fences, the lower one too: a store
 * asks whether a fence is live instead of rejecting lower ones. */
START_TEST(test_redis_lease_live_for_concurrent_holders)
{
	char key[64];
	new_key(key, sizeof(key));
	ration_sem_t *s, *t;
	open2(&main_srv, key, 4, &s, &t);
	ration_lease_t a, b;
	ck_assert_int_eq(ration_sem_acquire_lease(s, NULL, 2, &a), 0);
	ck_assert_int_eq(ration_sem_acquire_lease(t, NULL, 2, &b), 0);
	ck_assert_uint_lt(a.fence, b.fence);
	ck_assert_int_eq(ration_lease_live_redis(t, a.fence),
			 1); /* lower, yet live */
	ck_assert_int_eq(ration_lease_live_redis(s, b.fence), 1);
	ck_assert_int_eq(ration_lease_release(s, &a), 0);
	ck_assert_int_eq(ration_lease_live_redis(t, a.fence), 0);
	ck_assert_int_eq(ration_lease_live_redis(t, b.fence + 1000), 0);
	ck_assert_int_eq(ration_lease_live_redis(t, 0), -EINVAL);
	ck_assert_int_eq(ration_lease_live_redis(NULL, 1), -EINVAL);
	ration_sem_t *local;
	ck_assert_int_eq(ration_sem_new(1, NULL, &local), 0);
	ck_assert_int_eq(ration_lease_live_redis(local, 1), -EINVAL);
	ck_assert_int_eq(ration_sem_free(local), 0);
	ck_assert_int_eq(ration_lease_release(t, &b), 0);
	ck_assert_int_eq(ration_sem_free(s), 0);
	ck_assert_int_eq(ration_sem_free(t), 0);
}
END_TEST

/* ---- the URI and huge timeouts ---- */

START_TEST(test_redis_password_with_at_and_escapes)
{
	const char *extra[] = {"--requirepass", "p@ss:w/rd%", NULL};
	struct server srv = {.extra = extra};
	ck_assert_int_eq(server_start(&srv, 0), 0);
	char key[64], uri[160];
	new_key(key, sizeof(key));
	ration_sem_t *s;
	snprintf(uri, sizeof(uri), "redis://:p@ss:w/rd%%25@127.0.0.1:%d/0",
		 srv.port);
	ck_assert_int_eq(ration_sem_open_redis(uri, key, 3, NULL, &s),
			 0); /* last '@' */
	ck_assert_int_eq(ration_sem_free(s), 0);
	snprintf(uri, sizeof(uri),
		 "redis://default:p%%40ss%%3Aw%%2Frd%%25@127.0.0.1:%d",
		 srv.port);
	ck_assert_int_eq(ration_sem_open_redis(uri, key, 3, NULL, &s), 0);
	ck_assert_int_eq(ration_sem_free(s), 0);
	snprintf(uri, sizeof(uri), "redis://:p@ss@127.0.0.1:%d", srv.port);
	ck_assert_int_eq(ration_sem_open_redis(uri, key, 3, NULL, &s), -EPROTO);
	snprintf(uri, sizeof(uri), "redis://:p%%4@127.0.0.1:%d", srv.port);
	ck_assert_int_eq(ration_sem_open_redis(uri, key, 3, NULL, &s), -EINVAL);
	snprintf(uri, sizeof(uri), "redis://:p%%00@127.0.0.1:%d", srv.port);
	ck_assert_int_eq(ration_sem_open_redis(uri, key, 3, NULL, &s), -EINVAL);
	server_cleanup(&srv);
}
END_TEST

START_TEST(test_redis_huge_timeouts_saturate)
{
	char key[64];
	new_key(key, sizeof(key));
	ration_remote_opts_t o = {.connect_timeout_ns = INT64_MAX,
				  .io_timeout_ns = INT64_MAX};
	ration_sem_t *s;
	ck_assert_int_eq(ration_sem_open_redis(main_srv.uri, key, 2, &o, &s),
			 0);
	ck_assert_int_eq(ration_sem_acquire_until(s, INT64_MAX, 1), 0);
	ration_ctx_t *ctx;
	ck_assert_int_eq(ration_ctx_with_timeout(NULL, INT64_MAX, &ctx), 0);
	ck_assert_int_eq(ration_sem_acquire(s, ctx, 1), 0);
	ck_assert_int_eq(ration_sem_try_acquire(s, 1), -EAGAIN);
	ck_assert_int_eq(ration_sem_release(s, 2), 0);
	ration_ctx_unref(ctx);
	ck_assert_int_eq(ration_sem_free(s), 0);
	o = (ration_remote_opts_t){.lease_ns = INT64_MAX};
	ck_assert_int_eq(ration_sem_open_redis(main_srv.uri, key, 2, &o, &s),
			 -EINVAL);
}
END_TEST

/* ---- faults of the server ---- */

/* Frozen (SIGSTOP): every call keeps its deadline, also when it must
 * reconnect (AUTH, SCRIPT LOAD to a server that accepts but never
 * answers), and while the renewer's round trip fails; try_acquire is
 * bounded and says -EAGAIN or -EIO. They used to return seconds late. */
START_TEST(test_redis_frozen_server_calls_keep_deadlines)
{
	const char *extra[] = {"--requirepass", "pw", NULL};
	struct server srv = {.extra = extra};
	ck_assert_int_eq(server_start(&srv, 0), 0);
	char key[64], uri[160];
	new_key(key, sizeof(key));
	snprintf(uri, sizeof(uri), "redis://:pw@127.0.0.1:%d/1", srv.port);
	ration_sem_t *s;
	ck_assert_int_eq(ration_sem_open_redis(uri, key, 10, &lease_opts, &s),
			 0);
	ck_assert_int_eq(
		ration_sem_acquire_until(s, ration_now() + TEST_WAIT_NS, 4), 0);

	kill(srv.pid, SIGSTOP);
	for (int i = 0; i < 4; i++) { /* the first drops the connection */
		int64_t dl = ration_now() + 200 * MS;
		int rc = ration_sem_acquire_until(s, dl, 1);
		int64_t late = ration_now() - dl;
		ck_assert_msg(rc == -ETIMEDOUT || rc == -EIO, "%s",
			      ration_strerror(rc));
		ck_assert_msg(late < TEST_LATE_NS, "returned %lld ms late",
			      (long long)(late / MS));
		int64_t t0 = ration_now();
		rc = ration_sem_try_acquire(s, 1);
		ck_assert_msg(rc == -EAGAIN || rc == -EIO, "%s",
			      ration_strerror(rc));
		ck_assert_int_lt(ration_now() - t0, 250 * MS + TEST_LATE_NS);
	}
	kill(srv.pid, SIGCONT);
	ck_assert_int_eq(
		ration_sem_acquire_until(s, ration_now() + TEST_WAIT_NS, 6), 0);
	ck_assert_int_eq(ration_sem_release(s, 10), 0);
	ck_assert_int_eq(ration_sem_free(s), 0);
	server_cleanup(&srv);
}
END_TEST

/* A server stall longer than the lease does not count against holders
 * that renew once it is back: nothing is reclaimed (it was: 15 of 10). */
START_TEST(test_redis_server_stall_keeps_live_holders)
{
	struct server srv = {0};
	ck_assert_int_eq(server_start(&srv, 0), 0);
	char key[64];
	new_key(key, sizeof(key));
	ration_sem_t *s, *t;
	open2(&srv, key, 10, &s, &t);
	ration_lease_t l;
	ck_assert_int_eq(ration_sem_acquire_lease(s, NULL, 5, &l), 0);

	kill(srv.pid, SIGSTOP);
	sleep_ns(2 * LEASE_NS + LEASE_NS / 2);
	kill(srv.pid, SIGCONT);
	try_until_granted(t, 5, 6, 3 * LEASE_NS + TEST_LATE_NS);
	ck_assert_int_eq(ration_lease_release(s, &l), 0); /* still s's */
	ck_assert_int_eq(ration_sem_release(t, 5), 0);
	ck_assert_int_eq(ration_sem_available(t), 10);
	ck_assert_int_eq(ration_sem_free(s), 0);
	ck_assert_int_eq(ration_sem_free(t), 0);
	server_cleanup(&srv);
}
END_TEST

/* Restart with the data (AOF, appendfsync always) and a slow load: calls
 * wait for the load within their deadline (they failed with -EPROTO); a
 * release made while the server was down is finished by the handle once
 * it is back (it stayed held, renewed for ever, and free said -EBUSY). */
START_TEST(test_redis_release_during_outage_and_loading_server)
{
	const char *extra[] = {"--appendonly",
			       "yes",
			       "--appendfsync",
			       "always",
			       "--key-load-delay",
			       "50",
			       NULL};
	struct server srv = {.extra = extra};
	ck_assert_int_eq(server_start(&srv, 0), 0);
	/* 20000 keys at 50 us each: about a second of LOADING. */
	ck_assert(server_says(&srv, "DEBUG POPULATE 20000\r\n", "+OK"));
	ck_assert(server_says(&srv, "BGREWRITEAOF\r\n", "+"));
	sleep_ns(500 * MS);
	char key[64];
	new_key(key, sizeof(key));
	ration_sem_t *s, *t;
	open2(&srv, key, 10, &s, &t);
	ck_assert_int_eq(
		ration_sem_acquire_until(s, ration_now() + TEST_WAIT_NS, 3), 0);

	server_kill(&srv);
	ck_assert_int_eq(ration_sem_release(s, 3),
			 0); /* the handle finishes it */
	ck_assert_int_eq(server_start(&srv, srv.port), 0);
	int rc = ration_sem_acquire_until(t, ration_now() + TEST_WAIT_NS, 10);
	ck_assert_msg(rc == 0, "%s", ration_strerror(rc));
	ck_assert_int_eq(ration_sem_release(t, 10), 0);
	ck_assert_int_eq(ration_sem_free(s), 0);
	ck_assert_int_eq(ration_sem_free(t), 0);
	server_cleanup(&srv);
}
END_TEST

/* RDB restore: the snapshot has s holding what it has released since and
 * lacks t's later lease. Fences keep increasing (one was issued twice);
 * the handles resynchronise (in_use drifted): s's phantom goes back, t's
 * lease is re-asserted, and u never gets more than is free. */
START_TEST(test_redis_rdb_restore_fences_and_resync)
{
	struct server srv = {.extra = rdb_extra};
	ration_sem_t *s, *t, *u;
	open3(&srv, 10, &s, &t, &u);
	ration_lease_t ls, lt;
	ck_assert_int_eq(ration_sem_acquire_lease(s, NULL, 4, &ls), 0);
	ck_assert(server_says(&srv, "SAVE\r\n", "+OK"));
	ck_assert_int_eq(ration_lease_release(s, &ls), 0);
	ck_assert_int_eq(ration_sem_acquire_lease(t, NULL, 3, &lt), 0);

	server_kill(&srv); /* SIGKILL: no save at exit */
	ck_assert_int_eq(server_start(&srv, srv.port), 0);
	try_until_granted(u, 7, 8, 3 * LEASE_NS + TEST_LATE_NS);
	ck_assert_int_eq(ration_sem_release(u, 7), 0);
	ration_lease_t l2;
	ck_assert_int_eq(ration_sem_acquire_lease(u, NULL, 1, &l2), 0);
	ck_assert_uint_gt(l2.fence, lt.fence);
	ck_assert_int_eq(ration_lease_release(u, &l2), 0);
	ck_assert_int_eq(ration_lease_release(t, &lt), 0);
	ck_assert_int_eq(ration_sem_available(u), 10);
	free3(&srv, s, t, u);
}
END_TEST

/* RDB restore where the snapshot's phantom fills the size: s held all of
 * it at the SAVE and released it since; t holds it now. t's re-assertion
 * must not be refused for lack of room while s's phantom is still counted
 * (the recovery lets in_use pass size until the phantom goes): t keeps
 * its weight and its release answers 0, not -ESTALE. */
START_TEST(test_redis_rdb_restore_phantom_does_not_evict_holder)
{
	struct server srv = {.extra = rdb_extra};
	ck_assert_int_eq(server_start(&srv, 0), 0);
	char key[64];
	new_key(key, sizeof(key));
	ration_sem_t *s, *t;
	open2(&srv, key, 4, &s, &t);
	ck_assert_int_eq(ration_sem_try_acquire(s, 4), 0);
	ck_assert(server_says(&srv, "SAVE\r\n", "+OK"));
	ck_assert_int_eq(ration_sem_release(s, 4), 0);
	ck_assert_int_eq(ration_sem_try_acquire(t, 4), 0);

	server_kill(&srv); /* SIGKILL: no save at exit */
	ck_assert_int_eq(server_start(&srv, srv.port), 0);
	/* t's connection again first: its release then meets the server */
	(void)ration_sem_available(t);
	int rc = ration_sem_release(t, 4);
	ck_assert_msg(rc == 0, "%s", ration_strerror(rc));
	/* the phantom goes (s's session expires): all 4 are free again */
	int64_t until = ration_now() + 3 * LEASE_NS + TEST_LATE_NS;
	while ((rc = ration_sem_try_acquire(t, 4)) != 0) {
		ck_assert_msg(rc == -EAGAIN || rc == -EIO, "%s",
			      ration_strerror(rc));
		ck_assert_msg(ration_now() < until, "never granted");
		sleep_ns(20 * MS);
	}
	ck_assert_int_eq(ration_sem_release(t, 4), 0);
	ck_assert_int_eq(ration_sem_free(s), 0);
	ck_assert_int_eq(ration_sem_free(t), 0);
	server_cleanup(&srv);
}
END_TEST

/* ---- a snapshot taken during a recovery, restored later ---- */

/* The test's own ledger of what its handles hold: every grant is booked
 * here as soon as it returns and must keep the total within the size. */
struct ledger {
	int64_t size, held;
};

static void
ledger_grant(struct ledger *l, int rc, int64_t n)
{
	ck_assert_msg(rc == 0, "%s", ration_strerror(rc));
	l->held += n;
	ck_assert_msg(l->held <= l->size, "over-grant: %lld of %lld held",
		      (long long)l->held, (long long)l->size);
}

static void
ledger_release(struct ledger *l, int rc, int64_t n)
{
	ck_assert_msg(rc == 0, "release: %s", ration_strerror(rc));
	l->held -= n;
}

/* Whether the semaphore is in a recovery (no grants): a lease's liveness
 * is unknown then. */
static bool
recovering(ration_sem_t *s)
{
	int rc = ration_lease_live_redis(s, 1);
	ck_assert_msg(rc == -EAGAIN || rc == 0, "%s", ration_strerror(rc));
	return rc == -EAGAIN;
}

/* An acquire with a 200 ms deadline: it fails (nothing is free, or the
 * server is down or recovering) and returns within TEST_LATE_NS of its
 * deadline. */
static void
acquire_fails_in_time(ration_sem_t *s, int64_t n)
{
	int64_t dl = ration_now() + 200 * MS;
	int rc = ration_sem_acquire_until(s, dl, n);
	int64_t late = ration_now() - dl;
	ck_assert_msg(rc == -ETIMEDOUT || rc == -EIO || rc == -ECONNREFUSED,
		      "%s", ration_strerror(rc));
	ck_assert_msg(late < TEST_LATE_NS, "returned %lld ms late",
		      (long long)(late / MS));
}

/* The server restarts from the snapshot (SIGKILL: no save at exit); a
 * call meanwhile keeps its deadline. */
static void
roll_back(struct server *srv, ration_sem_t *s)
{
	server_kill(srv);
	acquire_fails_in_time(s, 1);
	ck_assert_int_eq(server_start(srv, srv->port), 0);
}

/* A snapshot taken during a recovery (here one after a server stall)
 * still says "recovering" when it is restored, after that recovery has
 * ended and the holders have changed: s released its 4 since, t holds a
 * lease of 6 the snapshot lacks. The restore must start a recovery of
 * its own that t sees (it saw the snapshot's): t's lease is re-asserted,
 * s's phantom goes although s keeps calling, s never gets more than is
 * free, and fences continue above t's. */
START_TEST(test_redis_snapshot_during_recovery_restored_after_it)
{
	struct server srv = {.extra = rdb_extra};
	ration_sem_t *s, *t, *u;
	open3(&srv, 10, &s, &t, &u);
	struct ledger l = {.size = 10};
	ledger_grant(&l, ration_sem_try_acquire(s, 4), 4);

	kill(srv.pid, SIGSTOP); /* over half a lease with weight held */
	sleep_ns(LEASE_NS * 7 / 10);
	kill(srv.pid, SIGCONT);
	ck_assert(recovering(u));
	ck_assert(server_says(&srv, "SAVE\r\n", "+OK"));
	ck_assert(recovering(u));    /* so the snapshot has it */
	acquire_fails_in_time(t, 1); /* t sees this recovery */
	int64_t until = ration_now() + 3 * LEASE_NS + TEST_LATE_NS;
	while (recovering(u)) {
		ck_assert_msg(ration_now() < until, "the recovery never ended");
		sleep_ns(20 * MS);
	}
	ledger_release(&l, ration_sem_release(s, 4), 4);
	ration_lease_t lt;
	ledger_grant(&l, ration_sem_acquire_lease(t, NULL, 6, &lt), 6);

	roll_back(&srv, u);
	/* s asks (so its session lives on): its phantom must go all the same */
	try_until_granted(s, 4, 5, 4 * LEASE_NS + TEST_LATE_NS);
	ledger_grant(&l, 0, 4);
	ledger_release(&l, ration_lease_release(t, &lt), 6);
	ration_lease_t lu;
	ledger_grant(&l, ration_sem_acquire_lease(u, NULL, 6, &lu), 6);
	ck_assert_uint_gt(lu.fence, lt.fence);
	ledger_release(&l, ration_lease_release(u, &lu), 6);
	ledger_release(&l, ration_sem_release(s, 4), 4);
	ck_assert_int_eq(ration_sem_available(u), 10);
	free3(&srv, s, t, u);
}
END_TEST

/* A snapshot taken at the start of a recovery after a data loss (nobody
 * has re-asserted yet: in_use 0) is restored after s and t re-asserted
 * 4 and a lease of 6: at once (_i = 0: within half a lease, no gap) or a
 * lease later (_i = 1). They must re-assert again; u gets nothing until
 * they release, and their releases answer 0. */
START_TEST(test_redis_snapshot_at_recovery_start_restored)
{
	struct server srv = {.extra = rdb_extra};
	ration_sem_t *s, *t, *u;
	open3(&srv, 10, &s, &t, &u);
	struct ledger l = {.size = 10};
	ledger_grant(&l, ration_sem_try_acquire(s, 4), 4);
	ration_lease_t lt;
	ledger_grant(&l, ration_sem_acquire_lease(t, NULL, 6, &lt), 6);

	ck_assert(server_says(&srv, "FLUSHALL\r\n", "+OK"));
	ck_assert(recovering(u)); /* re-created: u knew the epoch */
	ck_assert(server_says(&srv, "SAVE\r\n", "+OK"));
	/* Each holder's first call learns of the recovery, the next one
	 * re-asserts (its renewer would within half a lease). */
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(ration_sem_try_acquire(s, 1), -EAGAIN);
		ck_assert_int_eq(ration_sem_try_acquire(t, 1), -EAGAIN);
	}
	ck_assert_int_eq(ration_sem_available(u), 0);
	if (_i == 1)
		sleep_ns(LEASE_NS);

	roll_back(&srv, u);
	int64_t until = ration_now() + 3 * LEASE_NS;
	while (ration_now() < until) { /* past any recovery: nothing free */
		int rc = ration_sem_try_acquire(u, 1);
		if (rc == 0)
			ledger_grant(&l, rc, 1); /* fails: over-grant */
		ck_assert_msg(rc == -EAGAIN || rc == -EIO, "%s",
			      ration_strerror(rc));
		sleep_ns(20 * MS);
	}
	acquire_fails_in_time(u, 1);
	ledger_release(&l, ration_sem_release(s, 4), 4);
	try_until_granted(u, 4, 5, 2 * LEASE_NS + TEST_LATE_NS);
	ledger_grant(&l, 0, 4);
	ledger_release(&l, ration_lease_release(t, &lt), 6);
	ledger_release(&l, ration_sem_release(u, 4), 4);
	ck_assert_int_eq(ration_sem_available(u), 10);
	free3(&srv, s, t, u);
}
END_TEST

static Suite *
faults_suite(void)
{
	Suite *s = suite_create("redis_faults");
	TCase *tc = tcase_create("contract");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_redis_consume_past_size_and_fifo_after);
	tcase_add_test(tc, test_redis_lease_live_for_concurrent_holders);
	tcase_add_test(tc, test_redis_password_with_at_and_escapes);
	tcase_add_test(tc, test_redis_huge_timeouts_saturate);
	suite_add_tcase(s, tc);

	tc = tcase_create("server");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_redis_frozen_server_calls_keep_deadlines);
	tcase_add_test(tc, test_redis_server_stall_keeps_live_holders);
	tcase_add_test(tc, test_redis_release_during_outage_and_loading_server);
	tcase_add_test(tc, test_redis_rdb_restore_fences_and_resync);
	tcase_add_test(tc,
		       test_redis_rdb_restore_phantom_does_not_evict_holder);
	tcase_add_test(tc,
		       test_redis_snapshot_during_recovery_restored_after_it);
	tcase_add_loop_test(tc, test_redis_snapshot_at_recovery_start_restored,
			    0, 2);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return redis_suite_main(faults_suite);
}
