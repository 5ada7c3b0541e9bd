"""kn.book.findings: what each chapter concludes, computed from what it measured: tables with intervals, verdicts, and
the chapter's summary (kn.book.summaries) that the results page reads. One module per chapter; this package
re-exports their API, so a chapter's notebook reads ``findings.<name>``.

Modules
    amplification
    attribution
    choices
    common
    consistency
    contrasts
    data
    editing
    land
    overlap
"""

from kn.book.findings.amplification import (
    amplification_summary,
    change_rate_comparisons,
    medians,
    per_relation_change,
)
from kn.book.findings.attribution import (
    attribution_summary,
    example_prompt,
    throughput_table,
)
from kn.book.findings.choices import (
    choice_prompts,
    choices_summary,
    definition_table,
    layer_errors,
    reference_cost,
    spiky_case,
)
from kn.book.findings.common import PRIMARY_FAMILY_5, PRIMARY_FAMILY_6, interval_table
from kn.book.findings.consistency import (
    SCORE_NAMES,
    consistency_captions,
    consistency_claims,
    consistency_class_table,
    consistency_contrast_table,
    consistency_sanity_line,
    consistency_shares_table,
)
from kn.book.findings.contrasts import (
    contrasts_table,
    edit_contrasts,
    edit_rates,
    log_ratio_contrasts,
    log_ratio_table,
    net_name,
    power_rows,
    power_table,
    primary_pairs,
    rates_table,
    specificity_table,
    table9_readings,
)
from kn.book.findings.data import data_summary
from kn.book.findings.editing import (
    editing_summary,
    rate_means,
    rate_table,
    success_comparisons,
    update_table,
)
from kn.book.findings.land import (
    OPERATING_POINT_FORMATS,
    detector_comparisons,
    detector_sets_table,
    detector_table,
    land_case_table,
    land_summary,
    near_constant_table,
    operating_point_table,
    reaches_claim,
    seed_holds_table,
    table6,
    table7,
    wording_table,
)
from kn.book.findings.overlap import (
    case_table,
    overlap_rows,
    overlap_summary,
    refined_table,
    table2,
    table4,
    threshold_sweep,
)

__all__ = ['medians', 'change_rate_comparisons', 'per_relation_change', 'amplification_summary', 'throughput_table', 'example_prompt', 'attribution_summary', 'choice_prompts', 'reference_cost', 'layer_errors', 'spiky_case', 'definition_table', 'choices_summary', 'interval_table', 'PRIMARY_FAMILY_5', 'PRIMARY_FAMILY_6', 'SCORE_NAMES', 'consistency_shares_table', 'consistency_class_table', 'consistency_contrast_table', 'consistency_sanity_line', 'consistency_claims', 'consistency_captions', 'net_name', 'primary_pairs', 'log_ratio_contrasts', 'log_ratio_table', 'table9_readings', 'edit_rates', 'edit_contrasts', 'specificity_table', 'rates_table', 'contrasts_table', 'power_table', 'power_rows', 'data_summary', 'rate_means', 'rate_table', 'success_comparisons', 'update_table', 'editing_summary', 'detector_sets_table', 'table6', 'table7', 'land_case_table', 'detector_table', 'detector_comparisons', 'wording_table', 'OPERATING_POINT_FORMATS', 'operating_point_table', 'seed_holds_table', 'near_constant_table', 'land_summary', 'reaches_claim', 'overlap_rows', 'table4', 'case_table', 'threshold_sweep', 'table2', 'refined_table', 'overlap_summary']
