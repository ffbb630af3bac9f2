/* OTLP ExportTraceServiceRequest wire format -> SpanRecord objects, in one pass.
 *
 * Why C: with the upb protobuf backend, parsing a 512-span body takes ~0.4 ms, but reading
 * it through Python wrappers (one object per nested message, per attribute, per value)
 * costs ~13 us per span, the largest single cost of ingest. This reads the same bytes
 * directly and builds the same Python values that `otlp.decode_message` builds.
 *
 * Contract (see `otlp.decode_protobuf`): `valid` (below, without the GIL) or upb has
 * accepted the body, so it is well-formed protobuf with valid UTF-8 strings. `decode`
 * handles the common case only and answers None for anything else (an invalid or missing
 * id, a timestamp beyond int64, a singular message field repeated on the wire, which
 * protobuf would merge, nesting deeper than MAX_DEPTH, a group): the caller then decodes
 * the body with the Python path, which gives the exact partial-success reasons. Every read
 * is bounds-checked all the same.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 32
#define INTERN_MAX 64 /* short string values are interned, as in otlp._pb_attributes */

enum { OK = 0, BAIL = -1, ERROR = -2 }; /* ERROR: a Python exception is set */

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} Buf;

typedef struct {
    uint32_t field;
    uint32_t wire;
    uint64_t varint;  /* wire 0, 1 (as bits), 5 (as bits) */
    Buf bytes;        /* wire 2 */
} Field;

static int read_varint(Buf *b, uint64_t *out) {
    uint64_t value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (b->p >= b->end) return BAIL;
        uint8_t byte = *b->p++;
        value |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80)) {
            *out = value;
            return OK;
        }
    }
    return BAIL;
}

/* The next field of a message, or 1 at its end. */
static int next_field(Buf *b, Field *f) {
    if (b->p >= b->end) return 1;
    uint64_t tag;
    if (read_varint(b, &tag) != OK) return BAIL;
    f->field = (uint32_t)(tag >> 3);
    f->wire = (uint32_t)(tag & 7);
    switch (f->wire) {
        case 0:
            return read_varint(b, &f->varint);
        case 1:
            if (b->end - b->p < 8) return BAIL;
            memcpy(&f->varint, b->p, 8); /* little-endian hosts only: checked at import */
            b->p += 8;
            return OK;
        case 5: {
            uint32_t bits;
            if (b->end - b->p < 4) return BAIL;
            memcpy(&bits, b->p, 4);
            f->varint = bits;
            b->p += 4;
            return OK;
        }
        case 2: {
            uint64_t size;
            if (read_varint(b, &size) != OK) return BAIL;
            if (size > (uint64_t)(b->end - b->p)) return BAIL;
            f->bytes.p = b->p;
            f->bytes.end = b->p + size;
            b->p += size;
            return OK;
        }
        default: /* groups (3, 4) and invalid wire types */
            return BAIL;
    }
}

static PyObject *text(Buf s) {
    PyObject *value = PyUnicode_DecodeUTF8((const char *)s.p, s.end - s.p, "strict");
    if (value == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
        PyErr_Clear(); /* upb accepted it, Python does not: let the Python path decide */
    }
    return value;
}

static PyObject *interned(Buf s) {
    PyObject *value = text(s);
    if (value != NULL) PyUnicode_InternInPlace(&value);
    return value;
}

/* Attribute keys and short values repeat across spans (a few dozen keys, model and
 * provider names, user ids): a direct-mapped cache from their bytes to the string saves
 * decoding each one again, and the spans of a trace share one string for each. Keys and
 * values have a cache each, so that values seen once (response and tool call ids) never
 * evict a key. Keys are interned (they are looked up by name); values in the cache are
 * not, since interning a value seen once only adds it to and removes it from the
 * interned dict.
 * Used with the GIL held, like all of this. */
#define CACHE_SLOTS 4096
typedef struct {
    uint64_t hash;
    PyObject *value;
} Slot;
static Slot keys[CACHE_SLOTS], values[CACHE_SLOTS];

static PyObject *cached(Slot *cache, Buf s, int intern) {
    size_t n = (size_t)(s.end - s.p);
    if (n > INTERN_MAX) return NULL; /* the caller decides */
    uint64_t hash = n * 0x9e3779b97f4a7c15ULL, word;
    const uint8_t *p = s.p;
    for (; p + 8 <= s.end; p += 8) {
        memcpy(&word, p, 8);
        hash = (hash ^ word) * 0xff51afd7ed558ccdULL;
        hash ^= hash >> 32;
    }
    word = 0;
    memcpy(&word, p, (size_t)(s.end - p));
    hash = (hash ^ word) * 0xc4ceb9fe1a85ec53ULL;
    hash ^= hash >> 29;
    size_t slot = (size_t)(hash ^ (hash >> 32)) & (CACHE_SLOTS - 1);
    if (cache[slot].value != NULL && cache[slot].hash == hash) {
        Py_ssize_t size;
        const char *utf8 = PyUnicode_AsUTF8AndSize(cache[slot].value, &size);
        if (utf8 != NULL && (size_t)size == n && memcmp(utf8, s.p, n) == 0) {
            return Py_NewRef(cache[slot].value);
        }
        PyErr_Clear();
    }
    PyObject *value = intern ? interned(s) : text(s);
    if (value != NULL) {
        Py_XSETREF(cache[slot].value, Py_NewRef(value));
        cache[slot].hash = hash;
    }
    return value;
}

