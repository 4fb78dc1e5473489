/*
 * The error-free fast path of an EDIFACT message, in C: structure walk, element formats,
 * code lists and XML, for runs of plain segments.
 *
 * Where it sits in the mail flow: inside MIG validation of an EDIFACT submission, called by
 * singlewindow.mig.edifact.message.MessageChecker for the segments between UNH and UNT. It
 * is the compiled twin of MessageChecker._fast + message.fast_xml and follows them step for
 * step; it also takes segments with release characters and repetition separators (which
 * the Python fast path leaves to SegmentWriter._write), splitting and unescaping them as
 * syntax._split does, so released terminators cost no more than plain text (issue 11). It
 * never reports an error: at the first doubt (a value that might fail, a structure step
 * that might be an error, a string that is not one byte per character) it stops and says
 * where, and the Python code takes that segment through the exact checks, so every error
 * still comes from one code path and valid input gives byte-identical XML either way.
 * tests/unit/mig/edifact/test_accel.py holds it to that.
 *
 * A Program is compiled once per MIG message type from plain tuples (see
 * message._program for their shape):
 *   groups:  per group id: (open tag, close tag, triggers, max, child group id or -1,
 *            mandatory_before)
 *   plans:   {segment tag: ((mandatory, open, close,
 *                             ((cmand, open, close, kind, min, max, codes|None), ...),
 *                             repeat), ...)}
 *   service: tags the envelope walk owns (UNB, UNG, UNH, UNT, UNE, UNZ): never consumed.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define MAX_DEPTH 64
#define TAG_SPACE (36 * 36 * 36)
enum { KIND_AN = 0, KIND_A = 1, KIND_N = 2 };

typedef struct {
    char *open, *close;
    Py_ssize_t open_len, close_len;
} Tags;

typedef struct {
    int mandatory;
    Tags tags;
    int kind;
    Py_ssize_t min, max;
    PyObject *codes; /* frozenset or NULL */
} Value;

typedef struct {
    int mandatory;
    int composite;
    long repeat; /* syntax-4 repetitions allowed */
    Tags tags; /* composite wrapper; empty for a simple element */
    Py_ssize_t ncomps;
    Value *comps;
} Elem;

typedef struct {
    int defined;
    Tags tags; /* <S_TAG> </S_TAG> */
    Py_ssize_t nelems;
    Elem *elems;
} Plan;

typedef struct {
    Tags tags; /* <G_SGn> </G_SGn> */
    Py_ssize_t n;
    int *triggers;
    long *max;
    int *child;
    long *mandatory_before; /* n + 1 entries */
} Group;

typedef struct {
    PyObject_HEAD
    Py_ssize_t ngroups;
    Group *groups;
    Py_ssize_t nplans;
    Plan *plans; /* by tag id */
    short *tag_ids; /* TAG_SPACE entries, -1 for tags nobody uses */
    char *service; /* TAG_SPACE flags */
} Program;

typedef struct {
    char *data;
    Py_ssize_t len, cap;
} Buf;

static int buf_put(Buf *b, const char *s, Py_ssize_t n) {
    if (b->len + n > b->cap) {
        Py_ssize_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        char *data = PyMem_Realloc(b->data, (size_t)cap);
        if (data == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        b->data = data;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, (size_t)n);
    b->len += n;
    return 0;
}

static int buf_text(Buf *b, const unsigned char *p, Py_ssize_t n) {
    /* message.xml_text: only &, < and > are replaced. */
    Py_ssize_t start = 0;
    for (Py_ssize_t k = 0; k < n; k++) {
        const char *ent = NULL;
        Py_ssize_t elen = 0;
        if (p[k] == '&') { ent = "&amp;"; elen = 5; }
        else if (p[k] == '<') { ent = "&lt;"; elen = 4; }
        else if (p[k] == '>') { ent = "&gt;"; elen = 4; }
        if (ent != NULL) {
            if (buf_put(b, (const char *)p + start, k - start) < 0 || buf_put(b, ent, elen) < 0)
                return -1;
            start = k + 1;
        }
    }
    return buf_put(b, (const char *)p + start, n - start);
}

static int tag_char(int c) {
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= '0' && c <= '9')
        return 26 + c - '0';
    return -1;
}

