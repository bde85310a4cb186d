/* stderr logging with syslog priority prefixes. */
#include <stdarg.h>
#include <stdio.h>

#include "daemon/log.h"

static int min_priority = LOG_INFO;

void log_set_level(int level)
{
	static const int map[] = {LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR};

	if (level >= 0 && level < 4)
		min_priority = map[level];
}

void log_msg(int priority, const char *fmt, ...)
{
	char line[2048];
	va_list ap;

	if (priority > min_priority)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* One write per line, so lines of several processes do not interleave. */
	fprintf(stderr, "<%d>%s\n", priority, line);
}
