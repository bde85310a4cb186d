/* Error messages into a caller's buffer (loader/errfmt.h). */
#include <stdarg.h>
#include <stdio.h>

#include "loader/errfmt.h"

void ld_errf(char *err, size_t n, const char *fmt, ...)
{
	va_list ap;

	if (!err || !n)
		return;
	va_start(ap, fmt);
	vsnprintf(err, n, fmt, ap);
	va_end(ap);
}

int ld_fail(char *err, size_t n, int rc, const char *fmt, ...)
{
	va_list ap;

	if (err && n) {
		va_start(ap, fmt);
		vsnprintf(err, n, fmt, ap);
		va_end(ap);
	}
	return rc;
}