static const char HEX[] = "0123456789abcdef";

static PyObject *hex(Buf s) {
    Py_ssize_t n = s.end - s.p;
    PyObject *value = PyUnicode_New(2 * n, 127);
    if (value == NULL) return NULL;
    Py_UCS1 *out = PyUnicode_1BYTE_DATA(value);
    for (Py_ssize_t i = 0; i < n; i++) {
        out[2 * i] = HEX[s.p[i] >> 4];
        out[2 * i + 1] = HEX[s.p[i] & 15];
    }
    return value;
}

/* Sets *out to a new reference, or returns BAIL/ERROR. */
static int any_value(Buf b, int depth, int top, PyObject **out);

/* One KeyValue into the dict (a later key wins, as in a dict). */
static int key_values_into(PyObject *dict, Buf kv, int depth) {
    Buf key = {NULL, NULL}, value = {NULL, NULL};
    int has_value = 0;
    Field f;
    int r;
    while ((r = next_field(&kv, &f)) == OK) {
        if (f.field == 1 && f.wire == 2) {
            key = f.bytes;
        } else if (f.field == 2 && f.wire == 2) {
            if (has_value) return BAIL; /* merged by protobuf */
            value = f.bytes;
            has_value = 1;
        } else if (f.field == 1 || f.field == 2) {
            return BAIL;
        }
    }
    if (r == BAIL) return BAIL;
    Buf none = {(const uint8_t *)"", (const uint8_t *)""};
    PyObject *k = cached(keys, key.p ? key : none, 1);
    if (k == NULL && !PyErr_Occurred()) k = interned(key); /* a key over INTERN_MAX bytes */
    if (k == NULL) return PyErr_Occurred() ? ERROR : BAIL;
    PyObject *v;
    if (has_value) {
        r = any_value(value, depth + 1, 1, &v);
        if (r != OK) {
            Py_DECREF(k);
            return r;
        }
    } else {
        v = Py_NewRef(Py_None);
    }
    r = PyDict_SetItem(dict, k, v);
    Py_DECREF(k);
    Py_DECREF(v);
    return r == 0 ? OK : ERROR;
}

/* The KeyValue entries (field `number`) of a message -> a new dict in *out. */
static int attributes(Buf b, uint32_t number, int depth, PyObject **out) {
    if (depth > MAX_DEPTH) return BAIL;
    Py_ssize_t count = 0;
    Buf scan = b;
    Field f;
    int r;
    while ((r = next_field(&scan, &f)) == OK) count += f.field == number;
    /* Sized once: growing a dict key by key was 12% of the time. */
    PyObject *dict = _PyDict_NewPresized(count);
    if (dict == NULL) return ERROR;
    while ((r = next_field(&b, &f)) == OK) {
        if (f.field != number) continue;
        if (f.wire != 2) {
            r = BAIL;
            break;
        }
        r = key_values_into(dict, f.bytes, depth);
        if (r != OK) break;
    }
    if (r != 1) {
        Py_DECREF(dict);
        return r;
    }
    *out = dict;
    return OK;
}

