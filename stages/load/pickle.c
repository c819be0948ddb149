/*
 * pickle.c -- the safe pickle reader (see pickle.h, docs/workflow.md).
 *
 * A straight-line interpreter over a byte buffer: one loop, one switch, an
 * explicit value stack, a mark stack and a memo; no recursion, so nesting
 * cannot exhaust the C stack. Every length is checked against what is left
 * of the buffer before it is used; every count against stages/lib/limits.h.
 * Values live in an arena freed at once by pkl_free.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "latin1.h"
#include "lib/dynbuf.h"
#include "lib/limits.h"
#include "pickle.h"

/* ---- the arena ---- */
typedef struct chunk {
  struct chunk *next;
  size_t used, cap;
  max_align_t data[];
} chunk;

struct pkl_doc {
  chunk *chunks;
  pkl_value *root;
};

#define CHUNK_BYTES (256u << 10)
/* _codecs.encode results up to this size are narrowed at once; larger
 * ones (pixel blocks) stay lazy and are narrowed by pkl_array_copy. */
#define LATIN1_EAGER_MAX (64u << 10)

/* The chunks of freed docs are kept for the next parse, on any thread, up
 * to POOL_CHUNKS: a batch file's parse writes about a megabyte of values,
 * and the first touch of fresh memory (the kernel zeroing its pages) was
 * three quarters of that parse's time; %load frees each file's doc once it
 * is checked, so the next file is parsed into memory already touched. */
#if defined(__SANITIZE_ADDRESS__)
#define PKL_NO_POOL 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PKL_NO_POOL 1
#endif
#endif
#ifdef PKL_NO_POOL /* AddressSanitizer sees a doc used after pkl_free only if its memory is freed */
#define POOL_CHUNKS 0
#define SCRATCH_KEEP 0
#else
#define POOL_CHUNKS 16
#define SCRATCH_KEEP 4 /* value stacks and memos kept (rd, below) */
#endif
static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static chunk *pool;
static size_t pool_n;
static const size_t pool_max = POOL_CHUNKS;

static chunk *chunk_new(size_t cap) {
  chunk *c = NULL;
  if (cap == CHUNK_BYTES) {
    pthread_mutex_lock(&pool_mu);
    c = pool;
    if (c) {
      pool = c->next;
      pool_n--;
    }
    pthread_mutex_unlock(&pool_mu);
  }
  if (!c) c = malloc(sizeof *c + cap);
  if (!c) return NULL;
  c->used = 0;
  c->cap = cap;
  return c;
}

static void chunk_free(chunk *c) {
  if (c->cap == CHUNK_BYTES) {
    pthread_mutex_lock(&pool_mu);
    int kept = pool_n < pool_max;
    if (kept) {
      c->next = pool;
      pool = c;
      pool_n++;
    }
    pthread_mutex_unlock(&pool_mu);
    if (kept) return;
  }
  free(c);
}

static void *arena_alloc(pkl_doc *d, size_t n) {
  n = (n + 15) & ~(size_t)15;
  chunk *c = d->chunks;
  if (!c || c->cap - c->used < n) {
    c = chunk_new(n > CHUNK_BYTES / 2 ? n : CHUNK_BYTES);
    if (!c) return NULL;
    if (n > CHUNK_BYTES / 2 && d->chunks) { /* keep the current chunk on top */
      c->next = d->chunks->next;
      d->chunks->next = c;
    } else {
      c->next = d->chunks;
      d->chunks = c;
    }
  }
  void *p = (char *)c->data + c->used;
  c->used += n;
  return p;
}

void pkl_free(pkl_doc *d) {
  if (!d) return;
  for (chunk *c = d->chunks, *n; c; c = n) {
    n = c->next;
    chunk_free(c);
  }
  free(d);
}

const pkl_value *pkl_root(const pkl_doc *d) { return d ? d->root : NULL; }

/* ---- the allow-list ---- */
enum pkl_global {
  G_RECONSTRUCT = 1, /* numpy.core.multiarray._reconstruct (and numpy._core) */
  G_NDARRAY,         /* numpy.ndarray */
  G_DTYPE,           /* numpy.dtype */
  G_FROMBUFFER,      /* numpy.core.numeric._frombuffer (and numpy._core) */
  G_SCALAR,          /* numpy.core.multiarray.scalar (and numpy._core) */
  G_ENCODE,          /* _codecs.encode */
  G_BYTES,           /* __builtin__.bytes, builtins.bytes */
  G_ODICT,           /* collections.OrderedDict */
};

static const struct {
  const char *module, *name;
  int g;
} allowed[] = {
    {"numpy.core.multiarray", "_reconstruct", G_RECONSTRUCT},
    {"numpy._core.multiarray", "_reconstruct", G_RECONSTRUCT},
    {"numpy", "ndarray", G_NDARRAY},
    {"numpy", "dtype", G_DTYPE},
    {"numpy.core.numeric", "_frombuffer", G_FROMBUFFER},
    {"numpy._core.numeric", "_frombuffer", G_FROMBUFFER},
    {"numpy.core.multiarray", "scalar", G_SCALAR},
    {"numpy._core.multiarray", "scalar", G_SCALAR},
    {"_codecs", "encode", G_ENCODE},
    {"__builtin__", "bytes", G_BYTES},
    {"builtins", "bytes", G_BYTES},
    {"collections", "OrderedDict", G_ODICT},
};

static const char *global_name(int g) {
  for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++)
    if (allowed[i].g == g) {
      static char buf[8][80];
      static int k;
      char *b = buf[k++ & 7];
      snprintf(b, 80, "%s.%s", allowed[i].module, allowed[i].name);
      return b;
    }
  return "?";
}

