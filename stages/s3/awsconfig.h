/*
 * awsconfig.h -- credentials, region and endpoint found the way the AWS
 * tools find them (docs/stages.md, "S3", gives the order).
 */
#ifndef PK_AWSCONFIG_H
#define PK_AWSCONFIG_H

#include <stddef.h>

#include "lib/stage.h"

typedef struct aws_config {
  char profile[128];
  char access_key[256];
  char secret_key[256];     /* never printed */
  char session_token[4096]; /* never printed */
  char region[64];
  char endpoint[1024];      /* "" = AWS's own endpoint */
  char cred_source[160];    /* where the keys came from, for messages */
} aws_config;

/* Options may be NULL (not given). Fills cfg; ST_EAUTH when no keys are
 * found (the message lists where it looked), ST_EFORMAT/E2BIG for a bad
 * config file. */
int aws_config_load(aws_config *cfg, const char *profile_opt, const char *region_opt,
                    const char *endpoint_opt, st_error *err);
/* Wipes the secrets. */
void aws_config_clear(aws_config *cfg);

/* One value from an AWS-style INI file: [section] then `key = value`
 * (nested, indented sub-sections are skipped). 1 found, 0 not found,
 * negative ST_E* on a read error or a file over the size limit. */
int aws_ini_get(const char *path, const char *section, const char *key, char *out,
                size_t cap, st_error *err);

#endif
