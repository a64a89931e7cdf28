"""`python -m agent.demo_app --tracking-uri sqlite:///demo.db --n 400`"""

from __future__ import annotations

import argparse
import time

from .corpus import build_demo_corpus


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Log demo travel-assistant traces with "
                                     "planted faults to an MLflow tracking store.")
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--n", type=int, default=400, help="number of traces")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--experiment-name", default="insights-demo")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    corpus = build_demo_corpus(args.tracking_uri, n_traces=args.n, seed=args.seed,
                               experiment_name=args.experiment_name)
    print(corpus.summary())
    print(f"built in {time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    main()