/* ---- opcode names (for messages) ---- */
static const char *op_name(int op) {
  switch (op) {
  case 0x80: return "PROTO";
  case 0x95: return "FRAME";
  case '.': return "STOP";
  case '(': return "MARK";
  case '}': return "EMPTY_DICT";
  case 's': return "SETITEM";
  case 'u': return "SETITEMS";
  case ']': return "EMPTY_LIST";
  case 'a': return "APPEND";
  case 'e': return "APPENDS";
  case ')': return "EMPTY_TUPLE";
  case 0x85: return "TUPLE1";
  case 0x86: return "TUPLE2";
  case 0x87: return "TUPLE3";
  case 't': return "TUPLE";
  case 'N': return "NONE";
  case 0x88: return "NEWTRUE";
  case 0x89: return "NEWFALSE";
  case 'K': return "BININT1";
  case 'M': return "BININT2";
  case 'J': return "BININT";
  case 0x8a: return "LONG1";
  case 0x8b: return "LONG4";
  case 'G': return "BINFLOAT";
  case 'U': return "SHORT_BINSTRING";
  case 'T': return "BINSTRING";
  case 'C': return "SHORT_BINBYTES";
  case 'B': return "BINBYTES";
  case 0x8e: return "BINBYTES8";
  case 0x96: return "BYTEARRAY8";
  case 0x8c: return "SHORT_BINUNICODE";
  case 'X': return "BINUNICODE";
  case 0x8d: return "BINUNICODE8";
  case 'q': return "BINPUT";
  case 'r': return "LONG_BINPUT";
  case 0x94: return "MEMOIZE";
  case 'h': return "BINGET";
  case 'j': return "LONG_BINGET";
  case 'c': return "GLOBAL";
  case 0x93: return "STACK_GLOBAL";
  case 'R': return "REDUCE";
  case 'b': return "BUILD";
  /* refused */
  case 'i': return "INST";
  case 'o': return "OBJ";
  case 0x81: return "NEWOBJ";
  case 0x92: return "NEWOBJ_EX";
  case 'P': return "PERSID";
  case 'Q': return "BINPERSID";
  case 0x82: return "EXT1";
  case 0x83: return "EXT2";
  case 0x84: return "EXT4";
  case 0x97: return "NEXT_BUFFER";
  case 0x98: return "READONLY_BUFFER";
  case 'I': return "INT";
  case 'L': return "LONG";
  case 'S': return "STRING";
  case 'V': return "UNICODE";
  case 'F': return "FLOAT";
  case 'p': return "PUT";
  case 'g': return "GET";
  case 'd': return "DICT";
  case 'l': return "LIST";
  case '0': return "POP";
  case '1': return "POP_MARK";
  case '2': return "DUP";
  case 0x8f: return "EMPTY_SET";
  case 0x90: return "ADDITEMS";
  case 0x91: return "FROZENSET";
  default: return "unknown opcode";
  }
}

/* ---- the reader ---- */
typedef struct rd {
  pkl_doc *d;
  const uint8_t *buf;
  size_t len, pos;
  const char *where;
  st_error *err;
  pkl_value **stack;
  size_t sp, scap;
  size_t marks[PK_LIMIT_PICKLE_MARKS];
  int nmarks;
  pkl_value **memo;
  size_t memo_cap, memo_n;
  size_t made;
  size_t op_off;
  int op;
} rd;

/* The value stack and the memo of finished parses are kept too (up to
 * SCRATCH_KEEP pairs of at most SCRATCH_MAX bytes), for the same reason
 * as the arena's chunks: a batch file's memo holds ten thousand entries. */
#define SCRATCH_MAX (1u << 20)
static struct scratch {
  pkl_value **stack, **memo;
  size_t scap, memo_cap;
} g_scratch[SCRATCH_KEEP > 0 ? SCRATCH_KEEP : 1];
static int g_nscratch;

static void scratch_take(rd *r) {
  pthread_mutex_lock(&pool_mu);
  if (g_nscratch) {
    struct scratch *k = &g_scratch[--g_nscratch];
    r->stack = k->stack;
    r->scap = k->scap;
    r->memo = k->memo;
    r->memo_cap = k->memo_cap;
  }
  pthread_mutex_unlock(&pool_mu);
  if (r->memo) memset(r->memo, 0, r->memo_cap * sizeof *r->memo); /* memo_get reads NULL as unset */
}

static void scratch_give(rd *r) {
  if ((r->scap + r->memo_cap) * sizeof(pkl_value *) <= SCRATCH_MAX) {
    pthread_mutex_lock(&pool_mu);
    if (g_nscratch < SCRATCH_KEEP) {
      g_scratch[g_nscratch++] = (struct scratch){r->stack, r->memo, r->scap, r->memo_cap};
      r->stack = r->memo = NULL;
    }
    pthread_mutex_unlock(&pool_mu);
  }
  free(r->stack);
  free(r->memo);
}

