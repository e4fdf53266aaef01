/* compiler.h - the only place GNU extensions appear. */
#ifndef RATION_INTERNAL_COMPILER_H
#define RATION_INTERNAL_COMPILER_H

#define RATION_LIKELY(x)   __builtin_expect(!!(x), 1)
#define RATION_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define RATION_NOINLINE    __attribute__((noinline))
#define RATION_CACHELINE   64
#define RATION_ALIGNED     __attribute__((aligned(RATION_CACHELINE)))
#define RATION_HIDDEN      __attribute__((visibility("hidden")))
/* A thread-local read with one %fs-relative load even from the shared
 * library (no __tls_get_addr call); for small variables only, as it uses
 * the static TLS that a dlopen()ed library gets little of. */
#define RATION_TLS_IE __attribute__((tls_model("initial-exec")))

/* Built with ThreadSanitizer (gcc says __SANITIZE_THREAD__, clang
 * __has_feature): for the few calls its runtime does not intercept. */
#if defined(__SANITIZE_THREAD__)
#define RATION_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define RATION_TSAN 1
#endif
#endif
#ifndef RATION_TSAN
#define RATION_TSAN 0
#endif

/* One pause: tells the CPU we are spinning, yielding the core's pipeline
 * to its sibling and avoiding a memory-order mis-speculation on exit. */
static inline void
ration__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#else
	__asm__ __volatile__("" ::: "memory");
#endif
}

/* Invariants of ration itself (never user mistakes): abort with file:line. */
#include <stdio.h>
#include <stdlib.h>
#define RATION_ASSERT(cond)                                                    \
	do {                                                                   \
		if (RATION_UNLIKELY(!(cond))) {                                \
			fprintf(stderr,                                        \
				"ration: %s:%d: assertion '%s' failed\n",      \
				__FILE__, __LINE__, #cond);                    \
			abort();                                               \
		}                                                              \
	} while (0)

#define RATION_CONTAINER_OF(ptr, type, member)                                 \
	((type *)(void *)((char *)(ptr)-offsetof(type, member)))

#endif