static int any_value(Buf b, int depth, int top, PyObject **out) {
    if (depth > MAX_DEPTH) return BAIL;
    Field f, last;
    int seen = 0, r;
    while ((r = next_field(&b, &f)) == OK) {
        if (f.field < 1 || f.field > 8) continue;
        if (seen & (1 << f.field)) return BAIL; /* a oneof member twice: merge semantics */
        seen |= 1 << f.field;
        last = f;
    }
    if (r == BAIL) return BAIL;
    if (!seen) {
        *out = Py_NewRef(Py_None);
        return OK;
    }
    PyObject *v = NULL;
    switch (last.field) {
        case 1:
            if (last.wire != 2) return BAIL;
            /* Short values of attributes (not inside arrays) are shared, since every span
             * of an open trace is held in memory (otlp._pb_attributes interns them): through
             * the cache when they fit its INTERN_MAX bytes, else (up to INTERN_MAX
             * non-ASCII characters, which the cache does not hold) by interning. */
            if (top && last.bytes.end - last.bytes.p <= INTERN_MAX) {
                v = cached(values, last.bytes, 0); /* <= INTERN_MAX bytes: as many chars */
            } else if (top && last.bytes.end - last.bytes.p <= INTERN_MAX * 4) {
                v = text(last.bytes);
                if (v != NULL && PyUnicode_GET_LENGTH(v) <= INTERN_MAX) {
                    PyUnicode_InternInPlace(&v);
                }
            } else {
                v = text(last.bytes);
            }
            break;
        case 2:
            if (last.wire != 0) return BAIL;
            v = Py_NewRef(last.varint ? Py_True : Py_False);
            break;
        case 3:
            if (last.wire != 0) return BAIL;
            v = PyLong_FromLongLong((long long)last.varint);
            break;
        case 4: {
            double d;
            if (last.wire != 1) return BAIL;
            memcpy(&d, &last.varint, 8);
            v = PyFloat_FromDouble(d);
            break;
        }
        case 5: { /* ArrayValue { repeated AnyValue values = 1; } -> tuple */
            if (last.wire != 2) return BAIL;
            PyObject *items = PyList_New(0);
            if (items == NULL) return ERROR;
            Buf array = last.bytes;
            while ((r = next_field(&array, &f)) == OK) {
                if (f.field != 1) continue;
                PyObject *item;
                if (f.wire != 2) {
                    r = BAIL;
                    break;
                }
                r = any_value(f.bytes, depth + 1, 0, &item);
                if (r != OK) break;
                r = PyList_Append(items, item) == 0 ? OK : ERROR;
                Py_DECREF(item);
                if (r != OK) break;
            }
            if (r != 1) {
                Py_DECREF(items);
                return r;
            }
            v = PyList_AsTuple(items);
            Py_DECREF(items);
            break;
        }
        case 6: /* KeyValueList { repeated KeyValue values = 1; } -> dict */
            if (last.wire != 2) return BAIL;
            return attributes(last.bytes, 1, depth + 1, out);
        case 7:
            if (last.wire != 2) return BAIL;
            v = hex(last.bytes);
            break;
        default: /* 8: string_value_strindex, which means nothing in a trace */
            v = Py_NewRef(Py_None);
    }
    if (v == NULL) return PyErr_Occurred() ? ERROR : BAIL;
    *out = v;
    return OK;
}

/* -- attributes as JSON text -------------------------------------------------------------
 * The store keeps a span's attributes and resource as JSON text (`duckdb._json`: orjson's
 * output). Serializing a dict just built, still in the cache, costs a fraction of doing it
 * at encode time on a receiver thread (3.3 us of GIL a span under load, 40% of encoding).
 * The text is byte for byte what `_json` writes; where `_json` would take its careful path
 * (a null, NaN or infinity, or the word "null" anywhere) it is None and `_json` decides. */

typedef struct {
    char *data;
    size_t len, cap;
    int ascii;
} Json;

static Json out; /* reused: everything here runs with the GIL held */

static int put(const char *s, size_t n) {
    if (out.len + n > out.cap) {
        size_t cap = out.cap ? out.cap : 4096;
        while (cap < out.len + n) cap *= 2;
        char *data = PyMem_Realloc(out.data, cap);
        if (data == NULL) {
            PyErr_NoMemory();
            return ERROR;
        }
        out.data = data;
        out.cap = cap;
    }
    memcpy(out.data + out.len, s, n);
    out.len += n;
    return OK;
}

static int put_string(PyObject *s) {
    Py_ssize_t n;
    const char *p;
    PyObject *utf8 = NULL;
    if (PyUnicode_IS_ASCII(s)) {
        p = (const char *)PyUnicode_1BYTE_DATA(s);
        n = PyUnicode_GET_LENGTH(s);
    } else { /* not PyUnicode_AsUTF8AndSize: it would keep a UTF-8 copy in the string */
        utf8 = PyUnicode_AsUTF8String(s);
        if (utf8 == NULL) return ERROR;
        p = PyBytes_AS_STRING(utf8);
        n = PyBytes_GET_SIZE(utf8);
        out.ascii = 0;
    }
    int r = put("\"", 1);
    Py_ssize_t run = 0, i = 0; /* bytes [run, i) are copied as they are, in one go */
    while (i < n && r == OK) {
        /* Eight bytes at a time while none needs escaping (below 0x20, '"', '\\'). */
        for (uint64_t w; i + 8 <= n; i += 8) {
            memcpy(&w, p + i, 8);
            const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
            uint64_t quote = w ^ (ones * '"'), slash = w ^ (ones * '\\');
            if (((w - ones * 0x20) | (quote - ones) | (slash - ones)) & ~w & highs) break;
        }
        for (; i < n; i++) {
            unsigned char c = (unsigned char)p[i];
            if (c < 0x20 || c == '"' || c == '\\') break;
        }
        if (i == n) break;
        unsigned char c = (unsigned char)p[i];
        r = put(p + run, (size_t)(i - run));
        run = ++i;
        if (r != OK) break;
        char escape[6] = {'\\', 0, '0', '0', HEX[c >> 4], HEX[c & 15]};
        switch (c) {
            case '"': escape[1] = '"'; break;
            case '\\': escape[1] = '\\'; break;
            case '\b': escape[1] = 'b'; break;
            case '\t': escape[1] = 't'; break;
            case '\n': escape[1] = 'n'; break;
            case '\f': escape[1] = 'f'; break;
            case '\r': escape[1] = 'r'; break;
            default: escape[1] = 'u';
        }
        r = put(escape, escape[1] == 'u' ? 6 : 2);
    }
    if (r == OK) r = put(p + run, (size_t)(n - run));
    if (r == OK) r = put("\"", 1);
    Py_XDECREF(utf8);
    return r;
}

