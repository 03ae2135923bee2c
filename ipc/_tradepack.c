/* Compiled trade-frame and raw-frame writers for the ingest hot path (aggTrade: one small frame
 * per trade; RawFrameWriter: every other frame's raw copy).
 *
 * Per frame the Python path packs a trade row (struct.pack_into), copies the raw frame
 * into the arena, packs its index record and moves five ring cursors: ~0.8 us of
 * interpreter work against ~0.5 us to decode the frame. TradeFrameWriter.push does the
 * same in one call. The rings stay Python objects (ipc.ring.RecordRing, ipc.raw_ring.RawRing):
 * their producer-side cursors (_wseq, _read_cache, _wpos, _rpos_cache) are read and written
 * back here, so every other push to the same rings keeps working. A full ring or an
 * arena wrap is not handled here: ``slow(status, *args)`` is called instead (bit 1: the
 * trade row, bit 2: the raw frame), which takes the Python path (drop counting included).
 *
 * Records: ipc.schemas.TRADE_STRUCT ("<qqddHB5x40s", 80 bytes) and RAW_INDEX_STRUCT
 * ("<qQIIHH4x", 32 bytes); ipc/fastpack.py checks both formats before using this.
 * Nothing is written for a part whose arguments are out of range.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define TRADE_BYTES 80
#define TRADE_ID_BYTES 40
#define RAW_INDEX_BYTES 32

static PyObject *s_wseq, *s_read_cache, *s_wpos, *s_rpos_cache;

static int get_ll(PyObject *o, PyObject *name, long long *out) {
    PyObject *v = PyObject_GetAttr(o, name);
    if (v == NULL) return -1;
    *out = PyLong_AsLongLong(v);
    Py_DECREF(v);
    return (*out == -1 && PyErr_Occurred()) ? -1 : 0;
}

static int set_ll(PyObject *o, PyObject *name, long long value) {
    PyObject *v = PyLong_FromLongLong(value);
    if (v == NULL) return -1;
    int r = PyObject_SetAttr(o, name, v);
    Py_DECREF(v);
    return r;
}

/* A writable view of at least ``need`` bytes. */
static int writable(PyObject *obj, Py_ssize_t need, Py_buffer *view) {
    if (PyObject_GetBuffer(obj, view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) return -1;
    if (view->len < need) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_ValueError, "TradeFrameWriter: ring buffer smaller than its layout");
        return -1;
    }
    return 0;
}

static void publish(char *word, long long value) {
    /* the record bytes before the cursor the consumer reads (x86 keeps stores in order) */
    __atomic_store_n((uint64_t *)word, (uint64_t)value, __ATOMIC_RELEASE);
}

/* The trade id field: an int in decimal (as b"%d" % id), or bytes (struct's "40s": cut, zero-padded). */
static int trade_id(PyObject *tid, char id[TRADE_ID_BYTES]) {
    memset(id, 0, TRADE_ID_BYTES);
    if (PyLong_CheckExact(tid)) {
        long long v = PyLong_AsLongLong(tid);
        if (v == -1 && PyErr_Occurred()) return -1;
        char tmp[24];
        int len = 0, at = 0;
        unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
        do {
            tmp[len++] = (char)('0' + u % 10);
            u /= 10;
        } while (u);
        if (v < 0) id[at++] = '-';
        while (len) id[at++] = tmp[--len];
        return 0;
    }
    if (PyBytes_Check(tid)) {
        Py_ssize_t len = PyBytes_GET_SIZE(tid);
        memcpy(id, PyBytes_AS_STRING(tid), (size_t)(len < TRADE_ID_BYTES ? len : TRADE_ID_BYTES));
        return 0;
    }
    PyErr_SetString(PyExc_TypeError, "trade_id must be an int or bytes");
    return -1;
}

/* A raw ring's producer side as the compiled writers see it. */
typedef struct {
    PyObject *raw_ring, *index_ring, *index_buf, *arena_buf;  /* RawRing, its index ring + mapping, arena mapping */
    Py_ssize_t header, write_off;
    long long index_cap, index_size, arena_cap;
} RawTarget;

