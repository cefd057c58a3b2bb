"""TensorFlow's own log lines kept off the user's terminal, unless they ask for them.

TensorFlow logs through two paths. Its C++ logging honours TF_CPP_MIN_LOG_LEVEL: at 3 (our
default) it hides every INFO, WARNING and ERROR line, such as training's harmless
`E0000 ... NodeDef mentions attribute use_unbounded_threadpool` (tf.data's Python writes an
attribute its C++ op predates). But at import, before absl's logging is initialised, it writes
`oneDNN custom operations are on ...` straight to stderr, whatever the variable says; so the
import of `tensorflow` runs with stderr captured, and every line of the capture that is not such
a log line (a Python warning, a traceback) is passed on.

So whatever TF_CPP_MIN_LOG_LEVEL the user set, 1 to 3 (TensorFlow's documented way to ask for fewer
lines) or none, every one of those lines is hidden; at 0, or with predict's --verbose, all are shown.
"""

import contextlib
import importlib.abc
import importlib.machinery
import os
import re
import sys
import tempfile

QUIET_LEVEL = "3"
QUIET_MARK = "CIFAR_QUIET_TENSORFLOW"
# absl/glog's line format, e.g. `I0000 00:00:1796292882.130970   24810 port.cc:153] oneDNN ...`,
# and the notice absl prints before the first of them.
_LOG_LINE = re.compile(rb"([IWEF]\d{4} \d\d:\d\d:[\d.]+ +\d+ [^\]\s]+:\d+\] |WARNING: All log messages before absl)")


def quiet_tensorflow():
    """Hide TensorFlow's log lines from here on, unless the user set TF_CPP_MIN_LOG_LEVEL to 0 (all)."""
    set_by_hand = os.environ.get(QUIET_MARK) != QUIET_LEVEL  # else a quiet parent process set it
    if (set_by_hand and os.environ.get("TF_CPP_MIN_LOG_LEVEL", "").strip() == "0") or "tensorflow" in sys.modules:
        return
    # Marked as ours, so that a stage run from a quiet process (a test, a benchmark) is quiet too.
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = os.environ[QUIET_MARK] = QUIET_LEVEL
    if not any(isinstance(finder, _QuietImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport())


def show_tensorflow_log():
    """Undo quiet_tensorflow (predict's --verbose): TensorFlow's every line, from its next import on."""
    if os.environ.pop(QUIET_MARK, None):
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    sys.meta_path[:] = [finder for finder in sys.meta_path if not isinstance(finder, _QuietImport)]


def without_log_lines(text):
    """`text` (bytes) less TensorFlow's absl log lines."""
    return b"".join(line for line in text.splitlines(keepends=True) if not _LOG_LINE.match(line))


@contextlib.contextmanager
def _stderr_without_log_lines():
    """File descriptor 2 (where C++ writes) captured; on exit, all but the log lines passed on."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all: nothing to keep clean
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = without_log_lines(captured.read())
            if kept:
                os.write(2, kept)


class _QuietImport(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` as Python would, and runs its import with stderr filtered; once."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _FilteredLoader(spec.loader)
        return spec


class _FilteredLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        module.__spec__.loader = module.__loader__ = self.loader  # the module's own loader, as usual
        with _stderr_without_log_lines():
            self.loader.exec_module(module)
