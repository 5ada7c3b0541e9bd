import torch
from kn.core.models import tiny_model
from kn.core.scoring import next_token_scores


def test_padded_batches_equal_single_prompts():
    loaded = tiny_model("llama", seed=2)
    gen = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, 128, (n,), generator=gen) for n in (1, 5, 3, 8, 2)]
    targets = [3, 9, 27, 81, 100]
    batched = next_token_scores(loaded, prompts, targets, batch_size=3)
    for i, (ids, target) in enumerate(zip(prompts, targets)):
        with torch.no_grad():
            probs = loaded.model(ids[None]).logits[0, -1].softmax(-1)
        assert abs(batched["p_target"][i] - probs[target].item()) < 1e-6
        assert batched["top1_id"][i] == probs.argmax().item()
        assert batched["rank_target"][i] == (probs > probs[target]).sum().item()
