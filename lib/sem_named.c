/* sem_named.c - process-wide named semaphores (ration_sem_open).
 *
 * Locking: registry_mu guards the list of named semaphores and their
 * refs/named fields. It is taken before a semaphore's mu (in
 * ration__sem_busy), never inside it.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "internal/list.h"
#include "internal/nowait.h"
#include "internal/sem.h"
#include "ration/sem.h"

static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static struct ration__list registry = {&registry, &registry}; /* registry_mu */

int
ration_sem_open(const char *name, int64_t size, ration_sem_t **out)
{
	if (name == NULL || name[0] == '\0' || out == NULL)
		return -EINVAL;
	/* Names are compared as stored: longer ones are told apart by the
	 * full string, kept separately from the (truncated) stats name. */
	size_t len = strlen(name);
	int rc = 0;
	pthread_mutex_lock(&registry_mu);
	ration__nowait_begin(); /* allocates under registry_mu */
	for (struct ration__list *n = registry.next; n != &registry;
	     n = n->next) {
		ration_sem_t *s =
			RATION_CONTAINER_OF(n, ration_sem_t, reg_node);
		if (strcmp(s->full_name, name) == 0) {
			s->refs++;
			*out = s;
			goto out;
		}
	}
	char *copy = malloc(len + 1);
	if (copy == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	memcpy(copy, name, len + 1);
	ration_sem_opts_t opts = {.name = name};
	ration_sem_t *s;
	if ((rc = ration_sem_new(size, &opts, &s)) != 0) {
		free(copy);
		goto out;
	}
	s->named = true;
	s->refs = 1;
	s->full_name = copy;
	list_push_back(&registry, &s->reg_node);
	*out = s;
out:
	ration__nowait_end();
	pthread_mutex_unlock(&registry_mu);
	return rc;
}

int
ration__sem_free_named(ration_sem_t *s)
{
	pthread_mutex_lock(&registry_mu);
	if (s->refs > 1) {
		s->refs--;
		pthread_mutex_unlock(&registry_mu);
		return 0;
	}
	if (ration__sem_busy(s)) {
		pthread_mutex_unlock(&registry_mu);
		return -EBUSY;
	}
	list_remove(&s->reg_node);
	pthread_mutex_unlock(&registry_mu);
	free(s->full_name);
	ration__sem_destroy(s);
	return 0;
}
