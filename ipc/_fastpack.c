/* Compiled book_change packer for the ingest hot path.
 *
 * A 42-level depth frame costs ~15 us of Python to pack level by level
 * (struct.pack_into per level), against ~4 us to decode it. This packs the
 * decoded (price, amount) pairs straight into the ring slots. The record is
 * ipc.schemas.BOOK_CHANGE_STRUCT ("<qqddHBB4x", 40 bytes); ipc/fastpack.py
 * checks that at import and falls back to the Python loop on any mismatch.
 *
 * gather_values puts values of several Arrow binary arrays in a given order and
 * joins runs of them into one value each, in one memcpy pass: the replay merge's
 * reordering of several sources' lines, and book_change lines from their pieces
 * (pyarrow's concat + take + offset subset took three passes and most of the CPU).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define RECORD_BYTES 40

static int level_pair(PyObject *lvl, double *p, double *a) {
    if (PyTuple_CheckExact(lvl) && PyTuple_GET_SIZE(lvl) == 2) {
        *p = PyFloat_AsDouble(PyTuple_GET_ITEM(lvl, 0));
        if (*p == -1.0 && PyErr_Occurred()) return -1;
        *a = PyFloat_AsDouble(PyTuple_GET_ITEM(lvl, 1));
        if (*a == -1.0 && PyErr_Occurred()) return -1;
        return 0;
    }
    PyObject *seq = PySequence_Fast(lvl, "a book level must be a (price, amount) pair");
    if (seq == NULL) return -1;
    if (PySequence_Fast_GET_SIZE(seq) != 2) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "a book level must be a (price, amount) pair");
        return -1;
    }
    *p = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(seq, 0));
    if (*p == -1.0 && PyErr_Occurred()) { Py_DECREF(seq); return -1; }
    *a = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(seq, 1));
    Py_DECREF(seq);
    if (*a == -1.0 && PyErr_Occurred()) return -1;
    return 0;
}

/* The ring arguments both level packers take first: buf, header, itemsize, capacity,
 * seq, a count (k or free slots), local_ts, exchange_ts, symbol (args[0..8]). */
typedef struct {
    Py_ssize_t header, itemsize, cap, count;
    long long seq, local_ts, exchange_ts;
    long symbol;
} RingArgs;

/* 0, or -1 with an exception set (a bad type, or a value out of range). */
static int ring_args(PyObject *const *args, const char *name, RingArgs *r) {
    r->header = PyLong_AsSsize_t(args[1]);
    r->itemsize = PyLong_AsSsize_t(args[2]);
    r->cap = PyLong_AsSsize_t(args[3]);
    r->seq = PyLong_AsLongLong(args[4]);
    r->count = PyLong_AsSsize_t(args[5]);
    r->local_ts = PyLong_AsLongLong(args[6]);
    r->exchange_ts = PyLong_AsLongLong(args[7]);
    r->symbol = PyLong_AsLong(args[8]);
    if (PyErr_Occurred()) return -1;
    if (r->header < 0 || r->itemsize < RECORD_BYTES || r->cap <= 0 || r->seq < 0 || r->symbol < 0 ||
        r->symbol > 0xFFFF) {
        PyErr_Format(PyExc_ValueError, "%s: argument out of range", name);
        return -1;
    }
    return 0;
}

/* pack_levels(buf, header, itemsize, capacity, seq, k, local_ts, exchange_ts,
 *             symbol, side, is_snapshot, levels) -> None
 * Writes levels[0:k] into slots seq .. seq+k-1 (mod capacity) of the ring whose
 * slot 0 starts at byte ``header`` of ``buf``. Nothing is written on error. */
