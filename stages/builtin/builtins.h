/*
 * builtins.h -- the magic language's built-in magics. Their rows go first
 * in the registry table (BUILTIN_ROWS).
 */
#ifndef PK_BUILTINS_H
#define PK_BUILTINS_H

#include "lib/stage.h"

int bi_help(st_ctx *c, const st_args *a, st_error *err);
int bi_lsmagic(st_ctx *c, const st_args *a, st_error *err);
int bi_set(st_ctx *c, const st_args *a, st_error *err);
int bi_env(st_ctx *c, const st_args *a, st_error *err);
int bi_cd(st_ctx *c, const st_args *a, st_error *err);
int bi_pwd(st_ctx *c, const st_args *a, st_error *err);
int bi_time(st_ctx *c, const st_args *a, st_error *err);
int bi_echo(st_ctx *c, const st_args *a, st_error *err);
int bi_sleep(st_ctx *c, const st_args *a, st_error *err);
int bi_html(st_ctx *c, const st_args *a, st_error *err);
int bi_markdown(st_ctx *c, const st_args *a, st_error *err);
int bi_clear(st_ctx *c, const st_args *a, st_error *err);
int bi_input(st_ctx *c, const st_args *a, st_error *err);
int bi_ifset(st_ctx *c, const st_args *a, st_error *err);

extern const st_option bi_echo_opts[], bi_clear_opts[], bi_input_opts[], bi_set_opts[];

#define BUILTIN_ROWS                                                            \
  {"help", bi_help, 0, 1, ST_F_BUILTIN, "built-in", "%help [NAME]",            \
   "Show the help of a magic, or list all magics.",                             \
   "`%NAME?` shows the same help in the pager.", NULL},                         \
  {"lsmagic", bi_lsmagic, 0, 0, ST_F_BUILTIN, "built-in", "%lsmagic",          \
   "List every magic by group, with its usage.", "", NULL},                     \
  {"set", bi_set, 0, -1, ST_F_BUILTIN | ST_F_VALUE, "built-in",                \
   "%set [--default] [NAME=VALUE ...] [NAME] [--unset NAME]",                   \
   "Set, show or list variables used as $NAME and ${NAME} in magic lines.",     \
   "With no argument, lists every variable. `%set NAME` returns the value.\n"   \
   "A variable that is not set falls back to the environment.\n"                \
   "Quote values with spaces: %set MSG=\"hello world\".\n"                      \
   "--default sets only names not set yet, so the environment can override a\n" \
   "notebook's parameters: PK_EPOCHS=1 jupyter nbconvert --execute ...",        \
   bi_set_opts},                                                                \
  {"env", bi_env, 0, -1, ST_F_BUILTIN | ST_F_VALUE, "built-in",                \
   "%env [NAME[=VALUE] ...]",                                                   \
   "Show or set environment variables of the kernel process.",                  \
   "With no argument, lists the environment (values of names that look like\n"  \
   "secrets are hidden). `%env NAME` returns the value.", NULL},                \
  {"cd", bi_cd, 0, 1, ST_F_BUILTIN, "built-in", "%cd [DIR]",                    \
   "Change the kernel's working directory (default: $HOME).", "", NULL},       \
  {"pwd", bi_pwd, 0, 0, ST_F_BUILTIN | ST_F_VALUE, "built-in", "%pwd",         \
   "Return the kernel's working directory.", "", NULL},                       \
  {"ifset", bi_ifset, 2, -1, ST_F_BUILTIN | ST_F_RAW, "built-in",              \
   "%ifset NAME LINE", "Run LINE only when variable NAME is set and not empty.", \
   "NAME is looked up in %set variables, then the environment; otherwise the\n" \
   "line is reported as skipped. Example:\n"                                    \
   "  %ifset AWS_ENDPOINT_URL %upload data s3://bucket/cifar10/", NULL},         \
  {"time", bi_time, 1, -1, ST_F_BUILTIN | ST_F_RAW, "built-in", "%time LINE",  \
   "Run one magic line and print its wall-clock time.",                         \
   "Example: %time %md5 data/cifar-10-python.tar.gz", NULL},                   \
  {"echo", bi_echo, 0, -1, ST_F_BUILTIN, "built-in", "%echo [--stderr] TEXT",  \
   "Print TEXT (variables expanded) to stdout, or stderr with --stderr.", "",  \
   bi_echo_opts},                                                               \
  {"sleep", bi_sleep, 1, 1, ST_F_BUILTIN, "built-in", "%sleep SECONDS",         \
   "Wait SECONDS (fractions allowed); an interrupt ends the wait.",              \
   "A wait of one second or more shows a progress bar.", NULL}, \
  {"html", bi_html, 0, -1, ST_F_BUILTIN | ST_F_RAW | ST_F_CELL, "built-in",    \
   "%html HTML | %html (alone: the rest of the cell)",                          \
   "Display HTML (with a text/plain fallback).",                                \
   "Variables are not expanded, so the text is shown as written.", NULL},      \
  {"markdown", bi_markdown, 0, -1, ST_F_BUILTIN | ST_F_RAW | ST_F_CELL,        \
   "built-in", "%markdown TEXT | %markdown (alone: the rest of the cell)",     \
   "Display Markdown (with a text/plain fallback).",                            \
   "Variables are not expanded, so $math$ survives.", NULL},                    \
  {"clear", bi_clear, 0, 0, ST_F_BUILTIN, "built-in", "%clear [--wait]",        \
   "Clear the cell's output (with --wait: at the next output).", "",           \
   bi_clear_opts},                                                              \
  {"input", bi_input, 0, 1, ST_F_BUILTIN | ST_F_VALUE, "built-in",             \
   "%input [PROMPT] [--password] [--var NAME]",                                 \
   "Ask the user for a line of text and store it in a variable.",               \
   "The answer is stored in $INPUT (or --var NAME) and, unless --password,\n"   \
   "returned as the cell's value. Needs a frontend that allows stdin.",        \
   bi_input_opts},

#endif
