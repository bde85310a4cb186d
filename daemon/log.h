/* Logging to stderr with syslog priority prefixes ("<6>"), which journald
 * turns into levels. */
#ifndef DAEMON_LOG_H
#define DAEMON_LOG_H

#include <syslog.h>

/* level: enum cfg_log_level (0 debug .. 3 error). */
void log_set_level(int level);
void log_msg(int priority, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#endif