static PyObject *pack_levels(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 12) {
        PyErr_SetString(PyExc_TypeError, "pack_levels takes 12 arguments");
        return NULL;
    }
    RingArgs r;
    if (ring_args(args, "pack_levels", &r) < 0) return NULL;
    Py_ssize_t header = r.header, itemsize = r.itemsize, cap = r.cap, k = r.count;
    long long seq = r.seq, local_ts = r.local_ts, exchange_ts = r.exchange_ts;
    long symbol = r.symbol;
    long side = PyLong_AsLong(args[9]);
    int snap = PyObject_IsTrue(args[10]);
    if (PyErr_Occurred() || snap < 0) return NULL;
    PyObject *levels = args[11];
    if (k < 0 || k > cap || side < 0 || side > 0xFF) {
        PyErr_SetString(PyExc_ValueError, "pack_levels: argument out of range");
        return NULL;
    }
    PyObject *lv = PySequence_Fast(levels, "levels must be a sequence");
    if (lv == NULL) return NULL;
    if (PySequence_Fast_GET_SIZE(lv) < k) {
        Py_DECREF(lv);
        PyErr_SetString(PyExc_ValueError, "pack_levels: fewer levels than k");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) {
        Py_DECREF(lv);
        return NULL;
    }
    if (header + cap * itemsize > view.len) {
        PyBuffer_Release(&view);
        Py_DECREF(lv);
        PyErr_SetString(PyExc_ValueError, "pack_levels: ring larger than the buffer");
        return NULL;
    }
    /* convert first, write second: a bad level leaves the ring untouched */
    double stack[2 * 64];
    double *vals = stack;
    if (k > 64) {
        vals = PyMem_Malloc(sizeof(double) * 2 * (size_t)k);
        if (vals == NULL) {
            PyBuffer_Release(&view);
            Py_DECREF(lv);
            return PyErr_NoMemory();
        }
    }
    PyObject **items = PySequence_Fast_ITEMS(lv);
    for (Py_ssize_t i = 0; i < k; i++) {
        if (level_pair(items[i], &vals[2 * i], &vals[2 * i + 1]) < 0) {
            if (vals != stack) PyMem_Free(vals);
            PyBuffer_Release(&view);
            Py_DECREF(lv);
            return NULL;
        }
    }
    char *base = (char *)view.buf + header;
    uint16_t sym16 = (uint16_t)symbol;
    uint8_t side8 = (uint8_t)side, snap8 = (uint8_t)snap;
    int64_t lts = (int64_t)local_ts, ets = (int64_t)exchange_ts;
    Py_ssize_t slot = (Py_ssize_t)(seq % cap);
    for (Py_ssize_t i = 0; i < k; i++) {
        char *r = base + slot * itemsize;
        memcpy(r, &lts, 8);
        memcpy(r + 8, &ets, 8);
        memcpy(r + 16, &vals[2 * i], 8);
        memcpy(r + 24, &vals[2 * i + 1], 8);
        memcpy(r + 32, &sym16, 2);
        r[34] = (char)side8;
        r[35] = (char)snap8;
        memset(r + 36, 0, 4);
        if (++slot == cap) slot = 0;
    }
    if (vals != stack) PyMem_Free(vals);
    PyBuffer_Release(&view);
    Py_DECREF(lv);
    Py_RETURN_NONE;
}


/* ---- level text: [["price","qty"],...] straight into records ---------------------
 * Accepts a strict subset of what msgspec accepts for list[tuple[float, float]] with
 * strict=False: JSON numbers, quoted or not, with at most 19 significant digits, a
 * mantissa up to 2^53 and a decimal exponent within +-22, so that one multiplication
 * or division of two exact doubles gives the correctly rounded value (Clinger's fast
 * path), the value msgspec gives. Anything else (nan, a negative zero, long
 * mantissas, malformed text) is refused, and the caller decodes the frame with
 * msgspec instead, which then accepts it or reports it malformed. */

