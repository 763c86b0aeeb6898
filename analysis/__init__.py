"""Measurements of lottery tickets: pure functions, arrays in, tidy pandas out.

Never imports streamlit; torch only inside the attention probe. Table
functions share one contract, ``f(run, methods=None, levels=None)``, and
return tidy DataFrames whose columns their module docstrings document; "the
level nearest a sparsity" is :func:`nearest_level` / :func:`levels_at`.

What the dashboard uses is re-exported here, grouped as in ``__all__``.
"""

from analysis.attention import attention_entropy, attention_entropy_table
from analysis.coding import (
    binary_entropy,
    coding_frame,
    coding_level_summary,
    coding_table,
    joint_coding_frame,
    joint_coding_table,
)
from analysis.collapse import (
    CollapseAlarm,
    alarm_summary,
    collapse_curves,
    collapse_evaluation,
    evaluate_alarm,
    label_free_prediction,
    labelled_collapse_points,
    level_signals,
    mask_signals,
    prediction_entropy,
)
from analysis.fairness import (
    fairness_gaps,
    group_drops,
    group_labels,
    group_metrics,
    run_fairness_gaps,
    run_group_drops,
)
from analysis.latent import latent_correlation, pairwise_latent_correlation, ticket_latent_correlation
from analysis.levels import PAPER_SPARSITIES, dense_reference, levels_at, nearest_level, paper_levels
from analysis.metrics import crossfit_balanced_accuracy, single_oracle_accuracy, ticket_metrics
from analysis.overview import (
    alarm_overview,
    describe_run,
    level_table,
    method_capabilities,
    method_table,
    results_table,
    subset_table,
)
from analysis.overview import paper_table as results_paper_table
from analysis.projection import (
    MantelResult,
    TicketMap,
    alignment_frame,
    alignment_table,
    fashion_class_similarity,
    mantel,
    ticket_map_table,
)
from analysis.seeds import across_seeds, find_null_control, null_similarity_table, per_seed, seed_table
from analysis.signals import first_departures, run_signals, seed_disagreement_table
from analysis.similarity import (
    OverlapCounts,
    chance_jaccard,
    cluster_order,
    hypergeometric_z,
    jaccard_star,
    layer_groups,
    level_similarity_summary,
    overlap_counts,
    pair_matrix,
    pairwise_iomin,
    pairwise_jaccard,
    pairwise_phi,
    similarity_frame,
    similarity_matrices,
    similarity_table,
    ticket_similarity_summary,
)
from analysis.table import group_paper_markdown, group_table_frame, paper_cells, paper_markdown, table_frame
from artifacts.run_format import Run, RunFormatError, RunGroup, find_groups, find_runs, load_group, load_run

__all__ = [
    # runs
    "Run",
    "RunFormatError",
    "find_runs",
    "load_run",
    # levels: the level nearest a sparsity, written once
    "PAPER_SPARSITIES",
    "dense_reference",
    "levels_at",
    "nearest_level",
    "paper_levels",
    # class metrics, the results and the paper table
    "crossfit_balanced_accuracy",
    "single_oracle_accuracy",
    "ticket_metrics",
    "table_frame",
    "paper_markdown",
    "paper_cells",
    "group_table_frame",
    "group_paper_markdown",
    "describe_run",
    "subset_table",
    "method_table",
    "level_table",
    "method_capabilities",
    "results_table",
    "results_paper_table",
    "alarm_overview",
    # collapse
    "CollapseAlarm",
    "alarm_summary",
    "collapse_curves",
    "collapse_evaluation",
    "evaluate_alarm",
    "label_free_prediction",
    "labelled_collapse_points",
    "level_signals",
    "mask_signals",
    "prediction_entropy",
    "latent_correlation",
    "pairwise_latent_correlation",
    "ticket_latent_correlation",
    # similarity
    "OverlapCounts",
    "chance_jaccard",
    "cluster_order",
    "hypergeometric_z",
    "jaccard_star",
    "layer_groups",
    "level_similarity_summary",
    "overlap_counts",
    "pair_matrix",
    "pairwise_iomin",
    "pairwise_jaccard",
    "pairwise_phi",
    "similarity_frame",
    "similarity_matrices",
    "similarity_table",
    "ticket_similarity_summary",
    # projection and semantic alignment
    "MantelResult",
    "TicketMap",
    "alignment_frame",
    "alignment_table",
    "fashion_class_similarity",
    "mantel",
    "ticket_map_table",
    # fairness
    "fairness_gaps",
    "group_drops",
    "group_labels",
    "group_metrics",
    "run_fairness_gaps",
    "run_group_drops",
    # coding cost
    "binary_entropy",
    "coding_frame",
    "coding_level_summary",
    "coding_table",
    "joint_coding_frame",
    "joint_coding_table",
    # attention
    "attention_entropy",
    "attention_entropy_table",
    # label-free signals
    "first_departures",
    "run_signals",
    "seed_disagreement_table",
    # run groups (seeds)
    "RunGroup",
    "find_groups",
    "load_group",
    "across_seeds",
    "find_null_control",
    "null_similarity_table",
    "per_seed",
    "seed_table",
]
