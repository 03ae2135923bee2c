/* Compiled book_change packer for the ingest hot path.
 *
 * A 42-level depth frame costs ~15 us of Python to pack level by level
 * (struct.pack_into per level), against ~4 us to decode it. This packs the
 * decoded (price, amount) pairs straight into the ring slots. The record is
 * ipc.schemas.BOOK_CHANGE_STRUCT ("<qqddHBB4x", 40 bytes); ipc/fastpack.py
 * checks that at import and falls back to the Python loop on any mismatch.
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

/* pack_levels(buf, header, itemsize, capacity, seq, k, local_ts, exchange_ts,
 *             symbol, side, is_snapshot, levels) -> None
 * Writes levels[0:k] into slots seq .. seq+k-1 (mod capacity) of the ring whose
 * slot 0 starts at byte ``header`` of ``buf``. Nothing is written on error. */
static PyObject *pack_levels(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 12) {
        PyErr_SetString(PyExc_TypeError, "pack_levels takes 12 arguments");
        return NULL;
    }
    Py_ssize_t header = PyLong_AsSsize_t(args[1]);
    Py_ssize_t itemsize = PyLong_AsSsize_t(args[2]);
    Py_ssize_t cap = PyLong_AsSsize_t(args[3]);
    long long seq = PyLong_AsLongLong(args[4]);
    Py_ssize_t k = PyLong_AsSsize_t(args[5]);
    long long local_ts = PyLong_AsLongLong(args[6]);
    long long exchange_ts = PyLong_AsLongLong(args[7]);
    long symbol = PyLong_AsLong(args[8]);
    long side = PyLong_AsLong(args[9]);
    int snap = PyObject_IsTrue(args[10]);
    if (PyErr_Occurred() || snap < 0) return NULL;
    PyObject *levels = args[11];
    if (header < 0 || itemsize < RECORD_BYTES || cap <= 0 || seq < 0 || k < 0 || k > cap ||
        symbol < 0 || symbol > 0xFFFF || side < 0 || side > 0xFF) {
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

static PyMethodDef methods[] = {
    {"pack_levels", (PyCFunction)(void (*)(void))pack_levels, METH_FASTCALL,
     "Pack (price, amount) levels into book_change ring slots."},
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