static const double POW10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static inline const char *skip_ws(const char *s, const char *end) {
    while (s < end && (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')) s++;
    return s;
}

/* one number, optionally in quotes; NULL if refused */
static const char *parse_number(const char *s, const char *end, double *out) {
    int quoted = 0;
    if (s < end && *s == '"') { quoted = 1; s++; }
    int neg = 0;
    if (s < end && *s == '-') { neg = 1; s++; }
    if (s >= end || *s < '0' || *s > '9') return NULL;
    uint64_t m = 0;
    int digits = 0, exp10 = 0;
    if (*s == '0') {
        s++;
        if (s < end && *s >= '0' && *s <= '9') return NULL; /* leading zero */
    } else {
        while (s < end && *s >= '0' && *s <= '9') {
            if (++digits > 19) return NULL;
            m = m * 10 + (uint64_t)(*s - '0');
            s++;
        }
    }
    if (s < end && *s == '.') {
        s++;
        if (s >= end || *s < '0' || *s > '9') return NULL;
        while (s < end && *s >= '0' && *s <= '9') {
            if (m != 0 || *s != '0') { if (++digits > 19) return NULL; }
            m = m * 10 + (uint64_t)(*s - '0');
            exp10--;
            s++;
        }
    }
    if (s < end && (*s == 'e' || *s == 'E')) {
        s++;
        int eneg = 0, e = 0;
        if (s < end && (*s == '+' || *s == '-')) { eneg = *s == '-'; s++; }
        if (s >= end || *s < '0' || *s > '9') return NULL;
        while (s < end && *s >= '0' && *s <= '9') {
            if (e > 1000) return NULL;
            e = e * 10 + (*s - '0');
            s++;
        }
        exp10 += eneg ? -e : e;
    }
    if (quoted) {
        if (s >= end || *s != '"') return NULL;
        s++;
    }
    if (m > ((uint64_t)1 << 53)) return NULL;
    if (m == 0) {
        if (neg) return NULL; /* msgspec's sign of zero depends on the spelling */
        *out = 0.0;
        return s;
    }
    double v = (double)m;
    if (exp10 < 0) {
        if (exp10 < -22) return NULL;
        v /= POW10[-exp10];
    } else if (exp10 > 0) {
        if (exp10 > 22) return NULL;
        v *= POW10[exp10];
    }
    *out = neg ? -v : v;
    return s;
}

/* [[p, q], ...] into vals (pairs); number of levels, or -1 if refused */
static Py_ssize_t parse_levels(const char *s, const char *end, double *vals, Py_ssize_t max) {
    Py_ssize_t n = 0;
    s = skip_ws(s, end);
    if (s >= end || *s != '[') return -1;
    s = skip_ws(s + 1, end);
    if (s < end && *s == ']') {
        s = skip_ws(s + 1, end);
        return s == end ? 0 : -1;
    }
    for (;;) {
        if (n >= max) return -1;
        if (s >= end || *s != '[') return -1;
        s = skip_ws(s + 1, end);
        if ((s = parse_number(s, end, &vals[2 * n])) == NULL) return -1;
        s = skip_ws(s, end);
        if (s >= end || *s != ',') return -1;
        s = skip_ws(s + 1, end);
        if ((s = parse_number(s, end, &vals[2 * n + 1])) == NULL) return -1;
        s = skip_ws(s, end);
        if (s >= end || *s != ']') return -1;
        n++;
        s = skip_ws(s + 1, end);
        if (s < end && *s == ',') {
            s = skip_ws(s + 1, end);
            continue;
        }
        if (s < end && *s == ']') {
            s = skip_ws(s + 1, end);
            return s == end ? n : -1;
        }
        return -1;
    }
}

static void write_records(char *base, Py_ssize_t itemsize, Py_ssize_t cap, Py_ssize_t *slot, const double *vals,
                          Py_ssize_t k, int64_t lts, int64_t ets, uint16_t sym16, uint8_t side8, uint8_t snap8) {
    Py_ssize_t sl = *slot;
    for (Py_ssize_t i = 0; i < k; i++) {
        char *r = base + sl * itemsize;
        memcpy(r, &lts, 8);
        memcpy(r + 8, &ets, 8);
        memcpy(r + 16, &vals[2 * i], 8);
        memcpy(r + 24, &vals[2 * i + 1], 8);
        memcpy(r + 32, &sym16, 2);
        r[34] = (char)side8;
        r[35] = (char)snap8;
        memset(r + 36, 0, 4);
        if (++sl == cap) sl = 0;
    }
    *slot = sl;
}

#define MAX_TEXT_LEVELS 1024

/* pack_level_text(buf, header, itemsize, capacity, seq, free, local_ts, exchange_ts,
 *                 symbol, is_snapshot, bid_side, bids, ask_side, asks) -> int
 * Parses both level texts (buffers holding [["price","qty"],...]) and writes the
 * first min(free, nb + na) records, bids then asks, into slots seq, seq+1, ... (mod
 * capacity). Returns nb + na, or -1 (nothing written) if either text is refused. */
static PyObject *pack_level_text(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 14) {
        PyErr_SetString(PyExc_TypeError, "pack_level_text takes 14 arguments");
        return NULL;
    }
    RingArgs r;
    if (ring_args(args, "pack_level_text", &r) < 0) return NULL;
    Py_ssize_t header = r.header, itemsize = r.itemsize, cap = r.cap, free_slots = r.count;
    long long seq = r.seq, local_ts = r.local_ts, exchange_ts = r.exchange_ts;
    long symbol = r.symbol;
    int snap = PyObject_IsTrue(args[9]);
    long bid_side = PyLong_AsLong(args[10]);
    long ask_side = PyLong_AsLong(args[12]);
    if (PyErr_Occurred() || snap < 0) return NULL;
    if (bid_side < 0 || bid_side > 0xFF || ask_side < 0 || ask_side > 0xFF) {
        PyErr_SetString(PyExc_ValueError, "pack_level_text: argument out of range");
        return NULL;
    }
    if (free_slots < 0) free_slots = 0;
    if (free_slots > cap) free_slots = cap;
    Py_buffer bt, at;
    if (PyObject_GetBuffer(args[11], &bt, PyBUF_SIMPLE) < 0) return NULL;
    if (PyObject_GetBuffer(args[13], &at, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&bt);
        return NULL;
    }
    double stack[2 * 2 * 128];
    double *vals = stack;
    Py_ssize_t room = 128; /* levels a side */
    /* a level takes at least 5 bytes of text: the larger text bounds the count */
    Py_ssize_t need = (bt.len > at.len ? bt.len : at.len) / 5 + 1;
    if (need > MAX_TEXT_LEVELS) need = MAX_TEXT_LEVELS;
    if (need > room) {
        vals = PyMem_Malloc(sizeof(double) * 4 * (size_t)need);
        if (vals == NULL) {
            PyBuffer_Release(&bt);
            PyBuffer_Release(&at);
            return PyErr_NoMemory();
        }
        room = need;
    }
    double *bv = vals, *av = vals + 2 * room;
    Py_ssize_t nb = parse_levels((const char *)bt.buf, (const char *)bt.buf + bt.len, bv, room);
    Py_ssize_t na = nb < 0 ? -1 : parse_levels((const char *)at.buf, (const char *)at.buf + at.len, av, room);
    PyBuffer_Release(&bt);
    PyBuffer_Release(&at);
    if (nb < 0 || na < 0) {
        if (vals != stack) PyMem_Free(vals);
        return PyLong_FromLong(-1);
    }
    Py_ssize_t n = nb + na;
    Py_ssize_t k = n < free_slots ? n : free_slots;
    if (k > 0) {
        Py_buffer view;
        if (PyObject_GetBuffer(args[0], &view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) {
            if (vals != stack) PyMem_Free(vals);
            return NULL;
        }
        if (header + cap * itemsize > view.len) {
            PyBuffer_Release(&view);
            if (vals != stack) PyMem_Free(vals);
            PyErr_SetString(PyExc_ValueError, "pack_level_text: ring larger than the buffer");
            return NULL;
        }
        char *base = (char *)view.buf + header;
        Py_ssize_t slot = (Py_ssize_t)(seq % cap);
        Py_ssize_t kb = k < nb ? k : nb;
        write_records(base, itemsize, cap, &slot, bv, kb, (int64_t)local_ts, (int64_t)exchange_ts, (uint16_t)symbol,
                      (uint8_t)bid_side, (uint8_t)snap);
        write_records(base, itemsize, cap, &slot, av, k - kb, (int64_t)local_ts, (int64_t)exchange_ts,
                      (uint16_t)symbol, (uint8_t)ask_side, (uint8_t)snap);
        PyBuffer_Release(&view);
    }
    if (vals != stack) PyMem_Free(vals);
    return PyLong_FromSsize_t(n);
}

/* Arrow binary arrays given as (offsets, data, offset, length) tuples, their buffers held. */
typedef struct {
    Py_ssize_t n;
    const int32_t **offs;
    const char **datas;
    Py_ssize_t *lens, *dlens;
} Parts;

/* Parse ``tuple`` into ``ps`` (arrays of np_ + 1 entries, allocated by the caller), holding two
 * buffers a part in ``bufs`` from ``*held`` on. 0, or -1 with an exception set. */
static int parse_parts(PyObject *tuple, const char *name, Parts *ps, Py_buffer *bufs, Py_ssize_t *held) {
    for (Py_ssize_t p = 0; p < ps->n; p++) {
        PyObject *t = PyTuple_GET_ITEM(tuple, p);
        if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 4) {
            PyErr_Format(PyExc_TypeError, "%s: each part is (offsets, data, offset, length)", name);
            return -1;
        }
        Py_ssize_t off = PyLong_AsSsize_t(PyTuple_GET_ITEM(t, 2));
        Py_ssize_t len = PyLong_AsSsize_t(PyTuple_GET_ITEM(t, 3));
        if (PyErr_Occurred()) return -1;
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(t, 0), &bufs[*held], PyBUF_C_CONTIGUOUS) < 0) return -1;
        Py_buffer *ov = &bufs[(*held)++];
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(t, 1), &bufs[*held], PyBUF_C_CONTIGUOUS) < 0) return -1;
        Py_buffer *dv = &bufs[(*held)++];
        if (off < 0 || len < 0 || ov->len / 4 < off + len + 1) {
            PyErr_Format(PyExc_ValueError, "%s: a part's offsets are shorter than offset + length + 1", name);
            return -1;
        }
        ps->offs[p] = (const int32_t *)ov->buf + off;
        ps->datas[p] = (const char *)dv->buf;
        ps->lens[p] = len;
        ps->dlens[p] = dv->len;
    }
    return 0;
}

