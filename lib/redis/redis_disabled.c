/* redis_disabled.c - ration_sem_open_redis() when ration is built without
 * hiredis (meson -Dredis=disabled, or libhiredis missing): the symbol
 * exists, and says the backend is not there. */
#include <errno.h>

#include "ration/redis.h"

int
ration_sem_open_redis(const char *uri, const char *key, int64_t size,
		      const ration_remote_opts_t *opts, ration_sem_t **out)
{
	(void)uri, (void)key, (void)size, (void)opts, (void)out;
	return -ENOTSUP;
}

int
ration_lease_live_redis(ration_sem_t *s, uint64_t fence)
{
	(void)s, (void)fence;
	return -ENOTSUP;
}
