/* faultalloc.c - allocation-failure injection for the fault tests.
 *
 * Linked into tests/test_faults only, with
 *   -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=aligned_alloc,
 *   --wrap=posix_memalign,--wrap=free,--wrap=pthread_create,--wrap=eventfd,
 *   --wrap=shm_open,--wrap=ftruncate64,--wrap=mmap64,--wrap=munmap
 * so every call that the statically linked libration.a (and the test)
 * makes to those functions comes here first. Calls made inside libc itself
 * are not wrapped: they are not ration's to handle.
 *
 * Arming is per thread: fa_arm(k) makes the k-th "resource" call of the
 * calling thread fail (malloc-family -> NULL, pthread_create -> EAGAIN,
 * eventfd -> -1/ENOMEM, shm_open -> -1/EMFILE, ftruncate -> -1/ENOSPC,
 * mmap -> MAP_FAILED/ENOMEM), and every later one succeed. (With
 * _FILE_OFFSET_BITS=64, which meson sets, the library's ftruncate and mmap
 * calls are to ftruncate64 and mmap64: those are the symbols wrapped.)
 * Mappings count as blocks for fa_live() until munmap'd. Other threads (pool
 * workers, the timer thread) are never failed, so a run is deterministic.
 * While armed, the pointers handed out are remembered until freed (by any
 * thread): fa_live() says how many are still out, which is the leak check
 * for a call that failed and must have given everything back.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>

/* The interface (declared again in tests/test_faults.c). */
enum fa_kind { FA_NONE, FA_MEM, FA_THREAD, FA_FD, FA_SPACE };

/* Make the @k-th (1-based) malloc/calloc/realloc/aligned_alloc/
 * posix_memalign/pthread_create/eventfd call of this thread fail. Also
 * starts remembering the blocks handed out, for fa_live(). */
void fa_arm(long k);
/* Stop failing; return how many such calls this thread made while armed. */
long fa_disarm(void);
/* What the armed call that failed was (FA_NONE: none failed). */
enum fa_kind fa_failed(void);
/* Blocks allocated while armed and not freed since. */
size_t fa_live(void);
/* Stop remembering (the blocks were kept on purpose). */
void fa_forget(void);
const char *fa_kind_name(enum fa_kind k);

void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
void *__real_aligned_alloc(size_t align, size_t size);
int __real_posix_memalign(void **out, size_t align, size_t size);
void __real_free(void *p);
int __real_pthread_create(pthread_t *t, const pthread_attr_t *a,
			  void *(*fn)(void *), void *arg);
int __real_eventfd(unsigned int initval, int flags);
int __real_shm_open(const char *name, int oflag, mode_t mode);
int __real_ftruncate64(int fd, off64_t len);
void *__real_mmap64(void *addr, size_t len, int prot, int flags, int fd,
		    off64_t off);
int __real_munmap(void *addr, size_t len);

void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t size);
void *__wrap_aligned_alloc(size_t align, size_t size);
int __wrap_posix_memalign(void **out, size_t align, size_t size);
void __wrap_free(void *p);
int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *a,
			  void *(*fn)(void *), void *arg);
int __wrap_eventfd(unsigned int initval, int flags);
int __wrap_shm_open(const char *name, int oflag, mode_t mode);
int __wrap_ftruncate64(int fd, off64_t len);
void *__wrap_mmap64(void *addr, size_t len, int prot, int flags, int fd,
		    off64_t off);
int __wrap_munmap(void *addr, size_t len);

/* Per thread: which call fails, how many were seen, what failed. */
static _Thread_local long fail_at; /* 0 = disarmed */
static _Thread_local long seen;
static _Thread_local enum fa_kind failed_kind;

/* Pointers handed out while armed (any thread frees them). */
#define TRACK_MAX 4096
static pthread_mutex_t track_mu = PTHREAD_MUTEX_INITIALIZER;
static void *tracked[TRACK_MAX]; /* track_mu */
static size_t ntracked;          /* track_mu */
static _Atomic bool tracking;    /* some pointer may be in tracked[] */

static void
track_add(void *p)
{
	if (p == NULL)
		return;
	pthread_mutex_lock(&track_mu);
	if (ntracked < TRACK_MAX)
		tracked[ntracked++] = p;
	atomic_store(&tracking, true);
	pthread_mutex_unlock(&track_mu);
}