/* A finite double as orjson writes it: the shortest round-trip digits D (as repr finds
 * them), value = 0.D x 10^k; plain decimal for -5 < k <= 16, else d.ddde+x / d.ddde-x. */
static int put_double(double d) {
    if (!isfinite(d)) return BAIL;
    if (d == 0) return put(signbit(d) ? "-0.0" : "0.0", signbit(d) ? 4 : 3);
    char *repr = PyOS_double_to_string(fabs(d), 'r', 0, 0, NULL);
    if (repr == NULL) return ERROR;
    char digits[32];
    int n = 0, point = -1, k, e = 0;
    const char *c = repr;
    for (; *c && *c != 'e'; c++) {
        if (*c == '.') point = n;
        else if (n < 31) digits[n++] = *c;
    }
    if (*c == 'e') e = atoi(c + 1);
    PyMem_Free(repr);
    if (point < 0) point = n;
    int lead = 0; /* leading zeros of 0.000ddd */
    while (lead < n - 1 && digits[lead] == '0') lead++;
    k = point - lead + e;
    memmove(digits, digits + lead, (size_t)(n - lead));
    n -= lead;
    while (n > 1 && digits[n - 1] == '0') n--;
    char text[64];
    int len = 0;
    if (d < 0) text[len++] = '-';
    if (k > -5 && k <= 0) {
        text[len++] = '0';
        text[len++] = '.';
        for (int i = 0; i < -k; i++) text[len++] = '0';
        memcpy(text + len, digits, (size_t)n);
        len += n;
    } else if (k > 0 && k <= 16) {
        for (int i = 0; i < k; i++) text[len++] = i < n ? digits[i] : '0';
        text[len++] = '.';
        if (n > k) {
            memcpy(text + len, digits + k, (size_t)(n - k));
            len += n - k;
        } else {
            text[len++] = '0';
        }
    } else {
        text[len++] = digits[0];
        if (n > 1) {
            text[len++] = '.';
            memcpy(text + len, digits + 1, (size_t)(n - 1));
            len += n - 1;
        }
        len += snprintf(text + len, sizeof text - (size_t)len, "e%c%d", k > 1 ? '+' : '-',
                        abs(k - 1));
    }
    return put(text, (size_t)len);
}

static int put_value(PyObject *v, int depth) {
    if (depth > MAX_DEPTH) return BAIL;
    if (PyUnicode_CheckExact(v)) return put_string(v);
    if (v == Py_True) return put("true", 4);
    if (v == Py_False) return put("false", 5);
    if (PyLong_CheckExact(v)) {
        int overflow;
        long long i = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (overflow || (i == -1 && PyErr_Occurred())) return PyErr_Occurred() ? ERROR : BAIL;
        char text[24], *end = text + sizeof text, *c = end;
        unsigned long long u = i < 0 ? 0ULL - (unsigned long long)i : (unsigned long long)i;
        do *--c = (char)('0' + u % 10); while (u /= 10);
        if (i < 0) *--c = '-';
        return put(c, (size_t)(end - c));
    }
    if (PyFloat_CheckExact(v)) return put_double(PyFloat_AS_DOUBLE(v));
    if (PyTuple_CheckExact(v)) {
        int r = put("[", 1);
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(v) && r == OK; i++) {
            if (i) r = put(",", 1);
            if (r == OK) r = put_value(PyTuple_GET_ITEM(v, i), depth + 1);
        }
        return r == OK ? put("]", 1) : r;
    }
    if (PyDict_CheckExact(v)) {
        PyObject *key, *value;
        Py_ssize_t pos = 0;
        int r = put("{", 1), first = 1;
        while (r == OK && PyDict_Next(v, &pos, &key, &value)) {
            if (!PyUnicode_CheckExact(key)) return BAIL;
            if (!first) r = put(",", 1);
            first = 0;
            if (r == OK) r = put_string(key);
            if (r == OK) r = put(":", 1);
            if (r == OK) r = put_value(value, depth + 1);
        }
        return r == OK ? put("}", 1) : r;
    }
    return BAIL; /* None and anything the decoder does not build */
}

