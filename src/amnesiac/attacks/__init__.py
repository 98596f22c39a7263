"""Attacks that measure forgetting: membership inference and model inversion, with pure-function metrics."""

from .inversion import (
    Inversion,
    InversionReferences,
    class_mean_image,
    inversion_references,
    invert,
    pixel_scores,
    save_grid,
    score_inversion,
    ssim,
    train_evaluator,
    untrained_copy,
)
from .metrics import (
    auc,
    best_balanced_accuracy,
    bootstrap_ci,
    roc_curve,
    summarize,
    threshold_stats,
    tpr_at_fpr,
    verification_error,
)
from .mia import (
    ATTACK_OPTIONS,
    ATTACKS,
    MIAReport,
    ShadowRecipe,
    ShadowSet,
    canonical_attack,
    check_attack_options,
    matched_non_members,
    run_attacks,
    train_inclusion_shadows,
    train_shadows,
    ulira_auc,
    ulira_scores,
)

__all__ = [
    "ATTACK_OPTIONS", "ATTACKS", "Inversion", "InversionReferences", "inversion_references", "pixel_scores", "canonical_attack", "check_attack_options", "MIAReport", "ShadowRecipe", "ShadowSet", "auc", "best_balanced_accuracy",
    "bootstrap_ci", "class_mean_image", "invert", "matched_non_members", "roc_curve", "run_attacks", "save_grid",
    "score_inversion", "ssim", "summarize", "threshold_stats", "tpr_at_fpr", "train_evaluator", "train_shadows", "untrained_copy",
    "train_inclusion_shadows", "ulira_auc", "ulira_scores", "verification_error",
]
