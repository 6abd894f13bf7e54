"""A fast predict path for serving: the fitted Pipeline compiled to plain numpy.

scikit-learn's ``predict`` on one row costs about a millisecond of per-call overhead
(a DataFrame, the ColumnTransformer's column selection, input validation in every step,
an OpenMP thread pool). :func:`compile_pipeline` reads a fitted
``Pipeline([("transform", ColumnTransformer), ("model", estimator)])`` once and returns a
:class:`CompiledPipeline` whose ``predict`` takes raw columns (name -> 1-D array) and
does only the arithmetic, in the order scikit-learn does it, so that the result is the
same floating-point numbers:

* StandardScaler ``(x - mean_) / scale_``, MinMaxScaler ``x * scale_ + min_`` (then
  ``clip``), passthrough (cast to float64);
* OneHotEncoder: a dict from category to output column, infrequent categories folded
  into the infrequent column, an unknown category to that column
  (``infrequent_if_exist``) or to no column (``ignore``);
* :class:`components.lib.features.CyclicalEncoder`: sin, cos of ``2 * pi * position / period``;
* the ColumnTransformer's output column order (checked against its ``output_indices_``);
* HistGradientBoosting: every tree walked at once, level by level, with numpy fancy
  indexing; NaN follows ``missing_go_to_left``; the leaves are summed onto
  ``_baseline_prediction`` in scikit-learn's order (a sequential sum, iteration by
  iteration), then the loss's inverse link or the class decision;
* Ridge / LogisticRegression: ``X @ coef_.T + intercept_``.

Anything else raises :class:`Unsupported` at compile time, naming the step and class.
:func:`choose` compiles, compares with scikit-learn on a frame of real rows
(:func:`check`) and returns the compiled path only if it agrees; otherwise (or when the
pipeline is unsupported) a :class:`SklearnPath` with the same ``predict(columns)``
interface, and a report saying which and why.

Imports: numpy at the top; scikit-learn inside the functions that need it; pandas
never (``check`` and :class:`SklearnPath` use the DataFrame they are given or build one
through ``pipeline``'s own pandas).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

# Regression agreement: |fast - sklearn| <= REL_TOLERANCE * max(1, |sklearn|), on every
# row. Measured (bench/predict_paths.py on the Bikeshare holdout, 865 rows, and the tests'
# 600 rows): the compiled path is bit-identical to scikit-learn for gradient boosting
# (same comparisons, same sequential sum) and for Ridge / LogisticRegression (the same
# BLAS call on the same matrix): max deviation 0.0. The tolerance is not zero only so
# that a BLAS whose matrix-vector product rounds differently for a different row count
# (a last-bit difference, ~1e-16 relative) is not a reason to fall back; 1e-12 is four
# orders above that and far below anything a bikers-per-hour prediction could notice.
REL_TOLERANCE = 1e-12


class Unsupported(ValueError):
    """A pipeline step the compiler cannot reproduce exactly; the message names it."""


# ---------------------------------------------------------------------------------------
# The transform: one block per ColumnTransformer entry, each writing its output columns.
# ---------------------------------------------------------------------------------------


def _floats(columns: Mapping, names: list[str]) -> np.ndarray:
    """The named input columns as an (n, k) float64 matrix (validate_data's cast)."""
    if len(names) == 1:
        return np.asarray(columns[names[0]], dtype=np.float64).reshape(-1, 1)
    return np.column_stack([np.asarray(columns[n], dtype=np.float64) for n in names])


class _Scale:
    """StandardScaler / MinMaxScaler / passthrough: float64, then the scaler's arithmetic."""

    def __init__(self, names, width, sub=None, div=None, mul=None, add=None, clip=None):
        self.names, self.width = names, width
        self.sub, self.div, self.mul, self.add, self.clip = sub, div, mul, add, clip
        # scalers (not passthrough) reject infinity in their input: validate_data with
        # ensure_all_finite="allow-nan"
        self.rejects_inf = any(v is not None for v in (sub, div, mul, add))

    def fill(self, columns, out):
        x = _floats(columns, self.names)
        # StandardScaler.transform: X -= mean_; X /= scale_ (in place, in this order).
        if self.sub is not None:
            x = x - self.sub
        if self.div is not None:
            x = x / self.div
        # MinMaxScaler.transform: X *= scale_; X += min_; then clip to feature_range.
        if self.mul is not None:
            x = x * self.mul
        if self.add is not None:
            x = x + self.add
        if self.clip is not None:
            x = np.clip(x, self.clip[0], self.clip[1])
        out[:] = x

    def signature(self):
        return tuple(v is None for v in (self.sub, self.div, self.mul, self.add)) + (self.clip,)

    def merged(self, other: _Scale) -> _Scale:
        """One block for two adjacent ones doing the same arithmetic (fewer numpy calls;
        the same operations on every element)."""

        def cat(a, b):
            return None if a is None else np.concatenate([a, b])

        return _Scale(
            self.names + other.names,
            self.width + other.width,
            sub=cat(self.sub, other.sub),
            div=cat(self.div, other.div),
            mul=cat(self.mul, other.mul),
            add=cat(self.add, other.add),
            clip=self.clip,
        )

    def check_finite(self, columns):
        if self.rejects_inf and np.isinf(_floats(columns, self.names)).any():
            raise ValueError(f"Input X contains infinity (column {', '.join(self.names)})")


class _OneHot:
    """OneHotEncoder(sparse_output=False, drop=None): category -> output column by dict."""

    def __init__(self, names, lookups, unknown_to, widths, error_on_unknown):
        self.names = names
        self.lookups = lookups  # per input column: {category: column within the block}
        self.unknown_to = unknown_to  # per input column: column for unknown, or -1 (none)
        self.width = sum(widths)
        self.error_on_unknown = error_on_unknown

    def fill(self, columns, out):
        out[:] = 0.0
        for name, lookup, unknown in zip(self.names, self.lookups, self.unknown_to, strict=True):
            values = columns[name]
            if len(values) == 1:  # the serving case: no list, no fancy indexing
                j = lookup.get(values[0], unknown)
                if j >= 0:
                    out[0, j] = 1.0
                elif self.error_on_unknown:
                    raise ValueError(f"Found unknown categories in column {name!r}")
                continue
            idx = np.fromiter((lookup.get(v, unknown) for v in values), np.intp, len(values))
            hit = idx >= 0
            if self.error_on_unknown and not hit.all():
                raise ValueError(f"Found unknown categories in column {name!r}")
            out[np.flatnonzero(hit), idx[hit]] = 1.0

    def check_finite(self, columns):
        pass


class _Cyclical:
    """CyclicalEncoder: positions (float, or the label's index in ``order``), then sin | cos."""

    def __init__(self, names, period, order):
        self.names, self.period = names, period
        self.index = {label: i for i, label in enumerate(order)} if order else None
        self.width = 2 * len(names)

    def fill(self, columns, out):
        if self.index is None:
            # CyclicalEncoder: np.asarray(X, dtype=object).astype(float); same values as a
            # direct float64 cast for ints, floats and numeric strings.
            pos = _floats(columns, self.names)
        else:
            pos = np.empty((out.shape[0], len(self.names)))
            for k, name in enumerate(self.names):
                values = columns[name]
                try:
                    pos[:, k] = [self.index[v] for v in values]
                except (KeyError, TypeError):
                    unknown = sorted({str(v) for v in values if v not in self.index})
                    raise ValueError(
                        f"cyclical feature has values outside its order: {', '.join(unknown[:5])}"
                    ) from None
        # The same expression as CyclicalEncoder.transform: 2 * np.pi * positions / period.
        angle = 2 * np.pi * pos / self.period
        k = len(self.names)
        out[:, :k] = np.sin(angle)
        out[:, k:] = np.cos(angle)

    def check_finite(self, columns):
        pass


def _compile_transformer(name, trans, cols):
    """One ColumnTransformer entry -> a block, or Unsupported naming it."""
    from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, StandardScaler

    from components.lib.features import CyclicalEncoder

    where = f"transformer {name!r} ({type(trans).__name__})"
    if not (isinstance(cols, list | tuple | np.ndarray) and all(isinstance(c, str) for c in cols)):
        raise Unsupported(f"{where}: columns {cols!r} are not a list of column names")
    names = list(cols)
    if isinstance(trans, str) and trans == "passthrough":
        return _Scale(names, len(names))
    # The ColumnTransformer replaces "passthrough" by an identity FunctionTransformer
    # when fitted; accept exactly that.
    if type(trans).__name__ == "FunctionTransformer" and trans.func is None:
        return _Scale(names, len(names))
    if type(trans) is StandardScaler:
        return _Scale(
            names,
            len(names),
            sub=None if trans.mean_ is None or not trans.with_mean else trans.mean_,
            div=None if trans.scale_ is None or not trans.with_std else trans.scale_,
        )
    if type(trans) is MinMaxScaler:
        return _Scale(
            names,
            len(names),
            mul=trans.scale_,
            add=trans.min_,
            clip=tuple(trans.feature_range) if trans.clip else None,
        )
    if type(trans) is OneHotEncoder:
        return _compile_one_hot(where, names, trans)
    if type(trans) is CyclicalEncoder:
        return _Cyclical(names, trans.period, trans.order)
    raise Unsupported(
        f"{where}: no compiled form for {type(trans).__module__}.{type(trans).__name__}"
    )


def _compile_one_hot(where, names, enc):
    if enc.drop is not None:
        raise Unsupported(f"{where}: drop={enc.drop!r} is not supported")
    if enc.handle_unknown not in ("ignore", "infrequent_if_exist", "warn", "error"):
        raise Unsupported(f"{where}: handle_unknown={enc.handle_unknown!r}")
    infrequent_maps = (
        enc._default_to_infrequent_mappings
        if enc._infrequent_enabled
        else [None] * len(enc.categories_)
    )
    lookups, unknown_to, widths = [], [], []
    offset = 0
    for cats, infreq_map in zip(enc.categories_, infrequent_maps, strict=True):
        values = cats.tolist()
        if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values):
            # a missing value as a category: dict lookups of NaN are by identity, not value
            raise Unsupported(f"{where}: a missing value (None / NaN) is one of the categories")
        if infreq_map is None:
            positions = list(range(len(values)))
            width = len(values)
            unknown = -1
        else:
            # _default_to_infrequent_mappings: category index -> output index; every
            # infrequent category maps to the last one (the infrequent column).
            positions = [int(p) for p in infreq_map]
            width = int(infreq_map.max()) + 1
            # OneHotEncoder._map_infrequent_categories: with infrequent_if_exist (and
            # "warn"), an unknown category goes to the infrequent column.
            unknown = width - 1 if enc.handle_unknown in ("infrequent_if_exist", "warn") else -1
        lookups.append({v: offset + p for v, p in zip(values, positions, strict=True)})
        unknown_to.append(offset + unknown if unknown >= 0 else -1)
        widths.append(width)
        offset += width
    if offset != len(enc.get_feature_names_out()):
        raise Unsupported(f"{where}: the compiled width {offset} is not the encoder's")
    return _OneHot(names, lookups, unknown_to, widths, enc.handle_unknown == "error")


