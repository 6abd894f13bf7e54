"""The naive KServe baseline of bench/serving.py: a kserve.Model that builds a DataFrame per request.

    PYTHONPATH=. /tmp/venv-serving-lock/bin/python bench/serving_naive_kserve.py \
        --model-joblib MODEL --sha256 SHA --sklearn-version V --port 8080 [--workers 1]

What a first KServe custom model does: ``payload.as_dataframe()`` (one pandas column per V2
input), the scikit-learn pipeline's ``predict`` on it, one FP64 output. The pickle is loaded
by the verified loader (its sha256 and scikit-learn version); gRPC off. Runs in an env with kserve 0.21
(the serving lock); the model's pickle needs the repository root on PYTHONPATH.
"""

from __future__ import annotations

import argparse

from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer

from components.lib import artifacts


class NaivePandasModel(Model):
    def __init__(self, name: str, path: str, sha256: str, sklearn_version: str):
        super().__init__(name)
        self.path, self.sha256, self.sklearn_version = path, sha256, sklearn_version
        self.pipeline = None

    def load(self) -> bool:
        self.pipeline = artifacts.load_pickle(
            self.path, self.sha256, "model", sklearn_version=self.sklearn_version
        )
        self.ready = True
        return self.ready

    def predict(self, payload: InferRequest, headers=None) -> InferResponse:
        frame = payload.as_dataframe()
        values = self.pipeline.predict(frame[list(self.pipeline.feature_names_in_)])
        output = InferOutput(name="predict", shape=[len(values)], datatype="FP64")
        output.set_data_from_numpy(values.astype("float64"), binary_data=False)
        return InferResponse(
            model_name=self.name, infer_outputs=[output], response_id=payload.id or ""
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-joblib", required=True)
    parser.add_argument("--model-name", default="bikeshare")
    parser.add_argument("--sha256", required=True, help="the model.joblib's sha256")
    parser.add_argument("--sklearn-version", required=True, help="the one that saved it")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args, _ = parser.parse_known_args()
    model = NaivePandasModel(args.model_name, args.model_joblib, args.sha256, args.sklearn_version)
    model.load()
    ModelServer(http_port=args.port, workers=args.workers, enable_grpc=False).start([model])


if __name__ == "__main__":
    main()
