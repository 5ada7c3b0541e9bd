"""kn.data: the facts and prompts: PARAREL downloaded and verified (download), adapted to prompts (pararel), and the
run's population of facts the model knows (population)."""