/* `_json(value)` for a value the decoder built: a new str, None (the careful path's case),
 * or NULL with an exception. */
static PyObject *json_text(PyObject *value) {
    out.len = 0;
    out.ascii = 1;
    int r = put_value(value, 0);
    if (r == ERROR) return NULL;
    if (r == BAIL || memmem(out.data, out.len, "null", 4) != NULL) Py_RETURN_NONE;
    if (!out.ascii) return PyUnicode_DecodeUTF8(out.data, (Py_ssize_t)out.len, "strict");
    PyObject *text = PyUnicode_New((Py_ssize_t)out.len, 127);
    if (text != NULL) memcpy(PyUnicode_1BYTE_DATA(text), out.data, out.len);
    return text;
}

static int all_zero(Buf s) {
    for (const uint8_t *p = s.p; p < s.end; p++) {
        if (*p) return 0;
    }
    return 1;
}

typedef struct {
    PyObject *record_type;
    PyObject *records;
    PyObject *resource;
    PyObject *resource_json;
    PyObject *scope;
    PyObject *empty;
} Ctx;

static int span(Ctx *ctx, Buf b) {
    Buf trace_id = {NULL, NULL}, span_id = {NULL, NULL}, parent = {NULL, NULL};
    Buf name = {NULL, NULL}, status = {NULL, NULL};
    uint64_t kind = 0, start = 0, end = 0;
    int has_status = 0;
    Buf all = b;
    Field f;
    int r;
    while ((r = next_field(&b, &f)) == OK) {
        switch (f.field) {
            case 1: if (f.wire != 2) return BAIL; trace_id = f.bytes; break;
            case 2: if (f.wire != 2) return BAIL; span_id = f.bytes; break;
            case 4: if (f.wire != 2) return BAIL; parent = f.bytes; break;
            case 5: if (f.wire != 2) return BAIL; name = f.bytes; break;
            case 6: if (f.wire != 0) return BAIL; kind = f.varint; break;
            case 7: if (f.wire != 1) return BAIL; start = f.varint; break;
            case 8: if (f.wire != 1) return BAIL; end = f.varint; break;
            case 15:
                if (f.wire != 2 || has_status) return BAIL;
                status = f.bytes;
                has_status = 1;
                break;
            default: break;
        }
    }
    if (r == BAIL) return BAIL;
    if (trace_id.end - trace_id.p != 16 || span_id.end - span_id.p != 8 || all_zero(trace_id) ||
        all_zero(span_id) || (parent.p && parent.end != parent.p && parent.end - parent.p != 8) ||
        start > INT64_MAX || end > INT64_MAX) {
        return BAIL; /* rejected with its reason by the Python path */
    }
    Buf message = {NULL, NULL};
    uint64_t code = 0;
    if (has_status) {
        while ((r = next_field(&status, &f)) == OK) {
            if (f.field == 2) {
                if (f.wire != 2) return BAIL;
                message = f.bytes;
            } else if (f.field == 3) {
                if (f.wire != 0) return BAIL;
                code = f.varint;
            }
        }
        if (r == BAIL) return BAIL;
    }
    /* Enums are int32 on the wire; a value outside OTLP's enum is read as unspecified. */
    int32_t kind32 = (int32_t)kind, code32 = (int32_t)code;
    PyObject *args[14] = {NULL};
    int result = ERROR;
    args[0] = hex(trace_id);
    args[1] = hex(span_id);
    args[2] = (parent.p && parent.end != parent.p && !all_zero(parent)) ? hex(parent)
                                                                         : Py_NewRef(ctx->empty);
    args[3] = name.p ? text(name) : Py_NewRef(ctx->empty);
    args[4] = PyLong_FromUnsignedLongLong(start);
    args[5] = PyLong_FromUnsignedLongLong(end);
    args[6] = PyLong_FromLong(code32 >= 0 && code32 < 3 ? code32 : 0);
    args[7] = message.p ? text(message) : Py_NewRef(ctx->empty);
    args[8] = PyLong_FromLong(kind32 >= 0 && kind32 < 6 ? kind32 : 0);
    for (int i = 0; i < 9; i++) {
        if (args[i] == NULL) {
            result = PyErr_Occurred() ? ERROR : BAIL;
            goto done;
        }
    }
    result = attributes(all, 9, 0, &args[9]);
    if (result != OK) goto done;
    args[10] = Py_NewRef(ctx->resource);
    args[11] = Py_NewRef(ctx->scope);
    args[12] = json_text(args[9]);
    if (args[12] == NULL) {
        result = ERROR;
        goto done;
    }
    args[13] = Py_NewRef(ctx->resource_json);
    PyObject *record = PyObject_Vectorcall(ctx->record_type, args, 14, NULL);
    if (record == NULL) {
        result = ERROR;
        goto done;
    }
    result = PyList_Append(ctx->records, record) == 0 ? OK : ERROR;
    Py_DECREF(record);
done:
    for (int i = 0; i < 14; i++) Py_XDECREF(args[i]);
    return result;
}

