/* llama.cpp's log callback in C: warnings and errors (and the lines continuing them) to stderr, the
 * rest dropped.
 *
 * llama-cpp-python's own callback is a Python function, so every line llama.cpp logs waits for the
 * interpreter's lock: loading Gemma 3 270M logs about 1,500, which made its load 0.2 s slower while
 * the server's start-up imported modules beside it. This module only hands out the callback's
 * address (see log.py); nothing here touches Python objects when llama.cpp calls it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdio.h>

enum { LOG_LEVEL_WARN = 3, LOG_LEVEL_ERROR = 4, LOG_LEVEL_CONT = 5 }; /* ggml_log_level */

static int last_level = 0;

static void warnings_to_stderr(int level, const char *text, void *user_data) {
    (void)user_data;
    if (level != LOG_LEVEL_CONT) {
        last_level = level;
    }
    if ((last_level == LOG_LEVEL_WARN || last_level == LOG_LEVEL_ERROR) && text != NULL) {
        fputs(text, stderr);
        fflush(stderr);
    }
}

static PyObject *address(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    return PyLong_FromVoidPtr((void *)&warnings_to_stderr);
}

static PyMethodDef methods[] = {
    {"address", address, METH_NOARGS, "The address of the callback: void (int level, const char *text, void *)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_log_sink", NULL, -1, methods};

PyMODINIT_FUNC PyInit__log_sink(void) { return PyModule_Create(&module); }
