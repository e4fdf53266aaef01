/* ration/shared.h - one budget across processes: a shared-memory semaphore.
 *
 * ration_sem_open_shared() returns an ordinary ration_sem_t whose state
 * lives in a POSIX shared-memory object, so every process that opens the
 * same name draws on the same budget. Every function of ration/sem.h works
 * on it with the same contract (weights, strict FIFO across processes, ctx
 * deadline/cancel, try, resize, close, stats); release gives back weight
 * held through this handle. A process that dies (SIGKILL included, at any
 * point) has its weight and its queue places returned within 100 ms, found
 * by the other processes' waiters: no daemon. A process is alive while it
 * exists, whatever its threads do (a main thread that has exited does not
 * make it dead) and whatever PID namespace it is in (containers sharing
 * /dev/shm): each handle holds a kernel lock (an OFD lock on the shm
 * object, through a descriptor of its own) that the kernel drops only when
 * the process is gone; no pid is compared.
 *
 * Calls with a deadline (acquire, _until, with a ctx) keep it even while
 * a stopped process (SIGSTOP, a debugger) owns the segment's mutex;
 * try_acquire never waits for it (-EAGAIN). Calls without a deadline
 * (release, consume, resize, close, stats, free, leases) wait for it.
 *
 *	ration_shared_opts_t o = {.create = true};
 *	ration_sem_t *mem;
 *	if (ration_sem_open_shared("/jobs-mem", 8LL << 30, &o, &mem) == 0) {
 *		if (ration_sem_acquire(mem, ctx, need) == 0) {
 *			work(need);
 *			ration_sem_release(mem, need);
 *		}
 *		ration_sem_free(mem);       // the segment stays until unlinked
 *	}
 *
 * Uncontended acquire and release are lock-free (one CAS on a word in the
 * segment, recorded in a per-thread slot that a recount can trust after
 * any crash); everything else takes a robust process-shared mutex.
 *
 * Limits: 128 open handles, 256 queued callers and 256 threads on the
 * lock-free path per semaphore, all processes together (a thread beyond
 * that, or using more than 4 shared handles, takes the locked path: same
 * results, slower); 32 outstanding leases per handle. Design notes:
 * docs/shared.md.
 */
#ifndef RATION_SHARED_H
#define RATION_SHARED_H

#include "common.h"
#include "ctx.h"
#include "lease.h"
#include "sem.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How to open a shared semaphore; zeroed = open an existing one.
 *
 *	ration_shared_opts_t o = {.create = true, .mode = 0660};
 *	ration_sem_open_shared("/farm-mem", 64LL << 30, &o, &s);
 */
typedef struct {
	unsigned mode; /* permissions of a new shm object, 0..0777; 0 = 0600 */
	bool create;   /* create it if missing (with size); false = -ENOENT */
} ration_shared_opts_t;

/**
 * ration_sem_open_shared() - open (or create) the shared semaphore @name.
 * @name: shm object name, "/name" or "name" (a '/' is prepended); no other
 *        '/', at most 200 characters.
 * @size: 1..RATION_SEM_MAX; used only when this call creates the object
 *        (later opens ignore it and may pass 0).
 * @opts: NULL or zeroed = open an existing object only; mode (permission
 *        bits of a new object, applied exactly, whatever the umask) 0 =
 *        0600.
 * @out:  receives the handle; pair with ration_sem_free(), which unmaps it
 *        (the object itself lives on until ration_sem_unlink_shared()).
 *
 * Two processes creating the same name at once are safe: one creates and
 * fills it in, the other waits (at most 2 s) until it is ready. Each handle
 * is one holder: ration_sem_release() gives back weight acquired through
 * it, by any thread of the process. A handle inherited over fork() becomes
 * a new, empty holder in the child on first use (weight the parent holds
 * stays the parent's; the child's copy of the handle's descriptor is given
 * a description of its own, through /proc/thread-self/fd, so that the
 * child does not keep the parent looking alive). A process that dies
 * holding weight, or queued, has it given back within 100 ms by the other
 * processes' calls (no daemon).
 *
 * Do not close the descriptor the handle keeps (close_range(), closefrom()
 * in a daemon): the process then looks dead, its weight is given to
 * others, and every later call through the handle but ration_sem_free()
 * returns -ESTALE (nothing is given back twice).
 *
 * Return: 0, or
 *   -EINVAL    @name invalid, @out NULL, @size out of range on create, or
 *              @opts->mode has bits outside 0777 (setuid, setgid, sticky or
 *              not a mode at all)
 *   -ENOENT    no such object and !opts->create
 *   -EACCES    the object's mode refuses us (or another errno of shm_open)
 *   -EPROTO    the object is not a ration semaphore of this layout (other
 *              magic, version, struct or table size: another build), is
 *              truncated, or was never initialised (its creator died)
 *   -EBUSY     all 128 holder slots are in use
 *   -ETIMEDOUT the segment's mutex stayed held for 2 s (its owner is a
 *              stopped process, e.g. SIGSTOP or a debugger)
 *   -ENOLCK    no OFD locks (Linux < 3.15) or /proc not mounted: liveness
 *              could not be proven, so the object is not used
 *   -ENOMEM    no memory for the handle
 *
 * Blocks: briefly, while another process is creating the object or owns
 * the segment's mutex (2 s at most each).
 * Allocates: yes. Calls user code: never.
 */
RATION_API int ration_sem_open_shared(const char *name, int64_t size,
				      const ration_shared_opts_t *opts,
				      ration_sem_t **out);

/**
 * ration_sem_unlink_shared() - remove the shared semaphore @name.
 * @name: as for ration_sem_open_shared().
 *
 * Open handles keep working on the old object; a later open with create
 * makes a new one.
 *
 * Return: 0, -EINVAL (@name invalid), -ENOENT (no such object) or
 * -EACCES.
 *
 * Blocks: no. Allocates: never. Calls user code: never.
 */
RATION_API int ration_sem_unlink_shared(const char *name);

#ifdef __cplusplus
}
#endif

#endif /* RATION_SHARED_H */
