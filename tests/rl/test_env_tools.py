"""Environment turn limits, image budget, error observations; tool geometry."""

from PIL import Image

from rl.env import EnvConfig, Episode, system_prompt
from rl.parsing import Answer, Invalid, ToolCall
from rl.tools import ToolError, crop_box, visual_confirmation, visual_reflection
from tests.factories import make_sample


def _conf(image=1, box=(0.0, 0.0, 0.5, 0.5)):
    return ToolCall("visual_confirmation", {"image": image, "bbox_2d": list(box)})


def test_reset_shows_question_options_and_all_images():
    ep = Episode(make_sample(1, n_images=3), EnvConfig())
    obs = ep.reset()
    assert obs.kind == "prompt" and len(obs.images) == 3
    assert "A. Image 1" in obs.text and "C. Image 3" in obs.text


def test_answer_ends_episode():
    ep = Episode(make_sample(1), EnvConfig())
    ep.reset()
    obs, done, info = ep.step(Answer("B"))
    assert obs is None and done and ep.answer == "B" and not ep.over_turns


def test_turn_limit_ends_episode_as_over_turns():
    ep = Episode(make_sample(1), EnvConfig(max_turns=3))
    ep.reset()
    assert ep.step(_conf())[1] is False
    assert ep.step(_conf(2))[1] is False
    obs, done, _ = ep.step(_conf())
    assert done and obs is None and ep.over_turns and ep.answer is None and ep.turns == 3


def test_errors_are_observations_and_recovery_is_tracked():
    ep = Episode(make_sample(1), EnvConfig(max_turns=6))
    ep.reset()
    obs, done, _ = ep.step(_conf(image=5))  # out of range
    assert not done and obs.kind == "error" and "out of range" in obs.text
    assert ep.invalid_tool and ep.errors == 1
    obs, _, _ = ep.step(Invalid("garbage"))
    assert obs.kind == "error" and ep.errors == 2
    obs, _, _ = ep.step(_conf(image=2))  # a valid call recovers
    assert obs.kind == "tool" and not ep.invalid_tool and ep.tool_calls["visual_confirmation"] == 1
    ep.step(Invalid("again"))
    ep.step(Answer("A"))  # answering right after an error is not a recovery
    assert ep.invalid_tool


def test_disabled_tool_and_image_budget():
    ep = Episode(make_sample(1), EnvConfig(tools=("visual_confirmation",), max_images=3))
    ep.reset()  # 2 images shown
    obs, _, _ = ep.step(ToolCall("visual_reflection", {}))
    assert obs.kind == "error" and "not available" in obs.text
    assert ep.step(_conf())[0].kind == "tool"  # 3 images shown
    obs, _, _ = ep.step(_conf())
    assert obs.kind == "error" and "budget" in obs.text
    assert "visual_reflection" not in system_prompt(ep.cfg) and "visual_confirmation" in system_prompt(ep.cfg)


def test_confirmation_crops_the_original_and_zooms():
    img = Image.new("RGB", (200, 100), (0, 0, 0))
    img.paste((255, 0, 0), (100, 50, 200, 100))  # bottom-right quarter red
    res = visual_confirmation([img], 1, [0.5, 0.5, 1.0, 1.0], zoom_size=64)
    assert res.images[0].size == (64, 32)
    assert res.images[0].getpixel((32, 16)) == (255, 0, 0)
    assert res.image_info[0] == {"image": 0, "bbox": (0.5, 0.5, 1.0, 1.0)}
    px = visual_confirmation([img], 1, [100, 50, 200, 100], zoom_size=0)  # pixel coordinates
    assert px.images[0].size == (100, 50)


def test_degenerate_and_out_of_image_boxes():
    assert crop_box([0.5, 0.5, 0.5, 0.5], 200, 100) == (86, 36, 114, 64)  # grown to 28 px around the centre
    assert crop_box([1.0, 1.0, 0.9, 0.9], 200, 100) == (172, 72, 200, 100)  # reversed, grown inward at the edge
    assert crop_box([-50, -50, 500, 500], 200, 100) == (0, 0, 200, 100)  # clamped
    assert crop_box([0, 0, 1, 1], 20, 10) == (0, 0, 20, 10)  # image smaller than min side
    assert isinstance(crop_box([300, 300, 400, 400], 200, 100), ToolError)
    assert crop_box([0.5, 0.5, 1.01, 1.01], 200, 100) == (100, 50, 200, 100)  # slight overshoot: still normalised
    assert isinstance(crop_box([200, 0, 260, 50], 200, 100), ToolError)  # starts at the right edge: nothing inside
    assert isinstance(crop_box([0, 100, 50, 150], 200, 100), ToolError)  # starts at the bottom edge
    assert isinstance(visual_confirmation([Image.new("RGB", (8, 8))], 2, [0, 0, 1, 1]), ToolError)


def test_reflection_returns_named_originals():
    imgs = [Image.new("RGB", (40, 30), c) for c in ("red", "green", "blue")]
    res = visual_reflection(imgs, [3, 1, 3])
    assert [im.getpixel((0, 0)) for im in res.images] == [(0, 0, 255), (255, 0, 0)]
    assert res.images[0].size == (40, 30)
    assert isinstance(visual_reflection(imgs, [4]), ToolError)
    assert visual_reflection(imgs, None, max_side=20).images[0].size == (20, 15)