/* Index of a three-character tag in the tag space, or -1 if it cannot be a known tag. */
static int tag_index(const unsigned char *p) {
    int a = tag_char(p[0]), b = tag_char(p[1]), c = tag_char(p[2]);
    if (a < 0 || b < 0 || c < 0)
        return -1;
    return (a * 36 + b) * 36 + c;
}

/* ---- compiling a Program from tuples ------------------------------------------------- */

static char *copy_str(PyObject *s, Py_ssize_t *len) {
    const char *utf8 = PyUnicode_AsUTF8AndSize(s, len);
    if (utf8 == NULL)
        return NULL;
    char *out = PyMem_Malloc((size_t)*len + 1);
    if (out == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    memcpy(out, utf8, (size_t)*len + 1);
    return out;
}

static int get_tags(PyObject *open, PyObject *close, Tags *t) {
    if (!PyUnicode_Check(open) || !PyUnicode_Check(close)) {
        PyErr_SetString(PyExc_TypeError, "tags must be str");
        return -1;
    }
    t->open = copy_str(open, &t->open_len);
    if (t->open == NULL)
        return -1;
    t->close = copy_str(close, &t->close_len);
    return t->close == NULL ? -1 : 0;
}

static void free_tags(Tags *t) {
    PyMem_Free(t->open);
    PyMem_Free(t->close);
}

/* The id of a tag string as a Program knows it; a new id if it has none yet. */
static int intern_tag(Program *self, PyObject *tag) {
    Py_ssize_t len;
    const char *s = PyUnicode_Check(tag) ? PyUnicode_AsUTF8AndSize(tag, &len) : NULL;
    if (s == NULL || len != 3 || tag_index((const unsigned char *)s) < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "segment tags must be three of A-Z, 0-9");
        return -1;
    }
    int index = tag_index((const unsigned char *)s);
    if (self->tag_ids[index] < 0) {
        if (self->nplans >= 30000) {
            PyErr_SetString(PyExc_ValueError, "too many segment tags");
            return -1;
        }
        Plan *plans = PyMem_Realloc(self->plans, sizeof(Plan) * (size_t)(self->nplans + 1));
        if (plans == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        self->plans = plans;
        memset(&plans[self->nplans], 0, sizeof(Plan));
        self->tag_ids[index] = (short)self->nplans++;
    }
    return self->tag_ids[index];
}

static int build_value(PyObject *t, Value *v) {
    PyObject *mand, *open, *close, *codes;
    int kind;
    if (!PyArg_ParseTuple(t, "OOOinnO", &mand, &open, &close, &kind, &v->min, &v->max, &codes))
        return -1;
    v->mandatory = PyObject_IsTrue(mand);
    v->kind = kind;
    if (kind < KIND_AN || kind > KIND_N) {
        PyErr_SetString(PyExc_ValueError, "unknown format kind");
        return -1;
    }
    if (get_tags(open, close, &v->tags) < 0)
        return -1;
    if (codes != Py_None) {
        if (!PyFrozenSet_Check(codes)) {
            PyErr_SetString(PyExc_TypeError, "code lists must be frozensets");
            return -1;
        }
        Py_INCREF(codes);
        v->codes = codes;
    }
    return 0;
}

static int build_plan(Program *self, PyObject *tag, PyObject *spec) {
    int id = intern_tag(self, tag);
    if (id < 0)
        return -1;
    Plan *plan = &self->plans[id];
    PyObject *seq = PySequence_Fast(spec, "a plan is a sequence");
    if (seq == NULL)
        return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    plan->defined = 1;
    plan->elems = PyMem_Calloc((size_t)(n ? n : 1), sizeof(Elem));
    if (plan->elems == NULL) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    plan->nelems = n;
    PyObject *open = PyUnicode_FromFormat("<S_%U>", tag);
    PyObject *close = PyUnicode_FromFormat("</S_%U>", tag);
    int rc = (open && close) ? get_tags(open, close, &plan->tags) : -1;
    Py_XDECREF(open);
    Py_XDECREF(close);
    for (Py_ssize_t i = 0; rc == 0 && i < n; i++) {
        Elem *e = &plan->elems[i];
        PyObject *mand, *eopen, *eclose, *comps;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "OOOOl", &mand, &eopen,
                              &eclose, &comps, &e->repeat)) {
            rc = -1;
            break;
        }
        e->mandatory = PyObject_IsTrue(mand);
        e->composite = PyUnicode_Check(eopen) && PyUnicode_GET_LENGTH(eopen) > 0;
        if (get_tags(eopen, eclose, &e->tags) < 0) {
            rc = -1;
            break;
        }
        PyObject *cseq = PySequence_Fast(comps, "components are a sequence");
        if (cseq == NULL) {
            rc = -1;
            break;
        }
        e->ncomps = PySequence_Fast_GET_SIZE(cseq);
        e->comps = PyMem_Calloc((size_t)(e->ncomps ? e->ncomps : 1), sizeof(Value));
        if (e->comps == NULL) {
            PyErr_NoMemory();
            rc = -1;
        }
        for (Py_ssize_t j = 0; rc == 0 && j < e->ncomps; j++)
            rc = build_value(PySequence_Fast_GET_ITEM(cseq, j), &e->comps[j]);
        Py_DECREF(cseq);
        if (rc == 0 && !e->composite && e->ncomps != 1) {
            PyErr_SetString(PyExc_ValueError, "a simple element has exactly one value plan");
            rc = -1;
        }
    }
    Py_DECREF(seq);
    return rc;
}

