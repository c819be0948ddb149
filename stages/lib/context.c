/*
 * context.c -- helpers over the st_ctx callbacks: formatted output,
 * throttled progress, timing records, display ids.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <uuid/uuid.h>

#include "escape.h"
#include "session.h"
#include "stage.h"

#define PROGRESS_INTERVAL 0.1 /* seconds between progress reports */

double st_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void st_write(st_ctx *c, int stream, const char *buf, size_t len) {
  if (c && c->write && len) c->write(c, stream, buf, len);
}

void st_vprintf(st_ctx *c, int stream, const char *fmt, va_list ap) {
  char small[1024];
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(small, sizeof small, fmt, ap);
  if (n < 0) {
    va_end(ap2);
    return;
  }
  if ((size_t)n < sizeof small) {
    st_write(c, stream, small, (size_t)n);
  } else {
    char *big = malloc((size_t)n + 1);
    if (big) {
      vsnprintf(big, (size_t)n + 1, fmt, ap2);
      st_write(c, stream, big, (size_t)n);
      free(big);
    }
  }
  va_end(ap2);
}

void st_printf(st_ctx *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  st_vprintf(c, 1, fmt, ap);
  va_end(ap);
}

void st_eprintf(st_ctx *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  st_vprintf(c, 2, fmt, ap);
  va_end(ap);
}

void st_display(st_ctx *c, const st_mime *items, int n, const char *display_id) {
  if (c && c->display) c->display(c, items, n, display_id, 0);
}

void st_display_update(st_ctx *c, const st_mime *items, int n, const char *display_id) {
  if (c && c->display && display_id) c->display(c, items, n, display_id, 1);
}

void st_new_display_id(char out[ST_DISPLAY_ID_MAX]) {
  uuid_t u;
  uuid_generate_random(u);
  memcpy(out, "pk-", 3);
  uuid_unparse_lower(u, out + 3);
}

int st_cancelled(st_ctx *c) { return c && c->cancelled && c->cancelled(c); }

void st_result(st_ctx *c, const char *text) {
  if (c && c->result) c->result(c, text);
  else if (c) st_printf(c, "%s\n", text);
}

static void progress_emit(st_progress *p, double now) {
  p->elapsed = now - p->start;
  p->last_emit = now;
  if (p->ctx && p->ctx->progress) p->ctx->progress(p->ctx, p);
}

void st_progress_begin(st_ctx *c, st_progress *p, const char *label,
                       const char *unit, uint64_t total) {
  memset(p, 0, sizeof *p);
  p->ctx = c;
  /* labels name files, members and keys: escaped (escape.h) */
  esc_text(p->label, sizeof p->label, label ? label : "", label ? strlen(label) : 0);
  snprintf(p->unit, sizeof p->unit, "%s", unit ? unit : "");
  p->total = total;
  p->state = ST_PROGRESS_RUNNING;
  st_new_display_id(p->id);
  p->start = st_now();
  progress_emit(p, p->start);
}

void st_progress_update(st_progress *p, uint64_t done) {
  p->done = done;
  double now = st_now();
  if (now - p->last_emit >= PROGRESS_INTERVAL) progress_emit(p, now);
}

void st_progress_set_total(st_progress *p, uint64_t total) { p->total = total; }

void st_progress_end(st_progress *p, int rc) {
  p->state = rc == 0 ? ST_PROGRESS_DONE
             : rc == ST_ECANCELED ? ST_PROGRESS_CANCELLED
                                  : ST_PROGRESS_FAILED;
  if (rc == 0 && p->total && p->done < p->total) p->done = p->total;
  progress_emit(p, st_now());
}

void st_record_timing(st_ctx *c, const st_timing *t) {
  st_timing copy = *t;
  copy.wall = (double)time(NULL);
  if (!copy.magic[0] && c && c->cur_magic)
    snprintf(copy.magic, sizeof copy.magic, "%s", c->cur_magic);
  if (!copy.args[0] && c && c->cur_args)
    snprintf(copy.args, sizeof copy.args, "%s", c->cur_args);
  if (c && c->session) ss_session_add_timing(c->session, &copy);
}

