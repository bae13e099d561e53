/* Optional C accelerator of anyws.
 *
 * apply_mask: XOR masking of client frames (RFC 6455 §5.3). Python's fallback
 * (anyws/_mask.py) walks the payload four strided slices at a time; this applies the key a
 * machine word at a time. Both return the same bytes.
 *
 * parse_frames: the common case of incoming data, whole unfragmented uncompressed messages,
 * without wsproto's per-frame objects. It only takes frames that wsproto would accept and
 * deliver as one message, and stops at the first other one, which anyws hands to wsproto,
 * the protocol authority (see anyws/_protocol.py). Without this module, wsproto parses all.
 *
 * MessageBuffer: the payload of a big binary frame that arrives in many reads, copied as
 * each read comes (or read straight, through its buffer interface) into the bytes object
 * that the application gets. */

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

/* MessageBuffer(size): a message of `size` bytes, filled by append() as its reads arrive.
 *
 * Kept as pieces and joined at the end, a big message is in memory twice at its end (the
 * pieces and the joined copy); here it is once. The bytes object is allocated at its final
 * size and only handed out (value()) once full, after which it never changes: until then
 * nothing but this object refers to it.
 *
 * Its buffer interface is the part still to fill, writable: a socket's recv_into() reads
 * straight into the message, and advance() counts what it read. The bytes object isn't
 * shared while that part is exported: value() needs it full, and raises while exported. */
typedef struct {
    PyObject_HEAD
    PyObject *data; /* bytes of the message's size, filled up to `filled` */
    Py_ssize_t filled;
    Py_ssize_t exports; /* buffer views of the part to fill that weren't released */
} MessageBuffer;

static PyObject *
MessageBuffer_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *keywords[] = {"size", NULL};
    Py_ssize_t size;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "n:MessageBuffer", keywords, &size)) {
        return NULL;
    }
    if (size < 0) {
        PyErr_SetString(PyExc_ValueError, "size must not be negative");
        return NULL;
    }
    MessageBuffer *self = (MessageBuffer *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->data = PyBytes_FromStringAndSize(NULL, size);
    if (self->data == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    self->filled = 0;
    self->exports = 0;
    return (PyObject *)self;
}

static void
MessageBuffer_dealloc(MessageBuffer *self)
{
    Py_XDECREF(self->data);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
MessageBuffer_append(MessageBuffer *self, PyObject *arg)
{
    Py_buffer chunk;
    if (PyObject_GetBuffer(arg, &chunk, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (chunk.len > PyBytes_GET_SIZE(self->data) - self->filled) {
        PyBuffer_Release(&chunk);
        PyErr_SetString(PyExc_ValueError, "more data than the message's size");
        return NULL;
    }
    memcpy(PyBytes_AS_STRING(self->data) + self->filled, chunk.buf, chunk.len);
    self->filled += chunk.len;
    PyBuffer_Release(&chunk);
    Py_RETURN_NONE;
}

static PyObject *
MessageBuffer_advance(MessageBuffer *self, PyObject *arg)
{
    Py_ssize_t count = PyLong_AsSsize_t(arg);
    if (count == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (count < 0 || count > PyBytes_GET_SIZE(self->data) - self->filled) {
        PyErr_SetString(PyExc_ValueError, "count out of the part still to fill");
        return NULL;
    }
    self->filled += count;
    Py_RETURN_NONE;
}

static PyObject *
MessageBuffer_read(MessageBuffer *self, PyObject *Py_UNUSED(ignored))
{
    return PyBytes_FromStringAndSize(PyBytes_AS_STRING(self->data), self->filled);
}

static PyObject *
MessageBuffer_value(MessageBuffer *self, PyObject *Py_UNUSED(ignored))
{
    if (self->filled != PyBytes_GET_SIZE(self->data)) {
        PyErr_SetString(PyExc_ValueError, "the message isn't complete");
        return NULL;
    }
    if (self->exports) {
        PyErr_SetString(PyExc_BufferError, "a view of the message is still exported");
        return NULL;
    }
    return Py_NewRef(self->data);
}

static int
MessageBuffer_getbuffer(MessageBuffer *self, Py_buffer *view, int flags)
{
    char *start = PyBytes_AS_STRING(self->data) + self->filled;
    Py_ssize_t length = PyBytes_GET_SIZE(self->data) - self->filled;
    if (PyBuffer_FillInfo(view, (PyObject *)self, start, length, 0, flags) < 0) {
        return -1;
    }
    self->exports++;
    return 0;
}

static void
MessageBuffer_releasebuffer(MessageBuffer *self, Py_buffer *Py_UNUSED(view))
{
    self->exports--;
}

static PyBufferProcs MessageBuffer_as_buffer = {
    .bf_getbuffer = (getbufferproc)MessageBuffer_getbuffer,
    .bf_releasebuffer = (releasebufferproc)MessageBuffer_releasebuffer,
};

static PyObject *
MessageBuffer_get_size(MessageBuffer *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(PyBytes_GET_SIZE(self->data));
}

static PyObject *
MessageBuffer_get_filled(MessageBuffer *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(self->filled);
}

static PyMethodDef MessageBuffer_methods[] = {
    {"append", (PyCFunction)MessageBuffer_append, METH_O,
     "Copy the next piece of the message in (ValueError past its size)."},
    {"advance", (PyCFunction)MessageBuffer_advance, METH_O,
     "Count `count` more bytes as filled (written through the buffer interface)."},
    {"read", (PyCFunction)MessageBuffer_read, METH_NOARGS,
     "A copy of what arrived so far, as bytes."},
    {"value", (PyCFunction)MessageBuffer_value, METH_NOARGS,
     "The message, once full (ValueError before); the same bytes at every call."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef MessageBuffer_getset[] = {
    {"size", (getter)MessageBuffer_get_size, NULL, "The message's size.", NULL},
    {"filled", (getter)MessageBuffer_get_filled, NULL, "How much of it arrived.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject MessageBuffer_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "anyws._speedups.MessageBuffer",
    .tp_basicsize = sizeof(MessageBuffer),
    .tp_dealloc = (destructor)MessageBuffer_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A message of a known size, filled as its reads arrive.",
    .tp_methods = MessageBuffer_methods,
    .tp_getset = MessageBuffer_getset,
    .tp_as_buffer = &MessageBuffer_as_buffer,
    .tp_new = MessageBuffer_new,
};

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
    if (PyType_Ready(&MessageBuffer_type) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&speedups_module);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "MessageBuffer", (PyObject *)&MessageBuffer_type) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
