/* acquire_all.c - ration_acquire_all(): several semaphores at once, taken
 * in one global order so that two callers never deadlock. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal/sem.h"
#include "ration/sem.h"

static int
claim_cmp(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t)((const ration_claim_t *)a)->sem;
	uintptr_t y = (uintptr_t)((const ration_claim_t *)b)->sem;
	return x < y ? -1 : x > y;
}

int
ration_acquire_all(ration_ctx_t *ctx, const ration_claim_t *claims,
		   size_t count)
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
	if (count > RATION_CLAIMS_INLINE &&
	    (c = malloc(count * sizeof(*c))) == NULL)
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
	 * once (contract §4), not after blocking on a lower claim; so does the
	 * ctx's error. Backends keep their size elsewhere: their acquire
	 * checks for itself. */
	for (size_t i = 0; i < k; i++) {
		rc = ration__sem_verdict(c[i].sem, c[i].n);
		if (rc == -ENOTSUP)
			rc = 0;
		if (rc != 0)
			goto out;
	}
	if ((rc = ration_ctx_err(ctx)) != 0)
		goto out;
	for (; taken < k; taken++)
		if ((rc = ration_sem_acquire(c[taken].sem, ctx, c[taken].n)) !=
		    0)
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
