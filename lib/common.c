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

/* Every standard (POSIX) errno in the words of glibc's strerror() in the C
 * locale, so a task's own -EIO or -ENOENT reads as what it is. Where ration
 * gives a code a meaning of its own, the words name both meanings; a
 * backend's context (which semaphore, which server) is the caller's to add,
 * from its docs. ENOTSUP stands for EOPNOTSUPP too (one value on Linux). */
#define RATION_ERRORS(X)                                                       \
	X(E2BIG, "Argument list too long, "                                    \
		 "or request larger than the whole budget")                    \
	X(EACCES, "Permission denied")                                         \
	X(EADDRINUSE, "Address already in use")                                \
	X(EADDRNOTAVAIL, "Cannot assign requested address")                    \
	X(EAFNOSUPPORT, "Address family not supported by protocol")            \
	X(EAGAIN, "Resource temporarily unavailable")                          \
	X(EALREADY, "Operation already in progress")                           \
	X(EBADF, "Bad file descriptor")                                        \
	X(EBADMSG, "Bad message")                                              \
	X(EBUSY, "Device or resource busy")                                    \
	X(ECANCELED, "Operation canceled")                                     \
	X(ECHILD, "No child processes")                                        \
	X(ECONNABORTED, "Software caused connection abort")                    \
	X(ECONNREFUSED, "Connection refused")                                  \
	X(ECONNRESET, "Connection reset by peer")                              \
	X(EDEADLK, "Resource deadlock avoided")                                \
	X(EDESTADDRREQ, "Destination address required")                        \
	X(EDOM, "Numerical argument out of domain")                            \
	X(EDQUOT, "Disk quota exceeded")                                       \
	X(EEXIST, "File exists")                                               \
	X(EFAULT, "Bad address")                                               \
	X(EFBIG, "File too large")                                             \
	X(EHOSTUNREACH, "No route to host")                                    \
	X(EIDRM, "Identifier removed")                                         \
	X(EILSEQ, "Invalid or incomplete multibyte or wide character")         \
	X(EINPROGRESS, "Operation now in progress")                            \
	X(EINTR, "Interrupted system call")                                    \
	X(EINVAL, "Invalid argument")                                          \
	X(EIO, "Input/output error")                                           \
	X(EISCONN, "Transport endpoint is already connected")                  \
	X(EISDIR, "Is a directory")                                            \
	X(ELOOP, "Too many levels of symbolic links")                          \
	X(EMFILE, "Too many open files")                                       \
	X(EMLINK, "Too many links")                                            \
	X(EMSGSIZE, "Message too long")                                        \
	X(EMULTIHOP, "Multihop attempted")                                     \
	X(ENAMETOOLONG, "File name too long")                                  \
	X(ENETDOWN, "Network is down")                                         \
	X(ENETRESET, "Network dropped connection on reset")                    \
	X(ENETUNREACH, "Network is unreachable")                               \
	X(ENFILE, "Too many open files in system")                             \
	X(ENOBUFS, "No buffer space available")                                \
	X(ENODATA, "No data available")                                        \
	X(ENODEV, "No such device")                                            \
	X(ENOENT, "No such file or directory")                                 \
	X(ENOEXEC, "Exec format error")                                        \
	X(ENOLCK, "No locks available")                                        \
	X(ENOLINK, "Link has been severed")                                    \
	X(ENOMEM, "Cannot allocate memory")                                    \
	X(ENOMSG, "No message of desired type")                                \
	X(ENOPROTOOPT, "Protocol not available")                               \
	X(ENOSPC, "No space left on device")                                   \
	X(ENOSR, "Out of streams resources")                                   \
	X(ENOSTR, "Device not a stream")                                       \
	X(ENOSYS, "Function not implemented")                                  \
	X(ENOTCONN, "Transport endpoint is not connected")                     \
	X(ENOTDIR, "Not a directory")                                          \
	X(ENOTEMPTY, "Directory not empty")                                    \
	X(ENOTRECOVERABLE, "State not recoverable")                            \
	X(ENOTSOCK, "Socket operation on non-socket")                          \
	X(ENOTSUP, "Operation not supported")                                  \
	X(ENOTTY, "Inappropriate ioctl for device")                            \
	X(ENXIO, "No such device or address")                                  \
	X(EOVERFLOW, "Value too large for defined data type")                  \
	X(EOWNERDEAD, "Owner died")                                            \
	X(EPERM, "Operation not permitted")                                    \
	X(EPIPE, "Broken pipe, "                                               \
		 "or semaphore closed, pool shut down or group waited")        \
	X(EPROTO, "Protocol error")                                            \
	X(EPROTONOSUPPORT, "Protocol not supported")                           \
	X(EPROTOTYPE, "Protocol wrong type for socket")                        \
	X(ERANGE, "Numerical result out of range")                             \
	X(EROFS, "Read-only file system")                                      \
	X(ESPIPE, "Illegal seek")                                              \
	X(ESRCH, "No such process")                                            \
	X(ESTALE, "Stale file handle, "                                        \
		  "or lease expired: its weight was reclaimed")                \
	X(ETIME, "Timer expired")                                              \
	X(ETIMEDOUT, "Timed out (deadline passed, or connection timed out)")   \
	X(ETXTBSY, "Text file busy")                                           \
	X(EXDEV, "Invalid cross-device link")

const char *
ration_strerror(int err)
{
	if (err > 0)
		err = -err;
	switch (err) {
	case 0:
		return "Success";
#define X(code, text)                                                          \
	case -(code):                                                          \
		return text;
		RATION_ERRORS(X)
#undef X
	default:
		return "Unknown error";
	}
}

const char *
ration_version(void)
{
	return RATION_VERSION;
}