/* The checks of every part's offsets (no GIL needed): NULL, or what is wrong. */
static const char *check_parts(const Parts *ps) {
    for (Py_ssize_t p = 0; p < ps->n; p++) {
        const int32_t *o = ps->offs[p];
        if (o[0] < 0 || o[ps->lens[p]] < o[0] || (Py_ssize_t)o[ps->lens[p]] > ps->dlens[p])
            return "a part's offsets are outside its data";
        for (Py_ssize_t i = 0; i < ps->lens[p]; i++)
            if (o[i + 1] < o[i]) return "a part's offsets are not ascending";
    }
    return NULL;
}

static int parts_alloc(Parts *ps, Py_ssize_t n) {
    ps->n = n;
    ps->offs = PyMem_Calloc((size_t)n + 1, sizeof(int32_t *));
    ps->datas = PyMem_Calloc((size_t)n + 1, sizeof(char *));
    ps->lens = PyMem_Calloc((size_t)n + 1, sizeof(Py_ssize_t));
    ps->dlens = PyMem_Calloc((size_t)n + 1, sizeof(Py_ssize_t));
    if (ps->offs == NULL || ps->datas == NULL || ps->lens == NULL || ps->dlens == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static void parts_free(Parts *ps) {
    PyMem_Free(ps->offs); PyMem_Free(ps->datas); PyMem_Free(ps->lens); PyMem_Free(ps->dlens);
}

/* gather_values(parts, part, row, bounds, limit) -> (offsets, data) | None
 * ``parts``: a tuple of (offsets, data, offset, length) per Arrow binary array (int32
 * offsets buffer, data buffer, the array's offset into the offsets, its length).
 * Piece j is value row[j] of part part[j] (``part`` int32, ``row`` int64, n each).
 * Output value k is pieces bounds[k] .. bounds[k+1] joined (``bounds`` int64, ascending
 * from 0 to n), or one value per piece when ``bounds`` is None. Returns the new array's
 * int32 offsets (from 0) and data as bytes; None when the output would pass ``limit``
 * bytes (the caller falls back). Everything is checked before any copy. */
static PyObject *gather_values(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "gather_values takes 5 arguments");
        return NULL;
    }
    if (!PyTuple_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "gather_values: parts must be a tuple");
        return NULL;
    }
    long long limit = PyLong_AsLongLong(args[4]);
    if (limit == -1 && PyErr_Occurred()) return NULL;
    if (limit > INT32_MAX) limit = INT32_MAX;
    Py_ssize_t np_ = PyTuple_GET_SIZE(args[0]);
    Py_buffer *bufs = PyMem_Calloc((size_t)(2 * np_ + 3), sizeof(Py_buffer));
    Parts ps = {0};
    Py_ssize_t held = 0;
    PyObject *result = NULL, *obytes = NULL, *dbytes = NULL;
    const char *err = NULL;
    if (parts_alloc(&ps, np_) < 0 || bufs == NULL) {
        if (!PyErr_Occurred()) PyErr_NoMemory();
        goto done;
    }
    if (parse_parts(args[0], "gather_values", &ps, bufs, &held) < 0) goto done;
    const int32_t **offs = ps.offs;
    const char **datas = ps.datas;
    Py_ssize_t *lens = ps.lens;
    if (PyObject_GetBuffer(args[1], &bufs[held], PyBUF_C_CONTIGUOUS) < 0) goto done;
    Py_buffer *pv = &bufs[held++];
    if (PyObject_GetBuffer(args[2], &bufs[held], PyBUF_C_CONTIGUOUS) < 0) goto done;
    Py_buffer *rv = &bufs[held++];
    Py_ssize_t n = rv->len / 8;
    if (pv->len != n * 4) { PyErr_SetString(PyExc_ValueError, "gather_values: part (int32) and row (int64) differ in length"); goto done; }
    const int32_t *part = (const int32_t *)pv->buf;
    const int64_t *row = (const int64_t *)rv->buf;
    const int64_t *bounds = NULL;
    Py_ssize_t g = n;
    if (args[3] != Py_None) {
        if (PyObject_GetBuffer(args[3], &bufs[held], PyBUF_C_CONTIGUOUS) < 0) goto done;
        Py_buffer *bv = &bufs[held++];
        g = bv->len / 8 - 1;
        bounds = (const int64_t *)bv->buf;
        if (g < 0 || bounds[0] != 0 || bounds[g] != n) err = "gather_values: bounds must run from 0 to the number of pieces";
    }
    long long total = 0;
    Py_BEGIN_ALLOW_THREADS  /* the checks read only the held buffers */
    if (err == NULL) err = check_parts(&ps);
    for (Py_ssize_t k = 0; err == NULL && bounds != NULL && k < g; k++)
        if (bounds[k + 1] < bounds[k]) err = "gather_values: bounds not ascending";
    for (Py_ssize_t j = 0; err == NULL && j < n; j++) {
        int32_t p = part[j];
        if (p < 0 || p >= np_ || row[j] < 0 || row[j] >= lens[p]) { err = "gather_values: a piece outside its part"; break; }
        total += offs[p][row[j] + 1] - offs[p][row[j]];
    }
    Py_END_ALLOW_THREADS
    if (err != NULL) { PyErr_SetString(PyExc_ValueError, err); goto done; }
    if (total > limit) { result = Py_NewRef(Py_None); goto done; }
    obytes = PyBytes_FromStringAndSize(NULL, (g + 1) * 4);
    dbytes = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)total);
    if (obytes == NULL || dbytes == NULL) goto done;
    {
        int32_t *out_off = (int32_t *)PyBytes_AS_STRING(obytes);
        char *out = PyBytes_AS_STRING(dbytes);
        int32_t pos = 0;
        out_off[0] = 0;
        Py_BEGIN_ALLOW_THREADS  /* the merge and the line builders run in several threads */
        Py_ssize_t k = 0;
        for (Py_ssize_t j = 0; j < n; j++) {
            if (bounds != NULL) {
                while (k < g && bounds[k + 1] <= j) out_off[++k] = pos;
            }
            const int32_t *o = offs[part[j]] + row[j];
            int32_t len = o[1] - o[0];
            memcpy(out + pos, datas[part[j]] + o[0], (size_t)len);
            pos += len;
            if (bounds == NULL) out_off[j + 1] = pos;
        }
        if (bounds != NULL) while (k < g) out_off[++k] = pos;
        Py_END_ALLOW_THREADS
    }
    result = PyTuple_Pack(2, obytes, dbytes);
