/* redis_sem.h (internal) - the Redis semaphore handle, shared by
 * redis_sem.c (operations, session, renewer) and redis_wait.c (a queued
 * caller's wait). Locking: see redis_sem.c. */
#ifndef RATION_INTERNAL_REDIS_SEM_H
#define RATION_INTERNAL_REDIS_SEM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "internal/clock.h"
#include "internal/ctx.h"
#include "redis_conn.h"
#include "ration/ctx.h"
#include "ration/lease.h"

#define MS              ((int64_t)1000000)
#define SLICE_NS        (50 * MS)   /* longest BLPOP between ctx checks */
#define WAIT_MARGIN_NS  (250 * MS)  /* a BLPOP reply past the deadline */
#define CHECK_NS        (1000 * MS) /* a waiter re-checks its ticket */
#define LEAVE_NS        (250 * MS)  /* a leave after the deadline, at most */
#define LEASE_MIN_NS    (100 * MS)
#define IDLE_CONNS      8
#define ORPHANS         16

struct remote {
	pthread_mutex_t mu;
	pthread_cond_t cv;          /* mu: the renewer sleeps on it */
	struct redis_conf cf;       /* immutable */
	char key[224];              /* immutable: "ration:{key}" */
	char sid[48];               /* immutable: the session id */
	char lease_us[24];          /* immutable, as text */
	int64_t lease_ns;           /* immutable */
	pid_t pid;                  /* immutable: the opening process */
	pthread_t renewer;

	redisContext *c;            /* mu: main connection; NULL while down */
	char shas[RS_COUNT][41];    /* mu */
	int64_t size;               /* mu: last size seen (re-creates a lost sem) */
	uint64_t fence;             /* mu: largest fence seen */
	int64_t inc;                /* mu: incarnation of our session */
	unsigned gen;               /* mu: moves when the session was lost */
	int64_t held;               /* mu: weight this handle holds */
	int64_t stale;              /* mu: weight lost with a session */
	int64_t waiting;            /* mu: callers queued or queueing */
	bool unsure;                /* mu: some call's outcome is unknown */
	bool stop;                  /* mu: the renewer must exit */
	int64_t last_avail;         /* mu: for available() when offline */
	uint64_t orphan[ORPHANS];   /* mu: tickets still to leave */
	unsigned norphan;           /* mu */
	redisContext *idle[IDLE_CONNS]; /* mu: spare wait connections */
	unsigned nidle;             /* mu */
};

struct reply {
	int code;
	int64_t size;
	int64_t a;
};

static inline void
lock(struct remote *r)
{
	pthread_mutex_lock(&r->mu);
}

static inline void
unlock(struct remote *r)
{
	pthread_mutex_unlock(&r->mu);
}

/* redis_sem.c, all with r->mu held: */
/* Run @script with our session, bounded by @deadline_ns. */
int ration__redis_call(struct remote *r, enum redis_script script, int64_t deadline_ns,
		       int nx, const char *const *x, struct reply *out);
/* Take @n or queue for it: 0 granted, 1 queued as *tk (counted in
 * waiting), or an error. */
int ration__redis_enqueue(struct remote *r, int64_t deadline_ns, const char *ns, int64_t n,
			  bool lease, uint64_t *tk, ration_lease_t *out);
/* Book a grant of @n with @fence (and fill @out when a lease). */
void ration__redis_granted(struct remote *r, uint64_t fence, int64_t n, ration_lease_t *out);
/* Leave orphaned tickets; sync held with the server if unsure and no
 * caller of the handle is queued. */
void ration__redis_repair(struct remote *r, int64_t deadline_ns);
/* A reply showed incarnation @inc of our session. */
void ration__redis_note_inc(struct remote *r, int64_t inc);

/* redis_wait.c, mu not held: block until ticket @tk's outcome. */
int ration__redis_wait_ticket(struct remote *r, ration_ctx_t *ctx, int64_t deadline_ns,
			      const char *ns, int64_t n, bool lease, uint64_t tk,
			      unsigned gen, ration_lease_t *out);

#endif
