/* lossctl._fastcsv: a parser for the CSV files batch scoring reads most, lines of plain numbers.
 *
 * parse(buffer, delimiter, kinds, outputs) -> rows, or -1 (handed back), or -2 (more lines than room)
 *
 * Parses the lines of `buffer` (data lines only, no header; the last line may lack its line end).  The
 * bytes kinds[i] say what to do with field i of every line: 0 skip it, 1 read a float64, 2 read an int64.
 * The values of the read fields go to `outputs`, one writable buffer per read field in field order, each
 * with room for every line.  The GIL is released while parsing.
 *
 * Only a strict subset of CSV is taken: every line has exactly len(kinds) fields, ends with "\n" or
 * "\r\n", read fields are  -?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?  (int64: -?[0-9]{1,18}), skipped fields
 * hold no quote.  Anything else (a quote, a blank line, a missing value, "nan", "+1", ".5", more than 19
 * significant digits, a value that rounds to a subnormal or an infinity, a line of other width) returns -1,
 * and the caller parses the buffer with pyarrow instead: pyarrow stays the one authority for what is valid
 * and what every other spelling means, and this parser only has to agree with it where it answers.
 *
 * Every float64 is the correctly rounded (nearest, ties to even) double of the decimal w * 10^q, as
 * pyarrow's and Python's own parsers give it: exactly, or -1.  w (up to 19 digits, normalised to 64 bits)
 * times a 128-bit truncation T of 5^q (_pow5.h) gives the 128 high bits r of the product.  Both truncations
 * are below one unit, so the exact value lies in [r, r + 2) units; r keeps 53 bits and 73-75 bits below
 * them.  The rounding is decided unless those low bits lie within 2 units below the half-way point: then
 * (a decimal exactly half-way between two doubles, such as 9007199254740993, or one in ~2^72 others) one
 * IEEE multiplication or division rounds it where w <= 2^53 and |q| <= 22 (both exact doubles: Clinger's
 * fast path), the integer-to-double conversion where q = 0 (one 18-digit integer in 16 is a tie), and -1
 * otherwise.  Most of the time the high half of T alone decides (see rounded).  This is
 * the approach of Eisel and Lemire's algorithm ("Number Parsing at a Gigabyte per Second", 2021), with
 * every undecided case handed back.  (Clinger's path first for small w was slower on real files: ~half of
 * a file's numbers take each path, and the branch between them is mispredicted half the time.)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "_pow5.h"

#define FASTCSV_VERSION 2  /* lossctl.io.fastcsv ignores a build of another version (a stale in-place build) */

typedef unsigned __int128 u128;

static inline uint64_t read8(const char *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;  /* little-endian: p[0] in the lowest byte (the module is only built for such machines) */
}

/* the number written by 8 ASCII digits (pairs, then quadruples, then the eight, combined by multiplications) */
static inline uint64_t value8(uint64_t v) {
    v -= 0x3030303030303030ULL;
    v = v * 10 + (v >> 8);
    return (((v & 0x000000FF000000FFULL) * 0x000F424000000064ULL)
            + (((v >> 16) & 0x000000FF000000FFULL) * 0x0000271000000001ULL)) >> 32;
}

/* the number of ASCII digits the 8 bytes start with (8: all) */
static inline int leading_digits(uint64_t v) {
    /* 0x33 in each byte that is a digit; a carry out of a non-ASCII byte can only spoil the bytes after it */
    const uint64_t t = ((v & 0xF0F0F0F0F0F0F0F0ULL) | (((v + 0x0606060606060606ULL) & 0xF0F0F0F0F0F0F0F0ULL) >> 4))
                       ^ 0x3333333333333333ULL;
    return t ? __builtin_ctzll(t) >> 3 : 8;
}

static const uint64_t POW10U[] = {1ULL, 10ULL, 100ULL, 1000ULL, 10000ULL, 100000ULL, 1000000ULL, 10000000ULL,
                                  100000000ULL};

/* *w = *w * 10^k + the k digits at p (8 at a time); returns the end of the digits */
static inline const char *digits(const char *p, const char *end, uint64_t *w) {
    uint64_t x = *w;
    while (end - p >= 8) {
        const uint64_t v = read8(p);
        const int k = leading_digits(v);
        if (k == 8) {
            x = x * 100000000ULL + value8(v);
            p += 8;
            continue;
        }
        if (k) { /* the k digits moved to the top bytes, '0's below them */
            x = x * POW10U[k] + value8((v << (8 * (8 - k))) | (0x3030303030303030ULL >> (8 * k)));
            p += k;
        }
        *w = x;
        return p;
    }
    for (; p < end && (unsigned)(*p - '0') < 10; p++) x = x * 10 + (unsigned)(*p - '0');
    *w = x;
    return p;
}

