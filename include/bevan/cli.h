/* Bevan command-line subcommands. Each takes the arguments after the subcommand name and returns
 * the process exit status. */
#ifndef BEVAN_CLI_H
#define BEVAN_CLI_H

int bv_cmd_serve(int argc, char **argv);
int bv_cmd_import(int argc, char **argv);
int bv_cmd_check(int argc, char **argv);
int bv_cmd_demo(int argc, char **argv);
int bv_cmd_reindex(int argc, char **argv);
int bv_cmd_backup(int argc, char **argv);   /* src/cli/backup.c */
int bv_cmd_token(int argc, char **argv);
int bv_cmd_client(int argc, char **argv);
int bv_cmd_user(int argc, char **argv);

#endif
