"""Reading TF1 checkpoints (``model.ckpt-N.index`` + ``.data-*``) without making TensorFlow a dependency of hamgan.

Three readers with one interface, :class:`Reader`: ``variables()`` gives ``{name: (shape, dtype name)}``, and
``read(names)`` the arrays (a :class:`ReadError` names each variable that cannot be read, e.g. a truncated file):

- :class:`TFReader`: TensorFlow in this Python (``pip install 'hamgan[convert]'``, which is ``tensorflow-cpu``),
  imported only when a checkpoint is opened;
- :class:`SubprocessReader`: TensorFlow in another Python (``--tf-python``, e.g. the venv ``make parity`` makes),
  which runs this file as a script and hands the arrays over in a temporary ``.npz``;
- :class:`DictReader`: arrays in memory (tests).

Why not the pure-Python ``tensorflow-checkpoint-reader`` (0.2.2): it reads TF's files bit-exactly on Python 3.10
with NumPy 1, but it pins ``protobuf<3.19`` (wandb, a hamgan dependency, needs protobuf >= 5), does not import on
NumPy 2 (``np.string_``) nor on Python >= 3.11 (``inspect.ArgSpec``), and checks no checksum (docs/pretrained.md).

This module imports only the standard library and NumPy at import time, so that it runs as a script in a TF venv.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

INSTALL_HINT = ("reading TensorFlow checkpoints needs TensorFlow: pip install 'hamgan[convert]' (tensorflow-cpu), "
                "or give --tf-python PATH, a Python that has TensorFlow (make parity creates one: "
                "~/.cache/hamgan/tf215-venv/bin/python)")


class ReadError(RuntimeError):
    """A checkpoint that cannot be opened, or variables that cannot be read (``errors``: name -> message)."""

    def __init__(self, message: str, errors: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.errors = dict(errors or {})


class Reader:
    """What the converter needs of a checkpoint."""

    source: str = ""

    def variables(self) -> dict[str, tuple[tuple[int, ...], str]]:
        raise NotImplementedError

    def read(self, names: list[str]) -> dict[str, np.ndarray]:
        raise NotImplementedError


class DictReader(Reader):
    """A "checkpoint" held in a dict ``{name: array}`` (tests)."""

    def __init__(self, arrays: dict[str, np.ndarray], source: str = "<dict>") -> None:
        self.arrays, self.source = arrays, source

    def variables(self) -> dict[str, tuple[tuple[int, ...], str]]:
        return {k: (tuple(np.shape(v)), np.asarray(v).dtype.name) for k, v in self.arrays.items()}

    def read(self, names: list[str]) -> dict[str, np.ndarray]:
        missing = {n: "not in the checkpoint" for n in names if n not in self.arrays}
        if missing:
            raise ReadError(f"cannot read {len(missing)} variable(s) of {self.source}", missing)
        return {n: np.asarray(self.arrays[n]) for n in names}


def normalize_prefix(path: str | os.PathLike) -> str:
    """A checkpoint prefix from what a user may give: the prefix, its ``.index`` or ``.data-*`` file, or a folder
    (its latest checkpoint, resolved by TensorFlow)."""
    path = str(path)
    if path.endswith(".index"):
        return path[: -len(".index")]
    stem, dot, ext = path.rpartition(".")
    if dot and ext.startswith("data-") and "-of-" in ext:
        return stem
    return path


# ---- TensorFlow side (runs in any Python that has TensorFlow; imports nothing of hamgan) ---------------------------


def _tf_open(prefix: str):
    """TensorFlow's CheckpointReader of ``prefix`` (a folder: its latest checkpoint)."""
    import tensorflow as tf

    if os.path.isdir(prefix):
        latest = tf.train.latest_checkpoint(prefix)  # the folder's 'checkpoint' file names it
        indexes = sorted(Path(prefix).glob("*.index"))
        if latest is None and len(indexes) != 1:
            raise ReadError(f"cannot tell which TF checkpoint of folder {prefix} to read (no 'checkpoint' file naming "
                            f"one; {len(indexes)} .index files): give its prefix, e.g. {prefix}/model.ckpt-900000")
        prefix = latest or str(indexes[0])[: -len(".index")]
    if not os.path.isfile(prefix + ".index"):
        raise ReadError(f"no TF checkpoint at {prefix}: {prefix}.index does not exist (give the prefix, e.g. "
                        "model.ckpt-900000, its .index file, or the folder)")
    try:
        return tf.train.load_checkpoint(prefix), prefix
    except Exception as e:  # damaged index, missing data file
        raise ReadError(f"cannot open the TF checkpoint {prefix}: {type(e).__name__}: {_first_line(e)}") from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _tf_variables(reader) -> dict[str, tuple[tuple[int, ...], str]]:
    shapes, dtypes = reader.get_variable_to_shape_map(), reader.get_variable_to_dtype_map()
    return {k: (tuple(int(d) for d in shapes[k]), np.dtype(dtypes[k].as_numpy_dtype).name) for k in sorted(shapes)}