static const double POW10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                               1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* w * 10^q correctly rounded into *out (w != 0, up to 19 digits, POW5_MIN_Q <= q <= POW5_MAX_Q); -1 where
 * undecided or not a normal double.  The whole computation, with the low half of the table's T: */
static __attribute__((noinline)) int rounded_full(uint64_t w, long q, double *out) {
    const int lz = __builtin_clzll(w);
    const uint64_t wn = w << lz;
    const int i = (int)(q - POW5_MIN_Q);
    /* r = floor(wn * T / 2^64), T = POW5[i].hi * 2^64 + POW5[i].lo: value = r * 2^(64 + b + q - lz), to 2 units */
    const u128 r = (u128)wn * POW5[i].hi + (((u128)wn * POW5[i].lo) >> 64);
    const uint64_t hi = (uint64_t)(r >> 64), lo = (uint64_t)r;
    const int sh = (hi >> 63) ? 11 : 10; /* r has 128 or 127 bits: keep the top 53 */
    uint64_t m = hi >> sh;
    const uint64_t rest = hi & ((1ULL << sh) - 1), half = 1ULL << (sh - 1);
    /* the bits below m are rest * 2^64 + lo, the exact value's in [that, that + 2): undecided within 2 of half */
    if ((rest == half && lo == 0) || (rest == half - 1 && lo >= UINT64_MAX - 1)) {
        /* (a decimal exactly half-way between two doubles, such as 9007199254740993, or one in ~2^72 others)
         * where w and 10^|q| are exact doubles, one IEEE operation rounds correctly (Clinger's fast path) */
        if (w <= (1ULL << 53) && q >= -22 && q <= 22) {
            const double d = (double)w;
            *out = q < 0 ? d / POW10[-q] : d * POW10[q];
            return 0;
        }
        if (q == 0) { /* an integer (1 in 16 of 18-digit ones is a tie): the conversion rounds it correctly */
            *out = (double)w;
            return 0;
        }
        return -1;
    }
    if (rest > half || (rest == half && lo != 0)) m++;
    long e = (long)sh + 128 - lz + POW5[i].b + q; /* value = m * 2^e */
    if (m == (1ULL << 53)) {
        m >>= 1;
        e++;
    }
    if (e < -1074 || e > 971) return -1; /* subnormal or beyond the largest double */
    const uint64_t bits = ((uint64_t)(e + 52 + 1023) << 52) | (m & ((1ULL << 52) - 1));
    memcpy(out, &bits, 8);
    return 0;
}

static inline int rounded(uint64_t w, long q, double *out) {
    if (q < POW5_MIN_Q || q > POW5_MAX_Q) return -1;
    /* The low half of T adds less than 2^64 units to r: it can only change the rounding where the bits below
     * the 53 kept are within 2^64 + 2 units below the half-way point (rest in [half - 2, half], 3 in 1024);
     * elsewhere one product decides, and no tie is possible. */
    const int lz = __builtin_clzll(w);
    const uint64_t wn = w << lz;
    const int i = (int)(q - POW5_MIN_Q);
    const u128 r = (u128)wn * POW5[i].hi;
    const uint64_t hi = (uint64_t)(r >> 64);
    const int top = (int)(hi >> 63), sh = 10 + top;
    const uint64_t rest = hi & ((1ULL << sh) - 1), half = 1ULL << (sh - 1);
    if (rest + 2 - half <= 2) return rounded_full(w, q, out);
    uint64_t m = (hi >> sh) + (rest > half);
    const uint64_t carry = m >> 53; /* rounded up to 2^53 */
    m >>= carry;
    const long e = (long)sh + 128 - lz + POW5[i].b + q + (long)carry; /* value = m * 2^e */
    if ((unsigned long)(e + 1074) > 1074 + 971) return -1; /* subnormal or beyond the largest double */
    const uint64_t bits = ((uint64_t)(e + 52 + 1023) << 52) | (m & ((1ULL << 52) - 1));
    memcpy(out, &bits, 8);
    return 0;
}

/* 1 (and p moved past it) if a minus sign is at p */
static inline int minus(const char **pp, const char *end) {
    if (*pp < end && **pp == '-') { /* (a branch: faster here than adding the comparison's result) */
        ++*pp;
        return 1;
    }
    return 0;
}