static long *long_array(PyObject *seq_obj, Py_ssize_t n) {
    PyObject *seq = PySequence_Fast(seq_obj, "expected a sequence of int");
    if (seq == NULL)
        return NULL;
    if (PySequence_Fast_GET_SIZE(seq) != n) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "group table has the wrong length");
        return NULL;
    }
    long *out = PyMem_Calloc((size_t)(n ? n : 1), sizeof(long));
    if (out == NULL) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        out[i] = PyLong_AsLong(PySequence_Fast_GET_ITEM(seq, i));
        if (out[i] == -1 && PyErr_Occurred()) {
            PyMem_Free(out);
            Py_DECREF(seq);
            return NULL;
        }
    }
    Py_DECREF(seq);
    return out;
}

static int build_group(Program *self, PyObject *spec, Group *g) {
    PyObject *open, *close, *triggers, *max, *child, *mb;
    if (!PyArg_ParseTuple(spec, "OOOOOO", &open, &close, &triggers, &max, &child, &mb))
        return -1;
    if (get_tags(open, close, &g->tags) < 0)
        return -1;
    PyObject *seq = PySequence_Fast(triggers, "triggers are a sequence");
    if (seq == NULL)
        return -1;
    g->n = PySequence_Fast_GET_SIZE(seq);
    g->triggers = PyMem_Calloc((size_t)(g->n ? g->n : 1), sizeof(int));
    if (g->triggers == NULL) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < g->n; i++) {
        int id = intern_tag(self, PySequence_Fast_GET_ITEM(seq, i));
        if (id < 0) {
            Py_DECREF(seq);
            return -1;
        }
        g->triggers[i] = id;
    }
    Py_DECREF(seq);
    g->max = long_array(max, g->n);
    if (g->max == NULL)
        return -1;
    long *child_ids = long_array(child, g->n);
    if (child_ids == NULL)
        return -1;
    g->child = PyMem_Calloc((size_t)(g->n ? g->n : 1), sizeof(int));
    if (g->child == NULL) {
        PyMem_Free(child_ids);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < g->n; i++) {
        if (child_ids[i] < -1 || child_ids[i] >= self->ngroups) {
            PyMem_Free(child_ids);
            PyErr_SetString(PyExc_ValueError, "child group id out of range");
            return -1;
        }
        g->child[i] = (int)child_ids[i];
    }
    PyMem_Free(child_ids);
    g->mandatory_before = long_array(mb, g->n + 1);
    return g->mandatory_before == NULL ? -1 : 0;
}

