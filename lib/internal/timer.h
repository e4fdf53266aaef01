/* timer.h - the process-wide timer thread (one, started lazily), shared by
 * ctx deadlines (after-funcs, fds) and pool watchdogs. */
#ifndef RATION_INTERNAL_TIMER_H
#define RATION_INTERNAL_TIMER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ration__timer {
	int64_t deadline; /* timer lock */
	size_t idx;       /* timer lock; TIMER_IDLE when not armed */
	/* Called with the timer lock held when the timer is due: return
	 * false if the owner is going away (fire is then not called). */
	bool (*claim)(struct ration__timer *t);
	/* Called without any lock after a successful claim. */
	void (*fire)(struct ration__timer *t);
};

#define TIMER_IDLE SIZE_MAX

static inline void
ration__timer_init(struct ration__timer *t,
		   bool (*claim)(struct ration__timer *),
		   void (*fire)(struct ration__timer *))
{
	t->deadline = 0;
	t->idx = TIMER_IDLE;
	t->claim = claim;
	t->fire = fire;
}

/* Arm @t for @deadline_ns (CLOCK_MONOTONIC); if it is already armed it
 * keeps its earlier deadline. Return 0, or -ENOMEM (nothing changed: the
 * heap could not grow or the timer thread could not start). */
int ration__timer_arm(struct ration__timer *t, int64_t deadline_ns);

/* Make sure @t is not armed; if its fire is running on the timer thread,
 * wait for it to return (unless called from that fire itself). */
void ration__timer_disarm(struct ration__timer *t);

#endif
