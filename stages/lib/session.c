/*
 * session.c -- variables, datasets and timing records kept between cells.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "limits.h"
#include "session.h"

ss_session *ss_session_new(void) {
  char cwd[4096];
  if (getcwd(cwd, sizeof cwd)) setenv("PWD", cwd, 1); /* $PWD is the kernel's folder */
  return calloc(1, sizeof(ss_session));
}

void ss_session_free(ss_session *s) {
  if (!s) return;
  for (ss_var *v = s->vars, *n; v; v = n) {
    n = v->next;
    free(v->name);
    free(v->value);
    free(v);
  }
  for (ss_dataset *d = s->datasets, *n; d; d = n) {
    n = d->next;
    ss_dataset_free(d);
  }
  for (ss_runrec *r = s->runs, *n; r; r = n) {
    n = r->next;
    free(r->timings);
    free(r);
  }
  if (s->trainer && s->trainer_free) s->trainer_free(s->trainer);
  free(s->timings);
  free(s);
}

const char *ss_session_get(const ss_session *s, const char *name) {
  for (const ss_var *v = s->vars; v; v = v->next)
    if (strcmp(v->name, name) == 0) return v->value;
  return NULL;
}

int ss_session_set(ss_session *s, const char *name, const char *value) {
  size_t count = 0;
  for (ss_var *v = s->vars; v; v = v->next, count++) {
    if (strcmp(v->name, name) == 0) {
      char *nv = strdup(value);
      if (!nv) return ST_ENOMEM;
      free(v->value);
      v->value = nv;
      return 0;
    }
  }
  if (count >= PK_LIMIT_VARS) return ST_E2BIG;
  ss_var *v = calloc(1, sizeof *v);
  if (!v) return ST_ENOMEM;
  v->name = strdup(name);
  v->value = strdup(value);
  if (!v->name || !v->value) {
    free(v->name);
    free(v->value);
    free(v);
    return ST_ENOMEM;
  }
  v->next = s->vars;
  s->vars = v;
  return 0;
}

int ss_session_unset(ss_session *s, const char *name) {
  for (ss_var **p = &s->vars; *p; p = &(*p)->next) {
    if (strcmp((*p)->name, name) == 0) {
      ss_var *v = *p;
      *p = v->next;
      free(v->name);
      free(v->value);
      free(v);
      return 0;
    }
  }
  return ST_ENOENT;
}

ss_dataset *ss_dataset_new(const char *name) {
  ss_dataset *d = calloc(1, sizeof *d);
  if (!d) return NULL;
  strncpy(d->name, name ? name : "cifar10", sizeof d->name - 1);
  return d;
}

struct ss_block {
  atomic_size_t refs; /* the split's own reference, while it lives, and every holder's */
  uint8_t *pixels;
  uint8_t *labels;
  size_t n;
  size_t map_len;     /* as in ss_split */
};

static void free_pixels(uint8_t *pixels, size_t map_len, uint8_t *labels) {
  if (map_len)
    munmap(pixels, map_len);
  else
    free(pixels);
  free(labels);
}

ss_block *ss_split_share(ss_split *sp) {
  if (!sp->shared) {
    ss_block *b = malloc(sizeof *b);
    if (!b) return NULL;
    atomic_init(&b->refs, 1); /* the split's */
    b->pixels = sp->pixels;
    b->labels = sp->labels;
    b->n = sp->n;
    b->map_len = sp->map_len;
    sp->shared = b;
  }
  atomic_fetch_add(&sp->shared->refs, 1);
  return sp->shared;
}

void ss_block_release(ss_block *b) {
  if (!b || atomic_fetch_sub(&b->refs, 1) != 1) return;
  free_pixels(b->pixels, b->map_len, b->labels);
  free(b);
}

uint8_t *ss_block_pixels(const ss_block *b) { return b->pixels; }
uint8_t *ss_block_labels(const ss_block *b) { return b->labels; }
size_t ss_block_count(const ss_block *b) { return b->n; }

void ss_split_free(ss_split *sp) {
  if (sp->shared)
    ss_block_release(sp->shared);
  else
    free_pixels(sp->pixels, sp->map_len, sp->labels);
  memset(sp, 0, sizeof *sp);
}

void ss_dataset_free(ss_dataset *d) {
  if (!d) return;
  ss_split_free(&d->train);
  ss_split_free(&d->test);
  for (int i = 0; i < d->n_classes; i++) free(d->label_names ? d->label_names[i] : NULL);
  free(d->label_names);
  free(d);
}

void ss_session_put_dataset(ss_session *s, ss_dataset *d) {
  for (ss_dataset **p = &s->datasets; *p; p = &(*p)->next) {
    if (strcmp((*p)->name, d->name) == 0) {
      ss_dataset *old = *p;
      *p = old->next;
      ss_dataset_free(old);
      break;
    }
  }
  d->next = s->datasets;
  s->datasets = d;
}

ss_dataset *ss_session_dataset(ss_session *s, const char *name) {
  if (!name) return s->datasets;
  for (ss_dataset *d = s->datasets; d; d = d->next)
    if (strcmp(d->name, name) == 0) return d;
  return NULL;
}

int ss_session_add_timing(ss_session *s, const st_timing *t) {
  if (s->n_timings == s->cap_timings) {
    size_t cap = s->cap_timings ? s->cap_timings * 2 : 16;
    st_timing *nt = realloc(s->timings, cap * sizeof *nt);
    if (!nt) return ST_ENOMEM;
    s->timings = nt;
    s->cap_timings = cap;
  }
  s->timings[s->n_timings++] = *t;
  return 0;
}

void ss_session_clear_timings(ss_session *s) { s->n_timings = 0; }
