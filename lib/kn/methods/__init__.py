"""kn.methods: the papers' methods on neuron sets: LAND's detector (land) and targets (counterexamples), the other
detectors of chapter 4 (detectors), the consistency classes of Chen et al. (consistency), suppressing and amplifying
neurons (interventions), and editing facts (editing)."""