def _compile_column_transformer(ct):
    from sklearn.compose import ColumnTransformer

    if type(ct) is not ColumnTransformer:
        raise Unsupported(f"step {type(ct).__name__}: only a ColumnTransformer is compiled")
    blocks = []
    position = 0
    for name, trans, cols in ct.transformers_:
        if isinstance(trans, str) and trans == "drop":
            continue
        if len(cols) == 0:  # an empty selection adds no column
            continue
        if name == "remainder":
            raise Unsupported("ColumnTransformer: remainder other than 'drop' is not supported")
        block = _compile_transformer(name, trans, cols)
        # The ColumnTransformer hstacks in transformers_ order; its own record must agree.
        expected = ct.output_indices_[name]
        if (expected.start, expected.stop) != (position, position + block.width):
            raise Unsupported(
                f"transformer {name!r}: compiled columns {position}:{position + block.width}, "
                f"ColumnTransformer has {expected.start}:{expected.stop}"
            )
        last = blocks[-1][2] if blocks else None
        if (
            isinstance(block, _Scale)
            and isinstance(last, _Scale)
            and last.signature() == block.signature()
        ):
            blocks[-1] = (blocks[-1][0], position + block.width, last.merged(block))
        else:
            blocks.append((position, position + block.width, block))
        position += block.width
    return blocks, position


