"""The tiny policy goes through env/tools/parsing and builds trajectories by appending ids."""

import torch

from rl.demo_data import make_demo_sample
from rl.env import EnvConfig, decode_images
from rl.parsing import ToolCall, parse_action
from rl.policies import build_policy
from rl.policies.base import GenerationConfig, Policy, PolicyConfig
from rl.policies.tiny import TinyConfig, TinyPolicy
from rl.trajectory import pad_stack


def test_protocol_and_factory():
    pol = build_policy(PolicyConfig(kind="tiny", device="cpu"), TinyConfig())
    assert isinstance(pol, Policy) and pol.name == "tiny"


def test_every_action_text_parses_to_the_intended_call():
    pol = TinyPolicy(TinyConfig(grid=2, max_images=3, max_options=4))
    assert parse_action(pol.action_text(0)) == ToolCall("visual_reflection", {})
    call = parse_action(pol.action_text(1 + 1 * 4 + 3))  # image 2, bottom-right cell
    assert call == ToolCall("visual_confirmation", {"image": 2, "bbox_2d": [0.5, 0.5, 1.0, 1.0]})
    assert parse_action(pol.action_text(pol.net.n_actions - 1)).letter == "D"


def test_rollout_trajectories_masks_and_logprobs_agree():
    pol = TinyPolicy(TinyConfig(), seed=1)
    samples = [make_demo_sample(i) for i in range(3)]
    trajs = pol.rollout(samples, 4, EnvConfig(zoom_size=48), GenerationConfig())
    assert len(trajs) == 12 and [t.group_id for t in trajs[:5]] == [0, 0, 0, 0, 1]
    for t in trajs:
        am = t.action_mask
        assert am[:3].tolist() == [0, 0, 0]  # BOS + 2 prompt images are context
        assert int(am.sum()) == len(t.turns) == t.n_turns  # one token per turn
        n_img = int((t.token_ids == pol.net.IMG).sum())
        assert n_img == len(t.images) == t.extras["images"].shape[0] and not t.image_token_mismatch
        assert torch.all(t.old_logprobs[am == 0] == 0) and torch.all(t.old_logprobs[am == 1] < 0)
        assert t.answer is not None or t.over_turns or t.truncated
    logp, ent = pol.token_logprobs(trajs, with_entropy=True)
    assert torch.allclose(logp, pad_stack([t.old_logprobs for t in trajs]), atol=1e-5)  # no re-tokenisation drift
    assert ent.shape == logp.shape and torch.all(ent >= 0)


def test_answer_is_invisible_in_the_overview_but_visible_in_the_crop():
    pol = TinyPolicy(TinyConfig())
    for seed in range(10):
        s = make_demo_sample(seed)
        a, b = [pol._encode_image(im) for im in decode_images(s)]
        assert torch.equal(a, b)  # the downscaled views are pixel-identical
    from rl.tools import visual_confirmation

    imgs = decode_images(s)
    box = list(s.evidence[0].bbox)
    crops = [pol._encode_image(visual_confirmation(imgs, k, box, zoom_size=48).images[0]) for k in (1, 2)]
    assert (crops[0] - crops[1]).abs().max() > 0.25  # checker 60/200 vs flat 130, at 1 px per square


def test_truncation_flag_when_the_sequence_is_full():
    pol = TinyPolicy(TinyConfig(max_len=5), seed=0)
    torch.manual_seed(0)
    trajs = pol.rollout([make_demo_sample(0)], 16, EnvConfig(zoom_size=48, max_turns=4), GenerationConfig())
    assert any(t.truncated for t in trajs)
    assert all(len(t) <= 5 for t in trajs)  # never longer than the model's positions
    pol.token_logprobs(trajs)


def test_pipeline_made_task_is_invisible_in_the_overview_but_visible_in_the_crop(pipeline_demo_samples):
    """On the fine_texture task `mifg generate` makes, the 16 px overviews of all images are identical."""
    from rl.tools import visual_confirmation

    pol = TinyPolicy(TinyConfig())
    for s in pipeline_demo_samples[:20]:
        imgs = decode_images(s)
        views = [pol._encode_image(im) for im in imgs]
        assert all(torch.equal(views[0], v) for v in views[1:])  # the downscaled views are pixel-identical
        assert len({im.tobytes() for im in imgs}) == 2  # yet the full images differ
        target = s.evidence[0].image_index + 1
        other = 3 - target  # the other of the two images
        box = list(s.evidence[0].bbox)
        crops = [pol._encode_image(visual_confirmation(imgs, k, box, zoom_size=48).images[0]) for k in (target, other)]
        assert (crops[0] - crops[1]).abs().max() > 0.25  # checker 60/200 vs flat 130, at 1 px per square
