"""Print the numbers the README quotes for the fairer measures (issue 13, items 4-7).

    OMP_NUM_THREADS=1 python scripts/fair_measures.py            # every section
    OMP_NUM_THREADS=1 python scripts/fair_measures.py attention  # one section

Sections: ``similarity`` (pooled vs equal-layer-weight J*, every seed of
fashion-mlp-class-sweep), ``alignment`` (Mantel and partial Mantel, every seed of
fashion-mlp-class-sweep), ``fairness`` (TPR by sex & race with Wilson intervals and count
flags, gap intervals, every seed of adult-mlp-cluster-sweep), ``attention`` (entropy against
sparsity with intervals, every seed of fashion-vit-cluster-sweep; a few minutes on one core),
``null`` (rtl's J and J* against the random-partition control, paired across seeds) and
``overlap`` (fashion-mlp-class-sweep-count against the same seed of the default group) and
``oracle`` (fashion-vit-cluster-sweep's collapse levels against the dense model with and
without the oracle).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analysis import load_run  # noqa: E402
from analysis.seeds import seed_runs  # noqa: E402

FASHION = ROOT / "artifacts" / "fashion-mlp-class-sweep"
ADULT = ROOT / "artifacts" / "adult-mlp-cluster-sweep"
VIT = ROOT / "artifacts" / "fashion-vit-cluster-sweep"


pd.set_option("display.width", 200)
pd.set_option("display.max_columns", 20)


def similarity() -> None:
    """Pooled against equal-layer-weight J* on every seed of fashion-mlp-class-sweep."""
    from analysis.similarity import (
        GLOBAL,
        LAYER_MEAN,
        disjoint_layers,
        layer_shares,
        level_similarity_summary,
        method_shared_rows,
        similarity_table,
    )

    for seed, run in seed_runs(FASHION):
        shares = layer_shares(run.masks("rtl", 0))
        print(f"== similarity: fashion-mlp-class-sweep seed {seed}, rtl")
        print("layer shares of the prunable weights:", {k: round(v, 3) for k, v in shares.items()})
        print("disjoint by construction:", disjoint_layers(method_shared_rows(run, "rtl")))
        s = level_similarity_summary(similarity_table(run, "rtl"))
        wide = s[s["layer"].isin([GLOBAL, LAYER_MEAN])].pivot(
            index=["level", "sparsity"], columns="layer", values="jaccard_star"
        )
        wide = wide.rename(columns={GLOBAL: "J* pooled", LAYER_MEAN: "J* equal layers"})
        print(wide.round(3).to_string())


def alignment() -> None:
    """Mantel and partial Mantel alignment on every seed of fashion-mlp-class-sweep."""
    from analysis.projection import alignment_facts, alignment_table

    for seed, run in seed_runs(FASHION):
        table = alignment_table(run, "rtl")
        facts = alignment_facts(run, "rtl", table)
        print(f"== alignment: fashion-mlp-class-sweep seed {seed}, rtl (999 permutations)")
        rho, p = facts["inputs_rho"], facts["inputs_p"]
        print(f"class hierarchy vs centroid pixel similarity: rho {rho:.3f}, p {p:.3g}")
        print("left out:", facts["disjoint"])
        cols = ["level", "sparsity", "layer_group", "rho", "p_value", "partial_rho", "partial_p_value"]
        print(table[cols].round(3).to_string(index=False))
        print(facts["verdict"])


def fairness() -> None:
    """Per-group TPR with count flags, and gap intervals, on every seed of adult-mlp-cluster-sweep."""
    from analysis.fairness import group_metrics, run_fairness_gaps

    for seed, run in seed_runs(ADULT):
        lv = run.levels("rtl")[len(run.levels("rtl")) // 2]
        where = f"level {lv} ({run.sparsity('rtl', lv):.1%})"
        print(f"== fairness: adult-mlp-cluster-sweep seed {seed}, rtl, {where}")
        t = group_metrics(run.predictions("rtl", lv), ["sex", "race"], metrics=["true_positive_rate"])
        print(t.drop(columns=["group_by", "metric"]).round(3).to_string(index=False))
        for group_by in (["sex"], ["sex", "race"]):
            metrics = ["accuracy", "true_positive_rate"]
            gaps = run_fairness_gaps(run, group_by, ["rtl", "imp"], metrics=metrics)
            keep = gaps["statistic"].isin(["difference", "worst"])
            print(f"-- gaps by {' & '.join(group_by)} (95 % joint stratified bootstrap, 400 resamples)")
            cols = ["method", "level", "sparsity", "metric", "statistic", "value", "group"]
            print(gaps.loc[keep, [*cols, "ci_low", "ci_high"]].round(3).to_string(index=False))


def attention() -> None:
    """Attention entropy against sparsity on every seed of fashion-vit-cluster-sweep."""
    from analysis.attention_sweep import (
        ALL_IMAGES,
        OWN_IMAGES,
        attention_level_summary,
        attention_probe_tables,
        attention_trend,
        attention_verdict,
    )
    from analysis.levels import dense_reference

    for seed, run in seed_runs(VIT):
        print(f"== attention: fashion-vit-cluster-sweep seed {seed}")
        for method in run.methods:
            k = len(run.ticket_names(method))
            ref = dense_reference(run, method)  # as the Attention page: the dense model trained on all data
            tables = attention_probe_tables(run, method, list(range(k)), reference=ref)
            heads, images = tables["heads"], tables["images"]
            summary = attention_level_summary(heads, images, reference=tables["reference"])
            trend = attention_trend(summary)
            print(f"-- {method}")
            print(trend.drop(columns=["layer"]).round(3).to_string(index=False))
            for image_set in (OWN_IMAGES, ALL_IMAGES):
                if image_set in set(trend["images"]):
                    print(attention_verdict(trend, image_set))


def null() -> None:
    """Pooled and equal-layer J* of rtl against fashion-mlp-class-sweep-null, paired across seeds."""
    from analysis.seeds import null_similarity_table

    t = null_similarity_table(FASHION, FASHION.with_name(FASHION.name + "-null"), ["rtl"])
    t = t[(t["measure"] == "jaccard_star") & t["layer"].isin(["__global__", "__layer_mean__"])]
    cols = ["layer", "level", "sparsity", "real_mean", "real_n_seeds", "null_mean", "null_n_seeds"]
    print("== null control: fashion-mlp-class-sweep vs -null, rtl, J* (real minus null: paired t, 95 %)")
    print(t[[*cols, "diff_mean", "diff_ci_low", "diff_ci_high"]].round(3).to_string(index=False))


def overlap() -> None:
    """Balanced K-way accuracy and mean overlap c of rtl, overlap scaling count vs the default, seed 0."""
    from sklearn.metrics import balanced_accuracy_score

    count = load_run(FASHION.with_name(FASHION.name + "-count") / "seed-0")
    default = load_run(FASHION / "seed-0")
    print("== overlap scaling: fashion-mlp-class-sweep-count vs fashion-mlp-class-sweep, seed 0, rtl")
    print("level  sparsity  mean_c  balanced_acc_default  balanced_acc_count")
    for lv in count.levels("rtl"):
        p = count.predictions("rtl", lv)
        got = balanced_accuracy_score(p["label"], p["pred"])
        ref = np.nan
        if lv in default.levels("rtl"):
            q = default.predictions("rtl", lv)
            ref = balanced_accuracy_score(q["label"], q["pred"])
        info = count.level_info("rtl", lv)
        print(f"{lv:5d}  {info['sparsity']:8.3f}  {info['overlap']['mean']:6.2f}  {ref:20.3f}  {got:18.3f}")


def oracle() -> None:
    """Collapse levels on fashion-vit-cluster-sweep against the dense model with and without the oracle.

    RTL's experts are routed by the oracle (the true subset), and the sweep's stopping rule compares
    that with IMP level 0's unrestricted argmax; like with like is IMP level 0 given the same oracle
    (``pred_oracle``: its argmax within the true subset). Collapse: balanced accuracy 0.05 below.
    """
    import warnings

    from sklearn.metrics import balanced_accuracy_score

    def bacc(run, method: str, level: int, col: str) -> float:
        p = run.predictions(method, level)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return balanced_accuracy_score(p["label"], p[col])

    def first_below(run, method: str, col: str, dense: float) -> str:
        for lv in run.levels(method):
            if lv >= 1 and bacc(run, method, lv, col) <= dense - 0.05:
                return f"L{lv} ({run.sparsity(method, lv):.1%})"
        return "none"

    print("== oracle: collapse levels of fashion-vit-cluster-sweep against each dense reference")
    for seed, run in seed_runs(VIT):
        dense, dense_oracle = bacc(run, "imp", 0, "pred"), bacc(run, "imp", 0, "pred_oracle")
        print(
            f"seed {seed}: dense {dense:.3f}, dense with oracle {dense_oracle:.3f}; "
            f"imp {first_below(run, 'imp', 'pred', dense)}, "
            f"imp with oracle vs dense with oracle {first_below(run, 'imp', 'pred_oracle', dense_oracle)}, "
            f"rtl vs dense {first_below(run, 'rtl', 'pred', dense)}, "
            f"rtl vs dense with oracle {first_below(run, 'rtl', 'pred', dense_oracle)}"
        )


SECTIONS = {
    "similarity": similarity,
    "alignment": alignment,
    "fairness": fairness,
    "attention": attention,
    "null": null,
    "overlap": overlap,
    "oracle": oracle,
}

if __name__ == "__main__":
    wanted = sys.argv[1:] or list(SECTIONS)
    unknown = [w for w in wanted if w not in SECTIONS]
    if unknown:
        sys.exit(f"unknown section(s) {unknown}; choose from {sorted(SECTIONS)}")
    for name in wanted:
        SECTIONS[name]()
        print()