static void Program_dealloc(Program *self) {
    for (Py_ssize_t i = 0; self->groups && i < self->ngroups; i++) {
        Group *g = &self->groups[i];
        free_tags(&g->tags);
        PyMem_Free(g->triggers);
        PyMem_Free(g->max);
        PyMem_Free(g->child);
        PyMem_Free(g->mandatory_before);
    }
    PyMem_Free(self->groups);
    for (Py_ssize_t i = 0; self->plans && i < self->nplans; i++) {
        Plan *p = &self->plans[i];
        free_tags(&p->tags);
        for (Py_ssize_t e = 0; p->elems && e < p->nelems; e++) {
            Elem *el = &p->elems[e];
            free_tags(&el->tags);
            for (Py_ssize_t c = 0; el->comps && c < el->ncomps; c++) {
                free_tags(&el->comps[c].tags);
                Py_XDECREF(el->comps[c].codes);
            }
            PyMem_Free(el->comps);
        }
        PyMem_Free(p->elems);
    }
    PyMem_Free(self->plans);
    PyMem_Free(self->tag_ids);
    PyMem_Free(self->service);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Program_init(Program *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"groups", "plans", "service", NULL};
    PyObject *groups, *plans, *service;
    if (self->tag_ids != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a Program is initialised once");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO!O", kwlist, &groups, &PyDict_Type, &plans,
                                     &service))
        return -1;
    self->tag_ids = PyMem_Malloc(sizeof(short) * TAG_SPACE);
    self->service = PyMem_Calloc(TAG_SPACE, 1);
    if (self->tag_ids == NULL || self->service == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < TAG_SPACE; i++)
        self->tag_ids[i] = -1;
    PyObject *seq = PySequence_Fast(service, "service tags are a sequence");
    if (seq == NULL)
        return -1;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
        Py_ssize_t len;
        PyObject *tag = PySequence_Fast_GET_ITEM(seq, i);
        const char *s = PyUnicode_Check(tag) ? PyUnicode_AsUTF8AndSize(tag, &len) : NULL;
        if (s == NULL || len != 3 || tag_index((const unsigned char *)s) < 0) {
            Py_DECREF(seq);
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "service tags must be three of A-Z, 0-9");
            return -1;
        }
        self->service[tag_index((const unsigned char *)s)] = 1;
    }
    Py_DECREF(seq);
    seq = PySequence_Fast(groups, "groups are a sequence");
    if (seq == NULL)
        return -1;
    self->ngroups = PySequence_Fast_GET_SIZE(seq);
    self->groups = PyMem_Calloc((size_t)(self->ngroups ? self->ngroups : 1), sizeof(Group));
    if (self->groups == NULL) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < self->ngroups; i++) {
        if (build_group(self, PySequence_Fast_GET_ITEM(seq, i), &self->groups[i]) < 0) {
            Py_DECREF(seq);
            return -1;
        }
    }
    Py_DECREF(seq);
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(plans, &pos, &key, &value)) {
        if (build_plan(self, key, value) < 0)
            return -1;
    }
    return 0;
}

/* ---- the fast path -------------------------------------------------------------------- */

/* message.check_format and the code list, for one non-empty value: 1 passes, 0 doubt,
 * -1 a Python error. */
static int value_ok(const Value *v, const unsigned char *p, Py_ssize_t n) {
    Py_ssize_t size = n;
    if (v->kind == KIND_N) {
        Py_ssize_t k = 0;
        int digits = 0, mark = 0;
        if (k < n && p[k] == '-')
            k++;
        while (k < n && p[k] >= '0' && p[k] <= '9') {
            k++;
            digits++;
        }
        if (k < n && (p[k] == '.' || p[k] == ',')) {
            k++;
            mark = 1;
            while (k < n && p[k] >= '0' && p[k] <= '9') {
                k++;
                digits++;
            }
        }
        if (k != n || !digits)
            return 0;
        size -= (p[0] == '-') + mark;
    } else if (v->kind == KIND_A) {
        for (Py_ssize_t k = 0; k < n; k++)
            if (p[k] >= '0' && p[k] <= '9')
                return 0;
    }
    if (size > v->max || size < v->min)
        return 0;
    if (v->codes != NULL) {
        PyObject *s = PyUnicode_DecodeLatin1((const char *)p, n, NULL);
        if (s == NULL)
            return -1;
        int found = PySet_Contains(v->codes, s);
        Py_DECREF(s);
        return found;
    }
    return 1;
}