/* The one field `number` of a message that protobuf would merge if repeated: BAIL then. */
static int single(Buf b, uint32_t number, Buf *out, int *found) {
    Field f;
    int r;
    *found = 0;
    while ((r = next_field(&b, &f)) == OK) {
        if (f.field != number) continue;
        if (f.wire != 2 || *found) return BAIL;
        *out = f.bytes;
        *found = 1;
    }
    return r == 1 ? OK : BAIL;
}

/* fn(ctx, message) for each message in the repeated field `number`: OK, or what failed. */
static int each(Ctx *ctx, Buf b, uint32_t number, int (*fn)(Ctx *, Buf)) {
    Field f;
    int r;
    while ((r = next_field(&b, &f)) == OK) {
        if (f.field != number) continue;
        if (f.wire != 2) return BAIL;
        r = fn(ctx, f.bytes);
        if (r != OK) return r;
    }
    return r == 1 ? OK : r;
}

static int scope_spans(Ctx *ctx, Buf b) {
    Buf scope = {NULL, NULL}, name = {NULL, NULL};
    int found, r;
    Field f;
    if (single(b, 1, &scope, &found) != OK) return BAIL;
    if (found) {
        while ((r = next_field(&scope, &f)) == OK) {
            if (f.field == 1) {
                if (f.wire != 2) return BAIL;
                name = f.bytes;
            }
        }
        if (r == BAIL) return BAIL;
    }
    ctx->scope = name.p ? text(name) : Py_NewRef(ctx->empty);
    if (ctx->scope == NULL) return PyErr_Occurred() ? ERROR : BAIL;
    r = each(ctx, b, 2, span);
    Py_CLEAR(ctx->scope);
    return r;
}

static int resource_spans(Ctx *ctx, Buf b) {
    Buf resource = {NULL, NULL};
    int found, r;
    if (single(b, 1, &resource, &found) != OK) return BAIL;
    if (found) {
        r = attributes(resource, 1, 0, &ctx->resource);
        if (r != OK) return r;
    } else {
        ctx->resource = PyDict_New();
        if (ctx->resource == NULL) return ERROR;
    }
    ctx->resource_json = json_text(ctx->resource);
    r = ctx->resource_json != NULL ? each(ctx, b, 2, scope_spans) : ERROR;
    Py_CLEAR(ctx->resource_json);
    Py_CLEAR(ctx->resource);
    return r;
}

/* -- validation, without the GIL ----------------------------------------------------------
 * `decode` trusts that upb has parsed the body (well-formed protobuf, valid UTF-8 in every
 * string field). Parsing it with upb only to check that held the GIL ~0.8 us a span. This
 * walks the same schema (SCHEMA, tested against the protobuf descriptors) with the GIL
 * released and answers 1 only when sure upb accepts the body: every field known with its
 * wire type, every string strict UTF-8, nesting within MAX_DEPTH. Anything else (an unknown
 * field, a mismatched wire type, a group, a varint over 64 bits) is 0: upb decides. */

enum { K_VARINT = 1, K_FIXED64, K_FIXED32, K_BYTES, K_STRING, K_MESSAGE };
enum {
    M_REQUEST, M_RESOURCE_SPANS, M_RESOURCE, M_KEY_VALUE, M_ANY_VALUE, M_ARRAY_VALUE,
    M_KEY_VALUE_LIST, M_ENTITY_REF, M_SCOPE_SPANS, M_SCOPE, M_SPAN, M_EVENT, M_LINK, M_STATUS,
    M_COUNT
};
#define MAX_FIELD 16

typedef struct {
    uint8_t kind, message; /* message: for K_MESSAGE */
} Spec;

static const char *const MESSAGE_NAMES[M_COUNT] = {
    "opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest",
    "opentelemetry.proto.trace.v1.ResourceSpans",
    "opentelemetry.proto.resource.v1.Resource",
    "opentelemetry.proto.common.v1.KeyValue",
    "opentelemetry.proto.common.v1.AnyValue",
    "opentelemetry.proto.common.v1.ArrayValue",
    "opentelemetry.proto.common.v1.KeyValueList",
    "opentelemetry.proto.common.v1.EntityRef",
    "opentelemetry.proto.trace.v1.ScopeSpans",
    "opentelemetry.proto.common.v1.InstrumentationScope",
    "opentelemetry.proto.trace.v1.Span",
    "opentelemetry.proto.trace.v1.Span.Event",
    "opentelemetry.proto.trace.v1.Span.Link",
    "opentelemetry.proto.trace.v1.Status",
};

