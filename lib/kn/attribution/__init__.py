"""kn.attribution: integrated gradients to FFN neurons: the integration rules with no model in them (quadrature), the
fast kernel and the definition it is tested against (kernel, reference, common), the adaptive rule (adaptive), the
run's rule (rules), the resumable score store (store) and its shards (shards)."""
