"""The naive KServe baseline of bench/serving.py: a kserve.Model that builds a DataFrame per request.

    PYTHONPATH=. /tmp/venv-serving-lock/bin/python bench/serving_naive_kserve.py \
        --model-joblib MODEL --model-name bikeshare --port 8080 [--workers 1]

What a first KServe custom model does: ``payload.as_dataframe()`` (one pandas column per V2
input), the scikit-learn pipeline's ``predict`` on it, one FP64 output. No verification of
the file (the benchmark made it a moment before); gRPC off. Runs in an env with kserve 0.21
(the serving lock); the model's pickle needs the repository root on PYTHONPATH.
"""

from __future__ import annotations

import argparse

import joblib
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer


class NaivePandasModel(Model):
    def __init__(self, name: str, path: str):
        super().__init__(name)
        self.path = path
        self.pipeline = None

    def load(self) -> bool:
        self.pipeline = joblib.load(self.path)
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
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args, _ = parser.parse_known_args()
    model = NaivePandasModel(args.model_name, args.model_joblib)
    model.load()
    ModelServer(http_port=args.port, workers=args.workers, enable_grpc=False).start([model])


if __name__ == "__main__":
    main()
