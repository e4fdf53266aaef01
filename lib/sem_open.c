/* sem_open.c - process-wide named semaphores and multi-resource acquire.
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
	for (struct ration__list *n = registry.next; n != &registry; n = n->next) {
		ration_sem_t *s = RATION_CONTAINER_OF(n, ration_sem_t, reg_node);
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

static int
claim_cmp(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t)((const ration_claim_t *)a)->sem;
	uintptr_t y = (uintptr_t)((const ration_claim_t *)b)->sem;
	return x < y ? -1 : x > y;
}

int
ration_acquire_all(ration_ctx_t *ctx, const ration_claim_t *claims, size_t count)
{
	ration_claim_t inline_buf[RATION_CLAIMS_INLINE];
	ration_claim_t *c = inline_buf;
	size_t k = 0, taken = 0;
	int rc = 0;

	if (count == 0)
		return 0;
	if (claims == NULL)
		return -EINVAL;
	for (size_t i = 0; i < count; i++)
		if (claims[i].sem == NULL || claims[i].n <= 0)
			return -EINVAL;
	if (count > RATION_CLAIMS_INLINE && (c = malloc(count * sizeof(*c))) == NULL)
		return -ENOMEM;
	memcpy(c, claims, count * sizeof(*c));
	/* One global order (address) means two callers with overlapping
	 * sets never hold one each while waiting for the other's. */
	qsort(c, count, sizeof(*c), claim_cmp);
	for (size_t i = 0; i < count; i++) {
		if (k > 0 && c[k - 1].sem == c[i].sem) {
			if (c[k - 1].n > INT64_MAX - c[i].n) {
				rc = -EOVERFLOW;
				goto out;
			}
			c[k - 1].n += c[i].n;
		} else {
			c[k++] = c[i];
		}
	}
	/* Check every claim before waiting for any: -EPIPE and -E2BIG come at
	 * once (DESIGN §4), not after blocking on a lower claim; so does the
	 * ctx's error. Backends keep their size elsewhere: their acquire
	 * checks for itself. */
	for (size_t i = 0; i < k; i++) {
		ration_sem_t *s = c[i].sem;
		if (s->ops != NULL)
			continue;
		if (atomic_load_explicit(&s->closed, memory_order_relaxed)) {
			rc = -EPIPE;
			goto out;
		}
		if (c[i].n > atomic_load_explicit(&s->size, memory_order_relaxed)) {
			rc = -E2BIG;
			goto out;
		}
	}
	if ((rc = ration_ctx_err(ctx)) != 0)
		goto out;
	for (; taken < k; taken++)
		if ((rc = ration_sem_acquire(c[taken].sem, ctx, c[taken].n)) != 0)
			break;
	if (rc != 0)
		while (taken-- > 0)
			ration_sem_release(c[taken].sem, c[taken].n);
out:
	if (c != inline_buf)
		free(c);
	return rc;
}

void
ration_release_all(const ration_claim_t *claims, size_t count)
{
	if (claims == NULL)
		return;
	for (size_t i = 0; i < count; i++)
		if (claims[i].sem != NULL && claims[i].n > 0)
			ration_sem_release(claims[i].sem, claims[i].n);
}
