"""The shared LM: parallel logits, and step-based generation that agrees with them, for every mixer."""

import pytest
import torch

from archbench.archs import LM, list_archs, resolve_model


@pytest.mark.parametrize("arch", list_archs())
def test_generate_matches_parallel_greedy(arch: str) -> None:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = LM(resolve_model(arch, depth=2, d_model=32, mlp_ratio=2), vocab_size=50).double().eval()
        prompt = torch.randint(0, 50, (2, 9))
    generated = model.generate(prompt, n_new=6)  # prefill + 5 recurrent steps
    tokens = prompt
    with torch.no_grad():
        for _ in range(6):  # the slow way: rerun the whole sequence in parallel mode each time
            tokens = torch.cat([tokens, model(tokens)[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(generated, tokens[:, 9:])


def test_lm_shapes_and_state_bytes() -> None:
    model = LM(resolve_model("attention", depth=3, d_model=32), vocab_size=64)
    assert model(torch.randint(0, 64, (2, 11))).shape == (2, 11, 64)
    assert model.state_bytes(1, 100) == 3 * model.backbone.blocks[0].mixer.state_bytes(1, 100)