/* After a field: past the delimiter (not the last field) or the line end ("\n", "\r\n", or the end of the
 * buffer for the last line); -1 if something else follows. */
static inline int field_end(const char **pp, const char *end, char delim, int last) {
    const char *p = *pp;
    if (!last) {
        if (p >= end || *p != delim) return -1;
        *pp = p + 1;
        return 0;
    }
    if (p < end) {
        if (*p == '\r' && end - p >= 2 && p[1] == '\n') p++;
        if (*p != '\n') return -1;
        *pp = p + 1;
    }
    return 0;
}

/* (always inlined: called through a pointer to p, a call would keep p in memory, on the critical path from
 * one number to the next; ~3% on the benchmark's files) */
static inline __attribute__((always_inline)) int parse_f64(const char **pp, const char *end, double *out) {
    const char *p = *pp;
    const int neg = minus(&p, end);
    const char *s = p;
    uint64_t w = 0;
    if (end - p >= 2 && (unsigned)(p[0] - '0') < 10 && p[1] == '.') { /* one digit before the point: most */
        w = (unsigned)(p[0] - '0');                                    /* predictions and targets */
        p++;
    } else {
        p = digits(p, end, &w);
    }
    long ndig = p - s, frac = 0, e = 0;
    if (ndig == 0) return -1;
    if (p < end && *p == '.') {
        const char *f = ++p;
        p = digits(p, end, &w);
        frac = p - f;
        if (frac == 0) return -1;
        ndig += frac;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        int eneg = 0;
        if (p < end && (*p == '-' || *p == '+')) eneg = *p++ == '-';
        const char *f = p;
        for (; p < end && (unsigned)(*p - '0') < 10; p++)
            if (e < 100000) e = e * 10 + (*p - '0'); /* beyond any double either way */
        if (p == f) return -1;
        if (eneg) e = -e;
    }
    if (ndig > 19) { /* too many digits for w, unless leading zeros (which left w at 0) */
        long zeros = 0;
        for (const char *c = s; c < p && (*c == '0' || *c == '.'); c++) zeros += *c == '0';
        if (ndig - zeros > 19) return -1;
    }
    double d;
    if (w == 0)
        d = 0.0;
    else if (rounded(w, e - frac, &d) < 0)
        return -1;
    *out = neg ? -d : d;
    *pp = p;
    return 0;
}

static inline __attribute__((always_inline)) int parse_i64(const char **pp, const char *end, int64_t *out) {
    const char *p = *pp;
    const int neg = minus(&p, end);
    const char *s = p;
    int64_t v = 0;
    for (; p < end && (unsigned)(*p - '0') < 10; p++) {
        if (p - s == 18) return -1; /* a 19th digit: might not fit */
        v = v * 10 + (*p - '0');
    }
    if (p == s) return -1;
    *out = neg ? -v : v;
    *pp = p;
    return 0;
}

static Py_ssize_t parse_lines(const char *p, const char *end, char delim, const char *kinds, Py_ssize_t nf,
                              char **dst, Py_ssize_t cap) {
    Py_ssize_t rows = 0;
    while (p < end) {
        if (rows >= cap) return -2; /* no room: the caller tries again with more */
        int j = 0;
        for (Py_ssize_t f = 0; f < nf; f++) {
            const char k = kinds[f];
            if (k == 1) {
                if (parse_f64(&p, end, (double *)dst[j++] + rows) < 0) return -1;
            } else if (k == 2) {
                if (parse_i64(&p, end, (int64_t *)dst[j++] + rows) < 0) return -1;
            } else {
                while (p < end && *p != delim && *p != '\n' && *p != '\r' && *p != '"') p++;
                if (p < end && *p == '"') return -1;
            }
            if (field_end(&p, end, delim, f + 1 == nf) < 0) return -1;
        }
        rows++;
    }
    return rows;
}

