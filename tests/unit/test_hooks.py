"""kn.core.hooks.hooked: hooks live exactly as long as the with-block, also when it raises."""

import pytest
import torch
from kn.core.hooks import hooked


def test_hooks_change_the_forward_inside_and_are_gone_after_an_exception():
    layer = torch.nn.Linear(3, 3)
    x = torch.ones(1, 3)
    plain = layer(x)
    with hooked(pre=[(layer, lambda m, args: (2 * args[0],))], post=[(layer, lambda m, args, out: out + 1)]):
        assert torch.allclose(layer(x), layer.weight @ (2 * x[0]) + layer.bias + 1)
    assert torch.equal(layer(x), plain)
    with pytest.raises(RuntimeError, match="boom"):
        with hooked(pre=[(layer, lambda m, args: (0 * args[0],))]):
            raise RuntimeError("boom")
    assert not layer._forward_pre_hooks and not layer._forward_hooks
    assert torch.equal(layer(x), plain)
