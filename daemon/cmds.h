/* The subcommands of the moed binary; each returns the process exit code. */
#ifndef DAEMON_CMDS_H
#define DAEMON_CMDS_H

int cmd_run(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_mkmodel(int argc, char **argv);
int cmd_pack(int argc, char **argv);
int cmd_worker(int argc, char **argv);
int cmd_predictor(int argc, char **argv);
int cmd_eval_predictor(int argc, char **argv);

/* A cfg_parse_args "other" handler for commands whose only own flag is
 * --help: ctx is the usage text; prints it and the config flags, exits 0. */
int cmd_help_flag(void *usage, int argc, char **argv);

#endif
