"""kn.base.paper: the numbers the two papers report, as tables to set beside ours.

API
    LAND_TABLE4 (overlap), LAND_TABLE6 (detector size), LAND_TABLE7 (overlap after LAND), LAND_OPTIMISER,
    LAND_OVERLAP_CLAIM,
    LAND_TABLE9 (change rate), LAND_TABLE10 (success rate), DAI_TABLE2 (refined sets, BERT-base)

Percentages are given as fractions (0.2097, not 20.97). Sources: Wu et al. (CCL 2025) Tables 4, 6, 7, 9, 10;
Dai et al. (ACL 2022) Table 2.
"""

from __future__ import annotations

import pandas as pd

# Table 4: overlap of one fact's coarse sets across its 10 prompts.
LAND_TABLE4 = pd.DataFrame(
    [
        {"source": "LAND, GPT-2", "N_s": 23.79, "N_u": 106.97, "N_so": 6.87, "R_so": 0.2097, "N_uo": 21.88, "R_uo": 0.2280},
        {"source": "LAND, Llama-3.2-1B", "N_s": 16.50, "N_u": 90.88, "N_so": 3.82, "R_so": 0.2276, "N_uo": 14.58,
         "R_uo": 0.2218},
    ]
).set_index("source")

# Table 6: detector size, L x 2 x H x R.
LAND_TABLE6 = pd.DataFrame(
    [
        {"source": "LAND, GPT-2", "L": 12, "H": 3072, "R": 64, "parameters": 4_718_592},
        {"source": "LAND, Llama-3.2-1B", "L": 16, "H": 8192, "R": 64, "parameters": 16_777_216},
    ]
).set_index("source")

# Table 7: LAND sets on test facts.
LAND_TABLE7 = pd.DataFrame(
    [
        {"source": "LAND, GPT-2", "N_L": 27.93, "N_Lo": 25.02, "R_Lo": 0.9658},
        {"source": "LAND, Llama-3.2-1B", "N_L": 20.43, "N_Lo": 20.18, "R_Lo": 0.9766},
    ]
).set_index("source")

# Table 9: change rate (P_after - P_before) / P_before after amplifying x2.
LAND_TABLE9 = pd.DataFrame(
    [
        ("GPT-2", "Baseline", 2.48, 2.23, 1.74), ("GPT-2", "KN-refined", 3.10, 2.53, 2.43),
        ("GPT-2", "LAND", 3.21, 2.44, 2.44),
        ("Llama-3.2-1B", "Baseline", 6.24, 5.48, 4.10), ("Llama-3.2-1B", "KN-refined", 7.02, 6.01, 6.00),
        ("Llama-3.2-1B", "LAND", 17.30, 16.40, 14.04),
    ],
    columns=["model", "method", "Same", "Related", "Unrelated"],
)

# Table 10: success rate (share of prompts whose top-1 token becomes t') after editing.
LAND_TABLE10 = pd.DataFrame(
    [
        ("GPT-2", "Before", 0.0713, 0.0499, 0.0010), ("GPT-2", "Baseline", 0.1498, 0.1169, 0.0130),
        ("GPT-2", "KN-refined", 0.2049, 0.1745, 0.0340), ("GPT-2", "LAND", 0.2581, 0.2157, 0.0286),
        ("Llama-3.2-1B", "Before", 0.1531, 0.1194, 0.0018), ("Llama-3.2-1B", "Baseline", 0.1665, 0.1267, 0.0097),
        ("Llama-3.2-1B", "KN-refined", 0.1676, 0.1270, 0.0101), ("Llama-3.2-1B", "LAND", 0.2175, 0.1824, 0.0144),
    ],
    columns=["model", "method", "Same", "Related", "Unrelated"],
)

# Dai et al. Table 2 (BERT-base): refined knowledge neurons per fact, and intersections of fact pairs.
DAI_TABLE2 = pd.DataFrame(
    [{"source": "Dai et al., BERT-base", "neurons_per_fact": 4.13, "intra_relation": 1.23, "inter_relation": 0.09}]
).set_index("source")

# Dai et al.: suppression and amplification, average relative change of the correct answer's probability.
DAI_SUPPRESS_AMPLIFY = {"suppress": -0.2903, "amplify": 0.3117}

# LAND's training schedule (Sec. 4): Adam, 3 epochs, batch 8, learning rate 1e-4 (keys of kn.methods.land.LandHyperParams).
LAND_OPTIMISER = {"lr": 1e-4, "epochs": 3, "batch_size": 8}

# The papers' scale (Dai et al.'s PARAREL list as LAND adapts it, Sec. 3.1): 34 relations, 27,738 facts, 27,717 once the
# 21 repeated (subject, object) pairs are dropped, x 10 adapted templates; split 9:1 by fact, LAND training on the train
# facts' prompts. Every chapter page states its run's size against these (kn.book.results.scale_sentence).
PAPER_SCALE = {"relations": 34, "facts": 27_717, "prompts": 277_170, "train_prompts": 249_450, "test_facts": 2_772}

# The thresholds the papers' claims quote, as fractions.
LAND_OVERLAP_CLAIM = 0.9658  # R_Lo for GPT-2, the lower of the two models (Llama-3.2-1B: 0.9766)
