/* The subcommands of the moed binary; each returns the process exit code. */
#ifndef DAEMON_CMDS_H
#define DAEMON_CMDS_H

int cmd_run(int argc, char **argv);

#endif