/* One frame into the arena and its index record into the index ring, cursors moved.
 * 0: written; 1: not written (a wrap, a full arena or index, or a frame too large: the
 * caller's Python path decides, drop counting included); -1: an error is set. */
static int raw_into(RawTarget *t, long long lts, PyObject *payload, unsigned long conn, long symbol, long channel) {
    Py_buffer src;
    if (PyObject_GetBuffer(payload, &src, PyBUF_C_CONTIGUOUS) < 0) return -1;
    long long n = (long long)src.len, pos, rpos, iseq, irc;
    if (get_ll(t->raw_ring, s_wpos, &pos) < 0 || get_ll(t->raw_ring, s_rpos_cache, &rpos) < 0 ||
        get_ll(t->index_ring, s_wseq, &iseq) < 0 || get_ll(t->index_ring, s_read_cache, &irc) < 0) {
        PyBuffer_Release(&src);
        return -1;
    }
    long long off = pos % t->arena_cap, end = pos + n;
    if (pos < 0 || iseq < 0 || n > 0xFFFFFFFFLL || off + n > t->arena_cap || end - rpos > t->arena_cap ||
        iseq - irc >= t->index_cap) {
        PyBuffer_Release(&src);
        return 1;
    }
    Py_buffer a, x;
    if (writable(t->arena_buf, t->header + t->arena_cap, &a) < 0) {
        PyBuffer_Release(&src);
        return -1;
    }
    if (writable(t->index_buf, t->header + t->index_cap * t->index_size, &x) < 0) {
        PyBuffer_Release(&a);
        PyBuffer_Release(&src);
        return -1;
    }
    memcpy((char *)a.buf + t->header + off, src.buf, (size_t)n);
    char *r = (char *)x.buf + t->header + (iseq % t->index_cap) * t->index_size;
    int64_t l64 = (int64_t)lts;
    uint64_t p64 = (uint64_t)pos;
    uint32_t n32 = (uint32_t)n, c32 = (uint32_t)conn;
    uint16_t s16 = (uint16_t)symbol, ch16 = (uint16_t)channel;
    memcpy(r, &l64, 8);
    memcpy(r + 8, &p64, 8);
    memcpy(r + 16, &n32, 4);
    memcpy(r + 20, &c32, 4);
    memcpy(r + 24, &s16, 2);
    memcpy(r + 26, &ch16, 2);
    memset(r + 28, 0, 4);
    publish((char *)x.buf + t->write_off, iseq + 1);
    publish((char *)a.buf + t->write_off, end);
    PyBuffer_Release(&x);
    PyBuffer_Release(&a);
    PyBuffer_Release(&src);
    if (set_ll(t->index_ring, s_wseq, iseq + 1) < 0 || set_ll(t->raw_ring, s_wpos, end) < 0) return -1;
    return 0;
}

static int raw_target_init(RawTarget *t, PyObject *raw, PyObject *idx, PyObject *ibuf, long long icap, long long isize,
                           PyObject *abuf, long long acap, Py_ssize_t header, Py_ssize_t write_word) {
    if (raw != Py_None && (icap <= 0 || isize < RAW_INDEX_BYTES || acap <= 0)) {
        PyErr_SetString(PyExc_ValueError, "raw ring layout out of range");
        return -1;
    }
    Py_INCREF(raw); Py_INCREF(idx); Py_INCREF(ibuf); Py_INCREF(abuf);
    Py_XSETREF(t->raw_ring, raw);
    Py_XSETREF(t->index_ring, idx);
    Py_XSETREF(t->index_buf, ibuf);
    Py_XSETREF(t->arena_buf, abuf);
    t->index_cap = icap; t->index_size = isize; t->arena_cap = acap; t->header = header; t->write_off = write_word * 8;
    return 0;
}

static int raw_target_traverse(RawTarget *t, visitproc visit, void *arg) {
    Py_VISIT(t->raw_ring);
    Py_VISIT(t->index_ring);
    Py_VISIT(t->index_buf);
    Py_VISIT(t->arena_buf);
    return 0;
}

static void raw_target_clear(RawTarget *t) {
    Py_CLEAR(t->raw_ring);
    Py_CLEAR(t->index_ring);
    Py_CLEAR(t->index_buf);
    Py_CLEAR(t->arena_buf);
}

