/* PricedSpans -> Arrow column buffers, in one pass (the fast path of duckdb._encode).
 *
 * Why C: encoding runs on the receiver thread holding the GIL, so it bounds ingest. In
 * Python each column is a comprehension (a list of Python objects) and then a pyarrow
 * conversion of that list: ~2.2 us a span for the 34 plain columns. Here each span's
 * objects are read once and every value goes straight into its column's buffer.
 *
 * Contract (see `duckdb._plain_columns`): `plan` is a tuple of (source, name, kind), where
 * source 0 is the PricedSpan, 1 its record, 2 its usage, 3 its cost, 4 a key of the
 * record's attributes (a non-empty str there, else null); kind is one of
 *   's' str or None (null)          'e' str, "" and None both null
 *   'b' uint8                       'q' int64 (also timestamps)
 *   '?' bool                        'm' int or None -> decimal128 (femto-dollars)
 * Each column comes back as (validity, data) or (validity, offsets, data) for strings,
 * validity None when no value is null, ready for `pyarrow.Array.from_buffers`. A value
 * of any other type, or out of its column's range, raises `Unhandled`: the caller then
 * takes the Python path, which accepts or refuses it as pyarrow does.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static PyObject *Unhandled;

typedef struct {
    char *data;
    Py_ssize_t size, capacity;
} Bytes;

/* Where a slots class keeps an attribute: read straight from the object (~3 ns) instead of
 * through PyObject_GetAttr (~20 ns); offset -1 for anything else (a property, say). */
typedef struct {
    PyTypeObject *type; /* NULL until the first object is seen */
    Py_ssize_t offset;
} Slot;

static PyObject *get(PyObject *obj, PyObject *name, Slot *slot) {
    if (slot->type == NULL) {
        slot->type = Py_TYPE(obj);
        slot->offset = -1;
        PyObject *descr = _PyType_Lookup(Py_TYPE(obj), name); /* borrowed */
        if (descr != NULL && Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
            PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
            if (member->type == T_OBJECT_EX) slot->offset = member->offset;
        }
    }
    if (Py_TYPE(obj) == slot->type && slot->offset >= 0) {
        PyObject *value = *(PyObject **)((char *)obj + slot->offset);
        if (value != NULL) return Py_NewRef(value);
    }
    return PyObject_GetAttr(obj, name); /* also raises AttributeError for an unset slot */
}

typedef struct {
    Slot slot;
    int source;
    PyObject *name;
    char kind;
    Bytes data, offsets;
    uint8_t *valid; /* allocated at the first null */
} Column;

static int grow(Bytes *b, Py_ssize_t more) {
    if (b->size + more <= b->capacity) return 0;
    Py_ssize_t capacity = b->capacity ? b->capacity : 256;
    while (capacity < b->size + more) capacity *= 2;
    char *data = realloc(b->data, (size_t)capacity);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = data;
    b->capacity = capacity;
    return 0;
}

static int put(Bytes *b, const void *value, Py_ssize_t size) {
    if (grow(b, size) < 0) return -1;
    memcpy(b->data + b->size, value, (size_t)size);
    b->size += size;
    return 0;
}

static int unhandled(Column *c, PyObject *value) {
    PyErr_Format(Unhandled, "%U: %.80s value", c->name, Py_TYPE(value)->tp_name);
    return -1;
}

