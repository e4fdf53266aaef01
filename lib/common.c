/* common.c - time, error strings, version. */
#include <stdint.h>

#include "internal/clock.h"
#include "ration/common.h"

int64_t
ration_now(void)
{
	return clock_mono_ns();
}

int64_t
ration_deadline_after(int64_t timeout_ns)
{
	return ns_add_sat(clock_mono_ns(), timeout_ns);
}

/* Every code ration returns, in ration's own words. */
#define RATION_ERRORS(X)                                                       \
	X(EINVAL, "invalid argument")                                          \
	X(E2BIG, "request larger than the semaphore: can never be granted")    \
	X(ECANCELED, "cancelled")                                              \
	X(ETIMEDOUT, "deadline passed")                                        \
	X(EAGAIN, "would have to wait")                                        \
	X(EPIPE, "semaphore closed or pool shut down")                         \
	X(EOVERFLOW, "more released than held, or arithmetic overflow")        \
	X(EBUSY, "busy: waiter queue full, or object still in use")            \
	X(ENOMEM, "out of memory")                                             \
	X(ENOENT, "no such shared semaphore")                                  \
	X(ESTALE, "lease expired: its weight was reclaimed")                   \
	X(ECONNREFUSED, "server refused the connection")                       \
	X(EIO, "server unreachable or i/o error")                              \
	X(EPROTO, "unexpected reply from server")                              \
	X(ENOTSUP, "not supported by this build")                              \
	X(EMFILE, "too many open files")                                       \
	X(EPERM, "operation not permitted")

const char *
ration_strerror(int err)
{
	if (err > 0)
		err = -err;
	switch (err) {
	case 0:
		return "success";
#define X(code, text)                                                          \
	case -(code):                                                          \
		return text;
		RATION_ERRORS(X)
#undef X
	default:
		return "unknown error";
	}
}

const char *
ration_version(void)
{
	return RATION_VERSION;
}
