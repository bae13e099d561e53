/* Optional C accelerator of anyws: XOR masking of client frames (RFC 6455 §5.3).
 *
 * Python's fallback (anyws/_mask.py) walks the payload four strided slices at a time;
 * this applies the key a machine word at a time. Both return the same bytes. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* apply_mask(data, mask, prefix=b"") -> prefix + (data XOR mask repeated)
 * The prefix (a frame header) is copied in front so that a frame is built in one copy. */
static PyObject *
apply_mask(PyObject *self, PyObject *args)
{
    Py_buffer data, mask, prefix = {0};
    if (!PyArg_ParseTuple(args, "y*y*|y*:apply_mask", &data, &mask, &prefix)) {
        return NULL;
    }
    if (mask.len != 4) {
        PyBuffer_Release(&data);
        PyBuffer_Release(&mask);
        if (prefix.obj != NULL) {
            PyBuffer_Release(&prefix);
        }
        PyErr_SetString(PyExc_ValueError, "mask must contain 4 bytes");
        return NULL;
    }
    PyObject *result = PyBytes_FromStringAndSize(NULL, prefix.len + data.len);
    if (result != NULL) {
        const unsigned char *in = (const unsigned char *)data.buf;
        const unsigned char *key = (const unsigned char *)mask.buf;
        unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
        if (prefix.len) {
            memcpy(out, prefix.buf, prefix.len);
            out += prefix.len;
        }
        Py_ssize_t length = data.len, i = 0;
        uint64_t key64;
        unsigned char key8[8];
        for (int k = 0; k < 8; k++) {
            key8[k] = key[k & 3];
        }
        memcpy(&key64, key8, 8);
        Py_BEGIN_ALLOW_THREADS
        for (; i + 8 <= length; i += 8) {
            uint64_t word;
            memcpy(&word, in + i, 8);
            word ^= key64;
            memcpy(out + i, &word, 8);
        }
        for (; i < length; i++) {
            out[i] = in[i] ^ key[i & 3];
        }
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&data);
    PyBuffer_Release(&mask);
    if (prefix.obj != NULL) {
        PyBuffer_Release(&prefix);
    }
    return result;
}

static PyMethodDef speedups_methods[] = {
    {"apply_mask", apply_mask, METH_VARARGS, "Apply a 4-byte WebSocket mask to data."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT, "anyws._speedups", NULL, -1, speedups_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&speedups_module);
}
