/* ration/ctx.h - cancellation and absolute deadlines, parent -> child.
 *
 * A ctx is "done" once it is cancelled or its deadline passes; after that
 * ration_ctx_err() returns the same error forever (first error wins). Doing
 * a parent does all its descendants; a child made under a done parent is
 * born done. Every blocking ration call takes a ctx (NULL = background:
 * never done) so that any wait can be ended from outside.
 *
 *	ration_ctx_t *ctx;
 *	if (ration_ctx_with_timeout(NULL, 5000000000, &ctx) == 0) {
 *		int rc = ration_sem_acquire(sem, ctx, n);  // at most 5 s
 *		...
 *		ration_ctx_unref(ctx);
 *	}
 *
 * Lifetime: ctxs are reference counted. with_* returns one reference, which
 * the caller gives back with ration_ctx_unref(). A child holds a reference
 * on its parent, so a parent can be unreffed before its children.
 * All functions are thread-safe.
 */
#ifndef RATION_CTX_H
#define RATION_CTX_H

#include <signal.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ration_ctx ration_ctx_t;

/**
 * ration_ctx_background() - the root ctx: never done, no deadline.
 *
 * Return: a static ctx; ref/unref on it are no-ops, cancel is ignored.
 * Equivalent to passing NULL wherever a ctx is taken.
 *
 * Blocks: no. Allocates: never. Calls user code: never.
 */
RATION_API ration_ctx_t *ration_ctx_background(void);

/**
 * ration_ctx_with_cancel() - a child of @parent that can be cancelled alone.
 * @parent: NULL = background.
 * @out:    receives the new ctx (one reference, owned by the caller).
 *
 * Return: 0, -EINVAL (@out NULL) or -ENOMEM. Nothing is made on error.
 * Blocks: no. Allocates: yes. Calls user code: only after-funcs of the new
 * ctx (none yet).
 */
RATION_API int ration_ctx_with_cancel(ration_ctx_t *parent, ration_ctx_t **out);

/**
 * ration_ctx_with_deadline() - a child of @parent that is done at @deadline_ns.
 * @parent:      NULL = background.
 * @deadline_ns: absolute CLOCK_MONOTONIC time (see ration_now()); the
 *               effective deadline is the earlier of this and the parent's.
 *               A deadline already past makes a ctx born done (-ETIMEDOUT).
 * @out:         receives the new ctx (one reference, owned by the caller).
 *
 * Return: 0, -EINVAL (@out NULL) or -ENOMEM.
 * Blocks: no. Allocates: yes. Calls user code: never.
 */
RATION_API int ration_ctx_with_deadline(ration_ctx_t *parent,
					int64_t deadline_ns,
					ration_ctx_t **out);

/**
 * ration_ctx_with_timeout() - with_deadline(parent, now + @timeout_ns).
 * @timeout_ns: relative; the addition saturates at RATION_FOREVER.
 *
 * Return: as ration_ctx_with_deadline().
 *
 * Blocks: no. Allocates: yes. Calls user code: never.
 */
RATION_API int ration_ctx_with_timeout(ration_ctx_t *parent, int64_t timeout_ns,
				       ration_ctx_t **out);

/**
 * ration_ctx_cancel() - make @ctx and its descendants done with -ECANCELED.
 *
 * Idempotent; a ctx that is already done keeps its first error (a deadline
 * that has passed stays -ETIMEDOUT). Wakes every ration call blocked on
 * @ctx and runs its pending after-funcs, in the calling thread, with no
 * ration lock held. NULL and the background ctx are ignored.
 *
 * Blocks: no (after-funcs run inline). Allocates: never. Calls user code:
 * the pending after-funcs of every ctx it makes done, before it returns.
 */
RATION_API void ration_ctx_cancel(ration_ctx_t *ctx);

/**
 * ration_ctx_cancel_with() - cancel with a cause of the caller's choosing.
 * @cause: a negative errno that ration_ctx_err() will then return;
 *         @cause >= 0 means -ECANCELED.
 *
 * Blocks: no (after-funcs run inline). Allocates: never. Calls user code:
 * as ration_ctx_cancel().
 */
