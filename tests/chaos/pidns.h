/* pidns.h - workers in PID namespaces of their own: each one is pid 1 of
 * its namespace, so pids mean nothing across workers (containers sharing
 * /dev/shm). */
#ifndef RATION_CHAOS_PIDNS_H
#define RATION_CHAOS_PIDNS_H

#include <stdbool.h>

struct chaos_run;

/* Whether this process may make PID namespaces; prints why not. */
bool chaos_pidns_permitted(void);
/* In a fork child of the runner: make a PID namespace, start worker
 * @index in it (recording its pid as the runner sees it), wait for it and
 * end as it ended. Does not return. */
void chaos_pidns_launch(struct chaos_run *run, int index)
	__attribute__((noreturn));

#endif