static int fail(rd *r, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(rd *r, int code, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return st_error_set(r->err, code, r->where, (long long)r->op_off, "%s (0x%02x) at byte %zu: %s",
                      op_name(r->op), r->op, r->op_off, msg);
}

static const char *type_name(pkl_type t) {
  static const char *const names[] = {"None", "bool", "int", "float", "bytes", "str",
                                      "list", "tuple", "dict", "ndarray", "dtype", "global"};
  return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : "?";
}

const char *pkl_type_name(const pkl_value *v) { return v ? type_name(v->type) : "nothing"; }

static pkl_value *mk(rd *r, pkl_type t) {
  if (r->made >= PK_LIMIT_PICKLE_ITEMS) {
    fail(r, ST_E2BIG, "more than %u values (PK_LIMIT_PICKLE_ITEMS)", (unsigned)PK_LIMIT_PICKLE_ITEMS);
    return NULL;
  }
  pkl_value *v = arena_alloc(r->d, sizeof *v);
  if (!v) {
    fail(r, ST_ENOMEM, "out of memory");
    return NULL;
  }
  memset(v, 0, sizeof *v);
  v->type = t;
  v->offset = (int64_t)r->op_off;
  if (t == PKL_NDARRAY) {
    v->u.a = arena_alloc(r->d, sizeof *v->u.a);
    if (!v->u.a) {
      fail(r, ST_ENOMEM, "out of memory");
      return NULL;
    }
    memset(v->u.a, 0, sizeof *v->u.a);
  }
  r->made++;
  return v;
}

static int push(rd *r, pkl_value *v) {
  if (!v) return -1;
  if (r->sp == r->scap) {
    int rc = dyn_grow_array(&r->stack, &r->scap, r->sp + 1, sizeof *r->stack, PK_LIMIT_PICKLE_STACK);
    if (rc == ST_E2BIG)
      return fail(r, ST_E2BIG, "stack deeper than %u values (PK_LIMIT_PICKLE_STACK)",
                  (unsigned)PK_LIMIT_PICKLE_STACK);
    if (rc) return fail(r, ST_ENOMEM, "out of memory");
  }
  r->stack[r->sp++] = v;
  return 0;
}

/* The lowest stack index usable by the current opcode (above the last mark). */
static size_t floor_(const rd *r) { return r->nmarks ? r->marks[r->nmarks - 1] : 0; }

static pkl_value *pop(rd *r) {
  if (r->sp <= floor_(r)) {
    fail(r, ST_EFORMAT, "stack underflow");
    return NULL;
  }
  return r->stack[--r->sp];
}

static pkl_value *top(rd *r) {
  if (r->sp <= floor_(r)) {
    fail(r, ST_EFORMAT, "stack underflow");
    return NULL;
  }
  return r->stack[r->sp - 1];
}

static int pop_mark(rd *r, size_t *base) {
  if (!r->nmarks) return fail(r, ST_EFORMAT, "no MARK to close");
  *base = r->marks[--r->nmarks];
  return 0;
}

static int need(rd *r, size_t n) {
  if (r->len - r->pos < n)
    return fail(r, ST_EFORMAT, "truncated: needs %zu more bytes, %zu left", n, r->len - r->pos);
  return 0;
}

static uint64_t le(const uint8_t *p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
  return v;
}

static int seq_add(rd *r, pkl_value *s, pkl_value *v) {
  if (s->u.seq.n == s->u.seq.cap) {
    size_t cap = s->u.seq.cap ? s->u.seq.cap * 2 : 8;
    pkl_value **ni = arena_alloc(r->d, cap * sizeof *ni);
    if (!ni) return fail(r, ST_ENOMEM, "out of memory");
    if (s->u.seq.n) memcpy(ni, s->u.seq.items, s->u.seq.n * sizeof *ni);
    s->u.seq.items = ni;
    s->u.seq.cap = cap;
  }
  s->u.seq.items[s->u.seq.n++] = v;
  return 0;
}

/* UTF-8 check (surrogates allowed, as pickle's 'surrogatepass'); counts code
 * points and finds the largest. Returns 0 or the offset+1 of a bad byte. */
static size_t utf8_scan(const uint8_t *p, size_t n, size_t *ncp, uint32_t *maxcp) {
  size_t count = 0;
  size_t i = pkl_latin1_prefix(p, n, &count); /* the common case, 16 bytes at a time */
  uint32_t mx = count == i ? 0x7f : 0xff;    /* an upper bound is all callers need */
  while (i < n) {
    uint8_t b = p[i];
    if (b < 0x80) {
      /* fast path over ASCII */
      i++;
      count++;
      continue;
    }
    uint32_t cp;
    int k;
    if (b >= 0xc2 && b <= 0xdf) { cp = b & 0x1f; k = 1; }
    else if (b >= 0xe0 && b <= 0xef) { cp = b & 0x0f; k = 2; }
    else if (b >= 0xf0 && b <= 0xf4) { cp = b & 0x07; k = 3; }
    else return i + 1;
    if (n - i <= (size_t)k) return i + 1;
    for (int j = 1; j <= k; j++) {
      if ((p[i + j] & 0xc0) != 0x80) return i + j + 1;
      cp = cp << 6 | (p[i + j] & 0x3f);
    }
    if ((k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10ffff))) return i + 1;
    if (cp > mx) mx = cp;
    i += (size_t)k + 1;
    count++;
  }
  *ncp = count;
  *maxcp = mx;
  return 0;
}

static int mk_string(rd *r, pkl_type t, size_t n) {
  if (need(r, n)) return -1;
  pkl_value *v = mk(r, t);
  if (!v) return -1;
  v->u.s.p = r->buf + r->pos;
  v->u.s.len = n;
  if (t == PKL_STR) {
    size_t ncp = 0;
    uint32_t mx = 0;
    size_t bad = utf8_scan(v->u.s.p, n, &ncp, &mx);
    if (bad) return fail(r, ST_EFORMAT, "invalid UTF-8 at byte %zu of the string", bad - 1);
    v->u.s.src_len = ncp; /* for PKL_STR: code points */
    v->u.s.enc = mx <= 255 ? 1 : 2;  /* 1: narrowable to latin-1 */
  }
  r->pos += n;
  return push(r, v);
}

static int is_text(const pkl_value *v) { return v && (v->type == PKL_STR || v->type == PKL_BYTES); }

static int text_eq(const pkl_value *v, const char *s) {
  size_t n = strlen(s);
  if (!is_text(v) || v->u.s.len != n) return 0;
  if (v->type == PKL_BYTES && v->u.s.enc == PKL_LATIN1) return 0; /* only large blocks */
  return memcmp(v->u.s.p, s, n) == 0;
}

/* Printable copy of a text value for messages. */
static const char *show(const pkl_value *v, char *buf, size_t cap) {
  if (!is_text(v) || (v->type == PKL_BYTES && v->u.s.enc == PKL_LATIN1)) {
    snprintf(buf, cap, "<%s>", pkl_type_name(v));
    return buf;
  }
  size_t o = 0;
  for (size_t i = 0; i < v->u.s.len && o + 5 < cap; i++) {
    uint8_t ch = v->u.s.p[i];
    if (i >= 60) {
      o += (size_t)snprintf(buf + o, cap - o, "...");
      break;
    }
    if (ch >= 0x20 && ch < 0x7f && ch != '\\') buf[o++] = (char)ch;
    else o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", ch);
  }
  buf[o] = 0;
  return buf;
}