#define MSG(m) {K_MESSAGE, m}
#define VARINT {K_VARINT, 0}
#define FIXED64 {K_FIXED64, 0}
#define FIXED32 {K_FIXED32, 0}
#define BYTES {K_BYTES, 0}
#define STRING {K_STRING, 0}

static const Spec SCHEMA[M_COUNT][MAX_FIELD + 1] = {
    [M_REQUEST] = {[1] = MSG(M_RESOURCE_SPANS)},
    [M_RESOURCE_SPANS] = {[1] = MSG(M_RESOURCE), [2] = MSG(M_SCOPE_SPANS), [3] = STRING},
    [M_RESOURCE] = {[1] = MSG(M_KEY_VALUE), [2] = VARINT, [3] = MSG(M_ENTITY_REF)},
    [M_KEY_VALUE] = {[1] = STRING, [2] = MSG(M_ANY_VALUE), [3] = VARINT},
    [M_ANY_VALUE] = {[1] = STRING, [2] = VARINT, [3] = VARINT, [4] = FIXED64,
                     [5] = MSG(M_ARRAY_VALUE), [6] = MSG(M_KEY_VALUE_LIST), [7] = BYTES,
                     [8] = VARINT},
    [M_ARRAY_VALUE] = {[1] = MSG(M_ANY_VALUE)},
    [M_KEY_VALUE_LIST] = {[1] = MSG(M_KEY_VALUE)},
    [M_ENTITY_REF] = {[1] = STRING, [2] = STRING, [3] = STRING, [4] = STRING},
    [M_SCOPE_SPANS] = {[1] = MSG(M_SCOPE), [2] = MSG(M_SPAN), [3] = STRING},
    [M_SCOPE] = {[1] = STRING, [2] = STRING, [3] = MSG(M_KEY_VALUE), [4] = VARINT},
    [M_SPAN] = {[1] = BYTES, [2] = BYTES, [3] = STRING, [4] = BYTES, [5] = STRING,
                [6] = VARINT, [7] = FIXED64, [8] = FIXED64, [9] = MSG(M_KEY_VALUE),
                [10] = VARINT, [11] = MSG(M_EVENT), [12] = VARINT, [13] = MSG(M_LINK),
                [14] = VARINT, [15] = MSG(M_STATUS), [16] = FIXED32},
    [M_EVENT] = {[1] = FIXED64, [2] = STRING, [3] = MSG(M_KEY_VALUE), [4] = VARINT},
    [M_LINK] = {[1] = BYTES, [2] = BYTES, [3] = STRING, [4] = MSG(M_KEY_VALUE), [5] = VARINT,
                [6] = FIXED32},
    [M_STATUS] = {[2] = STRING, [3] = VARINT},
};

static const uint8_t WIRE_OF[] = {[K_VARINT] = 0, [K_FIXED64] = 1, [K_FIXED32] = 5,
                                  [K_BYTES] = 2, [K_STRING] = 2, [K_MESSAGE] = 2};

/* Strict UTF-8 (RFC 3629: no overlong forms, no surrogates, at most U+10FFFF). */
static int utf8(Buf s) {
    const uint8_t *p = s.p, *end = s.end;
    while (p < end) {
        uint64_t word;
        if (end - p >= 8 && (memcpy(&word, p, 8), !(word & 0x8080808080808080ULL))) {
            p += 8; /* eight ASCII bytes */
            continue;
        }
        if (*p < 0x80) {
            p++;
            continue;
        }
        uint8_t c = *p;
        int n;
        uint8_t lo = 0x80, hi = 0xbf; /* the second byte's range */
        if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            if (c == 0xe0) lo = 0xa0;
            if (c == 0xed) hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            if (c == 0xf0) lo = 0x90;
            if (c == 0xf4) hi = 0x8f;
        } else {
            return 0;
        }
        if (end - p <= n || p[1] < lo || p[1] > hi) return 0;
        for (int i = 2; i <= n; i++) {
            if ((p[i] & 0xc0) != 0x80) return 0;
        }
        p += n + 1;
    }
    return 1;
}

/* A varint that fits 64 bits (a 10th byte of 0 or 1: negative ints take all ten), read
 * as `read_varint` reads it; 0 for anything else. */
static int varint64(Buf *b, uint64_t *out) {
    const uint8_t *start = b->p;
    if (read_varint(b, out) != OK) return 0;
    return b->p - start < 10 || b->p[-1] <= 1;
}

