/* The Proxy-Wasm serialized-pairs codec, the host's hottest pure-data work (a request reads
 * its header maps as pairs at least once per callback that looks at them).
 *
 * A CPython extension (stable ABI, Python >= 3.10), not a cffi module: its inputs and outputs
 * are Python lists of bytes, which cffi cannot take. Each function does exactly what the
 * Python code it replaced did (see _pairs.py, which holds the format's description, the error
 * messages and the general, slow cases):
 *
 *   serialize(flat)            flat [k0, v0, k1, v1, ...] (bytes) -> the serialized map
 *   flatten(items, names)      the common input of a proxy -> flat list, or None when any
 *                              item is not the common case (the caller's general loop then
 *                              does all of it, so both paths give the same result and errors)
 *   nbytes(flat)               the bytes of every name and value (the header-map bound
 *                              counts these), without joining them
 *   parse(data, max_pairs, max_bytes)
 *                              serialized map -> flat list, or an int error code (1..5) that
 *                              _pairs.parse_pairs turns into its PairsError
 *
 * Nothing here calls back into Python code while it walks a list (no __hash__, __eq__ or
 * __del__ of user objects runs: keys are looked up only when they are exact str, and the only
 * objects made during a walk are bytes, which never start a collection), so a list cannot
 * change under it.
 */
#define Py_LIMITED_API 0x030A0000
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#ifndef PWVM_BUILD_KEY
#define PWVM_BUILD_KEY ""
#endif

static void put_u32(char *p, uint32_t v) { /* little endian, whatever the host's order */
  p[0] = (char)(v & 0xff);
  p[1] = (char)((v >> 8) & 0xff);
  p[2] = (char)((v >> 16) & 0xff);
  p[3] = (char)((v >> 24) & 0xff);
}

static uint32_t get_u32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static PyObject *pairs_serialize(PyObject *self, PyObject *flat) {
  (void)self;
  if (!PyList_Check(flat)) {
    PyErr_SetString(PyExc_TypeError, "serialize() takes a list of bytes");
    return NULL;
  }
  Py_ssize_t n = PyList_Size(flat);
  if (n & 1) {
    PyErr_SetString(PyExc_ValueError, "serialize() takes an even number of items (name, value, ...)");
    return NULL;
  }
  if ((uint64_t)n > 0xffffffffu) {
    PyErr_SetString(PyExc_OverflowError, "too many items to serialize");
    return NULL;
  }
  uint64_t total = 4 + 4 * (uint64_t)n;
  for (Py_ssize_t i = 0; i < n; i++) {
    PyObject *item = PyList_GetItem(flat, i); /* borrowed */
    if (!PyBytes_Check(item)) {
      PyErr_Format(PyExc_TypeError, "item %zd of the map is not bytes", i);
      return NULL;
    }
    Py_ssize_t len = PyBytes_Size(item);
    if ((uint64_t)len > 0xffffffffu) {
      PyErr_SetString(PyExc_OverflowError, "a map item of 4 GiB or more cannot be serialized");
      return NULL;
    }
    total += (uint64_t)len + 1;
  }
  if (n == 0)
    total = 4; /* the empty map: a zero count and nothing else */
  if (total > (uint64_t)PY_SSIZE_T_MAX) {
    PyErr_SetString(PyExc_OverflowError, "the serialized map would be too large");
    return NULL;
  }
  PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)total);
  if (out == NULL)
    return NULL;
  char *p = PyBytes_AsString(out);
  put_u32(p, (uint32_t)(n >> 1));
  char *lens = p + 4, *data = p + 4 + 4 * n;
  for (Py_ssize_t i = 0; i < n; i++) {
    PyObject *item = PyList_GetItem(flat, i);
    Py_ssize_t len = PyBytes_Size(item);
    put_u32(lens + 4 * i, (uint32_t)len);
    memcpy(data, PyBytes_AsString(item), (size_t)len);
    data += len;
    *data++ = '\0'; /* every name and value is followed by a NUL */
  }
  return out;
}

static PyObject *pairs_nbytes(PyObject *self, PyObject *flat) {
  (void)self;
  if (!PyList_Check(flat)) {
    PyErr_SetString(PyExc_TypeError, "nbytes() takes a list of bytes");
    return NULL;
  }
  Py_ssize_t n = PyList_Size(flat), total = 0;
  for (Py_ssize_t i = 0; i < n; i++) {
    PyObject *item = PyList_GetItem(flat, i);
    if (!PyBytes_Check(item)) {
      PyErr_Format(PyExc_TypeError, "item %zd of the map is not bytes", i);
      return NULL;
    }
    total += PyBytes_Size(item); /* a list of bytes objects cannot hold PY_SSIZE_T_MAX bytes */
  }
  return PyLong_FromSsize_t(total);
}

/* One (name, value) field in the common case, stored at out[i], out[i + 1] (a list made with
 * exactly the room for every field): 1 done, 0 not the common case (nothing stored), -1 error. */