RATION_API void ration_ctx_cancel_with(ration_ctx_t *ctx, int cause);

/**
 * ration_ctx_err() - why @ctx is done.
 *
 * Return: 0 while not done; else -ECANCELED, -ETIMEDOUT or the cause given
 * to cancel_with. A passed deadline reports -ETIMEDOUT at once, even
 * before anything else has noticed it. NULL = background = 0.
 *
 * Blocks: no. Allocates: never. Calls user code: never. Lock-free once
 * done.
 */
RATION_API int ration_ctx_err(const ration_ctx_t *ctx);

/**
 * ration_ctx_deadline() - the effective deadline of @ctx.
 *
 * Return: the earliest deadline of @ctx and its ancestors, or
 * RATION_FOREVER if none has one.
 *
 * Blocks: no. Allocates: never. Calls user code: never.
 */
RATION_API int64_t ration_ctx_deadline(const ration_ctx_t *ctx);

/**
 * ration_ctx_wait() - block until @ctx is done.
 *
 * Return: the ctx error (see ration_ctx_err()); -EINVAL for NULL or the
 * background ctx, which would never return.
 *
 * Blocks: yes, at most until the effective deadline. Allocates: never.
 * Calls user code: never.
 */
RATION_API int ration_ctx_wait(ration_ctx_t *ctx);

/**
 * ration_ctx_sleep() - sleep @ns nanoseconds unless @ctx ends first.
 * @ctx: NULL = background (a plain sleep).
 * @ns:  relative; <= 0 only checks @ctx.
 *
 * The interruptible sleep of a retry loop or a pacing task: a cancel or
 * @ctx's deadline wakes it at once.
 *
 * Return: 0 once @ns have passed, or @ctx's error (see ration_ctx_err())
 * if @ctx is done first or already done.
 *
 * Blocks: yes, at most @ns. Allocates: never (a thread's first blocking
 * ration call makes its parker). Calls user code: never.
 */
RATION_API int ration_ctx_sleep(ration_ctx_t *ctx, int64_t ns);

/* sigset_t is POSIX: <signal.h> hides it in strict ISO C (-std=c11 with no
 * feature macro), and then only this one declaration is left out. */
#ifdef SIG_BLOCK
/**
 * ration_ctx_with_signals() - a child of @parent that is cancelled when
 * one of the signals in @set arrives (Go's signal.NotifyContext).
 * @parent: NULL = background.
 * @set:    the signals to catch, e.g. SIGINT and SIGTERM; not SIGKILL,
 *          SIGSTOP, or a signal the C library reserves.
 * @out:    receives the ctx (ration_ctx_unref()).
 *
 *	sigset_t set;
 *	sigemptyset(&set);
 *	sigaddset(&set, SIGINT);
 *	sigaddset(&set, SIGTERM);
 *	ration_ctx_t *ctx;
 *	if (ration_ctx_with_signals(NULL, &set, &ctx) == 0) {
 *		run_batch(ctx);           // Ctrl-C: ctx done, -ECANCELED
 *		if (ration_ctx_signal(ctx) != 0) ...
 *		ration_ctx_unref(ctx);    // SIGINT/SIGTERM as before
 *	}
 *
 * While the ctx lives, the signals in @set are caught by a handler of
 * ration's (the first arrival cancels the ctx with -ECANCELED; later ones
 * are absorbed, so a second Ctrl-C does not kill the process). The
 * handler only sets a flag and writes a byte to a pipe; a watcher thread
 * (started on first use, one per process, kept) does the cancel, so
 * after-funcs run on that thread. Several ctxs may catch the same signal;
 * each arrival cancels every live one whose @set holds it. When the last
 * ctx catching a signal is freed, the disposition in force before the
 * first one was made is restored. Not for use across fork() (the child has
 * no watcher); see docs/decisions/008-signal-ctx.md.
 *
 * Return: 0, or the first that applies:
 *   -EINVAL    @set or @out NULL, @set empty, or a signal in it cannot
 *              be caught (nothing installed)
 *   -ENOMEM    no memory for the ctx
 *   -EMFILE    no pipe could be made (first use)
 *   -EAGAIN    the watcher thread could not be started (first use)
 * On error no disposition is changed.
 *
 * Blocks: no. Allocates: yes, the ctx and a small record. Calls user
 * code: never.
 */