static void
track_del(void *p)
{
	if (p == NULL || !atomic_load_explicit(&tracking, memory_order_relaxed))
		return;
	pthread_mutex_lock(&track_mu);
	for (size_t i = 0; i < ntracked; i++) {
		if (tracked[i] == p) {
			tracked[i] = tracked[--ntracked];
			break;
		}
	}
	pthread_mutex_unlock(&track_mu);
}

/* Count one resource call of this thread; true if it must fail. */
static bool
should_fail(enum fa_kind kind)
{
	if (fail_at == 0)
		return false;
	if (++seen == fail_at) {
		failed_kind = kind;
		return true;
	}
	return false;
}

void
fa_arm(long k)
{
	pthread_mutex_lock(&track_mu);
	ntracked = 0;
	pthread_mutex_unlock(&track_mu);
	seen = 0;
	failed_kind = FA_NONE;
	fail_at = k;
}

long
fa_disarm(void)
{
	fail_at = 0;
	return seen;
}

enum fa_kind
fa_failed(void)
{
	return failed_kind;
}

size_t
fa_live(void)
{
	pthread_mutex_lock(&track_mu);
	size_t n = ntracked;
	pthread_mutex_unlock(&track_mu);
	return n;
}

void
fa_forget(void)
{
	pthread_mutex_lock(&track_mu);
	ntracked = 0;
	pthread_mutex_unlock(&track_mu);
}

const char *
fa_kind_name(enum fa_kind k)
{
	switch (k) {
	case FA_MEM:
		return "allocation";
	case FA_THREAD:
		return "pthread_create";
	case FA_FD:
		return "fd (eventfd/shm_open)";
	case FA_SPACE:
		return "ftruncate";
	default:
		return "none";
	}
}

void *
__wrap_malloc(size_t size)
{
	if (should_fail(FA_MEM))
		return NULL;
	void *p = __real_malloc(size);
	if (fail_at != 0)
		track_add(p);
	return p;
}

void *
__wrap_calloc(size_t n, size_t size)
{
	if (should_fail(FA_MEM))
		return NULL;
	void *p = __real_calloc(n, size);
	if (fail_at != 0)
		track_add(p);
	return p;
}

void *
__wrap_realloc(void *old, size_t size)
{
	if (should_fail(FA_MEM))
		return NULL; /* old stays valid, as realloc promises */
	void *p = __real_realloc(old, size);
	if (p != NULL) {
		track_del(old);
		if (fail_at != 0)
			track_add(p);
	}
	return p;
}

void *
__wrap_aligned_alloc(size_t align, size_t size)
{
	if (should_fail(FA_MEM))
		return NULL;
	void *p = __real_aligned_alloc(align, size);
	if (fail_at != 0)
		track_add(p);
	return p;
}

int
__wrap_posix_memalign(void **out, size_t align, size_t size)
{
	if (should_fail(FA_MEM))
		return ENOMEM;
	int rc = __real_posix_memalign(out, align, size);
	if (rc == 0 && fail_at != 0)
		track_add(*out);
	return rc;
}

void
__wrap_free(void *p)
{
	track_del(p);
	__real_free(p);
}

int
__wrap_pthread_create(pthread_t *t, const pthread_attr_t *a,
		      void *(*fn)(void *), void *arg)
{
	if (should_fail(FA_THREAD))
		return EAGAIN;
	return __real_pthread_create(t, a, fn, arg);
}

int
__wrap_eventfd(unsigned int initval, int flags)
{
	if (should_fail(FA_FD)) {
		errno = ENOMEM;
		return -1;
	}
	return __real_eventfd(initval, flags);
}

int
__wrap_shm_open(const char *name, int oflag, mode_t mode)
{
	if (should_fail(FA_FD)) {
		errno = EMFILE;
		return -1;
	}
	return __real_shm_open(name, oflag, mode);
}

int
__wrap_ftruncate64(int fd, off64_t len)
{
	if (should_fail(FA_SPACE)) {
		errno = ENOSPC;
		return -1;
	}
	return __real_ftruncate64(fd, len);
}

void *
__wrap_mmap64(void *addr, size_t len, int prot, int flags, int fd, off64_t off)
{
	if (should_fail(FA_MEM)) {
		errno = ENOMEM;
		return MAP_FAILED;
	}
	void *p = __real_mmap64(addr, len, prot, flags, fd, off);
	if (p != MAP_FAILED && fail_at != 0)
		track_add(p);
	return p;
}

int
__wrap_munmap(void *addr, size_t len)
{
	track_del(addr);
	return __real_munmap(addr, len);
}