static int put_field(PyObject *out, Py_ssize_t i, PyObject *names, PyObject *key, PyObject *value) {
  if (!PyUnicode_CheckExact(key) || !PyUnicode_CheckExact(value))
    return 0;
  PyObject *name = PyDict_GetItemWithError(names, key); /* borrowed; str keys: no user code runs */
  if (name == NULL)
    return PyErr_Occurred() ? -1 : 0;
  PyObject *encoded = PyUnicode_AsUTF8String(value);
  if (encoded == NULL) { /* a lone surrogate: the general loop's surrogateescape handles it */
    if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError))
      return -1;
    PyErr_Clear();
    return 0;
  }
  Py_INCREF(name);
  PyList_SetItem(out, i, name); /* both steal their reference */
  PyList_SetItem(out, i + 1, encoded);
  return 1;
}

static PyObject *pairs_flatten(PyObject *self, PyObject *args) {
  (void)self;
  PyObject *items, *names;
  if (!PyArg_ParseTuple(args, "OO!:flatten", &items, &PyDict_Type, &names))
    return NULL;
  int is_list = PyList_CheckExact(items), is_dict = PyDict_CheckExact(items);
  if (!is_list && !PyTuple_CheckExact(items) && !is_dict)
    Py_RETURN_NONE;
  Py_ssize_t n = is_dict ? PyDict_Size(items) : is_list ? PyList_Size(items) : PyTuple_Size(items);
  /* The walk below runs no Python code: the only allocations are bytes objects, which the cycle
   * collector does not track (so none starts a collection), and names are looked up by exact str.
   * `items` cannot change under it. */
  PyObject *out = PyList_New(2 * n); /* empty slots are NULL: a list dropped half filled is fine */
  if (out == NULL)
    return NULL;
  int rc = 1;
  if (is_dict) {
    Py_ssize_t pos = 0, i = 0;
    PyObject *k, *v;
    while (rc == 1 && PyDict_Next(items, &pos, &k, &v))
      rc = put_field(out, 2 * i++, names, k, v);
  } else {
    for (Py_ssize_t i = 0; rc == 1 && i < n; i++) {
      PyObject *pair = is_list ? PyList_GetItem(items, i) : PyTuple_GetItem(items, i);
      if (!PyTuple_CheckExact(pair) || PyTuple_Size(pair) != 2) {
        rc = 0;
        break;
      }
      rc = put_field(out, 2 * i, names, PyTuple_GetItem(pair, 0), PyTuple_GetItem(pair, 1));
    }
  }
  if (rc == 1)
    return out;
  Py_DECREF(out);
  if (rc < 0)
    return NULL;
  Py_RETURN_NONE;
}

static PyObject *pairs_parse(PyObject *self, PyObject *args) {
  (void)self;
  const char *buf;
  Py_ssize_t len, max_pairs, max_bytes;
  /* y#: bytes (the caller converts other bytes-like objects; Py_buffer is not in the 3.10 stable ABI) */
  if (!PyArg_ParseTuple(args, "y#nn:parse", &buf, &len, &max_pairs, &max_bytes))
    return NULL;
  const unsigned char *d = (const unsigned char *)buf;
  uint64_t size = (uint64_t)len;
  PyObject *result = NULL;
  long code = 0;
  if (size == 0 || (size == 1 && d[0] == 0)) {
    result = PyList_New(0);
    goto done;
  }
  if (max_bytes >= 0 && size > (uint64_t)max_bytes) {
    code = 1; /* oversized */
    goto done;
  }
  if (size < 4) {
    code = 2;
    goto done;
  }
  uint64_t n = get_u32(d);
  if (max_pairs >= 0 && n > (uint64_t)max_pairs) {
    code = 3; /* oversized */
    goto done;
  }
  uint64_t off = 4 + 8 * n;
  if (off > size) {
    code = 4;
    goto done;
  }
  result = PyList_New((Py_ssize_t)(2 * n));
  if (result == NULL)
    goto done;
  for (uint64_t i = 0; i < 2 * n; i++) {
    uint64_t end = off + get_u32(d + 4 + 4 * i);
    if (end >= size) { /* the entry and the NUL after it must fit */
      Py_CLEAR(result);
      code = 5;
      goto done;
    }
    PyObject *item = PyBytes_FromStringAndSize((const char *)d + off, (Py_ssize_t)(end - off));
    if (item == NULL) {
      Py_CLEAR(result);
      goto done;
    }
    PyList_SetItem(result, (Py_ssize_t)i, item); /* steals the reference */
    off = end + 1;
  }
done:
  if (code)
    return PyLong_FromLong(code);
  return result;
}

static PyMethodDef methods[] = {
    {"serialize", pairs_serialize, METH_O, "serialize(flat: list[bytes]) -> bytes"},
    {"nbytes", pairs_nbytes, METH_O, "nbytes(flat: list[bytes]) -> int"},
    {"flatten", pairs_flatten, METH_VARARGS, "flatten(items, names: dict) -> list[bytes] | None"},
    {"parse", pairs_parse, METH_VARARGS, "parse(data, max_pairs: int, max_bytes: int) -> list[bytes] | int"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_pairs_ext", "The Proxy-Wasm serialized-pairs codec (see _pairs.c).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__pairs_ext(void) {
  PyObject *m = PyModule_Create(&module);
  if (m != NULL && PyModule_AddStringConstant(m, "BUILD_KEY", PWVM_BUILD_KEY) < 0)
    Py_CLEAR(m);
  return m;
}
