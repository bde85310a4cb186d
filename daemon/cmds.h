/* The subcommands of the moed binary; each returns the process exit code. */
#ifndef DAEMON_CMDS_H
#define DAEMON_CMDS_H

int cmd_run(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_mkmodel(int argc, char **argv);
int cmd_pack(int argc, char **argv);
int cmd_worker(int argc, char **argv);
int cmd_predictor(int argc, char **argv);

#endif
