"""Resolve column names for each input role and turn Arrow columns into NumPy arrays.

A role (``pred``, ``target``, ``weight``, ``var``, ...) is bound to one column, several columns
(a comma list or a glob such as ``'p_*'``) or a list / fixed-size-list column.  Arrow -> NumPy uses the
column buffers directly (``np.frombuffer``): ``Array.to_numpy`` would import pandas.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .._pa import pa  # imported on first use: a small CSV's columns arrive as NumPy arrays
from ..errors import InputError, UsageError, shown

# Usual column names, in order of preference, for roles the user did not name.
AUTO_NAMES = {
    "pred": ("y_pred", "pred", "prediction", "predictions", "preds", "yhat", "y_hat", "y_score",
             "score", "output", "forecast", "logit", "logits", "prob", "probs", "probability", "p"),
    "target": ("y_true", "target", "label", "labels", "y", "truth", "actual", "targets", "ground_truth",
               "gt", "observed", "class"),
    "var": ("var", "variance", "pred_var", "sigma2"),
    "anchor": ("anchor", "a"),
    "label": ("y", "label", "sign"),
}
OPTION_OF = {"pred": "--pred", "target": "--target", "weight": "--weight", "var": "--var",
             "anchor": "--anchor", "label": "--label", "by": "--by", "id": "--id", "on": "--on"}


def option_of(role: str) -> str:
    return OPTION_OF.get(role, f"--col {role}=NAME")


@dataclass(frozen=True)
class Binding:
    """Where a role's data lives: which source (0 = first file) and which columns."""

    role: str
    source: int
    columns: tuple[str, ...]
    file: str

    @property
    def label(self) -> str:
        if len(self.columns) <= 3:
            return ",".join(self.columns)
        return f"{self.columns[0]},...,{self.columns[-1]} ({len(self.columns)} columns)"


def split_names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def match_columns(spec: str, names: Sequence[str]) -> list[str]:
    """Columns named by ``spec``: exact names, comma lists and globs, in file order for globs."""
    out: list[str] = []
    for part in split_names(spec):
        if part in names:
            out.append(part)
        elif any(c in part for c in "*?["):
            # file order, as the columns were written (box corners x1,y1,x2,y2; classes 0..K-1): sorting the
            # names would put x2 before y1
            out.extend(n for n in names if fnmatch.fnmatchcase(n, part))
        else:
            return []
    return list(dict.fromkeys(out))


def bind(role: str, spec: str | None, sources: Sequence, prefer: int = 0, required: bool = True,
         exclude: Sequence[str] = ()) -> Binding | None:
    """Bind ``role`` to columns of one of ``sources`` (each has .names and .display)."""
    order = [prefer] + [i for i in range(len(sources)) if i != prefer]
    if spec:
        for i in order:
            cols = match_columns(spec, sources[i].names)
            if cols:
                return Binding(role, i, tuple(cols), sources[i].display)
        where = " or ".join(s.display for s in sources)
        avail = ", ".join(sources[order[0]].names[:30])
        raise InputError(f"{where}: no column {spec!r} for {option_of(role)}; columns are: {avail}")
    candidates = AUTO_NAMES.get(role, ())
    for i in order:
        names = sources[i].names
        hits = [c for c in candidates if c in names and c not in exclude]
        if len(hits) == 1:
            return Binding(role, i, (hits[0],), sources[i].display)
        if len(hits) > 1:
            raise UsageError(
                f"{sources[i].display}: several columns could be the {role} ({', '.join(hits)}); "
                f"choose one with {option_of(role)} NAME")
        if len(sources) > 1 and i == prefer and role in ("pred", "target"):
            # two files: a file holding one column besides the keys is that column
            rest = [n for n in names if n not in exclude]
            if len(rest) == 1:
                return Binding(role, i, (rest[0],), sources[i].display)
    if not required:
        return None
    avail = ", ".join(sources[prefer].names[:30])
    raise UsageError(
        f"{sources[prefer].display}: cannot tell which column holds the {role}; pass {option_of(role)} NAME "
        f"(columns: {avail})")


# -- Arrow -> NumPy ---------------------------------------------------------------------------------
_NP: dict = {}