static int valid(Buf b, int message, int depth) {
    if (depth > MAX_DEPTH) return 0;
    while (b.p < b.end) {
        uint64_t tag, value;
        if (!varint64(&b, &tag)) return 0;
        uint64_t number = tag >> 3, wire = tag & 7;
        if (number < 1 || number > MAX_FIELD) return 0;
        Spec spec = SCHEMA[message][number];
        if (spec.kind == 0 || WIRE_OF[spec.kind] != wire) return 0;
        switch (spec.kind) {
            case K_VARINT:
                if (!varint64(&b, &value)) return 0;
                break;
            case K_FIXED64:
                if (b.end - b.p < 8) return 0;
                b.p += 8;
                break;
            case K_FIXED32:
                if (b.end - b.p < 4) return 0;
                b.p += 4;
                break;
            default: { /* length-delimited */
                if (!varint64(&b, &value) || value > (uint64_t)(b.end - b.p)) return 0;
                Buf inner = {b.p, b.p + value};
                b.p += value;
                if (spec.kind == K_STRING && !utf8(inner)) return 0;
                if (spec.kind == K_MESSAGE && !valid(inner, spec.message, depth + 1)) return 0;
            }
        }
    }
    return 1;
}

PyDoc_STRVAR(valid_doc,
             "valid(data) -> bool\n\n"
             "True when upb surely parses data as an ExportTraceServiceRequest (every field\n"
             "known, strings valid UTF-8); False when only upb can tell. Runs without the GIL.");

static PyObject *valid_request(PyObject *self, PyObject *data) {
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) != 0) return NULL;
    Buf b = {(const uint8_t *)view.buf, (const uint8_t *)view.buf + view.len};
    int ok;
    Py_BEGIN_ALLOW_THREADS
    ok = valid(b, M_REQUEST, 0);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    return PyBool_FromLong(ok);
}

PyDoc_STRVAR(schema_doc,
             "schema() -> dict\n\n"
             "The fields `valid` knows: {message name: {number: (kind, message name or None)}},\n"
             "kind one of varint, fixed64, fixed32, bytes, string, message (for the tests).");

static PyObject *schema(PyObject *self, PyObject *unused) {
    static const char *const KINDS[] = {NULL, "varint", "fixed64", "fixed32",
                                        "bytes", "string", "message"};
    PyObject *all = PyDict_New();
    for (int m = 0; all != NULL && m < M_COUNT; m++) {
        PyObject *fields = PyDict_New();
        if (fields == NULL || PyDict_SetItemString(all, MESSAGE_NAMES[m], fields) != 0) {
            Py_XDECREF(fields);
            Py_CLEAR(all);
            break;
        }
        Py_DECREF(fields);
        for (int n = 1; n <= MAX_FIELD; n++) {
            Spec spec = SCHEMA[m][n];
            if (spec.kind == 0) continue;
            PyObject *key = PyLong_FromLong(n);
            PyObject *value = spec.kind == K_MESSAGE
                                  ? Py_BuildValue("(ss)", KINDS[spec.kind],
                                                  MESSAGE_NAMES[spec.message])
                                  : Py_BuildValue("(sO)", KINDS[spec.kind], Py_None);
            int r = (key && value) ? PyDict_SetItem(fields, key, value) : -1;
            Py_XDECREF(key);
            Py_XDECREF(value);
            if (r != 0) {
                Py_CLEAR(all);
                break;
            }
        }
    }
    return all;
}

PyDoc_STRVAR(decode_doc,
             "decode(data, record_type) -> list | None\n\n"
             "The spans of a well-formed ExportTraceServiceRequest as record_type(trace_id,\n"
             "span_id, parent_span_id, name, start_ns, end_ns, status_code, status_message,\n"
             "kind, attributes, resource, scope, attributes_json, resource_json), or None\n"
             "when the body needs the Python decoder (invalid ids, merged fields, deep\n"
             "nesting). The two JSON texts are `_json`'s, or None where it takes its careful\n"
             "path.");

static PyObject *decode(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "decode(data, record_type)");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) != 0) return NULL;
    Ctx ctx = {args[1], PyList_New(0), NULL, NULL, NULL, PyUnicode_FromStringAndSize("", 0)};
    int r = ERROR;
    if (ctx.records != NULL && ctx.empty != NULL) {
        Buf b = {(const uint8_t *)view.buf, (const uint8_t *)view.buf + view.len};
        r = each(&ctx, b, 1, resource_spans);
    }
    PyBuffer_Release(&view);
    Py_XDECREF(ctx.empty);
    if (r == OK) return ctx.records;
    Py_XDECREF(ctx.records);
    if (r == ERROR || PyErr_Occurred()) return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"decode", (PyCFunction)(void (*)(void))decode, METH_FASTCALL, decode_doc},
    {"valid", valid_request, METH_O, valid_doc},
    {"schema", schema, METH_NOARGS, schema_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_wire",
    "OTLP trace request wire format -> SpanRecords (the fast path of otlp.decode_protobuf).",
    -1, methods,
};

PyMODINIT_FUNC PyInit__wire(void) {
    const uint16_t probe = 1;
    if (*(const uint8_t *)&probe != 1) {
        PyErr_SetString(PyExc_ImportError, "_wire reads fixed64 fields as little-endian");
        return NULL;
    }
    return PyModule_Create(&module);
}