# ---------------------------------------------------------------------------------------
# The estimators.
# ---------------------------------------------------------------------------------------


class _Trees:
    """HistGradientBoosting's predictors as stacked node arrays, walked all at once."""

    def __init__(self, est, n_features):
        where = f"estimator {type(est).__name__}"
        if getattr(est, "is_categorical_", None) is not None and np.any(est.is_categorical_):
            raise Unsupported(f"{where}: categorical features (bitset splits) are not compiled")
        if est.n_features_in_ != n_features:
            raise Unsupported(
                f"{where}: expects {est.n_features_in_} features, transform gives {n_features}"
            )
        self.k = est.n_trees_per_iteration_
        nodes = []
        roots = []
        offset = 0
        # Tree order: iteration-major, class k inside: est._predictors[i][k]. Columns of
        # the leaf matrix follow this order, so column i * k_per_iter + k is iteration i's
        # tree for class k.
        for iteration in est._predictors:
            if len(iteration) != self.k:
                raise Unsupported(f"{where}: an iteration without {self.k} trees")
            for predictor in iteration:
                n = predictor.nodes
                if n["is_categorical"].any():
                    raise Unsupported(f"{where}: a categorical split")
                nodes.append(n)
                roots.append(offset)
                offset += len(n)
        allnodes = np.concatenate(nodes)
        shift = np.repeat(np.asarray(roots, dtype=np.intp), [len(n) for n in nodes])
        leaf = allnodes["is_leaf"].astype(bool)
        here = np.arange(len(allnodes), dtype=np.intp)
        # Leaves point to themselves, so every tree can be advanced the same number of
        # levels (the deepest tree's depth) without checking is_leaf.
        self.left = np.where(leaf, here, allnodes["left"].astype(np.intp) + shift)
        self.right = np.where(leaf, here, allnodes["right"].astype(np.intp) + shift)
        self.feature = np.where(leaf, 0, allnodes["feature_idx"]).astype(np.intp)
        self.threshold = allnodes["num_threshold"].astype(np.float64)
        self.missing_left = allnodes["missing_go_to_left"].astype(bool)
        self.value = allnodes["value"].astype(np.float64)
        self.roots = np.asarray(roots, dtype=np.intp)
        self.depth = int(allnodes["depth"].max())
        self.n_features = n_features
        self.baseline = np.asarray(est._baseline_prediction, dtype=np.float64).reshape(1, -1)
        self.n_iter = len(est._predictors)

    def raw(self, x, has_nan):
        """(n, k) raw predictions, as _raw_predict computes them.

        _predict_one_from_raw_data's rule at a split: NaN -> missing_go_to_left, else
        x <= num_threshold. NaN <= t is False, so only NaN values that go left need the
        extra term. Leaves point to themselves, so every tree advances the deepest tree's
        depth without an is_leaf test.
        """
        m = x.shape[0]
        if m == 1:
            # One row (the serving case): every node's decision at once (three numpy
            # calls over ~6,000 nodes), then the walk is one small gather per level.
            xv = x[0, self.feature]
            go_left = xv <= self.threshold
            if has_nan:
                go_left |= np.isnan(xv) & self.missing_left
            step = np.where(go_left, self.left, self.right)
            node = self.roots
            for _ in range(self.depth):
                node = step[node]
            leaves = self.value[node][None, :]
        else:
            # A batch: advance the (rows, trees) matrix of current nodes level by level,
            # evaluating only the nodes the rows are at (6x faster than every node for
            # every row on the Bikeshare holdout).
            flat = x.ravel()  # C order: element (i, f) is flat[i * n_features + f]
            row = (np.arange(m, dtype=np.intp) * self.n_features)[:, None]
            node = np.broadcast_to(self.roots, (m, len(self.roots)))
            for _ in range(self.depth):
                xv = flat[row + self.feature[node]]
                go_left = xv <= self.threshold[node]
                if has_nan:
                    go_left |= np.isnan(xv) & self.missing_left[node]
                node = np.where(go_left, self.left[node], self.right[node])
            leaves = self.value[node]  # (m, n_iter * k)
        # _raw_predict: raw = 0 + baseline, then raw[:, k] += tree value, iteration by
        # iteration. np.add.accumulate is a strictly sequential sum (unlike np.sum, which
        # sums pairwise), so prepend the baseline and take the last partial sum: the same
        # additions in the same order, hence the same bits.
        out = np.empty((m, self.k))
        for k in range(self.k):
            terms = np.empty((m, self.n_iter + 1))
            terms[:, 0] = self.baseline[0, k]
            terms[:, 1:] = leaves[:, k :: self.k]
            out[:, k] = np.add.accumulate(terms, axis=1)[:, -1]
        return out


