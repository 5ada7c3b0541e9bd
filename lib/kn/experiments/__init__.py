"""kn.experiments: the chapters' experiments, each a tested function over the layers below: chapter 2b's (convergence,
definitions), chapter 4's (land_operating, land_robustness), chapters 5 and 6's (conditions, amplification, updates)."""