/* ---- globals ---- */
static int push_global(rd *r, const uint8_t *mod, size_t ml, const uint8_t *name, size_t nl) {
  for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++)
    if (strlen(allowed[i].module) == ml && memcmp(allowed[i].module, mod, ml) == 0 &&
        strlen(allowed[i].name) == nl && memcmp(allowed[i].name, name, nl) == 0) {
      pkl_value *v = mk(r, PKL_GLOBAL);
      if (!v) return -1;
      v->u.g = allowed[i].g;
      return push(r, v);
    }
  pkl_value m = {.type = PKL_BYTES, .u.s = {mod, ml, 0, 0}}, n = {.type = PKL_BYTES, .u.s = {name, nl, 0, 0}};
  char a[256], b[256];
  return fail(r, ST_EUNSAFE,
              "global %s.%s is not in the allow-list (numpy arrays, dtypes and scalars, "
              "_codecs.encode, bytes, OrderedDict); nothing in a pickle is ever called",
              show(&m, a, sizeof a), show(&n, b, sizeof b));
}

static int op_global(rd *r) {
  const uint8_t *p = r->buf + r->pos;
  size_t left = r->len - r->pos, lim = left < 512 ? left : 512;
  const uint8_t *nl1 = memchr(p, '\n', lim);
  if (!nl1) return fail(r, ST_EFORMAT, "module name not terminated by a newline");
  size_t ml = (size_t)(nl1 - p);
  const uint8_t *q = nl1 + 1;
  size_t left2 = left - ml - 1, lim2 = left2 < 512 ? left2 : 512;
  const uint8_t *nl2 = memchr(q, '\n', lim2);
  if (!nl2) return fail(r, ST_EFORMAT, "global name not terminated by a newline");
  size_t nlen = (size_t)(nl2 - q);
  r->pos += ml + 1 + nlen + 1;
  return push_global(r, p, ml, q, nlen);
}

/* ---- dtype codes: "u1", "<i8", "|u1", "f4", "b1" ---- */
static int parse_dtype_code(rd *r, const pkl_value *code, pkl_dtype *dt) {
  char tmp[80];
  if (!is_text(code) || code->u.s.len == 0 || code->u.s.len > 8 ||
      (code->type == PKL_BYTES && code->u.s.enc == PKL_LATIN1))
    return fail(r, ST_EFORMAT, "dtype code must be a short string, got %s", show(code, tmp, sizeof tmp));
  const char *s = (const char *)code->u.s.p;
  size_t n = code->u.s.len, i = 0;
  char order = 0;
  if (s[0] == '<' || s[0] == '>' || s[0] == '|' || s[0] == '=') order = s[i++];
  if (i >= n) goto bad;
  char kind = s[i++];
  int size = 0;
  if (i >= n) goto bad;
  for (; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') goto bad;
    size = size * 10 + (s[i] - '0');
  }
  int ok = ((kind == 'u' || kind == 'i') && (size == 1 || size == 2 || size == 4 || size == 8)) ||
           (kind == 'f' && (size == 4 || size == 8)) || (kind == 'b' && size == 1);
  if (!ok) goto bad;
  dt->kind = kind;
  dt->itemsize = size;
  dt->order = size == 1 ? '|' : (order == '>' ? '>' : '<');
  return 0;
bad:
  return fail(r, ST_EFORMAT,
              "dtype '%s' is not supported (plain integers u1..u8, i1..i8, floats f4/f8, "
              "bool b1; no objects, strings or records)",
              show(code, tmp, sizeof tmp));
}

static int get_int(const pkl_value *v, int64_t *out) {
  if (!v || (v->type != PKL_INT && v->type != PKL_BOOL)) return -1;
  *out = v->u.i;
  return 0;
}

/* Shape tuple -> ndim/shape/count, with overflow checks. */
static int set_shape(rd *r, pkl_value *a, const pkl_value *shape, size_t itemsize) {
  if (!shape || shape->type != PKL_TUPLE)
    return fail(r, ST_EFORMAT, "array shape must be a tuple, got %s", pkl_type_name(shape));
  if (shape->u.seq.n > PK_LIMIT_PICKLE_NDIM)
    return fail(r, ST_E2BIG, "array has %zu dimensions, at most %d (PK_LIMIT_PICKLE_NDIM)",
                shape->u.seq.n, PK_LIMIT_PICKLE_NDIM);
  size_t count = 1;
  for (size_t i = 0; i < shape->u.seq.n; i++) {
    int64_t d;
    if (get_int(shape->u.seq.items[i], &d) || d < 0)
      return fail(r, ST_EFORMAT, "array dimension %zu is not a non-negative int", i);
    if (d && count > SIZE_MAX / (size_t)d)
      return fail(r, ST_E2BIG, "array shape overflows");
    count *= (size_t)d;
    a->u.a->shape[i] = (size_t)d;
  }
  if (count > SIZE_MAX / itemsize) return fail(r, ST_E2BIG, "array shape overflows");
  a->u.a->ndim = (int)shape->u.seq.n;
  a->u.a->len = count * itemsize;
  return 0;
}

static int attach_data(rd *r, pkl_value *a, const pkl_value *raw) {
  if (!raw || raw->type != PKL_BYTES) {
    if (raw && raw->type == PKL_LIST)
      return fail(r, ST_EUNSAFE, "object arrays (data given as a list) are not accepted");
    return fail(r, ST_EFORMAT, "array data must be bytes, got %s", pkl_type_name(raw));
  }
  if (raw->u.s.len != a->u.a->len)
    return fail(r, ST_EFORMAT, "array data is %zu bytes but its shape and dtype need %zu",
                raw->u.s.len, a->u.a->len);
  a->u.a->data = raw->u.s.p;
  a->u.a->src_len = raw->u.s.enc == PKL_LATIN1 ? raw->u.s.src_len : raw->u.s.len;
  a->u.a->enc = raw->u.s.enc;
  return 0;
}

