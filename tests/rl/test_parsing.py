"""Strict parsing of policy turns."""

from rl.parsing import Answer, Invalid, ToolCall, format_answer, format_tool_call, parse_action


def test_valid_confirmation_and_reflection():
    body = '{"name": "visual_confirmation", "arguments": {"image": 2, "bbox_2d": [0.1, 0.2, 0.5, 0.6]}}'
    a = parse_action(f"I will zoom. <tool_call>{body}</tool_call>")
    assert a == ToolCall("visual_confirmation", {"image": 2, "bbox_2d": [0.1, 0.2, 0.5, 0.6]})
    assert parse_action('<tool_call>{"name": "visual_reflection", "arguments": {}}</tool_call>') == ToolCall(
        "visual_reflection", {}
    )
    assert parse_action(
        '<tool_call>{"name": "visual_reflection", "arguments": {"images": [1, 3]}}</tool_call>'
    ) == ToolCall("visual_reflection", {"images": [1, 3]})


def test_answer_is_upper_cased_and_canonical_texts_round_trip():
    assert parse_action("so the answer is <answer> b </answer>") == Answer("B")
    assert parse_action(format_answer("C")) == Answer("C")
    call = format_tool_call("visual_confirmation", {"image": 1, "bbox_2d": [0, 0, 10, 10]})
    assert parse_action(call) == ToolCall("visual_confirmation", {"image": 1, "bbox_2d": [0, 0, 10, 10]})


def test_malformed_json_is_invalid_with_a_message():
    a = parse_action('<tool_call>{"name": "visual_confirmation", "arguments": {"image": 1,}}</tool_call>')
    assert isinstance(a, Invalid) and "not valid JSON" in a.error


def test_wrong_tool_and_bad_arguments():
    assert "unknown tool" in parse_action('<tool_call>{"name": "zoom", "arguments": {}}</tool_call>').error
    bad = [
        '{"name": "visual_confirmation", "arguments": {"image": "1", "bbox_2d": [0, 0, 1, 1]}}',
        '{"name": "visual_confirmation", "arguments": {"image": 1, "bbox_2d": [0, 0, 1]}}',
        '{"name": "visual_confirmation", "arguments": {"image": true, "bbox_2d": [0, 0, 1, 1]}}',
        '{"name": "visual_confirmation", "arguments": {"image": 1, "bbox_2d": [0, 0, 1, 1], "zoom": 2}}',
        '{"name": "visual_reflection", "arguments": {"images": []}}',
        '{"name": "visual_reflection", "arguments": [1]}',
        '["visual_reflection"]',
    ]
    for body in bad:
        assert isinstance(parse_action(f"<tool_call>{body}</tool_call>"), Invalid), body


def test_no_action_several_actions_and_trailing_text_are_invalid():
    assert isinstance(parse_action("I think it is B."), Invalid)
    assert isinstance(parse_action("<answer>A</answer><answer>B</answer>"), Invalid)
    assert isinstance(parse_action("<answer>A</answer> because"), Invalid)
    assert isinstance(parse_action("<answer>AB</answer>"), Invalid)
    two = '<tool_call>{"name": "visual_reflection", "arguments": {}}</tool_call><answer>A</answer>'
    assert isinstance(parse_action(two), Invalid)