done:
    Py_XDECREF(obytes);
    Py_XDECREF(dbytes);
    if (bufs != NULL)
        for (Py_ssize_t i = 0; i < held; i++) PyBuffer_Release(&bufs[i]);
    PyMem_Free(bufs);
    parts_free(&ps);
    return result;
}

/* gather_framed(bodies, heads, part, row, end, marker, limit) -> (offsets, data) | None
 * Raw replay's lines in merge order, each byte copied once: line j is head + body + ``end``
 * of row row[j] of part part[j] (``bodies``/``heads``: tuples of (offsets, data, offset, length)
 * per part, the same lengths), or ``marker`` alone when that body is empty (a disconnect).
 * Returns int32 offsets (from 0) and data as bytes; None past ``limit`` bytes. Everything is
 * checked before any copy. */
static PyObject *gather_framed(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "gather_framed takes 7 arguments");
        return NULL;
    }
    if (!PyTuple_Check(args[0]) || !PyTuple_Check(args[1]) || PyTuple_GET_SIZE(args[0]) != PyTuple_GET_SIZE(args[1])) {
        PyErr_SetString(PyExc_TypeError, "gather_framed: bodies and heads must be tuples of the same length");
        return NULL;
    }
    long long limit = PyLong_AsLongLong(args[6]);
    if (limit == -1 && PyErr_Occurred()) return NULL;
    if (limit > INT32_MAX) limit = INT32_MAX;
    Py_ssize_t np_ = PyTuple_GET_SIZE(args[0]);
    Py_buffer *bufs = PyMem_Calloc((size_t)(4 * np_ + 4), sizeof(Py_buffer));
    Parts body = {0}, head = {0};
    Py_ssize_t held = 0;
    PyObject *result = NULL, *obytes = NULL, *dbytes = NULL;
    const char *err = NULL;
    int ok = parts_alloc(&body, np_) == 0 && parts_alloc(&head, np_) == 0;
    if (!ok || bufs == NULL) {
        if (!PyErr_Occurred()) PyErr_NoMemory();
        goto done;
    }
    if (parse_parts(args[0], "gather_framed", &body, bufs, &held) < 0 ||
        parse_parts(args[1], "gather_framed", &head, bufs, &held) < 0)
        goto done;
    for (Py_ssize_t p = 0; p < np_; p++)
        if (body.lens[p] != head.lens[p]) {
            PyErr_SetString(PyExc_ValueError, "gather_framed: a part's heads and bodies differ in length");
            goto done;
        }
    if (PyObject_GetBuffer(args[2], &bufs[held], PyBUF_C_CONTIGUOUS) < 0) goto done;
    Py_buffer *pv = &bufs[held++];
    if (PyObject_GetBuffer(args[3], &bufs[held], PyBUF_C_CONTIGUOUS) < 0) goto done;
    Py_buffer *rv = &bufs[held++];
    if (PyObject_GetBuffer(args[4], &bufs[held], PyBUF_C_CONTIGUOUS) < 0) goto done;
    Py_buffer *ev = &bufs[held++];
    if (PyObject_GetBuffer(args[5], &bufs[held], PyBUF_C_CONTIGUOUS) < 0) goto done;
    Py_buffer *mv = &bufs[held++];
    Py_ssize_t n = rv->len / 8;
    if (pv->len != n * 4) {
        PyErr_SetString(PyExc_ValueError, "gather_framed: part (int32) and row (int64) differ in length");
        goto done;
    }
    const int32_t *part = (const int32_t *)pv->buf;
    const int64_t *row = (const int64_t *)rv->buf;
    const char *end = (const char *)ev->buf, *marker = (const char *)mv->buf;
    Py_ssize_t end_len = ev->len, marker_len = mv->len;
    long long total = 0;
    Py_BEGIN_ALLOW_THREADS  /* the checks read only the held buffers */
    err = check_parts(&body);
    if (err == NULL) err = check_parts(&head);
    for (Py_ssize_t j = 0; err == NULL && j < n; j++) {
        int32_t p = part[j];
        if (p < 0 || p >= np_ || row[j] < 0 || row[j] >= body.lens[p]) { err = "gather_framed: a line outside its part"; break; }
        int32_t b = body.offs[p][row[j] + 1] - body.offs[p][row[j]];
        total += b ? (long long)(head.offs[p][row[j] + 1] - head.offs[p][row[j]]) + b + end_len : marker_len;
    }
    Py_END_ALLOW_THREADS
    if (err != NULL) { PyErr_SetString(PyExc_ValueError, err); goto done; }
    if (total > limit) { result = Py_NewRef(Py_None); goto done; }
    obytes = PyBytes_FromStringAndSize(NULL, (n + 1) * 4);
    dbytes = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)total);
    if (obytes == NULL || dbytes == NULL) goto done;
    {
        int32_t *out_off = (int32_t *)PyBytes_AS_STRING(obytes);
        char *out = PyBytes_AS_STRING(dbytes);
        int32_t pos = 0;
        out_off[0] = 0;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t j = 0; j < n; j++) {
            int32_t p = part[j];
            const int32_t *bo = body.offs[p] + row[j];
            int32_t b = bo[1] - bo[0];
            if (b) {
                const int32_t *ho = head.offs[p] + row[j];
                int32_t h = ho[1] - ho[0];
                memcpy(out + pos, head.datas[p] + ho[0], (size_t)h);
                pos += h;
                memcpy(out + pos, body.datas[p] + bo[0], (size_t)b);
                pos += b;
                memcpy(out + pos, end, (size_t)end_len);
                pos += (int32_t)end_len;
            } else {
                memcpy(out + pos, marker, (size_t)marker_len);
                pos += (int32_t)marker_len;
            }
            out_off[j + 1] = pos;
        }
        Py_END_ALLOW_THREADS
    }
    result = PyTuple_Pack(2, obytes, dbytes);
