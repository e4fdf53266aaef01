/* taskq.h - the pool's FIFO of 16-byte tasks, in recycled chunks.
 *
 * A queued task costs 16 bytes plus 1/CHUNK_TASKS of a chunk header; up
 * to SPARE_CHUNKS emptied chunks are kept, so a queue oscillating below
 * its high-water mark does not allocate. Not thread-safe: the owner locks.
 */
#ifndef RATION_INTERNAL_TASKQ_H
#define RATION_INTERNAL_TASKQ_H

#include <stdlib.h>
#include <string.h>

#include "ration/pool.h"

#define CHUNK_TASKS 254 /* chunk = 16 + 254 * 16 = 4080 bytes */
#define SPARE_CHUNKS 4

struct task {
	ration_task_fn fn;
	void *arg;
};

struct chunk {
	struct chunk *next;
	unsigned head, tail; /* tasks [head, tail) are queued */
	struct task t[CHUNK_TASKS];
};

/* The queue of one pool; all under p->mu. */
struct queue {
	struct chunk *first, *last;
	struct chunk *spare;
	unsigned nspare;
	size_t len;
};

static inline bool
queue_push(struct queue *q, ration_task_fn fn, void *arg)
{
	struct chunk *c = q->last;
	if (c == NULL || c->tail == CHUNK_TASKS) {
		struct chunk *n = q->spare;
		if (n != NULL) {
			q->spare = n->next;
			q->nspare--;
		} else if ((n = malloc(sizeof(*n))) == NULL) {
			return false;
		}
		n->next = NULL;
		n->head = n->tail = 0;
		if (c != NULL)
			c->next = n;
		else
			q->first = n;
		q->last = c = n;
	}
	c->t[c->tail++] = (struct task){fn, arg};
	q->len++;
	return true;
}

static inline void
chunk_retire(struct queue *q, struct chunk *c)
{
	if (q->nspare < SPARE_CHUNKS) {
		c->next = q->spare;
		q->spare = c;
		q->nspare++;
	} else {
		free(c);
	}
}

static inline struct task
queue_pop(struct queue *q)
{
	struct chunk *c = q->first;
	struct task t = c->t[c->head++];
	q->len--;
	if (c->head == c->tail) {
		if (c->tail == CHUNK_TASKS || q->len == 0) {
			q->first = c->next;
			if (q->first == NULL)
				q->last = NULL;
			chunk_retire(q, c);
		}
	}
	return t;
}

static inline void
queue_free(struct queue *q)
{
	for (struct chunk *c = q->first, *next; c != NULL; c = next) {
		next = c->next;
		free(c);
	}
	for (struct chunk *c = q->spare, *next; c != NULL; c = next) {
		next = c->next;
		free(c);
	}
	memset(q, 0, sizeof(*q));
}

#endif