/* ---- REDUCE: each allow-listed global on its arguments av[0..ac) ---- */
/* _reconstruct(numpy.ndarray, shape, typecode): an array BUILD fills in. */
static int reduce_reconstruct(rd *r, pkl_value **av, size_t ac) {
  if (ac != 3 || av[0]->type != PKL_GLOBAL || av[0]->u.g != G_NDARRAY)
    return fail(r, ST_EUNSAFE, "_reconstruct accepts only (numpy.ndarray, shape, typecode)");
  pkl_value *a = mk(r, PKL_NDARRAY);
  if (!a) return -1;
  a->u.a->ndim = -1;
  return push(r, a);
}

/* numpy.dtype(code[, align, copy]). */
static int reduce_dtype(rd *r, pkl_value **av, size_t ac) {
  if (ac < 1 || ac > 3) return fail(r, ST_EFORMAT, "numpy.dtype takes (code, align, copy)");
  pkl_value *d = mk(r, PKL_DTYPE);
  if (!d || parse_dtype_code(r, av[0], &d->u.dt)) return -1;
  return push(r, d);
}

/* numpy's _frombuffer(buffer, dtype, shape, order): an array over bytes. */
static int reduce_frombuffer(rd *r, pkl_value **av, size_t ac) {
  char tmp[160];
  if (ac != 4 || av[1]->type != PKL_DTYPE)
    return fail(r, ST_EFORMAT, "_frombuffer takes (buffer, dtype, shape, order)");
  pkl_value *a = mk(r, PKL_NDARRAY);
  if (!a) return -1;
  a->u.a->dt = av[1]->u.dt;
  if (set_shape(r, a, av[2], (size_t)a->u.a->dt.itemsize)) return -1;
  if (text_eq(av[3], "F")) a->u.a->fortran = 1;
  else if (!text_eq(av[3], "C"))
    return fail(r, ST_EFORMAT, "_frombuffer order must be 'C' or 'F', got %s", show(av[3], tmp, sizeof tmp));
  if (attach_data(r, a, av[0])) return -1;
  return push(r, a);
}

/* numpy.core.multiarray.scalar(dtype, bytes): an int, bool or float. */
static int reduce_scalar(rd *r, pkl_value **av, size_t ac) {
  if (ac != 2 || av[0]->type != PKL_DTYPE || av[1]->type != PKL_BYTES)
    return fail(r, ST_EFORMAT, "numpy scalar takes (dtype, bytes)");
  pkl_dtype dt = av[0]->u.dt;
  const pkl_value *b = av[1];
  if (b->u.s.enc == PKL_LATIN1 || b->u.s.len != (size_t)dt.itemsize)
    return fail(r, ST_EFORMAT, "numpy scalar of %d bytes given %zu", dt.itemsize, b->u.s.len);
  uint8_t raw[8];
  for (int i = 0; i < dt.itemsize; i++)
    raw[i] = dt.order == '>' ? b->u.s.p[dt.itemsize - 1 - i] : b->u.s.p[i];
  uint64_t u = le(raw, dt.itemsize);
  pkl_value *v;
  if (dt.kind == 'f') {
    v = mk(r, PKL_FLOAT);
    if (!v) return -1;
    if (dt.itemsize == 4) {
      float f;
      uint32_t w = (uint32_t)u;
      memcpy(&f, &w, 4);
      v->u.f = f;
    } else {
      memcpy(&v->u.f, &u, 8);
    }
  } else {
    v = mk(r, dt.kind == 'b' ? PKL_BOOL : PKL_INT);
    if (!v) return -1;
    if (dt.kind == 'i' && dt.itemsize < 8 && (u >> (dt.itemsize * 8 - 1)) & 1)
      u |= ~(uint64_t)0 << (dt.itemsize * 8); /* sign-extend */
    if (dt.kind == 'u' && dt.itemsize == 8 && u > INT64_MAX)
      return fail(r, ST_E2BIG, "uint64 scalar beyond int64");
    v->u.i = (int64_t)u;
    if (dt.kind == 'b') v->u.i = u != 0;
  }
  return push(r, v);
}

/* _codecs.encode(str, 'latin1'): bytes as Python 3 writes them at protocol
 * 2 (narrowed now up to LATIN1_EAGER_MAX, else by pkl_array_copy). */
static int reduce_encode(rd *r, pkl_value **av, size_t ac) {
  if (ac != 2 || av[0]->type != PKL_STR ||
      !(text_eq(av[1], "latin1") || text_eq(av[1], "latin-1")))
    return fail(r, ST_EUNSAFE, "_codecs.encode is accepted only as (str, 'latin1')");
  const pkl_value *s = av[0];
  if (s->u.s.enc != 1)
    return fail(r, ST_EFORMAT, "_codecs.encode: a code point above 255 cannot be latin-1");
  pkl_value *v = mk(r, PKL_BYTES);
  if (!v) return -1;
  size_t ncp = s->u.s.src_len;
  if (ncp == s->u.s.len) { /* pure ASCII: the bytes themselves */
    v->u.s.p = s->u.s.p;
    v->u.s.len = ncp;
  } else if (ncp <= LATIN1_EAGER_MAX) {
    uint8_t *o = arena_alloc(r->d, ncp ? ncp : 1);
    if (!o) return fail(r, ST_ENOMEM, "out of memory");
    pkl_latin1_narrow(s->u.s.p, s->u.s.len, o, ncp);
    v->u.s.p = o;
    v->u.s.len = ncp;
  } else {
    v->u.s.p = s->u.s.p;
    v->u.s.len = ncp;
    v->u.s.src_len = s->u.s.len;
    v->u.s.enc = PKL_LATIN1;
  }
  return push(r, v);
}

/* REDUCE: pops the arguments and an allow-listed global (nothing else is
 * ever called) and pushes what that global makes of them. */