static int put_value(Buf *b, const Value *v, const unsigned char *p, Py_ssize_t n) {
    if (buf_put(b, v->tags.open, v->tags.open_len) < 0 || buf_text(b, p, n) < 0)
        return -1;
    return buf_put(b, v->tags.close, v->tags.close_len);
}

/* value_ok, then put_value: 1 written, 0 doubt (nothing written), -1 error. */
static int put_checked(Buf *b, const Value *v, const unsigned char *p, Py_ssize_t n) {
    int ok = value_ok(v, p, n);
    if (ok <= 0)
        return ok;
    return put_value(b, v, p, n) < 0 ? -1 : 1;
}

/* message.fast_xml for one segment: 1 written, 0 doubt (nothing written), -1 error. */
static int segment_xml(const Plan *plan, const unsigned char *p, Py_ssize_t n, int elem,
                       int comp, Buf *b) {
    Py_ssize_t mark = b->len;
    if (!plan->defined)
        return 0;
    if (buf_put(b, plan->tags.open, plan->tags.open_len) < 0)
        return -1;
    Py_ssize_t pos = 3; /* after the tag; p[3] is the element separator if n > 3 */
    Py_ssize_t index = 0;
    while (pos < n) {
        /* the element between p[pos + 1] and the next element separator */
        const unsigned char *start = p + pos + 1;
        const unsigned char *end = memchr(start, elem, (size_t)(n - pos - 1));
        Py_ssize_t len = end ? end - start : n - pos - 1;
        if (index >= plan->nelems)
            goto doubt;
        const Elem *e = &plan->elems[index++];
        pos += len + 1;
        if (!e->composite) {
            if (len == 0) {
                if (e->mandatory)
                    goto doubt;
                continue;
            }
            if (memchr(start, comp, (size_t)len) != NULL)
                goto doubt;
            int ok = put_checked(b, &e->comps[0], start, len);
            if (ok <= 0) {
                b->len = mark;
                return ok;
            }
            continue;
        }
        /* composite: count its parts and whether any is non-empty */
        Py_ssize_t parts = 1;
        int any = 0;
        for (Py_ssize_t k = 0; k < len; k++) {
            if (start[k] == comp)
                parts++;
            else
                any = 1;
        }
        if (parts > e->ncomps || !any) {
            if (parts > e->ncomps || e->mandatory)
                goto doubt;
            continue;
        }
        if (buf_put(b, e->tags.open, e->tags.open_len) < 0)
            return -1;
        const unsigned char *c = start, *stop = start + len;
        for (Py_ssize_t j = 0; j < e->ncomps; j++) {
            const Value *v = &e->comps[j];
            Py_ssize_t vlen = 0;
            if (c <= stop && j < parts) {
                const unsigned char *next = memchr(c, comp, (size_t)(stop - c));
                vlen = next ? next - c : stop - c;
            }
            if (vlen > 0) {
                int ok = put_checked(b, v, c, vlen);
                if (ok <= 0) {
                    b->len = mark;
                    return ok;
                }
            } else if (v->mandatory) {
                goto doubt;
            }
            if (j < parts)
                c += vlen + 1;
        }
        if (buf_put(b, e->tags.close, e->tags.close_len) < 0)
            return -1;
    }
    for (Py_ssize_t k = index; k < plan->nelems; k++)
        if (plan->elems[k].mandatory)
            goto doubt;
    if (buf_put(b, plan->tags.close, plan->tags.close_len) < 0)
        return -1;
    return 1;
doubt:
    b->len = mark;
    return 0;
}

/* ---- segments with release characters or repetition separators -------------------- */

/* One value of a segment after splitting and unescaping: its bytes in Toks.chars and what
 * ended it (END_COMPONENT, END_REPETITION or END_ELEMENT; the segment's end ends an element). */
enum { END_COMPONENT = 0, END_REPETITION = 1, END_ELEMENT = 2 };

typedef struct {
    Py_ssize_t off, len;
    int end;
} Tok;

typedef struct {
    unsigned char *chars;
    Tok *tok;
    Py_ssize_t ntok, cap;
} Toks;