typedef struct {
    PyObject_HEAD
    PyObject *trade_ring, *trade_buf;  /* RecordRing and its mapping (header + slots) */
    RawTarget raw;  /* raw.raw_ring None: trade rows only */
    PyObject *slow;
    Py_ssize_t header, write_off;
    long long trade_cap, trade_size;
} TradeFrameWriter;

static int tfw_traverse(TradeFrameWriter *self, visitproc visit, void *arg) {
    Py_VISIT(self->trade_ring);
    Py_VISIT(self->trade_buf);
    Py_VISIT(self->slow);
    return raw_target_traverse(&self->raw, visit, arg);
}

static int tfw_clear(TradeFrameWriter *self) {
    Py_CLEAR(self->trade_ring);
    Py_CLEAR(self->trade_buf);
    Py_CLEAR(self->slow);
    raw_target_clear(&self->raw);
    return 0;
}

static void tfw_dealloc(TradeFrameWriter *self) {
    PyObject_GC_UnTrack(self);
    tfw_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* TradeFrameWriter(trade_ring, trade_buf, trade_cap, trade_size, raw_ring, index_ring, index_buf,
 *                  index_cap, index_size, arena_buf, arena_cap, header, write_word, slow)
 * raw_ring None: trade rows only. ``arena_buf``: the whole arena segment (header, then data). */
static int tfw_init(TradeFrameWriter *self, PyObject *args, PyObject *kwds) {
    PyObject *tr, *tbuf, *raw, *idx, *ibuf, *abuf, *slow;
    long long tcap, tsize, icap, isize, acap;
    Py_ssize_t header, write_word;
    if (!PyArg_ParseTuple(args, "OOLLOOOLLOLnnO:TradeFrameWriter", &tr, &tbuf, &tcap, &tsize, &raw, &idx, &ibuf,
                          &icap, &isize, &abuf, &acap, &header, &write_word, &slow))
        return -1;
    if (!PyCallable_Check(slow)) {
        PyErr_SetString(PyExc_TypeError, "slow must be callable");
        return -1;
    }
    if (tcap <= 0 || tsize < TRADE_BYTES || header < 0 || write_word < 0 || (write_word + 1) * 8 > header) {
        PyErr_SetString(PyExc_ValueError, "TradeFrameWriter: ring layout out of range");
        return -1;
    }
    tfw_clear(self);
    if (raw_target_init(&self->raw, raw, idx, ibuf, icap, isize, abuf, acap, header, write_word) < 0) return -1;
    Py_INCREF(tr); Py_INCREF(tbuf); Py_INCREF(slow);
    self->trade_ring = tr; self->trade_buf = tbuf; self->slow = slow;
    self->trade_cap = tcap; self->trade_size = tsize; self->header = header; self->write_off = write_word * 8;
    return 0;
}

/* push(local_ts, exchange_ts, symbol, trade_id, price, amount, side, payload, conn_id, channel) -> None */
static PyObject *tfw_push(TradeFrameWriter *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 10) {
        PyErr_SetString(PyExc_TypeError, "push takes 10 arguments");
        return NULL;
    }
    if (self->trade_ring == NULL) {
        PyErr_SetString(PyExc_ValueError, "TradeFrameWriter not initialized");
        return NULL;
    }
    long long lts = PyLong_AsLongLong(args[0]);
    long long ets = PyLong_AsLongLong(args[1]);
    long symbol = PyLong_AsLong(args[2]);
    double price = PyFloat_AsDouble(args[4]);
    double amount = PyFloat_AsDouble(args[5]);
    long side = PyLong_AsLong(args[6]);
    unsigned long conn = PyLong_AsUnsignedLong(args[8]);
    long channel = PyLong_AsLong(args[9]);
    if (PyErr_Occurred()) return NULL;
    if (symbol < 0 || symbol > 0xFFFF || side < 0 || side > 0xFF || conn > 0xFFFFFFFFUL || channel < 0 ||
        channel > 0xFFFF) {
        PyErr_SetString(PyExc_ValueError, "push: symbol, side, conn_id or channel out of range");
        return NULL;
    }
    char id[TRADE_ID_BYTES];
    if (trade_id(args[3], id) < 0) return NULL;
    int status = 0;

    /* the trade row */
    long long seq, rc;
    if (get_ll(self->trade_ring, s_wseq, &seq) < 0 || get_ll(self->trade_ring, s_read_cache, &rc) < 0) return NULL;
    if (seq < 0) {
        PyErr_SetString(PyExc_ValueError, "push: negative ring cursor");
        return NULL;
    }
    if (seq - rc >= self->trade_cap) {
        status |= 1;
    } else {
        Py_buffer b;
        if (writable(self->trade_buf, self->header + self->trade_cap * self->trade_size, &b) < 0) return NULL;
        char *r = (char *)b.buf + self->header + (seq % self->trade_cap) * self->trade_size;
        int64_t l64 = (int64_t)lts, e64 = (int64_t)ets;
        uint16_t s16 = (uint16_t)symbol;
        memcpy(r, &l64, 8);
        memcpy(r + 8, &e64, 8);
        memcpy(r + 16, &price, 8);
        memcpy(r + 24, &amount, 8);
        memcpy(r + 32, &s16, 2);
        r[34] = (char)(uint8_t)side;
        memset(r + 35, 0, 5);
        memcpy(r + 40, id, TRADE_ID_BYTES);
        publish((char *)b.buf + self->write_off, seq + 1);
        PyBuffer_Release(&b);
        if (set_ll(self->trade_ring, s_wseq, seq + 1) < 0) return NULL;
    }

    /* the raw frame */
    if (self->raw.raw_ring != Py_None) {
        int r = raw_into(&self->raw, lts, args[7], conn, symbol, channel);
        if (r < 0) return NULL;
        if (r > 0) status |= 2;  /* a wrap, a full arena or index, or a frame too large: RawRing.push decides */
    }
    if (status) {
        PyObject *call[11];
        PyObject *st = PyLong_FromLong(status);
        if (st == NULL) return NULL;
        call[0] = st;
        for (int i = 0; i < 10; i++) call[i + 1] = args[i];
        PyObject *res = PyObject_Vectorcall(self->slow, call, 11, NULL);
        Py_DECREF(st);
        if (res == NULL) return NULL;
        Py_DECREF(res);
    }
    Py_RETURN_NONE;
}

