/* Error messages into a caller's buffer: one printf-style line into err
 * (err may be NULL or n 0: nothing is written).  Shared by loader,
 * predictor and daemon code that reports through (char *err, size_t n). */
#ifndef MOED_LOADER_ERRFMT_H
#define MOED_LOADER_ERRFMT_H

#include <stddef.h>

void ld_errf(char *err, size_t n, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* ld_errf, then returns rc: `return ld_fail(err, n, -EINVAL, ...);`. */
int ld_fail(char *err, size_t n, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#endif