static int reduce(rd *r) {
  pkl_value *args = pop(r);
  if (!args) return -1;
  pkl_value *fn = pop(r);
  if (!fn) return -1;
  if (fn->type != PKL_GLOBAL)
    return fail(r, ST_EUNSAFE, "REDUCE on a %s is not allowed (only allow-listed globals)",
                pkl_type_name(fn));
  if (args->type != PKL_TUPLE)
    return fail(r, ST_EFORMAT, "arguments of %s must be a tuple, got %s", global_name(fn->u.g),
                pkl_type_name(args));
  pkl_value **av = args->u.seq.items;
  size_t ac = args->u.seq.n;
  switch (fn->u.g) {
  case G_RECONSTRUCT: return reduce_reconstruct(r, av, ac);
  case G_NDARRAY:
    return fail(r, ST_EUNSAFE, "numpy.ndarray is accepted only as the first argument of _reconstruct");
  case G_DTYPE: return reduce_dtype(r, av, ac);
  case G_FROMBUFFER: return reduce_frombuffer(r, av, ac);
  case G_SCALAR: return reduce_scalar(r, av, ac);
  case G_ENCODE: return reduce_encode(r, av, ac);
  case G_BYTES: {
    if (ac != 0) return fail(r, ST_EUNSAFE, "bytes is accepted only with no arguments (b'')");
    pkl_value *v = mk(r, PKL_BYTES);
    if (!v) return -1;
    v->u.s.p = (const uint8_t *)"";
    return push(r, v);
  }
  case G_ODICT:
    if (ac != 0) return fail(r, ST_EUNSAFE, "OrderedDict is accepted only with no arguments");
    return push(r, mk(r, PKL_DICT));
  }
  return fail(r, ST_EINTERNAL, "unknown global");
}

static int build(rd *r) {
  pkl_value *state = pop(r);
  if (!state) return -1;
  pkl_value *obj = top(r);
  if (!obj) return -1;
  char tmp[160];
  if (obj->type == PKL_DTYPE) {
    if (state->type != PKL_TUPLE || state->u.seq.n < 2)
      return fail(r, ST_EFORMAT, "dtype state must be a tuple (version, byteorder, ...)");
    pkl_value **sv = state->u.seq.items;
    const pkl_value *bo = sv[1];
    char o = is_text(bo) && bo->u.s.len == 1 && !(bo->type == PKL_BYTES && bo->u.s.enc == PKL_LATIN1)
                 ? (char)bo->u.s.p[0]
                 : 0;
    if (o != '<' && o != '>' && o != '|' && o != '=')
      return fail(r, ST_EFORMAT, "dtype byte order must be one of < > | =, got %s", show(bo, tmp, sizeof tmp));
    for (size_t i = 2; i < 5 && i < state->u.seq.n; i++)
      if (sv[i]->type != PKL_NONE)
        return fail(r, ST_EFORMAT, "structured or sub-array dtypes are not supported");
    if (obj->u.dt.itemsize > 1) obj->u.dt.order = o == '>' ? '>' : '<';
    return 0;
  }
  if (obj->type == PKL_NDARRAY) {
    if (obj->u.a->ndim != -1) return fail(r, ST_EFORMAT, "array is already built");
    if (state->type != PKL_TUPLE || (state->u.seq.n != 5 && state->u.seq.n != 4))
      return fail(r, ST_EFORMAT, "array state must be (version, shape, dtype, fortran, data)");
    pkl_value **sv = state->u.seq.items + (state->u.seq.n == 5);
    if (sv[1]->type != PKL_DTYPE)
      return fail(r, ST_EFORMAT, "array dtype must be a numpy.dtype, got %s", pkl_type_name(sv[1]));
    obj->u.a->dt = sv[1]->u.dt;
    int64_t f;
    if (get_int(sv[2], &f)) return fail(r, ST_EFORMAT, "array fortran flag must be a bool");
    obj->u.a->fortran = f != 0;
    if (set_shape(r, obj, sv[0], (size_t)obj->u.a->dt.itemsize)) {
      obj->u.a->ndim = -1;
      return -1;
    }
    if (attach_data(r, obj, sv[3])) return -1;
    return 0;
  }
  return fail(r, ST_EUNSAFE, "BUILD on a %s is not allowed (only numpy arrays and dtypes)",
              pkl_type_name(obj));
}

static int memo_put(rd *r, size_t idx) {
  pkl_value *v = top(r);
  if (!v) return -1;
  if (idx >= PK_LIMIT_PICKLE_MEMO || idx >= r->len)
    return fail(r, ST_E2BIG, "memo index %zu out of range (file of %zu bytes, PK_LIMIT_PICKLE_MEMO %u)",
                idx, r->len, (unsigned)PK_LIMIT_PICKLE_MEMO);
  if (idx >= r->memo_cap) {
    size_t was = r->memo_cap;
    if (dyn_grow_array(&r->memo, &r->memo_cap, idx + 1, sizeof *r->memo, PK_LIMIT_PICKLE_MEMO))
      return fail(r, ST_ENOMEM, "out of memory"); /* idx is under the limit */
    memset(r->memo + was, 0, (r->memo_cap - was) * sizeof *r->memo);
  }
  if (!r->memo[idx]) r->memo_n++;
  r->memo[idx] = v;
  return 0;
}

static int memo_get(rd *r, size_t idx) {
  if (idx >= r->memo_cap || !r->memo[idx])
    return fail(r, ST_EFORMAT, "memo index %zu was never stored", idx);
  return push(r, r->memo[idx]);
}

