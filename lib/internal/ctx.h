/* ctx.h (internal) - how blocking calls sleep until a ctx is done. */
#ifndef RATION_INTERNAL_CTX_H
#define RATION_INTERNAL_CTX_H

#include <stdatomic.h>

#include "internal/clock.h"
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

/* The error that ends a wait now, if any: @ctx's, or -ETIMEDOUT once
 * @deadline_ns (absolute, CLOCK_MONOTONIC) has passed. Every backend's
 * blocking loop asks this, so all of them rank the two the same way. */
static inline int
ration__wait_err(ration_ctx_t *ctx, int64_t deadline_ns)
{
	int err = ration_ctx_err(ctx);
	if (err == 0 && deadline_ns != RATION_FOREVER &&
	    clock_mono_ns() >= deadline_ns)
		err = -ETIMEDOUT;
	return err;
}

/* Take a reference on @ctx unless its count already reached zero (its
 * last unref is freeing it, perhaps waiting for a lock the caller holds).
 * Return whether a reference was taken. */
bool ration__ctx_ref_if_live(ration_ctx_t *ctx);

/* A ctx made by ration_ctx_with_signals() carries the state below
 * (ctx_signal.c); ration_ctx_unref() calls ration__ctx_sig_free() on it
 * before the ctx's memory goes. */
struct ration__ctx_sig;
void ration__ctx_set_sig(ration_ctx_t *ctx, struct ration__ctx_sig *sig);
struct ration__ctx_sig *ration__ctx_sig(const ration_ctx_t *ctx);
void ration__ctx_sig_free(struct ration__ctx_sig *sig);
/* @ctx's parent (immutable), NULL for a root or the background. */
const ration_ctx_t *ration__ctx_parent(const ration_ctx_t *ctx);

/* Test-only hook, NULL outside tests (tests/test_sem.c, contract §7.3).
 * When set, it is called by a thread that has just learnt that @ctx is
 * done, from ration_ctx_err() or ration__ctx_watch(), before that call
 * returns @err: a test can then make an event (a grant) land exactly
 * between "the waiter saw its ctx end" and "the waiter acts on it", a
 * window that is otherwise a few instructions wide. Cost when unset: one
 * relaxed load, on the done path only. Callers of ration_ctx_err() may
 * hold a semaphore lock (the check block of acquire), so a hook must act
 * only once it knows its thread is past that point. Not exported from the
 * shared library (hidden); tests link the static one. */
typedef void (*ration__ctx_hook_fn)(const ration_ctx_t *ctx, int err);
extern _Atomic(ration__ctx_hook_fn) ration__ctx_done_hook;

#endif