RATION_API int ration_ctx_with_signals(ration_ctx_t *parent,
				       const sigset_t *set, ration_ctx_t **out);
#endif /* SIG_BLOCK */

/**
 * ration_ctx_signal() - which signal cancelled a ctx made by
 * ration_ctx_with_signals().
 * @ctx: that ctx, or a descendant of it (the nearest such ancestor that
 *       caught a signal answers).
 *
 * Return: the signal number, or 0 when no signal cancelled it (or @ctx
 * and its ancestors were not made by ration_ctx_with_signals()).
 *
 * Blocks: no. Allocates: never. Calls user code: never.
 */
RATION_API int ration_ctx_signal(const ration_ctx_t *ctx);

/**
 * ration_ctx_fd() - a file descriptor that becomes readable once @ctx is done.
 *
 * For poll/epoll loops. The fd (an eventfd) is made on first call and owned
 * by @ctx: do not close or read it; it stays valid until the last unref.
 * When @ctx has a deadline, the process-wide timer thread makes the fd
 * readable within about 1 ms of it.
 *
 * Return: the fd (>= 0), -EINVAL (NULL or background: it could never fire),
 * -ENOMEM or -EMFILE when no fd can be made.
 *
 * Blocks: no. Allocates: the eventfd on first call (and, with a deadline,
 * the timer thread's entry for it). Calls user code: never.
 */
RATION_API int ration_ctx_fd(ration_ctx_t *ctx);

/**
 * ration_ctx_after() - run @fn(@arg) once, when @ctx becomes done.
 * @id: receives an id for ration_ctx_stop_after(); may be NULL.
 *
 * fn runs in the thread that cancels (or, for a deadline, on the timer
 * thread, within about 1 ms), with no ration lock held, so it may call any
 * ration function, including ones on @ctx. If @ctx is already done, fn runs
 * synchronously before this returns (and stop_after then returns false).
 * Several after-funcs of one ctx run one after another, in no promised
 * order.
 *
 * Return: 0, -EINVAL (@ctx is NULL/background, or @fn NULL) or -ENOMEM
 * (fn is then never run).
 * Allocates: yes, one small node.
 *
 * Blocks: no. Allocates: yes, one small node. Calls user code: @fn, before
 * this returns, when @ctx is already done.
 */
RATION_API int ration_ctx_after(ration_ctx_t *ctx, void (*fn)(void *arg),
				void *arg, uint64_t *id);

/**
 * ration_ctx_stop_after() - cancel a pending after-func.
 *
 * Return: true if fn has not run and now never will; false if it already
 * ran, is running, or @id is unknown.
 *
 * Blocks: no (it does not wait for a running fn). Allocates: never. Calls
 * user code: never.
 */
RATION_API bool ration_ctx_stop_after(ration_ctx_t *ctx, uint64_t id);

/**
 * ration_ctx_ref() - take one more reference to @ctx.
 *
 * Return: @ctx. NULL and the background ctx are returned as they are.
 *
 * Blocks: no. Allocates: never. Calls user code: never.
 */
RATION_API ration_ctx_t *ration_ctx_ref(ration_ctx_t *ctx);

/**
 * ration_ctx_unref() - drop one reference; the last one frees @ctx.
 *
 * Freeing detaches @ctx from its parent, stops its deadline timer, drops
 * its pending after-funcs without running them, closes its fd, and drops
 * the reference it held on its parent. Children keep @ctx's state alive
 * through their own reference, so they still follow @ctx's ancestors.
 * A cancel of an ancestor that runs concurrently may already have taken
 * @ctx's after-funcs and run them as this returns: if an after-func's
 * @arg dies with @ctx, ration_ctx_stop_after() it first.
 *
 * Blocks: when it frees @ctx while the timer thread is firing its
 * deadline, until that returns. Allocates: never. Calls user code: never.
 */
RATION_API void ration_ctx_unref(ration_ctx_t *ctx);

#ifdef __cplusplus
}
#endif

#endif /* RATION_CTX_H */