/* syntax._split for the elements of p[0:n] (p[3] is the element separator): a release
 * character makes the next character data, whatever it is; one at the very end stays. */
static int split_values(const unsigned char *p, Py_ssize_t n, int elem, int comp, int rel,
                        int rep, Toks *t) {
    if (n + 1 > t->cap) {
        unsigned char *chars = PyMem_Realloc(t->chars, (size_t)n + 1);
        if (chars == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        t->chars = chars;
        Tok *tok = PyMem_Realloc(t->tok, sizeof(Tok) * ((size_t)n + 1));
        if (tok == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        t->tok = tok;
        t->cap = n + 1;
    }
    Py_ssize_t nchars = 0, start = 0, ntok = 0;
    for (Py_ssize_t k = 4; k < n; k++) {
        int c = p[k];
        if (c == rel && k + 1 < n) {
            t->chars[nchars++] = p[++k];
            continue;
        }
        int end = c == comp ? END_COMPONENT : c == rep ? END_REPETITION
                  : c == elem ? END_ELEMENT : -1;
        if (end < 0) {
            t->chars[nchars++] = (unsigned char)c;
            continue;
        }
        t->tok[ntok].off = start;
        t->tok[ntok].len = nchars - start;
        t->tok[ntok++].end = end;
        start = nchars;
    }
    t->tok[ntok].off = start;
    t->tok[ntok].len = nchars - start;
    t->tok[ntok++].end = END_ELEMENT;
    t->ntok = ntok;
    return 0;
}

/* segment_xml for a split segment, with repetitions: what SegmentWriter._write writes when
 * it finds nothing wrong; 1 written, 0 doubt (nothing written), -1 error. */
static int split_xml(const Plan *plan, const Toks *t, Buf *b) {
    Py_ssize_t mark = b->len;
    if (!plan->defined)
        return 0;
    if (buf_put(b, plan->tags.open, plan->tags.open_len) < 0)
        return -1;
    Py_ssize_t k = 0, index = 0;
    while (k < t->ntok) {
        if (index >= plan->nelems)
            goto doubt;
        const Elem *e = &plan->elems[index++];
        long reps = 0;
        int present = 0, end;
        do {
            Py_ssize_t r = k; /* tokens k..r are one repetition's components */
            while (t->tok[r].end == END_COMPONENT)
                r++;
            Py_ssize_t parts = r - k + 1;
            if (++reps > e->repeat)
                goto doubt;
            if (e->composite) {
                int any = 0;
                for (Py_ssize_t q = k; q <= r; q++)
                    if (t->tok[q].len > 0)
                        any = 1;
                if (any) {
                    if (parts > e->ncomps)
                        goto doubt;
                    if (buf_put(b, e->tags.open, e->tags.open_len) < 0)
                        return -1;
                    for (Py_ssize_t j = 0; j < e->ncomps; j++) {
                        const Value *v = &e->comps[j];
                        Py_ssize_t len = j < parts ? t->tok[k + j].len : 0;
                        if (len > 0) {
                            const unsigned char *c = t->chars + t->tok[k + j].off;
                            int ok = put_checked(b, v, c, len);
                            if (ok <= 0) {
                                b->len = mark;
                                return ok;
                            }
                        } else if (v->mandatory) {
                            goto doubt;
                        }
                    }
                    if (buf_put(b, e->tags.close, e->tags.close_len) < 0)
                        return -1;
                    present = 1;
                }
            } else {
                if (parts > 1)
                    goto doubt;
                Py_ssize_t len = t->tok[k].len;
                if (len > 0) {
                    const unsigned char *c = t->chars + t->tok[k].off;
                    int ok = put_checked(b, &e->comps[0], c, len);
                    if (ok <= 0) {
                        b->len = mark;
                        return ok;
                    }
                    present = 1;
                }
            }
            end = t->tok[r].end;
            k = r + 1;
        } while (end != END_ELEMENT);
        if (e->mandatory && !present)
            goto doubt;
    }
    for (Py_ssize_t q = index; q < plan->nelems; q++)
        if (plan->elems[q].mandatory)
            goto doubt;
    if (buf_put(b, plan->tags.close, plan->tags.close_len) < 0)
        return -1;
    return 1;
doubt:
    b->len = mark;
    return 0;
}

typedef struct {
    int gid;
    Py_ssize_t idx;
    long count;
} Frame;

static int read_frames(Program *self, PyObject *frames, Frame *stack, int *depth) {
    PyObject *seq = PySequence_Fast(frames, "frames are a sequence");
    if (seq == NULL)
        return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n < 1 || n > MAX_DEPTH) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "between 1 and 64 frames");
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        int gid;
        Py_ssize_t idx;
        long count;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "inl", &gid, &idx, &count)) {
            Py_DECREF(seq);
            return -1;
        }
        if (gid < 0 || gid >= self->ngroups || idx < 0 || idx >= self->groups[gid].n) {
            Py_DECREF(seq);
            PyErr_SetString(PyExc_ValueError, "frame out of range");
            return -1;
        }
        stack[i].gid = gid;
        stack[i].idx = idx;
        stack[i].count = count;
    }
    Py_DECREF(seq);
    *depth = (int)n;
    return 0;
}

