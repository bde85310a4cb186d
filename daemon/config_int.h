/* Shared by config.c and config_args.c. */
#ifndef DAEMON_CONFIG_INT_H
#define DAEMON_CONFIG_INT_H

#include <stddef.h>

/* Puts pre in front of the message already in err. */
void cfg_err_prefix(char *err, size_t n, const char *pre);

#endif