def _tf_read(reader, names: list[str]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(arrays, errors): every variable read separately, so that each failure is named."""
    arrays, errors = {}, {}
    for name in names:
        try:
            arrays[name] = np.asarray(reader.get_tensor(name))
        except Exception as e:  # truncated data file ("Read less bytes than requested"), checksum mismatch
            errors[name] = f"{type(e).__name__}: {_first_line(e)}"
    return arrays, errors


class TFReader(Reader):
    """TensorFlow's own reader in this Python."""

    def __init__(self, prefix: str | os.PathLike) -> None:
        try:
            import tensorflow  # noqa: F401
        except ImportError:
            raise ReadError(INSTALL_HINT) from None
        self._reader, self.source = _tf_open(normalize_prefix(prefix))

    def variables(self) -> dict[str, tuple[tuple[int, ...], str]]:
        return _tf_variables(self._reader)

    def read(self, names: list[str]) -> dict[str, np.ndarray]:
        arrays, errors = _tf_read(self._reader, names)
        if errors:
            raise ReadError(f"cannot read {len(errors)} variable(s) of {self.source}", errors)
        return arrays


class SubprocessReader(Reader):
    """TensorFlow in another Python (``python``): this file runs there as a script."""

    def __init__(self, prefix: str | os.PathLike, python: str | os.PathLike) -> None:
        self.python, self.prefix = str(Path(python).expanduser()), normalize_prefix(prefix)
        if not Path(self.python).is_file():
            raise ReadError(f"--tf-python {self.python} does not exist; {INSTALL_HINT}")
        listing = self._run("--list", self.prefix)
        self.source, self._variables = listing["prefix"], {k: (tuple(s), d) for k, (s, d) in
                                                          listing["variables"].items()}

    def _run(self, *args: str) -> dict:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
        done = subprocess.run([self.python, __file__, *args], capture_output=True, text=True, env=env)
        lines = done.stdout.strip().splitlines()
        try:
            result = json.loads(lines[-1]) if lines else None
        except json.JSONDecodeError:
            result = None
        if not isinstance(result, dict):
            tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            hint = f"; {INSTALL_HINT}" if "No module named 'tensorflow'" in done.stderr else ""
            raise ReadError(f"the TF reader in {self.python} failed: {tail}{hint}")
        if result.get("error"):
            raise ReadError(result["error"], result.get("errors"))
        return result

    def variables(self) -> dict[str, tuple[tuple[int, ...], str]]:
        return dict(self._variables)

    def read(self, names: list[str]) -> dict[str, np.ndarray]:
        with tempfile.TemporaryDirectory(prefix="hamgan-convert-") as tmp:
            request, out = Path(tmp) / "names.json", Path(tmp) / "arrays.npz"
            request.write_text(json.dumps(names))
            self._run("--dump", self.source, str(request), str(out))
            with np.load(out) as data:  # keys a0, a1, ... in the order of ``names`` (names may hold '/')
                return {name: data[f"a{i}"] for i, name in enumerate(names)}


def open_reader(prefix: str | os.PathLike, tf_python: str | os.PathLike | None = None) -> Reader:
    """The reader of the TF checkpoint ``prefix``: TensorFlow here, or in ``tf_python`` when given."""
    return TFReader(prefix) if tf_python is None else SubprocessReader(prefix, tf_python)


def _script(argv: list[str]) -> int:
    """``--list PREFIX`` or ``--dump PREFIX NAMES.json OUT.npz``; prints one JSON line (errors included)."""
    try:
        reader, prefix = _tf_open(argv[1])
        if argv[0] == "--list":
            result = {"prefix": prefix, "variables": _tf_variables(reader)}
        else:
            names = json.loads(Path(argv[2]).read_text())
            arrays, errors = _tf_read(reader, names)
            if errors:
                raise ReadError(f"cannot read {len(errors)} variable(s) of {prefix}", errors)
            np.savez(argv[3], **{f"a{i}": arrays[name] for i, name in enumerate(names)})
            result = {"prefix": prefix}
    except ReadError as e:
        result = {"error": str(e), "errors": e.errors}
    except ImportError as e:
        result = {"error": f"{e}; {INSTALL_HINT}"}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(_script(sys.argv[1:]))
