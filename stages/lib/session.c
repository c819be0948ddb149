/*
 * session.c -- variables, datasets and timing records kept between cells.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "limits.h"
#include "session.h"

st_session *st_session_new(void) {
  char cwd[4096];
  if (getcwd(cwd, sizeof cwd)) setenv("PWD", cwd, 1); /* $PWD is the kernel's folder */
  return calloc(1, sizeof(st_session));
}

void st_session_free(st_session *s) {
  if (!s) return;
  for (st_var *v = s->vars, *n; v; v = n) {
    n = v->next;
    free(v->name);
    free(v->value);
    free(v);
  }
  for (st_dataset *d = s->datasets, *n; d; d = n) {
    n = d->next;
    st_dataset_free(d);
  }
  for (st_runrec *r = s->runs, *n; r; r = n) {
    n = r->next;
    free(r->timings);
    free(r);
  }
  if (s->trainer && s->trainer_free) s->trainer_free(s->trainer);
  free(s->timings);
  free(s);
}

const char *st_session_get(const st_session *s, const char *name) {
  for (const st_var *v = s->vars; v; v = v->next)
    if (strcmp(v->name, name) == 0) return v->value;
  return NULL;
}

int st_session_set(st_session *s, const char *name, const char *value) {
  size_t count = 0;
  for (st_var *v = s->vars; v; v = v->next, count++) {
    if (strcmp(v->name, name) == 0) {
      char *nv = strdup(value);
      if (!nv) return ST_ENOMEM;
      free(v->value);
      v->value = nv;
      return 0;
    }
  }
  if (count >= PK_LIMIT_VARS) return ST_E2BIG;
  st_var *v = calloc(1, sizeof *v);
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

int st_session_unset(st_session *s, const char *name) {
  for (st_var **p = &s->vars; *p; p = &(*p)->next) {
    if (strcmp((*p)->name, name) == 0) {
      st_var *v = *p;
      *p = v->next;
      free(v->name);
      free(v->value);
      free(v);
      return 0;
    }
  }
  return ST_ENOENT;
}

st_dataset *st_dataset_new(const char *name) {
  st_dataset *d = calloc(1, sizeof *d);
  if (!d) return NULL;
  strncpy(d->name, name ? name : "cifar10", sizeof d->name - 1);
  return d;
}

void st_split_free(st_split *sp) {
  if (sp->map_len)
    munmap(sp->pixels, sp->map_len);
  else
    free(sp->pixels);
  free(sp->labels);
  memset(sp, 0, sizeof *sp);
}

void st_dataset_free(st_dataset *d) {
  if (!d) return;
  st_split_free(&d->train);
  st_split_free(&d->test);
  for (int i = 0; i < d->n_classes; i++) free(d->label_names ? d->label_names[i] : NULL);
  free(d->label_names);
  free(d);
}

void st_session_put_dataset(st_session *s, st_dataset *d) {
  for (st_dataset **p = &s->datasets; *p; p = &(*p)->next) {
    if (strcmp((*p)->name, d->name) == 0) {
      st_dataset *old = *p;
      *p = old->next;
      st_dataset_free(old);
      break;
    }
  }
  d->next = s->datasets;
  s->datasets = d;
}

st_dataset *st_session_dataset(st_session *s, const char *name) {
  if (!name) return s->datasets;
  for (st_dataset *d = s->datasets; d; d = d->next)
    if (strcmp(d->name, name) == 0) return d;
  return NULL;
}

int st_session_add_timing(st_session *s, const st_timing *t) {
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

void st_session_clear_timings(st_session *s) { s->n_timings = 0; }