def _np_types() -> dict:
    if not _NP:
        _NP.update({
            pa.float64(): np.float64, pa.float32(): np.float32, pa.float16(): np.float16,
            pa.int8(): np.int8, pa.int16(): np.int16, pa.int32(): np.int32, pa.int64(): np.int64,
            pa.uint8(): np.uint8, pa.uint16(): np.uint16, pa.uint32(): np.uint32, pa.uint64(): np.uint64,
        })
    return _NP


def _first_null(arr: pa.Array) -> int:
    import pyarrow.compute as pc
    return int(pc.index(arr.is_null(), True).as_py())


def _first_rows(rows: np.ndarray, total: int, row0: int, k: int = 5) -> str:
    """'rows 3, 8, 12, ...' for a message: the first ``k`` of ``total`` offending rows (0-based in the batch)."""
    shown_rows = ", ".join(str(row0 + int(r) + 1) for r in rows[:k])
    return f"rows {shown_rows}{', ...' if total > k else ''}"


def primitive_to_numpy(arr: pa.Array) -> np.ndarray:
    """A null-free primitive Arrow array as NumPy without copying where possible (no pandas)."""
    t = arr.type
    npt = _np_types()
    if t in npt:
        dt = np.dtype(npt[t])
        return np.frombuffer(arr.buffers()[1], dtype=dt, count=len(arr), offset=arr.offset * dt.itemsize)
    if pa.types.is_boolean(t):
        bits = np.frombuffer(arr.buffers()[1], dtype=np.uint8)
        return np.unpackbits(bits, bitorder="little")[arr.offset: arr.offset + len(arr)].astype(bool)
    raise TypeError(str(t))


def strings_to_numpy(arr: pa.Array) -> np.ndarray:
    """A string (or dictionary-of-string) column as a NumPy unicode array, through its dictionary."""
    d = arr if pa.types.is_dictionary(arr.type) else arr.dictionary_encode()
    codes = primitive_to_numpy(d.indices).astype(np.intp)
    values = np.array([str(v) for v in d.dictionary.to_pylist()] or [""])
    return values[codes]