static PyObject *parse(PyObject *self, PyObject *args) {
    Py_buffer buf;
    int delim;
    const char *kinds;
    Py_ssize_t nf;
    PyObject *outs;
    if (!PyArg_ParseTuple(args, "y*iy#O", &buf, &delim, &kinds, &nf, &outs)) return NULL;
    PyObject *seq = PySequence_Fast(outs, "outputs must be a sequence");
    if (seq == NULL) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    const Py_ssize_t no = PySequence_Fast_GET_SIZE(seq);
    Py_ssize_t nread = 0, got = 0, cap = PY_SSIZE_T_MAX, rows = -1;
    for (Py_ssize_t f = 0; f < nf; f++) nread += kinds[f] == 1 || kinds[f] == 2;
    Py_buffer *ob = PyMem_Calloc(no ? no : 1, sizeof(Py_buffer));
    char **dst = PyMem_Calloc(no ? no : 1, sizeof(char *));
    if (ob == NULL || dst == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (no != nread || nf == 0 || delim < 0 || delim > 127) {
        PyErr_SetString(PyExc_ValueError, "one output per read field, a one-byte delimiter");
        goto done;
    }
    for (; got < no; got++) {
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(seq, got), &ob[got], PyBUF_WRITABLE) < 0) goto done;
        dst[got] = ob[got].buf;
        if (ob[got].len / 8 < cap) cap = ob[got].len / 8;
    }
    Py_BEGIN_ALLOW_THREADS
    rows = parse_lines(buf.buf, (const char *)buf.buf + buf.len, (char)delim, kinds, nf, dst, cap);
    Py_END_ALLOW_THREADS
done:
    for (Py_ssize_t j = 0; j < got; j++) PyBuffer_Release(&ob[j]);
    PyMem_Free(ob);
    PyMem_Free(dst);
    Py_DECREF(seq);
    PyBuffer_Release(&buf);
    if (PyErr_Occurred()) return NULL;
    return PyLong_FromSsize_t(rows);
}

/* infer(buffer, delimiter, nfields) -> bytes (per field: 1 float64, 2 int64), or None
 *
 * The types pyarrow infers for the lines of `buffer` (a file's first block, header removed) where every field
 * is a number this parser takes: int64 where every value is written as an integer (of at most 18 digits:
 * longer ones are left to pyarrow, whose int64 reaches 19), float64 otherwise.  None for anything else (the
 * caller asks pyarrow): a quote, an empty field, text, a blank line, a line of other width. */
static PyObject *infer(PyObject *self, PyObject *args) {
    Py_buffer buf;
    int delim;
    Py_ssize_t nf;
    if (!PyArg_ParseTuple(args, "y*in", &buf, &delim, &nf)) return NULL;
    if (nf <= 0 || delim < 0 || delim > 127) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_ValueError, "at least one field, a one-byte delimiter");
        return NULL;
    }
    char *kind = PyMem_Malloc(nf);
    if (kind == NULL) {
        PyBuffer_Release(&buf);
        return PyErr_NoMemory();
    }
    memset(kind, 2, nf);
    const char *p = buf.buf, *end = p + buf.len;
    Py_ssize_t rows = 0;
    int ok = 1;
    Py_BEGIN_ALLOW_THREADS
    while (ok && p < end) {
        for (Py_ssize_t f = 0; f < nf; f++) {
            const char *s = p;
            double d;
            int64_t i;
            /* an integer of up to 18 digits needs no rounding (an 18-digit one is often a tie between two
             * doubles, which parse_f64 hands back) */
            if (parse_i64(&p, end, &i) < 0 || (p < end && *p != (char)delim && *p != '\n' && *p != '\r')) {
                p = s;
                if (parse_f64(&p, end, &d) < 0) {
                    ok = 0;
                    break;
                }
            }
            if (kind[f] == 2) {
                const char *c = s;
                for (; c < p && *c != '.' && *c != 'e' && *c != 'E'; c++) ;
                if (c < p)
                    kind[f] = 1;
                else if (p - s - (*s == '-') > 18) { /* a long integer: pyarrow's to type */
                    ok = 0;
                    break;
                }
            }
            if (field_end(&p, end, (char)delim, f + 1 == nf) < 0) {
                ok = 0;
                break;
            }
        }
        if (!ok) break;
        rows++;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&buf);
    PyObject *out = ok && rows > 0 ? PyBytes_FromStringAndSize(kind, nf) : (Py_INCREF(Py_None), Py_None);
    PyMem_Free(kind);
    return out;
}

static PyMethodDef methods[] = {
    {"parse", parse, METH_VARARGS, "parse(buffer, delimiter, kinds, outputs) -> rows, -1 or -2: see the module's source"},
    {"infer", infer, METH_VARARGS, "infer(buffer, delimiter, nfields) -> bytes or None: see the module's source"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastcsv", "Plain numeric CSV lines to float64 / int64.",
                                    -1, methods};

PyMODINIT_FUNC PyInit__fastcsv(void) {
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "VERSION", FASTCSV_VERSION) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
