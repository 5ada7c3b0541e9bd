"""kn.book.figures: the book's figures, each a function of what a chapter measured that returns a matplotlib Figure
with a caption computed from the data. One module per chapter group over shared axis helpers (axes); this package
re-exports their API, so a notebook reads ``figures.<name>``.

Modules
    attribution
    axes
    consistency
    edits
    forest
    land
    overlap
"""

from kn.book.figures.attribution import (
    accuracy_bars,
    coarse_layers,
    coarse_sizes,
    completeness,
    example_scores,
    layer_errors,
    spiky_integrand,
    template_bars,
)
from kn.book.figures.axes import tick_label_overlaps
from kn.book.figures.consistency import consistency_distributions
from kn.book.figures.edits import (
    dai_paper_values,
    land_paper_values,
    method_rates,
    relation_bars,
    relation_change,
)
from kn.book.figures.forest import VERDICT_COLOURS, claims_forest
from kn.book.figures.land import (
    TrainingLosses,
    land_losses,
    land_training,
    learning_curve,
    validation_sweep,
)
from kn.book.figures.overlap import (
    layer_shares,
    overlap_distributions,
    threshold_overlap,
)

__all__ = ['template_bars', 'accuracy_bars', 'coarse_layers', 'example_scores', 'completeness', 'coarse_sizes', 'layer_errors', 'spiky_integrand', 'tick_label_overlaps', 'consistency_distributions', 'method_rates', 'land_paper_values', 'dai_paper_values', 'relation_change', 'relation_bars', 'VERDICT_COLOURS', 'claims_forest', 'validation_sweep', 'TrainingLosses', 'land_losses', 'land_training', 'learning_curve', 'overlap_distributions', 'threshold_overlap', 'layer_shares']