/* MessageChecker._fast for one segment: 1 the step is taken, 0 doubt (the exact walk goes
 * on from the state as it is: closing groups is a step it would have taken too). */
static int structure_step(Program *self, Frame *stack, int *depth, int tag, Buf *b) {
    /* The innermost group the tag continues; the groups inside it close, if nothing
     * mandatory is left in them. A tag no open group continues closes nothing. */
    int level = *depth - 1;
    Py_ssize_t j;
    for (;;) {
        Frame *f = &stack[level];
        const Group *g = &self->groups[f->gid];
        j = -1;
        for (Py_ssize_t k = f->idx; k < g->n; k++) {
            if (g->triggers[k] == tag) {
                j = k;
                break;
            }
        }
        if (j >= 0)
            break;
        Py_ssize_t start = f->count == 0 ? f->idx : f->idx + 1;
        if (level == 0 || g->mandatory_before[g->n] != g->mandatory_before[start])
            return 0;
        level--;
    }
    for (; *depth - 1 > level; (*depth)--) {
        const Group *g = &self->groups[stack[*depth - 1].gid];
        if (buf_put(b, g->tags.close, g->tags.close_len) < 0)
            return -1;
    }
    {
        Frame *f = &stack[level];
        const Group *g = &self->groups[f->gid];
        Py_ssize_t start = f->count == 0 ? f->idx : f->idx + 1;
        int child = g->child[j];
        if (child >= 0 && *depth >= MAX_DEPTH)
            return 0;
        if (j == f->idx) {
            if (f->count >= g->max[j])
                return 0;
            f->count++;
        } else {
            if (g->mandatory_before[j] != g->mandatory_before[start] || g->max[j] < 1)
                return 0;
            f->idx = j;
            f->count = 1;
        }
        if (child >= 0) {
            const Group *inner = &self->groups[child];
            if (buf_put(b, inner->tags.open, inner->tags.open_len) < 0)
                return -1;
            stack[*depth].gid = child;
            stack[*depth].idx = 0;
            stack[*depth].count = 1;
            (*depth)++;
        }
        return 1;
    }
}

