/* nowait.h (internal) - spans in which this thread must not wait inside
 * malloc. An elastic task's allocation past its claim can wait there until
 * the oldest running task ends (lib/elastic_arena.c). A thread that
 * allocates while it holds one of ration's locks (the timer heap, a learn
 * table, the named-semaphore registry, a Redis connection) must not: the
 * oldest task may need that lock to end. Such spans are marked; the hook
 * then lets the allocation through, and the sampler counts it as before.
 * Spans nest. */
#ifndef RATION_INTERNAL_NOWAIT_H
#define RATION_INTERNAL_NOWAIT_H

/* Defined in lib/elastic.c; this thread's nesting depth. */
extern _Thread_local unsigned ration__nowait_depth;

static inline void
ration__nowait_begin(void)
{
	ration__nowait_depth++;
}

static inline void
ration__nowait_end(void)
{
	ration__nowait_depth--;
}

#endif
