/* ctx.h (internal) - how blocking calls sleep until a ctx is done. */
#ifndef RATION_INTERNAL_CTX_H
#define RATION_INTERNAL_CTX_H

#include "internal/list.h"
#include "internal/park.h"
#include "ration/ctx.h"

/* A blocked call's registration with a ctx: lives on the caller's stack,
 * linked into the ctx's watcher list under the ctx's lock. When the ctx
 * becomes done its watchers' parkers are unparked (outside the lock). */
struct ration__ctx_watch {
	struct ration__list node; /* ctx mu */
	struct ration__parker *pk;
};

/* Whether @ctx can never be done (NULL or the background ctx). */
bool ration__ctx_is_background(const ration_ctx_t *ctx);

/* Register @w (with @w->pk set) on @ctx. Return 0, or the ctx's error if it
 * is already done (then @w is not registered). For a background ctx
 * nothing is registered and 0 is returned. */
int ration__ctx_watch(ration_ctx_t *ctx, struct ration__ctx_watch *w);

/* Unregister @w; harmless if it was never registered or a cancel already
 * took it off the list. */
void ration__ctx_unwatch(ration_ctx_t *ctx, struct ration__ctx_watch *w);


#endif
