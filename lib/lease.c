/* lease.c - leases with fences, for the backends whose holders can vanish
 * (shared memory, Redis). In-process semaphores have none: -EINVAL. */
#include <errno.h>

#include "internal/sem.h"

int
ration_sem_acquire_lease(ration_sem_t *s, ration_ctx_t *ctx, int64_t n,
			 ration_lease_t *out)
{
	if (s == NULL || out == NULL || n <= 0 || s->ops == NULL ||
	    s->ops->acquire_lease == NULL)
		return -EINVAL;
	return s->ops->acquire_lease(s, ctx, n, out);
}

int
ration_lease_release(ration_sem_t *s, const ration_lease_t *lease)
{
	if (s == NULL || lease == NULL || s->ops == NULL ||
	    s->ops->lease_release == NULL)
		return -EINVAL;
	return s->ops->lease_release(s, lease);
}
