/* redis_sem.h (internal) - the Redis semaphore handle, and what the files
 * of the Redis backend share:
 *   redis_sem.c        the operations and the ops table
 *   redis_lifecycle.c  open, free, stats
 *   redis_session.c    the session: round trips, repairs, the renewer
 *   redis_wait.c       a queued caller's wait for its ticket
 * Connections and the scripts: redis_conn.h. Locking: see redis_sem.c. */
#ifndef RATION_INTERNAL_REDIS_SEM_H
#define RATION_INTERNAL_REDIS_SEM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/types.h>

#include "internal/clock.h"
#include "internal/ctx.h"
#include "ration/ctx.h"
#include "ration/lease.h"
#include "redis_conn.h"

#define MS              ((int64_t)1000000)
#define SLICE_NS        (50 * MS)   /* longest BLPOP between ctx checks */
#define WAIT_MARGIN_NS  (50 * MS)   /* a BLPOP reply past the deadline */
#define CHECK_NS        (1000 * MS) /* a waiter re-checks its ticket */
#define LEAVE_NS        (100 * MS)  /* a leave after the deadline, at most */
#define TRY_NS          (250 * MS)  /* try_acquire and consume, in all */
#define LOADING_POLL_NS (20 * MS)   /* a loading server is asked again */
#define LEASE_MIN_NS    (100 * MS)
#define LEASE_MAX_NS    (86400000 * MS) /* a day: server times stay exact in Lua */
#define IDLE_CONNS      8
#define ORPHANS         16
#define LEASES          32 /* leases re-asserted in a recovery */

/* A lease the handle holds (re-asserted with its fence in a recovery), or
 * a lease release still to be told to the server. */
struct held_lease {
	uint64_t fence;
	int64_t n;
};

struct redis_handle {
	pthread_mutex_t mu;
	pthread_cond_t cv;    /* mu: the renewer sleeps on it */
	struct redis_conf cf; /* immutable */
	char key[224];        /* immutable: "ration:{key}" */
	char sid[48];         /* immutable: the session id */
	char lease_us[24];    /* immutable, as text */
	int64_t lease_ns;     /* immutable */
	pid_t pid;            /* immutable: the opening process */
	pthread_t renewer;
	redisContext *rc; /* renewer thread only: its connection */
	bool rfresh;      /* renewer thread only: rc ran no script yet */
	char rshas[RS_COUNT][41]; /* renewer thread only */

	redisContext *c;         /* mu: main connection; NULL while down */
	bool fresh;              /* mu: c ran no script yet */
	char shas[RS_COUNT][41]; /* mu */
	int64_t size;       /* mu: last size seen (re-creates a lost sem) */
	uint64_t fence;     /* mu: largest fence seen */
	int64_t inc;        /* mu: incarnation of our session */
	int64_t epoch;      /* mu: the semaphore's creation, as seen */
	int64_t rec;        /* mu: start of its last recovery, as seen */
	unsigned gen;       /* mu: moves when the session was lost */
	unsigned booked;    /* mu: replies booked (the renewer's may be late) */
	int64_t held;       /* mu: weight this handle holds */
	int64_t stale;      /* mu: weight lost with a session */
	int64_t waiting;    /* mu: callers queued or queueing */
	bool unsure;        /* mu: some call's outcome is unknown */
	bool resync;        /* mu: re-assert what we hold (recovery) */
	bool stop;          /* mu: the renewer must exit */
	int64_t last_avail; /* mu: for available() when offline */
	uint64_t orphan[ORPHANS];         /* mu: tickets still to leave */
	unsigned norphan;                 /* mu */
	struct held_lease lease[LEASES];  /* mu: leases held */
	unsigned nlease;                  /* mu */
	struct held_lease unrel[ORPHANS]; /* mu: lease releases not yet told */
	unsigned nunrel;                  /* mu */
	redisContext *idle[IDLE_CONNS];   /* mu: spare wait connections */
	unsigned nidle;                   /* mu */
	/* A waiter that could not get mu in time to leave its ticket drops
	 * it here (CAS 0 -> ticket) and counts itself in `gone`; the next
	 * repair takes both over under mu. Relaxed: the repair reads only
	 * the values themselves, nothing they would publish. */
	_Atomic uint64_t dropped[ORPHANS];
	_Atomic int64_t gone;
};