static int set_null(Column *c, Py_ssize_t row, Py_ssize_t rows) {
    if (c->valid == NULL) {
        c->valid = malloc((size_t)(rows + 7) / 8);
        if (c->valid == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        memset(c->valid, 0xff, (size_t)(rows + 7) / 8);
    }
    c->valid[row / 8] &= (uint8_t)~(1u << (row % 8));
    return 0;
}

/* One value into its column: 0, or -1 with an exception set. */
static int append(Column *c, PyObject *value, Py_ssize_t row, Py_ssize_t rows) {
    switch (c->kind) {
    case 's':
    case 'e': {
        int null = value == Py_None;
        if (!null && !PyUnicode_CheckExact(value)) return unhandled(c, value);
        Py_ssize_t size = 0;
        const char *text = NULL;
        if (!null) {
            text = PyUnicode_AsUTF8AndSize(value, &size);
            if (text == NULL) { /* a lone surrogate: pyarrow decides */
                PyErr_Clear();
                return unhandled(c, value);
            }
            null = size == 0 && c->kind == 'e';
        }
        if (null && set_null(c, row, rows) < 0) return -1;
        if (!null && put(&c->data, text, size) < 0) return -1;
        int32_t end = (int32_t)c->data.size;
        if (c->data.size > INT32_MAX) return unhandled(c, value);
        return put(&c->offsets, &end, sizeof end);
    }
    case 'b':
    case 'q': {
        if (!PyLong_CheckExact(value)) return unhandled(c, value);
        int overflow = 0;
        long long number = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (overflow || (c->kind == 'b' && (number < 0 || number > 255))) {
            return unhandled(c, value);
        }
        if (c->kind == 'b') {
            uint8_t byte = (uint8_t)number;
            return put(&c->data, &byte, 1);
        }
        int64_t word = number;
        return put(&c->data, &word, sizeof word);
    }
    case '?': {
        if (!PyBool_Check(value)) return unhandled(c, value);
        uint8_t byte = value == Py_True;
        return put(&c->data, &byte, 1); /* packed into bits at the end */
    }
    case 'm': {
        int64_t words[2] = {0, 0}; /* decimal128: little-endian two's complement */
        if (value == Py_None) {
            if (set_null(c, row, rows) < 0) return -1;
        } else {
            if (!PyLong_CheckExact(value)) return unhandled(c, value);
            int overflow = 0;
            long long number = PyLong_AsLongLongAndOverflow(value, &overflow);
            if (overflow) return unhandled(c, value);
            words[0] = number;
            words[1] = number < 0 ? -1 : 0;
        }
        return put(&c->data, words, sizeof words);
    }
    }
    PyErr_Format(PyExc_ValueError, "unknown column kind %c", c->kind);
    return -1;
}

/* The value a column reads from one span's objects: a new reference, or NULL. */
static PyObject *value_of(Column *c, PyObject *const objects[4], PyObject *attributes) {
    if (c->source < 4) return get(objects[c->source], c->name, &c->slot);
    PyObject *value = PyDict_GetItemWithError(attributes, c->name);
    if (value == NULL && PyErr_Occurred()) return NULL;
    if (value == NULL || !PyUnicode_Check(value) || PyUnicode_GET_LENGTH(value) == 0) {
        Py_RETURN_NONE;
    }
    Py_INCREF(value);
    return value;
}

static PyObject *finish(Column *c, Py_ssize_t rows) {
    if (c->kind == '?') { /* one byte a value -> one bit a value */
        uint8_t *bits = calloc(1, (size_t)(rows + 7) / 8);
        if (bits == NULL) return PyErr_NoMemory();
        for (Py_ssize_t i = 0; i < rows; i++) {
            if (c->data.data[i]) bits[i / 8] |= (uint8_t)(1u << (i % 8));
        }
        memcpy(c->data.data, bits, (size_t)(rows + 7) / 8);
        c->data.size = (rows + 7) / 8;
        free(bits);
    }
    PyObject *valid = c->valid
        ? PyBytes_FromStringAndSize((const char *)c->valid, (rows + 7) / 8)
        : Py_NewRef(Py_None);
    PyObject *data = PyBytes_FromStringAndSize(c->data.data ? c->data.data : "", c->data.size);
    PyObject *offsets = NULL;
    if (c->kind == 's' || c->kind == 'e') {
        offsets = PyBytes_FromStringAndSize(c->offsets.data, c->offsets.size);
    }
    PyObject *result = NULL;
    if (valid && data && (offsets || (c->kind != 's' && c->kind != 'e'))) {
        result = offsets ? PyTuple_Pack(3, valid, offsets, data) : PyTuple_Pack(2, valid, data);
    }
    Py_XDECREF(valid);
    Py_XDECREF(data);
    Py_XDECREF(offsets);
    return result;
}

PyDoc_STRVAR(columns_doc,
"columns(spans, plan) -> list of buffer tuples, one a column of the plan.\n\n"
"Raises Unhandled for a value the plan's kind does not cover.");

static PyObject *columns(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyList_CheckExact(args[0]) || !PyTuple_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "columns(spans: list, plan: tuple)");
        return NULL;
    }
    PyObject *spans = args[0], *plan = args[1], *result = NULL;
    Py_ssize_t rows = PyList_GET_SIZE(spans), count = PyTuple_GET_SIZE(plan);
    Column *cols = calloc((size_t)count + 1, sizeof(Column));
    if (cols == NULL) return PyErr_NoMemory();
    int reads_attributes = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *spec = PyTuple_GET_ITEM(plan, i);
        const char *kind;
        if (!PyTuple_CheckExact(spec)
            || !PyArg_ParseTuple(spec, "iUs", &cols[i].source, &cols[i].name, &kind)
            || cols[i].source < 0 || cols[i].source > 4 || strlen(kind) != 1) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "bad column spec");
            goto done;
        }
        cols[i].kind = kind[0];
        reads_attributes |= cols[i].source == 4;
        Py_ssize_t width = cols[i].kind == 'q' ? 8 : cols[i].kind == 'm' ? 16 : 1;
        if (grow(&cols[i].data, rows * width + 1) < 0) goto done;
        if (cols[i].kind == 's' || cols[i].kind == 'e') {
            int32_t zero = 0;
            if (grow(&cols[i].offsets, (rows + 1) * 4) < 0) goto done;
            put(&cols[i].offsets, &zero, sizeof zero);
        }
    }
    static PyObject *names[4];
    Slot slots[4] = {{NULL, -1}, {NULL, -1}, {NULL, -1}, {NULL, -1}};
    if (names[1] == NULL) {
        names[1] = PyUnicode_InternFromString("record");
        names[2] = PyUnicode_InternFromString("usage");
        names[3] = PyUnicode_InternFromString("cost");
        names[0] = PyUnicode_InternFromString("attributes");
        if (!names[0] || !names[1] || !names[2] || !names[3]) goto done;
    }
    for (Py_ssize_t row = 0; row < rows; row++) {
        PyObject *objects[4] = {PyList_GET_ITEM(spans, row), NULL, NULL, NULL};
        PyObject *attributes = NULL;
        int failed = 0;
        for (int s = 1; s < 4 && !failed; s++) {
            objects[s] = get(objects[0], names[s], &slots[s]);
            failed = objects[s] == NULL;
        }
        if (!failed && reads_attributes) {
            attributes = get(objects[1], names[0], &slots[0]);
            failed = attributes == NULL;
            if (!failed && !PyDict_CheckExact(attributes)) {
                PyErr_SetString(Unhandled, "attributes: not a dict");
                failed = 1;
            }
        }
        for (Py_ssize_t i = 0; i < count && !failed; i++) {
            PyObject *value = value_of(&cols[i], objects, attributes);
            failed = value == NULL || append(&cols[i], value, row, rows) < 0;
            Py_XDECREF(value);
        }
        for (int s = 1; s < 4; s++) Py_XDECREF(objects[s]);
        Py_XDECREF(attributes);
        if (failed) goto done;
    }
    result = PyList_New(count);
    for (Py_ssize_t i = 0; result && i < count; i++) {
        PyObject *column = finish(&cols[i], rows);
        if (column == NULL) Py_CLEAR(result);
        else PyList_SET_ITEM(result, i, column);
    }
done:
    for (Py_ssize_t i = 0; i < count; i++) {
        free(cols[i].data.data);
        free(cols[i].offsets.data);
        free(cols[i].valid);
    }
    free(cols);
    return result;
}

static PyMethodDef methods[] = {
    {"columns", (PyCFunction)(void (*)(void))columns, METH_FASTCALL, columns_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_columns",
    "PricedSpans -> Arrow column buffers (the fast path of duckdb._encode).", -1, methods,
};

PyMODINIT_FUNC PyInit__columns(void) {
    const uint16_t probe = 1;
    if (*(const uint8_t *)&probe != 1) {
        PyErr_SetString(PyExc_ImportError, "_columns writes Arrow buffers little-endian");
        return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Unhandled = PyErr_NewException("spanledger.store._columns.Unhandled", PyExc_ValueError, NULL);
    if (Unhandled == NULL || PyModule_AddObjectRef(m, "Unhandled", Unhandled) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