done:
    Py_XDECREF(obytes);
    Py_XDECREF(dbytes);
    if (bufs != NULL)
        for (Py_ssize_t i = 0; i < held; i++) PyBuffer_Release(&bufs[i]);
    PyMem_Free(bufs);
    parts_free(&body);
    parts_free(&head);
    return result;
}

static PyMethodDef methods[] = {
    {"pack_levels", (PyCFunction)(void (*)(void))pack_levels, METH_FASTCALL,
     "Pack (price, amount) levels into book_change ring slots."},
    {"pack_level_text", (PyCFunction)(void (*)(void))pack_level_text, METH_FASTCALL,
     "Parse bid and ask level texts ([[\"price\",\"qty\"],...]) into book_change ring slots."},
    {"gather_values", (PyCFunction)(void (*)(void))gather_values, METH_FASTCALL,
     "Values of several binary arrays in a given order, runs joined, as new Arrow buffers."},
    {"gather_framed", (PyCFunction)(void (*)(void))gather_framed, METH_FASTCALL,
     "Raw replay lines (head + body + end, or a marker for an empty body) in a given order, as new Arrow buffers."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastpack", NULL, -1, methods};

PyMODINIT_FUNC PyInit__fastpack(void) {
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "RECORD_BYTES", RECORD_BYTES) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