static int run(rd *r) {
  for (;;) {
    if (r->pos >= r->len) {
      r->op_off = r->len;
      r->op = 0;
      return st_error_set(r->err, ST_EFORMAT, r->where, (long long)r->len,
                          "truncated: end of data at byte %zu before the STOP opcode", r->len);
    }
    r->op_off = r->pos;
    int op = r->op = r->buf[r->pos++];
    switch (op) {
    case 0x80: { /* PROTO */
      if (need(r, 1)) return -1;
      int v = r->buf[r->pos++];
      if (v > 5) return fail(r, ST_EFORMAT, "pickle protocol %d is not supported (0 to 5)", v);
      break;
    }
    case 0x95: { /* FRAME: payloads are read from the buffer anyway */
      if (need(r, 8)) return -1;
      uint64_t n = le(r->buf + r->pos, 8);
      r->pos += 8;
      if (n > r->len - r->pos)
        return fail(r, ST_EFORMAT, "frame of %llu bytes but only %zu left", (unsigned long long)n,
                    r->len - r->pos);
      break;
    }
    case '.': { /* STOP */
      if (r->nmarks) return fail(r, ST_EFORMAT, "a MARK is still open");
      if (r->sp != 1) return fail(r, ST_EFORMAT, "%zu values on the stack, expected 1", r->sp);
      if (r->pos != r->len)
        return fail(r, ST_EFORMAT, "%zu bytes after the end of the pickle", r->len - r->pos);
      r->d->root = r->stack[0];
      return 0;
    }
    case '(':
      if (r->nmarks >= PK_LIMIT_PICKLE_MARKS)
        return fail(r, ST_E2BIG, "more than %d nested MARKs (PK_LIMIT_PICKLE_MARKS)",
                    PK_LIMIT_PICKLE_MARKS);
      r->marks[r->nmarks++] = r->sp;
      break;
    case '}':
      if (push(r, mk(r, PKL_DICT))) return -1;
      break;
    case ']':
      if (push(r, mk(r, PKL_LIST))) return -1;
      break;
    case ')':
      if (push(r, mk(r, PKL_TUPLE))) return -1;
      break;
    case 'a': {
      pkl_value *v = pop(r), *l = v ? top(r) : NULL;
      if (!l) return -1;
      if (l->type != PKL_LIST) return fail(r, ST_EFORMAT, "APPEND to a %s", pkl_type_name(l));
      if (seq_add(r, l, v)) return -1;
      break;
    }
    case 's': {
      pkl_value *v = pop(r), *k = v ? pop(r) : NULL, *d = k ? top(r) : NULL;
      if (!d) return -1;
      if (d->type != PKL_DICT) return fail(r, ST_EFORMAT, "SETITEM on a %s", pkl_type_name(d));
      if (seq_add(r, d, k) || seq_add(r, d, v)) return -1;
      break;
    }
    case 'e':
    case 'u': {
      size_t base = 0;
      if (pop_mark(r, &base)) return -1;
      if (base == floor_(r)) return fail(r, ST_EFORMAT, "no container below the MARK");
      pkl_value *c = r->stack[base - 1];
      if (op == 'e' && c->type != PKL_LIST) return fail(r, ST_EFORMAT, "APPENDS to a %s", pkl_type_name(c));
      if (op == 'u') {
        if (c->type != PKL_DICT) return fail(r, ST_EFORMAT, "SETITEMS on a %s", pkl_type_name(c));
        if ((r->sp - base) % 2) return fail(r, ST_EFORMAT, "odd number of keys and values");
      }
      for (size_t i = base; i < r->sp; i++)
        if (seq_add(r, c, r->stack[i])) return -1;
      r->sp = base;
      break;
    }
    case 't':
    case 0x85:
    case 0x86:
    case 0x87: {
      size_t base = 0;
      if (op == 't') {
        if (pop_mark(r, &base)) return -1;
      } else {
        size_t n = (size_t)(op - 0x84);
        if (r->sp - floor_(r) < n) return fail(r, ST_EFORMAT, "stack underflow");
        base = r->sp - n;
      }
      pkl_value *t = mk(r, PKL_TUPLE);
      if (!t) return -1;
      for (size_t i = base; i < r->sp; i++)
        if (seq_add(r, t, r->stack[i])) return -1;
      r->sp = base;
      if (push(r, t)) return -1;
      break;
    }
    case 'N':
      if (push(r, mk(r, PKL_NONE))) return -1;
      break;
    case 0x88:
    case 0x89: {
      pkl_value *v = mk(r, PKL_BOOL);
      if (!v) return -1;
      v->u.i = op == 0x88;
      if (push(r, v)) return -1;
      break;
    }
    case 'K':
    case 'M':
    case 'J': {
      int n = op == 'K' ? 1 : op == 'M' ? 2 : 4;
      if (need(r, (size_t)n)) return -1;
      pkl_value *v = mk(r, PKL_INT);
      if (!v) return -1;
      uint64_t u = le(r->buf + r->pos, n);
      v->u.i = op == 'J' ? (int64_t)(int32_t)(uint32_t)u : (int64_t)u;
      r->pos += (size_t)n;
      if (push(r, v)) return -1;
      break;
    }
    case 0x8a:
    case 0x8b: {
      int w = op == 0x8a ? 1 : 4;
      if (need(r, (size_t)w)) return -1;
      uint64_t n = le(r->buf + r->pos, w);
      r->pos += (size_t)w;
      if (op == 0x8b && n > 0x7fffffffu) return fail(r, ST_EFORMAT, "negative LONG4 length");
      if (n > PK_LIMIT_PICKLE_LONG_BYTES)
        return fail(r, ST_E2BIG, "integer of %llu bytes; at most %d (PK_LIMIT_PICKLE_LONG_BYTES)",
                    (unsigned long long)n, PK_LIMIT_PICKLE_LONG_BYTES);
      if (need(r, (size_t)n)) return -1;
      uint64_t u = le(r->buf + r->pos, (int)n);
      if (n && n < 8 && (r->buf[r->pos + n - 1] & 0x80)) u |= ~(uint64_t)0 << (8 * n);
      r->pos += (size_t)n;
      pkl_value *v = mk(r, PKL_INT);
      if (!v) return -1;
      v->u.i = (int64_t)u;
      if (push(r, v)) return -1;
      break;
    }
    case 'G': {
      if (need(r, 8)) return -1;
      uint64_t u = 0;
      for (int i = 0; i < 8; i++) u = u << 8 | r->buf[r->pos + (size_t)i];
      r->pos += 8;
      pkl_value *v = mk(r, PKL_FLOAT);
      if (!v) return -1;
      memcpy(&v->u.f, &u, 8);
      if (push(r, v)) return -1;
      break;
    }
    case 'U':
    case 'C':
    case 0x8c: {
      if (need(r, 1)) return -1;
      size_t n = r->buf[r->pos++];
      if (mk_string(r, op == 0x8c ? PKL_STR : PKL_BYTES, n)) return -1;
      break;
    }
    case 'T':
    case 'B':
    case 'X': {
      if (need(r, 4)) return -1;
      uint64_t n = le(r->buf + r->pos, 4);
      r->pos += 4;
      if (op == 'T' && n > 0x7fffffffu) return fail(r, ST_EFORMAT, "negative BINSTRING length");
      if (n > r->len - r->pos)
        return fail(r, ST_EFORMAT, "length %llu is larger than the %zu bytes left",
                    (unsigned long long)n, r->len - r->pos);
      if (mk_string(r, op == 'X' ? PKL_STR : PKL_BYTES, (size_t)n)) return -1;
      break;
    }
    case 0x8e:
    case 0x8d:
    case 0x96: {
      if (need(r, 8)) return -1;
      uint64_t n = le(r->buf + r->pos, 8);
      r->pos += 8;
      if (n > r->len - r->pos)
        return fail(r, ST_EFORMAT, "length %llu is larger than the %zu bytes left",
                    (unsigned long long)n, r->len - r->pos);
      if (mk_string(r, op == 0x8d ? PKL_STR : PKL_BYTES, (size_t)n)) return -1;
      break;
    }
    case 'q':
    case 'r': {
      int w = op == 'q' ? 1 : 4;
      if (need(r, (size_t)w)) return -1;
      size_t idx = (size_t)le(r->buf + r->pos, w);
      r->pos += (size_t)w;
      if (memo_put(r, idx)) return -1;
      break;
    }
    case 0x94:
      if (memo_put(r, r->memo_n)) return -1;
      break;
    case 'h':
    case 'j': {
      int w = op == 'h' ? 1 : 4;
      if (need(r, (size_t)w)) return -1;
      size_t idx = (size_t)le(r->buf + r->pos, w);
      r->pos += (size_t)w;
      if (memo_get(r, idx)) return -1;
      break;
    }
    case 'c':
      if (op_global(r)) return -1;
      break;
    case 0x93: {
      pkl_value *name = pop(r), *mod = name ? pop(r) : NULL;
      if (!mod) return -1;
      if (mod->type != PKL_STR || name->type != PKL_STR)
        return fail(r, ST_EFORMAT, "STACK_GLOBAL needs two str, got %s and %s", pkl_type_name(mod),
                    pkl_type_name(name));
      if (push_global(r, mod->u.s.p, mod->u.s.len, name->u.s.p, name->u.s.len)) return -1;
      break;
    }
    case 'R':
      if (reduce(r)) return -1;
      break;
    case 'b':
      if (build(r)) return -1;
      break;
    case 'i': case 'o': case 0x81: case 0x92:
      return fail(r, ST_EUNSAFE, "creating arbitrary objects is not allowed");
    case 'P': case 'Q':
      return fail(r, ST_EUNSAFE, "persistent ids are not allowed");
    case 0x82: case 0x83: case 0x84:
      return fail(r, ST_EUNSAFE, "extension registry codes are not allowed");
    case 0x97: case 0x98:
      return fail(r, ST_EUNSAFE, "out-of-band buffers cannot occur in a file");
    default:
      return fail(r, ST_EUNSAFE, "opcode outside the accepted subset");
    }
  }
}