class _Linear:
    """Ridge / LogisticRegression: X @ coef_.T + intercept_."""

    def __init__(self, est, n_features):
        if est.coef_.shape[-1] != n_features:
            raise Unsupported(
                f"estimator {type(est).__name__}: expects {est.coef_.shape[-1]} features, "
                f"transform gives {n_features}"
            )
        self.coef_t = est.coef_.T
        self.intercept = est.intercept_

    def raw(self, x, has_nan):
        return x @ self.coef_t + self.intercept


# ---------------------------------------------------------------------------------------
# The compiled pipeline.
# ---------------------------------------------------------------------------------------


class CompiledPipeline:
    """``predict(columns)`` of a fitted Pipeline without scikit-learn's per-call overhead.

    Attributes:
        feature_names_in_: The raw input columns (the pipeline's).
        n_features: Width of the transformed matrix.
        kind: ``"trees"`` or ``"linear"``.
        classes_: The class labels (classifiers), else None.
    """

    def __init__(self, names, blocks, width, model, kind, task_kind, est):
        self.feature_names_in_ = list(names)
        self._blocks = blocks
        self.n_features = width
        self._model = model
        self.kind = kind
        self._task_kind = task_kind  # "regression" | "classification"
        self.classes_ = getattr(est, "classes_", None)
        self._estimator = est
        self._link = None
        if kind == "trees" and task_kind == "regression":
            link = type(est._loss.link).__name__
            if link == "IdentityLink":
                self._link = None
            elif link == "LogLink":
                self._link = np.exp
            else:
                raise Unsupported(f"estimator {type(est).__name__}: inverse link {link}")

    def transform(self, columns: Mapping[str, np.ndarray]) -> tuple[np.ndarray, bool]:
        """The ColumnTransformer's output (float64, C order) and whether it holds a NaN."""
        try:
            n = len(columns[self.feature_names_in_[0]])
        except KeyError:
            raise ValueError(f"input lacks column {self.feature_names_in_[0]!r}") from None
        for name in self.feature_names_in_:
            if name not in columns:
                raise ValueError(f"input lacks column {name!r}")
            if len(columns[name]) != n:
                raise ValueError(f"column {name!r} has {len(columns[name])} rows, not {n}")
        x = np.empty((n, self.n_features))
        for start, stop, block in self._blocks:
            block.fill(columns, x[:, start:stop])
        has_nan = False
        if not np.isfinite(x).all():
            # Rare: find out which. Scalers refuse infinity (scikit-learn raises); the
            # linear models refuse NaN and infinity; the trees route NaN.
            for _, _, block in self._blocks:
                block.check_finite(columns)
            if self.kind == "linear":
                raise ValueError("Input X contains NaN or infinity (linear model)")
            has_nan = bool(np.isnan(x).any())
        return x, has_nan

    def decision(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """Raw model output: (n, k) tree sums, or (n,) / (n, k) linear scores."""
        x, has_nan = self.transform(columns)
        return self._model.raw(x, has_nan)

    def predict(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """What ``pipeline.predict(DataFrame)`` returns, for n rows of raw columns."""
        raw = self.decision(columns)
        if self._task_kind == "regression":
            if self.kind == "trees":
                raw = raw.ravel()  # HistGradientBoostingRegressor: link.inverse(raw.ravel())
                return raw if self._link is None else self._link(raw)
            return raw
        # Classifiers: binary "> 0" (not ">= 0", as scikit-learn), multiclass argmax.
        if raw.ndim == 1 or raw.shape[1] == 1:
            return self.classes_[(raw.ravel() > 0).astype(int)]
        return self.classes_[np.argmax(raw, axis=1)]

    def predict_proba(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """Class probabilities, as the estimator's predict_proba computes them."""
        if self._task_kind != "classification":
            raise AttributeError("predict_proba: not a classifier")
        raw = self.decision(columns)
        if self.kind == "trees":
            return self._estimator._loss.predict_proba(raw)
        from scipy.special import expit
        from sklearn.utils.extmath import softmax

        if raw.ndim == 1 or raw.shape[1] == 1:
            p = expit(raw.ravel())
            return np.stack([1 - p, p], axis=1)
        return softmax(raw, copy=False)


def compile_pipeline(pipeline) -> CompiledPipeline:
    """Compiles a fitted ``Pipeline([ColumnTransformer, estimator])``.

    Raises:
        Unsupported: a step, transformer or estimator without an exact compiled form.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import Pipeline

    if type(pipeline) is not Pipeline:
        raise Unsupported(f"{type(pipeline).__name__}: only a scikit-learn Pipeline is compiled")
    steps = pipeline.steps
    if len(steps) != 2:
        raise Unsupported(
            f"Pipeline with steps {[s for s, _ in steps]}: expected (transform, estimator)"
        )
    (t_name, ct), (m_name, est) = steps
    try:
        blocks, width = _compile_column_transformer(ct)
    except Unsupported as e:
        raise Unsupported(f"step {t_name!r}: {e}") from None
    names = list(ct.feature_names_in_)
    kind_of = {
        HistGradientBoostingRegressor: ("trees", "regression"),
        HistGradientBoostingClassifier: ("trees", "classification"),
        Ridge: ("linear", "regression"),
        LogisticRegression: ("linear", "classification"),
    }
    if type(est) not in kind_of:
        raise Unsupported(
            f"step {m_name!r}: no compiled form for {type(est).__module__}.{type(est).__name__}"
        )
    kind, task_kind = kind_of[type(est)]
    try:
        model = _Trees(est, width) if kind == "trees" else _Linear(est, width)
        return CompiledPipeline(names, blocks, width, model, kind, task_kind, est)
    except Unsupported as e:
        raise Unsupported(f"step {m_name!r}: {e}") from None


# ---------------------------------------------------------------------------------------
# Agreement, and the choice.
# ---------------------------------------------------------------------------------------


def columns_of(frame, names) -> dict[str, np.ndarray]:
    """A DataFrame's columns as the compiled path takes them: numbers as numpy numbers,
    anything else (strings, pandas' string dtype) as an object array."""
    out = {}
    for name in names:
        series = frame[name]
        if series.dtype.kind in "biuf":
            out[name] = series.to_numpy()
        else:
            out[name] = series.to_numpy(dtype=object)
    return out


class SklearnPath:
    """scikit-learn's own predict behind the compiled path's interface (the fallback)."""

    def __init__(self, pipeline):
        self.pipeline = pipeline
        self.feature_names_in_ = list(pipeline.feature_names_in_)

    def _frame(self, columns):
        import pandas as pd

        return pd.DataFrame({n: columns[n] for n in self.feature_names_in_})

    def predict(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        return self.pipeline.predict(self._frame(columns))

    def predict_proba(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        return self.pipeline.predict_proba(self._frame(columns))


@dataclass(frozen=True)
class Agreement:
    """The compiled path against scikit-learn on every row of a frame.

    ``max_abs_deviation`` / ``max_rel_deviation``: of the predictions (regression) or of
    the class probabilities (classification, when both have them; classes must be
    identical on every row for ``ok``).
    """

    rows: int
    max_abs_deviation: float
    max_rel_deviation: float
    tolerance: float
    ok: bool
    detail: str


def check(pipeline, compiled, frame, task: str) -> Agreement:
    """Compares ``compiled.predict`` with ``pipeline.predict`` on every row of ``frame``,
    predicting the frame at once and each row on its own."""
    names = list(pipeline.feature_names_in_)
    x = frame[names]
    columns = columns_of(x, names)
    expected = pipeline.predict(x)
    got = compiled.predict(columns)
    rows = len(x)
    # A single row takes another code path than a batch (the tree walk differs; serving
    # predicts one row at a time), so every row is also predicted on its own.
    singles = [compiled.predict({n: columns[n][i : i + 1] for n in names}) for i in range(rows)]
    single = np.concatenate(singles) if singles else got[:0]
    if got.shape != expected.shape or single.shape != expected.shape:
        return Agreement(
            rows, math.inf, math.inf, REL_TOLERANCE, False,
            f"shape {got.shape} != scikit-learn's {expected.shape}",
        )  # fmt: skip
    if task == "regression":
        dev = np.maximum(
            np.abs(got.astype(np.float64) - expected), np.abs(single.astype(np.float64) - expected)
        )
        nan = np.isnan(expected)
        dev[nan] = 0.0
        dev[(np.isnan(got) | np.isnan(single)) != nan] = math.inf
        scale = np.maximum(1.0, np.abs(expected))
        rel = dev / scale
        worst = float(rel.max()) if rows else 0.0
        ok = bool(np.all(rel <= REL_TOLERANCE))
        bad = int(np.sum(rel > REL_TOLERANCE))
        detail = (
            f"{rows} rows: max |fast - sklearn| {float(dev.max()) if rows else 0.0:.3g}, "
            f"max relative {worst:.3g}; {bad} rows beyond {REL_TOLERANCE:g} x max(1, |y|)"
        )
        max_rel = (
            float(np.max(dev / np.maximum(np.abs(expected), np.finfo(float).tiny))) if rows else 0.0
        )
        return Agreement(
            rows, float(dev.max()) if rows else 0.0, max_rel, REL_TOLERANCE, ok, detail
        )
    # classification: identical classes on every row
    differ = int(np.sum((got != expected) | (single != expected)))
    max_abs = max_rel = 0.0
    if hasattr(pipeline, "predict_proba"):
        p_dev = np.abs(compiled.predict_proba(columns) - pipeline.predict_proba(x))
        max_abs = float(p_dev.max()) if rows else 0.0
        max_rel = max_abs  # probabilities are on [0, 1]
    detail = (
        f"{rows} rows: {differ} with a different class; max |probability difference| {max_abs:.3g}"
    )
    return Agreement(rows, max_abs, max_rel, REL_TOLERANCE, differ == 0, detail)


def choose(pipeline, frame, task: str):
    """The compiled path if it compiles and agrees with scikit-learn on every row of
    ``frame``, else scikit-learn's; never raises for an unsupported model.

    Returns:
        (predictor with ``.predict(columns)``, report): ``{"path": "numpy" | "sklearn",
        "reason", "rows_checked", "max_abs_deviation", "tolerance"}``.
    """
    report = {
        "path": "sklearn",
        "reason": "",
        "rows_checked": 0,
        "max_abs_deviation": None,
        "tolerance": REL_TOLERANCE,
    }
    try:
        compiled = compile_pipeline(pipeline)
    except Unsupported as e:
        report["reason"] = f"unsupported: {e}"
        return SklearnPath(pipeline), report
    try:
        agreement = check(pipeline, compiled, frame, task)
    except Exception as e:  # a compiled path that cannot even run is not chosen
        report["reason"] = f"check failed: {type(e).__name__}: {e}"
        return SklearnPath(pipeline), report
    report.update(rows_checked=agreement.rows, max_abs_deviation=agreement.max_abs_deviation)
    if agreement.rows == 0:
        report["reason"] = "no rows to check the compiled path on"
        return SklearnPath(pipeline), report
    if not agreement.ok:
        report["reason"] = f"disagrees with scikit-learn: {agreement.detail}"
        return SklearnPath(pipeline), report
    report.update(path="numpy", reason=f"agrees with scikit-learn: {agreement.detail}")
    return compiled, report
