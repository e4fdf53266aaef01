/* taskq.h - the pool's FIFO of 16-byte tasks, in recycled chunks.
 *
 * A queued task costs 16 bytes plus 1/CHUNK_TASKS of a chunk's next
 * pointer. The read and write positions live in struct queue, not in the
 * chunks: the queue head sits on the pool lock's cache line, so a push or
 * a pop writes that one line plus the task's own slot. A queue that runs
 * empty keeps its chunk and starts again at slot 0; up to SPARE_CHUNKS
 * further emptied chunks are kept (struct spares, off the hot line), so a
 * queue oscillating below its high-water mark does not allocate. Not
 * thread-safe: the owner locks.
 */
#ifndef RATION_INTERNAL_TASKQ_H
#define RATION_INTERNAL_TASKQ_H

#include <stdlib.h>
#include <string.h>

#include "ration/pool.h"

#define CHUNK_TASKS  255 /* chunk = 8 + 255 * 16 = 4088 bytes */
#define SPARE_CHUNKS 4

struct task {
	ration_task_fn fn;
	void *arg;
};

struct chunk {
	struct chunk *next;
	struct task t[CHUNK_TASKS];
};

/* Tasks first->t[head..] up to last->t[..tail); first == NULL or both
 * indices 0 when nothing was ever queued or the queue was taken away. */
struct queue {
	struct chunk *first, *last;
	size_t len;
	unsigned head, tail;
};

struct spares {
	struct chunk *list;
	unsigned n;
};

static inline bool
queue_push(struct queue *q, struct spares *sp, ration_task_fn fn, void *arg)
{
	if (q->last == NULL || q->tail == CHUNK_TASKS) {
		struct chunk *n = sp->list;
		if (n != NULL) {
			sp->list = n->next;
			sp->n--;
		} else if ((n = malloc(sizeof(*n))) == NULL) {
			return false;
		}
		n->next = NULL;
		if (q->last != NULL) {
			q->last->next = n;
		} else {
			q->first = n;
			q->head = 0;
		}
		q->last = n;
		q->tail = 0;
	}
	q->last->t[q->tail++] = (struct task){fn, arg};
	q->len++;
	return true;
}

static inline void
chunk_retire(struct spares *sp, struct chunk *c)
{
	if (sp->n < SPARE_CHUNKS) {
		c->next = sp->list;
		sp->list = c;
		sp->n++;
	} else {
		free(c);
	}
}

/* The oldest task; the queue must not be empty. */
static inline struct task
queue_pop(struct queue *q, struct spares *sp)
{
	struct chunk *c = q->first;
	struct task t = c->t[q->head++];
	if (--q->len == 0) {
		q->head = q->tail = 0; /* first == last: reuse it from slot 0 */
	} else if (q->head == CHUNK_TASKS) {
		q->first = c->next;
		q->head = 0;
		chunk_retire(sp, c);
	}
	return t;
}

static inline void
queue_free(struct queue *q, struct spares *sp)
{
	for (struct chunk *c = q->first, *next; c != NULL; c = next) {
		next = c->next;
		free(c);
	}
	for (struct chunk *c = sp->list, *next; c != NULL; c = next) {
		next = c->next;
		free(c);
	}
	memset(q, 0, sizeof(*q));
	memset(sp, 0, sizeof(*sp));
}

#endif
