"""Real models on the Bikeshare task for the evaluation gate's tests.

The splits are ingest's own (``components.ingest.executor.split``): a hash split on ``day``
(70 / 15 / 15), so that the holdout holds every season, weather and kind of day (a time
split's holdout holds one or two seasons) and a day never straddles two splits. The
models are fitted by the transform and train executors, as the pipeline fits them, and
carry train's metadata (``sha256``, ``sklearn_version``, ``task``, ``target``).

The classification variant: ``high_demand`` = 1 when more than ``HIGH_DEMAND`` bikers rode
in the hour (about 27% of the hours in every split), derived here in the test data; its
feature spec is the bundled ``bikeshare`` spec with ``task`` classification and that target.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from components.evaluate import config as config_mod
from components.ingest import executor as ingest_exec
from components.train import executor as train_exec
from components.transform import executor as transform_exec

HIGH_DEMAND = 200
RAIN = "light rain/snow"


@dataclass(frozen=True)
class Trained:
    path: str
    meta: dict

    def as_champion(self, version: str = "3") -> dict:
        """The metadata the champion lookup hands on for this model."""
        return {**self.meta, "found": True, "version": version}


NO_CHAMPION = {"found": False}


@dataclass(frozen=True)
class Splits:
    folder: Path
    frames: dict[str, pd.DataFrame]
    meta: dict[str, dict]

    def path(self, name: str) -> str:
        return str(self.folder / name)


@pytest.fixture(scope="session")
def splits(bikeshare_csv, tmp_path_factory) -> Splits:
    data = pd.read_csv(bikeshare_csv)
    data["high_demand"] = (data["bikers"] > HIGH_DEMAND).astype(int)
    rule = ingest_exec.split_rule_for("hash", "day", "day", 0.7, 0.15, 0.15)
    parts = ingest_exec.split(data, rule)
    folder = tmp_path_factory.mktemp("splits")
    meta = {}
    for name, part in parts.items():
        sha = ingest_exec.write_parquet(part, str(folder / name))
        meta[name] = {"sha256": sha, "rows": len(part), "split": name}
    frames = {name: pd.read_parquet(folder / name) for name in parts}
    return Splits(folder, frames, meta)


def feature_spec(task: str) -> dict:
    spec = copy.deepcopy(transform_exec.load_spec("bikeshare"))
    if task == "classification":
        spec.update(name="bikeshare_high_demand", task="classification", target="high_demand")
    return spec


def rain_tripled(train: pd.DataFrame) -> pd.DataFrame:
    """Training data whose rainy hours claim three times the riders: a model fitted on it is
    good overall and badly wrong on one weather slice."""
    out = train.copy()
    rain = out["weathersit"] == RAIN
    out.loc[rain, "bikers"] = out.loc[rain, "bikers"] * 3
    return out


@pytest.fixture(scope="session")
def train_model(splits, tmp_path_factory) -> Callable[..., Trained]:
    """``train_model(name, task, model_type, params, corrupt)``: a fitted model, cached by name."""
    folder = tmp_path_factory.mktemp("models")
    cache: dict[str, Trained] = {}
    transforms: dict[str, tuple[str, dict]] = {}

    def make(
        name: str,
        task: str = "regression",
        model_type: str = "gradient_boosting",
        params: dict | None = None,
        corrupt: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
    ) -> Trained:
        if name in cache:
            return cache[name]
        if task not in transforms:
            spec = feature_spec(task)
            where = folder / f"transform_{task}"
            fitted = transform_exec.fit(spec, splits.frames["train"])
            transforms[task] = (str(where), transform_exec.save(fitted, spec, str(where)))
        transform_dir, transform_meta = transforms[task]
        train_path = splits.path("train")
        if corrupt is not None:
            train_path = str(folder / f"train_{name}")
            corrupt(splits.frames["train"]).to_parquet(train_path, index=False)
        lineage = {"data_sha256": splits.meta["train"]["sha256"], "transform_version": "t"}
        meta, _ = train_exec.run(
            train_path,
            splits.path("eval"),
            transform_dir,
            transform_meta,
            str(folder / name),
            model_type,
            params or {},
            lineage,
        )
        cache[name] = Trained(str(folder / name), meta)
        return cache[name]

    return make


@pytest.fixture(scope="session")
def models(train_model) -> dict[str, Trained]:
    """The Bikeshare models the tests judge, by role."""
    return {
        # regression on bikers
        "good": train_model("good"),
        "weak": train_model("weak", params={"max_iter": 15}),
        "linear": train_model("linear", model_type="linear"),
        "unfair": train_model("unfair", corrupt=rain_tripled),
        # classification on high_demand
        "good_clf": train_model("good_clf", task="classification"),
        "linear_clf": train_model("linear_clf", task="classification", model_type="linear"),
    }


def fast_config(name: str = "bikeshare", **changes) -> str:
    """A bundled config as JSON text, with fewer latency calls (the tests never judge on
    time: the latency limits are seconds) and any ``section={...}`` changes."""
    config = json.loads((config_mod.CONFIGS_DIR / f"{name}.json").read_text())
    config["latency"].update(single_row_repeats=20, batch_repeats=3)
    for section, values in changes.items():
        if isinstance(values, dict):
            config[section].update(values)
        else:
            config[section] = values
    return json.dumps(config)
