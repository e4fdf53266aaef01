/* ctx_signal.c - a ctx cancelled when a signal arrives (ration/ctx.h).
 *
 * Async-signal safety: the handler only numbers the arrival and stores
 * the number in its signal's slot (lock-free atomics) and write()s one
 * byte to the non-blocking end of a self-pipe, keeping errno; all are
 * async-signal-safe. Everything that
 * is not (taking locks, ration_ctx_cancel(), after-funcs) runs on one
 * watcher thread that sleeps in read() on the other end, then takes every
 * raised slot and cancels the ctxs whose set holds it and that were made
 * before that arrival (a signal that came earlier, while another ctx
 * caught it, is not for them). A full pipe loses only a byte, never a
 * signal: the slot stays set and any byte (or the one already waiting)
 * makes the watcher look. signalfd was not used: it
 * sees a signal only if every thread of the process blocks it, which a
 * library cannot arrange for threads it did not create.
 * docs/decisions/008-signal-ctx.md gives the reasoning.
 *
 * Locking: mu guards the registry of live signal ctxs, the per-signal
 * install counts and the saved dispositions, and the one-time start of
 * the pipe and watcher. The registry holds no reference: a ctx being
 * freed removes its record under mu (ration__ctx_sig_free() runs before
 * the ctx's memory goes), and the watcher takes references under mu only
 * with ration__ctx_ref_if_live(). It cancels after dropping mu, since
 * cancelling runs after-funcs, which may free other signal ctxs.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "internal/compiler.h"
#include "internal/ctx.h"
#include "internal/list.h"
#include "ration/ctx.h"

_Static_assert(ATOMIC_INT_LOCK_FREE == 2 && ATOMIC_LONG_LOCK_FREE == 2,
	       "the signal handler needs lock-free atomics");

/* What one ration_ctx_with_signals() ctx owns. */
struct ration__ctx_sig {
	struct ration__list node; /* mu: the registry */
	ration_ctx_t *ctx;        /* mu; no reference (see the top) */
	sigset_t set;             /* immutable */
	unsigned long born;       /* immutable: arrivals when it was made */
	_Atomic int signo;        /* 0 until a signal of set cancelled ctx */
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct ration__list registry = {&registry, &registry}; /* mu */
static unsigned installs[NSIG];        /* mu: live ctxs catching each signal */
static struct sigaction saved[NSIG];   /* mu: disposition before the first */
static bool started;                   /* mu: pipe and watcher exist */
static _Atomic int write_fd = -1;      /* atomic: read by the handler */
static _Atomic unsigned long arrivals; /* atomic: signals caught */
static _Atomic unsigned long raised[NSIG]; /* atomic: number of the last
					    * arrival of each, 0 = none */

static void
on_signal(int signo)
{
	int saved_errno = errno;
	/* Relaxed: the byte written below is what wakes the watcher; the
	 * write() system call orders the stores before its own effect. */
	unsigned long n =
		atomic_fetch_add_explicit(&arrivals, 1, memory_order_relaxed) +
		1;
	atomic_store_explicit(&raised[signo], n, memory_order_relaxed);
	char b = 0;
	ssize_t w = write(atomic_load_explicit(&write_fd, memory_order_relaxed),
			  &b, 1);
	(void)w; /* a full pipe already holds a wake-up */
	errno = saved_errno;
}

/* Cancel, with -ECANCELED, every live ctx whose set holds a signal that
 * arrived (@arrived: its arrival number, 0 = none) after the ctx was made,
 * and that no signal cancelled yet. A few at a time: references are taken
 * under mu, cancels done after it. */
static void
deliver(const unsigned long *arrived)
{
	for (;;) {
		ration_ctx_t *batch[16];
		int n = 0;
		pthread_mutex_lock(&mu);
		for (struct ration__list *l = registry.next;
		     l != &registry && n < 16; l = l->next) {
			struct ration__ctx_sig *sg = RATION_CONTAINER_OF(
				l, struct ration__ctx_sig, node);
			if (atomic_load_explicit(&sg->signo,
						 memory_order_relaxed) != 0)
				continue;
			for (int s = 1; s < NSIG; s++) {
				if (arrived[s] <= sg->born ||
				    sigismember(&sg->set, s) != 1)
					continue;
				/* release: ration_ctx_signal()'s acquire
				 * load sees the number once it sees it set. */
				atomic_store_explicit(&sg->signo, s,
						      memory_order_release);
				if (ration__ctx_ref_if_live(sg->ctx))
					batch[n++] = sg->ctx;
				break;
			}
		}
		pthread_mutex_unlock(&mu);
		if (n == 0)
			return;
		for (int i = 0; i < n; i++) {
			ration_ctx_cancel(batch[i]);
			ration_ctx_unref(batch[i]);
		}
	}
}

static void *
watcher(void *arg)
{
	int fd = *(const int *)arg;
	for (;;) {
		char buf[64];
		if (read(fd, buf, sizeof(buf)) <= 0)
			continue; /* EINTR; the write end is never closed */
		unsigned long arrived[NSIG] = {0};
		bool any = false;
		for (int s = 1; s < NSIG; s++) {
			arrived[s] = atomic_exchange_explicit(
				&raised[s], 0, memory_order_relaxed);
			any |= arrived[s] != 0;
		}
		if (any)
			deliver(arrived);
	}
	return NULL;
}

/* Under mu: the pipe and the watcher, once per process. */
static int
start_locked(void)
{
	if (started)
		return 0;
	int p[2];
	if (pipe2(p, O_CLOEXEC) != 0)
		return -EMFILE;
	(void)fcntl(p[1], F_SETFL, O_NONBLOCK);

	/* The watcher blocks every signal, so handlers run elsewhere and its
	 * read() is not cut short; it inherits the mask at creation. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_t t;
	/* The watcher's end of the pipe: written once, before the thread
	 * that reads it is created. */
	static int read_fd;
	read_fd = p[0];
	int rc = pthread_create(&t, &attr, watcher, &read_fd);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		close(p[0]);
		close(p[1]);
		return -EAGAIN;
	}
	started = true;
	atomic_store_explicit(&write_fd, p[1], memory_order_relaxed);
	return 0;
}

