"""kn.base: what every layer uses and nothing here imports from above: errors, atomic files and cache folders (io),
run locks, progress lines, statistics, the papers' numbers, the study's parameters, the run folder, neuron sets and
their overlap. No module here imports torch when it is imported."""
