/*
 * awsconfig.c -- AWS credentials and configuration lookup (awsconfig.h).
 */
#include "awsconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "lib/fileio.h"
#include "lib/limits.h"

static char *trim(char *s) {
  while (*s == ' ' || *s == '\t') s++;
  size_t n = strlen(s);
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
    s[--n] = 0;
  return s;
}

int aws_ini_get(const char *path, const char *section, const char *key, char *out,
                size_t cap, st_error *err) {
  struct stat st; /* a FIFO in its place is refused, never waited on */
  int fd = fio_openat_raw(AT_FDCWD, path, O_RDONLY, 0, &st);
  if (fd < 0 && (errno == ENOENT || errno == ENOTDIR)) return 0;
  if (fd < 0) return st_error_errno(err, errno, path, "cannot read AWS config file");
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return st_error_set(err, ST_EINVAL, path, -1, "the AWS config file is %s, not a regular file",
                        fio_kind(st.st_mode));
  }
  FILE *f = fdopen(fd, "r");
  if (!f) {
    close(fd);
    return st_error_errno(err, errno, path, "cannot read AWS config file");
  }
  if (st.st_size > PK_LIMIT_AWS_CONFIG_BYTES) {
    fclose(f);
    return st_error_set(err, ST_E2BIG, path, -1,
                        "AWS config file is %lld bytes; the limit is %d",
                        (long long)st.st_size, PK_LIMIT_AWS_CONFIG_BYTES);
  }
  char line[8192];
  int in = 0, found = 0;
  while (fgets(line, sizeof line, f)) {
    int indented = line[0] == ' ' || line[0] == '\t';
    char *l = trim(line);
    if (!*l || *l == '#' || *l == ';') continue;
    if (*l == '[') {
      char *e = strchr(l, ']');
      if (!e) continue;
      *e = 0;
      in = strcmp(trim(l + 1), section) == 0;
      continue;
    }
    if (!in || indented) continue; /* nested sub-section values */
    char *eq = strchr(l, '=');
    if (!eq) continue;
    *eq = 0;
    if (strcmp(trim(l), key) != 0) continue;
    char *v = trim(eq + 1);
    snprintf(out, cap, "%s", v);
    found = 1;
  }
  OPENSSL_cleanse(line, sizeof line);
  fclose(f);
  return found;
}

static void file_path(char *out, size_t cap, const char *env, const char *name) {
  const char *e = getenv(env);
  if (e && *e) {
    snprintf(out, cap, "%s", e);
    return;
  }
  const char *home = getenv("HOME");
  snprintf(out, cap, "%s/.aws/%s", home && *home ? home : ".", name);
}

/* Keys from one profile of the credentials file then the config file. */
static int keys_from_files(aws_config *cfg, const char *cred_file, const char *conf_file,
                           st_error *err) {
  char conf_section[200];
  if (strcmp(cfg->profile, "default") == 0)
    snprintf(conf_section, sizeof conf_section, "default");
  else
    snprintf(conf_section, sizeof conf_section, "profile %s", cfg->profile);
  const char *files[2] = {cred_file, conf_file};
  const char *sections[2] = {cfg->profile, conf_section};
  for (int i = 0; i < 2; i++) {
    int a = aws_ini_get(files[i], sections[i], "aws_access_key_id", cfg->access_key,
                        sizeof cfg->access_key, err);
    if (a < 0) return a;
    int s = aws_ini_get(files[i], sections[i], "aws_secret_access_key", cfg->secret_key,
                        sizeof cfg->secret_key, err);
    if (s < 0) return s;
    if (a && s) {
      int t = aws_ini_get(files[i], sections[i], "aws_session_token", cfg->session_token,
                          sizeof cfg->session_token, err);
      if (t < 0) return t;
      snprintf(cfg->cred_source, sizeof cfg->cred_source, "%s [%s]",
               i == 0 ? "credentials file" : "config file", sections[i]);
      return 1;
    }
    cfg->access_key[0] = cfg->secret_key[0] = 0;
  }
  return 0;
}

