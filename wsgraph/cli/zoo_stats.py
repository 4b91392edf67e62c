"""``wsgraph zoo-stats``: the statistics + gradient-boosted-trees baseline of Unterthiner et al. on a zoo.

Example::

    wsgraph zoo-stats --zoo data/mnist-zoo --targets test_accuracy --out runs/mnist-zoo-stats
"""

from __future__ import annotations

import argparse

from wsgraph.cli.arguments import path_argument
from wsgraph.io import check_writable_folder


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "zoo-stats",
        help="predict zoo members' accuracy from weight statistics with gradient-boosted trees (baseline)",
        description=(
            "Per layer, the mean, variance and 0/25/50/75/100 percentiles of the weights and of the biases of each "
            "zoo member (Unterthiner et al., 2020), fed to scikit-learn's GradientBoostingRegressor trained on the "
            "zoo's train members; reports Kendall's tau, Spearman's rho, R^2 and MSE on its test members (the "
            "splits of 'wsgraph convert ZOO/checkpoints DATA --labels ZOO/labels.csv'). Writes result.json, "
            "test_predictions.csv and predicted_vs_true.png to --out."
        ),
    )
    parser.add_argument("--zoo", required=True, type=path_argument, help="a folder written by 'wsgraph zoo'")
    parser.add_argument("--out", required=True, type=path_argument, help="where to write the results")
    parser.add_argument(
        "--targets", default="test_accuracy", help="comma-separated zoo targets to predict (default test_accuracy)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the trees' subsampling (default 0)")
    parser.add_argument("--n-estimators", type=int, default=300, help="boosting stages (default 300)")
    parser.add_argument("--learning-rate", type=float, default=0.05, help="shrinkage, in (0, 1] (default 0.05)")
    parser.add_argument("--max-depth", type=int, default=4, help="depth of each tree (default 4)")
    parser.set_defaults(func=run)


_MOST_ESTIMATORS, _MOST_DEPTH = 1_000_000, 1_000
# Shrinkage: above 1 each tree over-corrects the last, and above about 2 the predictions grow
# without bound (NaN after a few hundred trees).
_MOST_LEARNING_RATE = 1.0


def run(args: argparse.Namespace) -> int:
    from wsgraph.zoo.stats import fit_stats_gbt

    targets = tuple(part.strip() for part in args.targets.split(",") if part.strip())
    # Upper bounds past any useful setting: scikit-learn would fail on larger ones only after the members are
    # read, with an overflow, an allocation of many GiB, or NaN predictions that name no flag.
    for name, most in (("n_estimators", _MOST_ESTIMATORS), ("max_depth", _MOST_DEPTH)):
        if not 1 <= getattr(args, name) <= most:
            raise ValueError(f"--{name.replace('_', '-')} must be in 1..{most:,}, got {getattr(args, name)}")
    if not 0 < args.learning_rate <= _MOST_LEARNING_RATE:
        raise ValueError(f"--learning-rate must be in (0, {_MOST_LEARNING_RATE:g}], got {args.learning_rate}")
    # scikit-learn's random_state takes 0 to 2**32 - 1; it would refuse others only after the features are read.
    if not 0 <= args.seed < 2**32:
        raise ValueError(f"--seed must be in 0..{2**32 - 1}, got {args.seed}")
    # The results are written after every member is read and the trees are fitted.
    check_writable_folder(args.out, f"--out {args.out}")
    result = fit_stats_gbt(
        args.zoo,
        args.out,
        targets,
        seed=args.seed,
        n_estimators=args.n_estimators,
        learning_rate=args.learning_rate,
        max_depth=args.max_depth,
    )
    for reason, paths in result["left_out"].items():
        if paths:
            what = reason.replace("non_finite_", "non-finite ")
            print(f"left out {len(paths)} member checkpoint(s) with {what}, e.g. {paths[0]}")
    ranking = result["test_ranking"]
    print(
        f"stats-gbt on {result['networks']['test']} test members: Kendall tau {ranking['kendall_tau']:.3f}, "
        f"R^2 {ranking['r2']:.3f}, MSE {result['test_metric']:.4g} (mean predictor {result['reference']['test_metric']:.4g}); "
        f"results in {args.out}"
    )
    return 0