class Converter:
    """Turns the Arrow columns of a binding into arrays, with errors naming file, column and row."""

    def __init__(self, binding: Binding, numeric: bool = True, allow_strings: bool = False,
                 null_as_nan: bool = False, omit_ok: bool = True):
        self.b = binding
        self.numeric = numeric
        self.allow_strings = allow_strings
        self.null_as_nan = null_as_nan
        self.omit_ok = omit_ok  # whether messages may suggest --nan-policy omit (NT-Xent's blocks refuse it)
        self.known_finite = False  # set by convert()
        self._finite_cols = 0

    def _err(self, col: str, row: int | None, msg: str) -> InputError:
        r = f", row {row + 1}" if row is not None else ""
        return InputError(f"{self.b.file}, column {col!r}{r}: {msg}")

    def column(self, arr: pa.Array, col: str, row0: int) -> np.ndarray:
        if isinstance(arr, np.ndarray):  # a small CSV's column, parsed without pyarrow: numbers, no nulls
            if arr.dtype == np.float64:
                return arr
            self._finite_cols += 1  # integers: finite as float64 too
            return arr.astype(np.float64)
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        t = arr.type
        if pa.types.is_dictionary(t):
            if pa.types.is_string(t.value_type) or pa.types.is_large_string(t.value_type):
                pass
            else:
                arr = arr.cast(t.value_type)
                t = arr.type
        if arr.null_count:
            if self.null_as_nan and (pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_decimal(t)
                                     or pa.types.is_null(t)):  # null type: a column (or batch) of nulls only
                arr = arr.cast(pa.float64()).fill_null(float("nan"))
                t = arr.type
            else:
                i = _first_null(arr)
                if i and pa.types.is_floating(t) and not self.null_as_nan:
                    # a NaN or inf before the first missing value is the first offending row
                    before = primitive_to_numpy(arr.slice(0, i).cast(pa.float64()))
                    check_finite(before, Binding(self.b.role, self.b.source, (col,), self.b.file), row0,
                                 self.omit_ok)
                n = arr.null_count
                first = ""
                if n > 1:
                    nulls = np.flatnonzero(primitive_to_numpy(arr.is_null()))
                    first = ": " + _first_rows(nulls, n, row0)
                raise self._err(col, row0 + i, f"missing value ({n} in rows {row0 + 1}-{row0 + len(arr)}{first}); "
                                               f"fill or drop those rows{', or pass --nan-policy omit' if self.omit_ok else ''}")
        if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
            return self._list(arr, col, row0)
        if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t):
            out = strings_to_numpy(arr)
            if self.allow_strings:
                return out
            bad = 0
            try:
                return out.astype(np.float64)
            except ValueError:
                for k, s in enumerate(out):
                    try:
                        float(s)
                    except ValueError:
                        bad = k
                        break
            raise self._err(col, row0 + bad, f"{shown(str(out[bad]))} is not a number (column type {t}); "
                                             f"choose a numeric column")
        if pa.types.is_decimal(t) or pa.types.is_null(t):
            if pa.types.is_null(t):
                raise self._err(col, row0, "column has no values (all null)")
            arr = arr.cast(pa.float64())
            t = arr.type
        try:
            out = primitive_to_numpy(arr)
        except TypeError:
            raise self._err(col, None, f"unsupported column type {t}; expected numbers") from None
        if out.dtype.kind in "iub":  # integers and booleans (no nulls here): finite as float64 too
            self._finite_cols += 1
        return out.astype(np.float64, copy=False) if out.dtype != np.float64 else out

    def _list(self, arr: pa.Array, col: str, row0: int) -> np.ndarray:
        n = len(arr)
        if pa.types.is_fixed_size_list(arr.type):
            k = arr.type.list_size
            values = arr.flatten()
        else:
            offs = primitive_to_numpy(arr.offsets).astype(np.int64)
            lens = np.diff(offs)
            k = int(lens[0]) if n else 0
            if n and np.any(lens != k):
                i = int(np.argmax(lens != k))
                raise self._err(col, row0 + i, f"list has {int(lens[i])} values where row {row0 + 1} has {k}; "
                                               f"every row needs the same length")
            values = arr.flatten()
        if values.null_count:
            i = _first_null(values)
            raise self._err(col, row0 + i // max(k, 1), "missing value inside the list")
        flat = Converter(self.b, numeric=True).column(values, col, row0)
        return flat.reshape(n, k)

    def convert(self, batch_columns: Sequence[pa.Array], row0: int) -> np.ndarray:
        """The binding's columns as one array; afterwards ``known_finite`` says whether every column came
        from an integer or boolean column (finite by type: no need to check it for NaN and inf)."""
        cols = self.b.columns
        self._finite_cols = 0
        if len(cols) == 1:
            out = self.column(batch_columns[0], cols[0], row0)
            self.known_finite = self._finite_cols == 1
            return out
        parts = [self.column(a, c, row0) for a, c in zip(batch_columns, cols)]
        self.known_finite = self._finite_cols == len(cols)
        for p, c in zip(parts, cols):
            if p.ndim != 1 or p.dtype.kind not in "fiub":
                raise self._err(c, None, "a multi-column input needs one number per column")
        return np.column_stack(parts)


def check_finite(x: np.ndarray, binding: Binding, row0: int, omit_ok: bool = True) -> None:
    """Error on the first NaN or infinity, naming its column and row (1-based, header excluded).
    ``omit_ok``: the message may point at --nan-policy omit (not when a loss of the run refuses it)."""
    if x.dtype.kind != "f":
        return
    # Fast path: a sum is finite only if every term is (NaN and inf propagate); one pass, no mask.
    # A finite input can still overflow the sum (values near 1e308); the exact check below decides then.
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(np.sum(x)):
            return
    ok = np.isfinite(x)
    if ok.all():
        return
    flat = ok.reshape(len(x), -1) if x.ndim > 1 else ok[:, None]
    bad_rows = ~flat.all(axis=1)
    i = int(np.argmax(bad_rows))
    j = int(np.argmax(~flat[i]))
    col = binding.columns[j] if len(binding.columns) > 1 else binding.columns[0]
    v = x[i] if x.ndim == 1 else x[i].reshape(-1)[j]
    nbad = int(bad_rows.sum())
    what = "NaN" if np.isnan(v) else ("inf" if v > 0 else "-inf")
    first = f": {_first_rows(np.flatnonzero(bad_rows), nbad, row0)}" if nbad > 1 else ""
    raise InputError(f"{binding.file}, column {col!r}, row {row0 + i + 1}: {what} value "
                     f"({nbad} in rows {row0 + 1}-{row0 + len(x)}{first}); losses need finite "
                     f"numbers ({'--nan-policy omit drops such rows' if omit_ok else 'fill or drop those rows'})")
