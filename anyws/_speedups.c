/* Optional C accelerator of anyws.
 *
 * apply_mask: XOR masking of client frames (RFC 6455 §5.3). Python's fallback
 * (anyws/_mask.py) walks the payload four strided slices at a time; this applies the key a
 * machine word at a time. Both return the same bytes.
 *
 * parse_frames: the common case of incoming data, whole unfragmented uncompressed messages,
 * without wsproto's per-frame objects. It only takes frames that wsproto would accept and
 * deliver as one message, and stops at the first other one, which anyws hands to wsproto,
 * the protocol authority (see anyws/_protocol.py). Without this module, wsproto parses all. */

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

/* parse_frames(buffer, start, limit, max_size) -> (messages, end)
 *
 * Parses the server frames in buffer[start:] that are each a whole message (FIN set, RSV
 * bits clear, opcode text or binary, unmasked: RFC 6455 §5.2), with the shortest length
 * encoding (§5.2: "the minimal number of bytes MUST be used"), a payload of at most
 * max_size bytes (negative: no limit), complete in the buffer, and for text valid UTF-8
 * (§5.6, §8.1). Stops before the first frame that is not, or after `limit` messages
 * (negative: no limit). Returns the messages (str for text, bytes for binary) and the
 * offset of the first byte not parsed. */
static PyObject *
parse_frames(PyObject *self, PyObject *args)
{
    Py_buffer buffer;
    Py_ssize_t position, limit, max_size;
    if (!PyArg_ParseTuple(args, "y*nnn:parse_frames", &buffer, &position, &limit, &max_size)) {
        return NULL;
    }
    if (position < 0 || position > buffer.len) {
        PyBuffer_Release(&buffer);
        PyErr_SetString(PyExc_ValueError, "start is outside the buffer");
        return NULL;
    }
    PyObject *messages = PyList_New(0);
    if (messages == NULL) {
        PyBuffer_Release(&buffer);
        return NULL;
    }
    const unsigned char *data = (const unsigned char *)buffer.buf;
    const Py_ssize_t size = buffer.len;
    while (limit != 0 && size - position >= 2) {
        const unsigned char first = data[position], second = data[position + 1];
        if ((first != 0x81 && first != 0x82) || (second & 0x80)) {
            break; /* a fragment, a control frame, RSV bits, a masked or invalid frame */
        }
        Py_ssize_t header = 2;
        uint64_t length = second & 0x7F;
        if (length == 126) {
            if (size - position < 4) {
                break;
            }
            length = ((uint64_t)data[position + 2] << 8) | data[position + 3];
            if (length < 126) {
                break; /* not minimal: wsproto fails the connection */
            }
            header = 4;
        }
        else if (length == 127) {
            if (size - position < 10) {
                break;
            }
            length = 0;
            for (int k = 2; k < 10; k++) {
                length = (length << 8) | data[position + k];
            }
            if (length < 65536 || (length >> 63)) {
                break; /* not minimal, or the most significant bit set: wsproto fails */
            }
            header = 10;
        }
        if ((max_size >= 0 && length > (uint64_t)max_size)
            || length > (uint64_t)(size - position - header)) {
            break; /* too big (wsproto fails with 1009) or not all here yet */
        }
        const char *payload = (const char *)data + position + header;
        PyObject *message;
        if (first == 0x81) {
            message = PyUnicode_DecodeUTF8(payload, (Py_ssize_t)length, NULL);
            if (message == NULL) {
                if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
                    goto error;
                }
                PyErr_Clear();
                break; /* invalid UTF-8: wsproto fails with 1007 */
            }
        }
        else {
            message = PyBytes_FromStringAndSize(payload, (Py_ssize_t)length);
            if (message == NULL) {
                goto error;
            }
        }
        int appended = PyList_Append(messages, message);
        Py_DECREF(message);
        if (appended < 0) {
            goto error;
        }
        position += header + (Py_ssize_t)length;
        if (limit > 0) {
            limit--;
        }
    }
    PyBuffer_Release(&buffer);
    return Py_BuildValue("(Nn)", messages, position);
error:
    Py_DECREF(messages);
    PyBuffer_Release(&buffer);
    return NULL;
}

static PyMethodDef speedups_methods[] = {
    {"apply_mask", apply_mask, METH_VARARGS, "Apply a 4-byte WebSocket mask to data."},
    {"parse_frames", parse_frames, METH_VARARGS,
     "Parse the whole, uncompressed data messages at the start of a buffer."},
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