static PyMethodDef tfw_methods[] = {
    {"push", (PyCFunction)(void (*)(void))tfw_push, METH_FASTCALL,
     "push(local_ts, exchange_ts, symbol, trade_id, price, amount, side, payload, conn_id, channel): "
     "the trade row and the raw frame into their rings."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject TradeFrameWriterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ticktape.ipc._tradepack.TradeFrameWriter",
    .tp_basicsize = sizeof(TradeFrameWriter),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Writes one trade row and its raw frame straight into the rings.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)tfw_init,
    .tp_dealloc = (destructor)tfw_dealloc,
    .tp_traverse = (traverseproc)tfw_traverse,
    .tp_clear = (inquiry)tfw_clear,
    .tp_methods = tfw_methods,
};

/* RawFrameWriter: the raw frame alone (every venue's non-trade frames: book diffs, snapshots,
 * tickers), the same bytes as Outbox.raw_fast, which it replaces when built. */
typedef struct {
    PyObject_HEAD
    RawTarget raw;
    PyObject *slow;
} RawFrameWriter;

static int rfw_traverse(RawFrameWriter *self, visitproc visit, void *arg) {
    Py_VISIT(self->slow);
    return raw_target_traverse(&self->raw, visit, arg);
}

static int rfw_clear(RawFrameWriter *self) {
    Py_CLEAR(self->slow);
    raw_target_clear(&self->raw);
    return 0;
}