int aws_config_load(aws_config *cfg, const char *profile_opt, const char *region_opt,
                    const char *endpoint_opt, st_error *err) {
  memset(cfg, 0, sizeof *cfg);
  const char *env_profile = getenv("AWS_PROFILE");
  const char *profile = profile_opt && *profile_opt ? profile_opt
                        : env_profile && *env_profile ? env_profile : "default";
  if (strlen(profile) >= sizeof cfg->profile)
    return st_error_set(err, ST_EINVAL, "--profile", -1, "profile name too long");
  snprintf(cfg->profile, sizeof cfg->profile, "%s", profile);
  char cred_file[4096], conf_file[4096];
  file_path(cred_file, sizeof cred_file, "AWS_SHARED_CREDENTIALS_FILE", "credentials");
  file_path(conf_file, sizeof conf_file, "AWS_CONFIG_FILE", "config");
  char conf_section[200];
  if (strcmp(cfg->profile, "default") == 0)
    snprintf(conf_section, sizeof conf_section, "default");
  else
    snprintf(conf_section, sizeof conf_section, "profile %s", cfg->profile);

  /* keys: an explicit --profile wins over the environment (as botocore) */
  int have = 0;
  const char *ak = getenv("AWS_ACCESS_KEY_ID"), *sk = getenv("AWS_SECRET_ACCESS_KEY");
  if (!(profile_opt && *profile_opt) && ak && *ak && sk && *sk) {
    if (strlen(ak) >= sizeof cfg->access_key || strlen(sk) >= sizeof cfg->secret_key)
      return st_error_set(err, ST_EAUTH, "AWS_ACCESS_KEY_ID", -1, "credential too long");
    snprintf(cfg->access_key, sizeof cfg->access_key, "%s", ak);
    snprintf(cfg->secret_key, sizeof cfg->secret_key, "%s", sk);
    const char *tok = getenv("AWS_SESSION_TOKEN");
    if (tok && strlen(tok) >= sizeof cfg->session_token)
      return st_error_set(err, ST_EAUTH, "AWS_SESSION_TOKEN", -1, "session token too long");
    if (tok) snprintf(cfg->session_token, sizeof cfg->session_token, "%s", tok);
    snprintf(cfg->cred_source, sizeof cfg->cred_source, "environment");
    have = 1;
  }
  if (!have) {
    int rc = keys_from_files(cfg, cred_file, conf_file, err);
    if (rc < 0) return rc;
    have = rc;
  }
  if (!have)
    return st_error_set(err, ST_EAUTH, "credentials", -1,
                        "no AWS credentials for profile '%s': looked in %s"
                        "%s [%s] and %s [%s]; set AWS_ACCESS_KEY_ID and "
                        "AWS_SECRET_ACCESS_KEY or add the profile",
                        cfg->profile,
                        profile_opt && *profile_opt ? "" : "the environment (AWS_ACCESS_KEY_ID), ",
                        cred_file, cfg->profile, conf_file, conf_section);

  /* region */
  const char *r = region_opt && *region_opt ? region_opt : getenv("AWS_REGION");
  if (!r || !*r) r = getenv("AWS_DEFAULT_REGION");
  if (r && *r) {
    snprintf(cfg->region, sizeof cfg->region, "%s", r);
  } else {
    int rc = aws_ini_get(conf_file, conf_section, "region", cfg->region, sizeof cfg->region, err);
    if (rc < 0) return rc;
    if (!rc) snprintf(cfg->region, sizeof cfg->region, "us-east-1");
  }
  for (const char *p = cfg->region; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-'))
      return st_error_set(err, ST_EINVAL, "region", -1,
                          "region '%s' is not a region name (a-z, 0-9, -)", cfg->region);

  /* endpoint */
  const char *ep = endpoint_opt && *endpoint_opt ? endpoint_opt : getenv("AWS_ENDPOINT_URL_S3");
  if (!ep || !*ep) ep = getenv("AWS_ENDPOINT_URL");
  if (ep && *ep) {
    if (strlen(ep) >= sizeof cfg->endpoint)
      return st_error_set(err, ST_EINVAL, "endpoint", -1, "endpoint URL too long");
    snprintf(cfg->endpoint, sizeof cfg->endpoint, "%s", ep);
  } else {
    int rc = aws_ini_get(conf_file, conf_section, "endpoint_url", cfg->endpoint,
                         sizeof cfg->endpoint, err);
    if (rc < 0) return rc;
  }
  return 0;
}

void aws_config_clear(aws_config *cfg) { OPENSSL_cleanse(cfg, sizeof *cfg); }
