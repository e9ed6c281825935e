"""Shape rules: padding that rotates a few phrases, blank characters that are not whitespace, empty list items, and
answers that are nothing but a pleasantry."""

from __future__ import annotations

from lioneval.checks.shapes import master_key, padding, scan_shapes

HOST = ("To reset a forgotten router password, hold the reset button for ten seconds, wait for the lights to settle, "
        "then log in with the default credentials printed on the label.")


def test_a_cycle_of_boilerplate_sentences_is_padding_and_a_loop_on_content_is_not():
    cycle = "Worth restating. This matters a lot. Keep it in mind. " * 20
    hit = padding(f"{HOST}\n{cycle}")
    assert hit is not None and hit.rule == "padding" and hit.start == len(HOST) + 1
    # a weak model looping on its own content stays a warning
    loop = " ".join(["Hold the reset button for ten seconds.", "Then log in with the default credentials."] * 12)
    assert padding(f"{HOST}\n{loop}").rule == "repetition"


def test_a_cut_off_last_copy_does_not_make_boilerplate_look_like_content():
    unit = "Everything stated above remains relevant. "
    text = f"{HOST}\n{unit * 25}Everything stated abo"
    assert padding(text).rule == "padding"
    words = f"{HOST}\n" + "(more) " * 120 + "(mo"
    assert padding(words).rule == "padding"


def test_blank_characters_that_are_not_whitespace_are_filler():
    for blank in ("\u2800", "\u3164", "\uffa0", "\u115f"):
        hit = padding(HOST + "\n" + blank * 300)
        assert hit is not None and hit.rule == "padding", repr(blank)
    assert padding(HOST + " \u2800 ") is None  # a stray one is nothing


def test_empty_list_items_repeated_are_padding():
    empty = "".join(f"{i}.\n" for i in range(1, 5)) * 40
    assert padding(f"{HOST}\n{empty}").rule == "padding"
    filled = "".join(f"{i}. Hold the reset button.\n" for i in range(1, 5)) * 10  # a loop on the answer's words
    hit = padding(f"{HOST}\n{filled}")
    assert hit is None or hit.rule == "repetition"


def test_a_pleasantry_alone_is_an_opener_but_an_answer_after_it_is_not():
    for text in ("Great question!", "Happy to help with that.", "Let me walk you through it.",
                 "Sure thing, glad to help!"):
        assert master_key(text) is not None, text
    for text in ("Great question! The capital of Australia is Canberra.", "Yes.", "Hello!", "Thank you, that is all.",
                 "Sure, 42."):
        assert master_key(text) is None, text
    assert [h.rule for _, h in scan_shapes(["Absolutely, happy to help."], finish_reasons=["length"])] == []
