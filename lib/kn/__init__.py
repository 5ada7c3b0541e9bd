"""kn: a reproducible study of knowledge neurons (Knowledge Neurons, Dai et al. 2022; LAND, Wu et al. 2025).

Layers, lowest first; each imports only from the layers below it (an import-linter contract in pyproject.toml, checked
by tests/unit/test_architecture.py):

    book          findings/  figures/  report  results  verdicts  summaries  environment  runner  build  submit  cli
      |
    experiments   convergence  definitions  land_operating  land_robustness  conditions  amplification  updates
      |
    attribution | data | methods      (independent of each other)
      quadrature common kernel reference adaptive rules store shards | download pararel population |
      land counterexamples detectors wordings consistency interventions editing
      |
    core          hooks  adapters/ (base gpt2 llama gemma3)  models  scoring
      |
    base          errors  io  runlock  progress  stats  paper  params  paramfiles  rundir  neurons  overlap

`python -m kn` is the `kn` command (kn.book.cli).
"""

__version__ = "0.1.0"