static PyObject *Program_run(Program *self, PyObject *args) {
    PyObject *texts, *frames, *out;
    Py_ssize_t i;
    int elem, comp;
    PyObject *release, *repetition;
    if (!PyArg_ParseTuple(args, "O!nOCCUUO!", &PyList_Type, &texts, &i, &frames, &elem, &comp,
                          &release, &repetition, &PyList_Type, &out))
        return NULL;
    if (elem > 255 || comp > 255 || i < 0 || PyUnicode_GET_LENGTH(release) > 1
        || PyUnicode_GET_LENGTH(repetition) > 1) {
        PyErr_SetString(PyExc_ValueError, "separators must be single-byte characters");
        return NULL;
    }
    Frame stack[MAX_DEPTH];
    int depth = 0;
    if (read_frames(self, frames, stack, &depth) < 0)
        return NULL;
    /* -1: none; a character no one-byte string can hold sends every segment to Python */
    int rel = PyUnicode_GET_LENGTH(release) ? (int)PyUnicode_READ_CHAR(release, 0) : -1;
    int rep = PyUnicode_GET_LENGTH(repetition) ? (int)PyUnicode_READ_CHAR(repetition, 0) : -1;
    int usable = rel <= 255 && rep <= 255;
    Toks toks = {NULL, NULL, 0, 0};
    Buf b = {NULL, 0, 0};
    Py_ssize_t n = PyList_GET_SIZE(texts);
    int status = 0;
    for (; usable && i < n; i++) {
        PyObject *s = PyList_GET_ITEM(texts, i);
        if (!PyUnicode_Check(s) || PyUnicode_KIND(s) != PyUnicode_1BYTE_KIND)
            break;
        const unsigned char *p = PyUnicode_1BYTE_DATA(s);
        Py_ssize_t len = PyUnicode_GET_LENGTH(s);
        if (len < 3 || (len > 3 && p[3] != elem))
            break;
        int index = tag_index(p);
        if (index >= 0 && self->service[index])
            break;
        int plain = (rel < 0 || memchr(p, rel, (size_t)len) == NULL)
                    && (rep < 0 || memchr(p, rep, (size_t)len) == NULL);
        int tag = index >= 0 ? self->tag_ids[index] : -1;
        int step = structure_step(self, stack, &depth, tag, &b);
        if (step <= 0) {
            if (step < 0)
                goto fail;
            break;
        }
        int written = 0;
        if (tag >= 0 && plain) {
            written = segment_xml(&self->plans[tag], p, len, elem, comp, &b);
        } else if (tag >= 0) {
            if (split_values(p, len, elem, comp, rel, rep, &toks) < 0)
                goto fail;
            written = split_xml(&self->plans[tag], &toks, &b);
        }
        if (written < 0)
            goto fail;
        if (written == 0) {
            status = 1; /* the structure step is taken; the writer's exact path writes it */
            break;
        }
    }
    if (b.len > 0) {
        PyObject *xml = PyUnicode_DecodeLatin1(b.data, b.len, NULL);
        if (xml == NULL || PyList_Append(out, xml) < 0) {
            Py_XDECREF(xml);
            goto fail;
        }
        Py_DECREF(xml);
    }
    PyMem_Free(b.data);
    PyMem_Free(toks.chars);
    PyMem_Free(toks.tok);
    PyObject *state = PyTuple_New(depth);
    if (state == NULL)
        return NULL;
    for (int k = 0; k < depth; k++) {
        PyObject *item = Py_BuildValue("(inl)", stack[k].gid, stack[k].idx, stack[k].count);
        if (item == NULL) {
            Py_DECREF(state);
            return NULL;
        }
        PyTuple_SET_ITEM(state, k, item);
    }
    return Py_BuildValue("(niN)", i, status, state);
fail:
    PyMem_Free(b.data);
    PyMem_Free(toks.chars);
    PyMem_Free(toks.tok);
    return NULL;
}

static PyMethodDef Program_methods[] = {
    {"run", (PyCFunction)Program_run, METH_VARARGS,
     "run(texts, i, frames, element, component, release, repetition, out)\n"
     "    -> (j, status, frames)\n\n"
     "Take texts[i:] through the fast path until a segment needs the exact one: j is that\n"
     "segment's index (or len(texts)); status 1 means its structure step is already taken\n"
     "and only its XML is left to write. XML of the segments taken goes to out as one str."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ProgramType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "singlewindow.mig.edifact._accel.Program",
    .tp_doc = "A MIG message type compiled for the fast path.",
    .tp_basicsize = sizeof(Program),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Program_init,
    .tp_dealloc = (destructor)Program_dealloc,
    .tp_methods = Program_methods,
};

static struct PyModuleDef accel_module = {
    PyModuleDef_HEAD_INIT, "_accel",
    "The error-free fast path of EDIFACT message checking and conversion, in C.", -1, NULL,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__accel(void) {
    if (PyType_Ready(&ProgramType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&accel_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&ProgramType);
    if (PyModule_AddObject(m, "Program", (PyObject *)&ProgramType) < 0) {
        Py_DECREF(&ProgramType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
