"""Messages from other libraries are shortened between words, never mid-word."""
from cmdcl.core.errors import one_line, shorten


def test_shorten_cuts_between_words():
    text = "We couldn't connect to the hub and we cannot find the requested files in the local cache"
    short = shorten(text, 60)
    assert len(short) <= 60 and short.endswith("...")
    assert text.startswith(short[:-3])
    assert text[len(short) - 3] == " "  # the next character after the kept words is a space: no word was cut


def test_shorten_leaves_short_text_alone_and_joins_lines():
    assert shorten("a\n  b", 10) == "a b"


def test_shorten_one_long_word_still_fits():
    assert len(shorten("x" * 50, 10)) <= 10


def test_one_line_never_cuts_mid_word():
    exc = RuntimeError("PytorchStreamReader failed reading zip archive: failed finding central directory. "
                       "If you were trying to load a file saved with an older version")
    line = one_line(exc, limit=100)
    assert line.endswith("...") and len(line) <= 100
    assert not line[:-3].endswith(("If yo", "yo"))
    assert ("RuntimeError: " + " ".join(str(exc).split())).startswith(line[:-3])