static inline int64_t
reply_num(const redisReply *e)
{
	if (e->type == REDIS_REPLY_INTEGER)
		return e->integer;
	if (e->type == REDIS_REPLY_STRING)
		return strtoll(e->str, NULL, 10);
	return 0;
}

static inline void
sleep_ns(int64_t ns)
{
	struct timespec ts = ns_to_timespec(ns);
	nanosleep(&ts, NULL);
}

struct reply {
	int code;
	int64_t size;
	int64_t a;
};

static inline void
lock(struct redis_handle *r)
{
	pthread_mutex_lock(&r->mu);
}

/* Take mu by @deadline_ns (CLOCK_MONOTONIC): 0, or -ETIMEDOUT. Another
 * caller's round trip holds mu; a caller never waits for it past its own
 * deadline. */
int ration__redis_lock_until(struct redis_handle *r, int64_t deadline_ns);

static inline void
unlock(struct redis_handle *r)
{
	pthread_mutex_unlock(&r->mu);
}

/* redis_session.c, all with r->mu held: */
/* Run @script with our session, bounded by @deadline_ns (a loading server
 * is asked again until then: -EAGAIN if it still loads). */
int ration__redis_call(struct redis_handle *r, enum redis_script script,
		       int64_t deadline_ns, int nx, const char *const *x,
		       struct reply *out);
/* The same, with our session unless !with_sid; @keep (if not NULL)
 * receives the raw reply. */
int ration__redis_call_raw(struct redis_handle *r, enum redis_script script,
			   bool with_sid, int64_t deadline_ns, int nx,
			   const char *const *x, struct reply *out,
			   redisReply **keep);
/* Leave orphaned tickets, finish lease releases the server was not told
 * of, and make the server's count match ours after a failure (when no
 * caller of the handle is queued) or a recovery. */
void ration__redis_repair(struct redis_handle *r, int64_t deadline_ns);
/* A grant message showed incarnation @inc of our session. */
void ration__redis_note_inc(struct redis_handle *r, int64_t inc, bool recovery);
/* Take over the tickets (and the count) of waiters that left without mu. */
void ration__redis_collect_dropped(struct redis_handle *r);
/* The renewer thread's body (mu not held). */
void *ration__redis_renewer(void *arg);

/* redis_sem.c: */
/* The ops of a Redis handle. */
struct ration__sem_ops;
extern const struct ration__sem_ops ration__redis_ops;
/* The error a script's reply code stands for (-EPROTO if unknown). */
int ration__redis_code_err(int code);
/* All with r->mu held: */
/* Take @n or queue for it: 0 granted, 1 queued as *tk (counted in
 * waiting), or an error. */
int ration__redis_enqueue(struct redis_handle *r, int64_t deadline_ns,
			  const char *ns, int64_t n, bool lease, uint64_t *tk,
			  ration_lease_t *out);
/* Book a grant of @n with @fence (and fill @out when a lease). */
void ration__redis_granted(struct redis_handle *r, uint64_t fence, int64_t n,
			   ration_lease_t *out);

/* redis_lifecycle.c: the ops that read the server's stats, and free. */
int64_t ration__redis_available(const ration_sem_t *s);
void ration__redis_stats(const ration_sem_t *s, ration_sem_stats_t *out);
int ration__redis_free(ration_sem_t *s);

/* redis_wait.c, mu not held: block until ticket @tk's outcome. */
int ration__redis_wait_ticket(struct redis_handle *r, ration_ctx_t *ctx,
			      int64_t deadline_ns, const char *ns, int64_t n,
			      bool lease, uint64_t tk, unsigned gen,
			      ration_lease_t *out);

#endif