pkl_doc *pkl_parse(const uint8_t *buf, size_t len, const char *where, st_error *err) {
  rd r;
  memset(&r, 0, sizeof r);
  r.buf = buf;
  r.len = len;
  r.where = where ? where : "pickle";
  r.err = err;
  r.d = calloc(1, sizeof *r.d);
  if (!r.d) {
    st_error_set(err, ST_ENOMEM, r.where, -1, "out of memory");
    return NULL;
  }
  int rc = 0;
  if (len > PK_LIMIT_PICKLE_FILE_BYTES) {
    st_error_set(err, ST_E2BIG, r.where, -1, "%zu bytes; at most %llu (PK_LIMIT_PICKLE_FILE_BYTES)",
                 len, (unsigned long long)PK_LIMIT_PICKLE_FILE_BYTES);
    rc = -1;
  } else {
    scratch_take(&r);
    rc = run(&r);
  }
  scratch_give(&r);
  if (rc) {
    if (err && !err->code) st_error_set(err, ST_EINTERNAL, r.where, -1, "parse failed");
    pkl_free(r.d);
    return NULL;
  }
  return r.d;
}

/* ---- queries ---- */
const pkl_value *pkl_dict_get(const pkl_value *d, const char *key) {
  if (!d || d->type != PKL_DICT) return NULL;
  for (size_t i = d->u.seq.n; i >= 2; i -= 2)
    if (text_eq(d->u.seq.items[i - 2], key)) return d->u.seq.items[i - 1];
  return NULL;
}

size_t pkl_len(const pkl_value *v) {
  return v && (v->type == PKL_LIST || v->type == PKL_TUPLE) ? v->u.seq.n : 0;
}

size_t pkl_bytes_copy(const pkl_value *v, uint8_t *out, size_t cap) {
  if (!is_text(v) || cap < v->u.s.len) return 0;
  if (v->type == PKL_BYTES && v->u.s.enc == PKL_LATIN1) pkl_latin1_narrow(v->u.s.p, v->u.s.src_len, out, v->u.s.len);
  else memcpy(out, v->u.s.p, v->u.s.len);
  return v->u.s.len;
}

void pkl_array_copy(const pkl_array *a, uint8_t *dst) {
  if (a->enc == PKL_LATIN1) pkl_latin1_narrow(a->data, a->src_len, dst, a->len);
  else memcpy(dst, a->data, a->len);
}