/* Under mu: one more ctx catches each signal of @set; installs the
 * handler for the first. Undoes its own changes on failure. */
static int
catch_locked(const sigset_t *set)
{
	struct sigaction act = {.sa_handler = on_signal,
				.sa_flags = SA_RESTART};
	sigemptyset(&act.sa_mask);
	for (int s = 1; s < NSIG; s++) {
		if (sigismember(set, s) != 1 || installs[s]++ > 0)
			continue;
		if (sigaction(s, &act, &saved[s]) != 0) {
			installs[s]--;
			for (int u = 1; u < s; u++)
				if (sigismember(set, u) == 1 &&
				    --installs[u] == 0)
					(void)sigaction(u, &saved[u], NULL);
			return -EINVAL;
		}
	}
	return 0;
}

/* Whether @set is non-empty and every signal in it can be caught. */
static bool
catchable(const sigset_t *set)
{
	bool any = false;
	for (int s = 1; s < NSIG; s++) {
		if (sigismember(set, s) != 1)
			continue;
		struct sigaction now;
		if (s == SIGKILL || s == SIGSTOP ||
		    sigaction(s, NULL, &now) != 0)
			return false;
		any = true;
	}
	return any;
}

int
ration_ctx_with_signals(ration_ctx_t *parent, const sigset_t *set,
			ration_ctx_t **out)
{
	if (set == NULL || out == NULL || !catchable(set))
		return -EINVAL;
	struct ration__ctx_sig *sg = calloc(1, sizeof(*sg));
	if (sg == NULL)
		return -ENOMEM;
	ration_ctx_t *c;
	int rc = ration_ctx_with_cancel(parent, &c);
	if (rc != 0) {
		free(sg);
		return rc;
	}
	sg->set = *set;
	sg->ctx = c;
	atomic_init(&sg->signo, 0);

	pthread_mutex_lock(&mu);
	rc = start_locked();
	if (rc == 0)
		rc = catch_locked(set);
	if (rc == 0) {
		sg->born =
			atomic_load_explicit(&arrivals, memory_order_relaxed);
		list_push_back(&registry, &sg->node);
		ration__ctx_set_sig(c, sg);
	}
	pthread_mutex_unlock(&mu);
	if (rc != 0) {
		ration_ctx_unref(c);
		free(sg);
		return rc;
	}
	*out = c;
	return 0;
}

void
ration__ctx_sig_free(struct ration__ctx_sig *sg)
{
	pthread_mutex_lock(&mu);
	list_remove(&sg->node);
	for (int s = 1; s < NSIG; s++)
		if (sigismember(&sg->set, s) == 1 && --installs[s] == 0)
			(void)sigaction(s, &saved[s], NULL);
	pthread_mutex_unlock(&mu);
	free(sg);
}

int
ration_ctx_signal(const ration_ctx_t *ctx)
{
	for (; ctx != NULL; ctx = ration__ctx_parent(ctx)) {
		struct ration__ctx_sig *sg = ration__ctx_sig(ctx);
		int s = sg != NULL ? atomic_load_explicit(&sg->signo,
							  memory_order_acquire)
				   : 0;
		if (s != 0)
			return s;
	}
	return 0;
}