void st_timing_add(st_ctx *c, const char *stage, const char *magic, double seconds,
                   uint64_t bytes, uint64_t items, const char *backend,
                   const char *hash) {
  st_timing t;
  memset(&t, 0, sizeof t);
  snprintf(t.stage, sizeof t.stage, "%s", stage ? stage : "");
  snprintf(t.magic, sizeof t.magic, "%s", magic ? magic : "");
  t.seconds = seconds;
  t.bytes = bytes;
  t.items = items;
  snprintf(t.backend, sizeof t.backend, "%s", backend ? backend : "");
  snprintf(t.hash, sizeof t.hash, "%s", hash ? hash : "");
  t.resident = -1;
  st_record_timing(c, &t);
}

/* Code points of s[0..n) (UTF-8 continuation bytes not counted). */
static size_t cps(const char *s, size_t n) {
  size_t k = 0;
  for (size_t i = 0; i < n; i++) k += ((unsigned char)s[i] & 0xC0) != 0x80;
  return k;
}

static void short_label(const char *label, char *out, size_t cap) {
  size_t n = strlen(label), max = ST_PROGRESS_LABEL_SHOWN;
  if (cps(label, n) <= max) {
    snprintf(out, cap, "%s", label);
    return;
  }
  const char *sp = strchr(label, ' ');
  size_t head = sp && cps(label, (size_t)(sp - label)) < max / 3 ? (size_t)(sp - label) + 1 : 0;
  size_t room = max - cps(label, head) - 1; /* code points of the tail; 1 for the ellipsis */
  size_t t = n;
  while (t > head && cps(label + t, n - t) < room) {
    t--;
    while (t > head && ((unsigned char)label[t] & 0xC0) == 0x80) t--; /* a whole code point */
  }
  if (cps(label + t, n - t) > room) /* one too many: step forward a code point */
    do t++; while (t < n && ((unsigned char)label[t] & 0xC0) == 0x80);
  snprintf(out, cap, "%.*s\u2026%s", (int)head, label, label + t);
}

void st_progress_view_of(const st_progress *p, st_progress_view *v) {
  short_label(p->label, v->label, sizeof v->label);
  v->rate[0] = 0;
  if (strcmp(p->unit, "B") == 0) {
    char d[24], t[24];
    st_fmt_bytes(d, sizeof d, p->done);
    st_fmt_bytes(t, sizeof t, p->total);
    if (p->total) snprintf(v->amount, sizeof v->amount, "%s / %s", d, t);
    else snprintf(v->amount, sizeof v->amount, "%s", d);
    st_fmt_rate(v->rate, sizeof v->rate, p->done, p->elapsed);
  } else if (p->total) {
    snprintf(v->amount, sizeof v->amount, "%llu / %llu %s", (unsigned long long)p->done,
             (unsigned long long)p->total, p->unit);
  } else {
    snprintf(v->amount, sizeof v->amount, "%llu %s", (unsigned long long)p->done, p->unit);
  }
  v->frac = p->total ? (double)p->done / (double)p->total : 0;
  if (v->frac > 1) v->frac = 1;
  if (!p->total && p->state == ST_PROGRESS_DONE) v->frac = 1;
  int fill = (int)(v->frac * 30);
  for (int i = 0; i < 30; i++) v->bar[i] = i < fill ? '#' : '.';
  v->bar[30] = 0;
}

void st_fmt_bytes(char *buf, size_t cap, uint64_t bytes) {
  double b = (double)bytes;
  if (b >= 1e9) snprintf(buf, cap, "%.2f GB", b / 1e9);
  else if (b >= 1e5) snprintf(buf, cap, "%.1f MB", b / 1e6);
  else if (b >= 1e3) snprintf(buf, cap, "%.1f kB", b / 1e3);
  else snprintf(buf, cap, "%llu B", (unsigned long long)bytes);
}

void st_fmt_rate(char *buf, size_t cap, uint64_t bytes, double seconds) {
  if (seconds <= 0) { snprintf(buf, cap, "-- MB/s"); return; }
  double r = (double)bytes / seconds / 1e6;
  if (r >= 100) snprintf(buf, cap, "%.0f MB/s", r);
  else if (r >= 1) snprintf(buf, cap, "%.1f MB/s", r);
  else if (r >= 1e-3) snprintf(buf, cap, "%.0f kB/s", r * 1e3); /* not "0.0 MB/s" for a small file */
  else snprintf(buf, cap, "%.0f B/s", r * 1e6);
}