static void rfw_dealloc(RawFrameWriter *self) {
    PyObject_GC_UnTrack(self);
    rfw_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* RawFrameWriter(raw_ring, index_ring, index_buf, index_cap, index_size, arena_buf, arena_cap, header,
 *                write_word, slow) */
static int rfw_init(RawFrameWriter *self, PyObject *args, PyObject *kwds) {
    PyObject *raw, *idx, *ibuf, *abuf, *slow;
    long long icap, isize, acap;
    Py_ssize_t header, write_word;
    if (!PyArg_ParseTuple(args, "OOOLLOLnnO:RawFrameWriter", &raw, &idx, &ibuf, &icap, &isize, &abuf, &acap,
                          &header, &write_word, &slow))
        return -1;
    if (!PyCallable_Check(slow)) {
        PyErr_SetString(PyExc_TypeError, "slow must be callable");
        return -1;
    }
    if (raw == Py_None || header < 0 || write_word < 0 || (write_word + 1) * 8 > header) {
        PyErr_SetString(PyExc_ValueError, "RawFrameWriter: ring layout out of range");
        return -1;
    }
    rfw_clear(self);
    if (raw_target_init(&self->raw, raw, idx, ibuf, icap, isize, abuf, acap, header, write_word) < 0) return -1;
    Py_INCREF(slow);
    self->slow = slow;
    return 0;
}

/* push(local_ts, payload, conn_id, symbol, channel) -> None; ``slow(same args)`` when the frame does not fit */
static PyObject *rfw_push(RawFrameWriter *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "push takes 5 arguments");
        return NULL;
    }
    if (self->raw.raw_ring == NULL) {
        PyErr_SetString(PyExc_ValueError, "RawFrameWriter not initialized");
        return NULL;
    }
    long long lts = PyLong_AsLongLong(args[0]);
    unsigned long conn = PyLong_AsUnsignedLong(args[2]);
    long symbol = PyLong_AsLong(args[3]);
    long channel = PyLong_AsLong(args[4]);
    if (PyErr_Occurred()) return NULL;
    if (symbol < 0 || symbol > 0xFFFF || conn > 0xFFFFFFFFUL || channel < 0 || channel > 0xFFFF) {
        PyErr_SetString(PyExc_ValueError, "push: symbol, conn_id or channel out of range");
        return NULL;
    }
    int r = raw_into(&self->raw, lts, args[1], conn, symbol, channel);
    if (r < 0) return NULL;
    if (r > 0) {
        PyObject *res = PyObject_Vectorcall(self->slow, args, 5, NULL);
        if (res == NULL) return NULL;
        Py_DECREF(res);
    }
    Py_RETURN_NONE;
}

static PyMethodDef rfw_methods[] = {
    {"push", (PyCFunction)(void (*)(void))rfw_push, METH_FASTCALL,
     "push(local_ts, payload, conn_id, symbol, channel): the raw frame into its ring."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject RawFrameWriterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ticktape.ipc._tradepack.RawFrameWriter",
    .tp_basicsize = sizeof(RawFrameWriter),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Writes one raw frame and its index record straight into the raw ring.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)rfw_init,
    .tp_dealloc = (destructor)rfw_dealloc,
    .tp_traverse = (traverseproc)rfw_traverse,
    .tp_clear = (inquiry)rfw_clear,
    .tp_methods = rfw_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "_tradepack", .m_doc = NULL, .m_size = -1, .m_methods = NULL,
};

PyMODINIT_FUNC PyInit__tradepack(void) {
    s_wseq = PyUnicode_InternFromString("_wseq");
    s_read_cache = PyUnicode_InternFromString("_read_cache");
    s_wpos = PyUnicode_InternFromString("_wpos");
    s_rpos_cache = PyUnicode_InternFromString("_rpos_cache");
    if (!s_wseq || !s_read_cache || !s_wpos || !s_rpos_cache) return NULL;
    if (PyType_Ready(&TradeFrameWriterType) < 0 || PyType_Ready(&RawFrameWriterType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Py_INCREF(&TradeFrameWriterType);
    Py_INCREF(&RawFrameWriterType);
    if (PyModule_AddObject(m, "RawFrameWriter", (PyObject *)&RawFrameWriterType) < 0) {
        Py_DECREF(&RawFrameWriterType);
        Py_DECREF(&TradeFrameWriterType);
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddObject(m, "TradeFrameWriter", (PyObject *)&TradeFrameWriterType) < 0 ||
        PyModule_AddIntConstant(m, "TRADE_BYTES", TRADE_BYTES) < 0 ||
        PyModule_AddIntConstant(m, "RAW_INDEX_BYTES", RAW_INDEX_BYTES) < 0) {
        Py_DECREF(&TradeFrameWriterType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
