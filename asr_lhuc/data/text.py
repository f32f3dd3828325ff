"""The one text normalisation used for manifests and for WER scoring."""

import re
import unicodedata

# Curly quotes and similar marks that should behave like a plain apostrophe inside words.
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})
_NOT_WORD = re.compile(r"[^\w\s']|_")
_LOOSE_APOSTROPHE = re.compile(r"(?<!\w)'|'(?!\w)")


def normalize_text(text: str) -> str:
    """Upper-case ``text``, turn punctuation into spaces and collapse whitespace.

    Apostrophes inside words are kept ("DON'T"), quote marks around words are dropped,
    hyphens split words ("WELL-KNOWN" -> "WELL KNOWN"). Letters and digits of any script
    are kept. Reference and hypothesis must both pass through this before scoring WER.

    >>> normalize_text("  Hello, world!  It's  well-known. ")
    "HELLO WORLD IT'S WELL KNOWN"
    """
    text = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES).upper()
    text = _NOT_WORD.sub(" ", text)
    text = _LOOSE_APOSTROPHE.sub(" ", text)
    return " ".join(text.split())


DIGITS = "ZERO ONE TWO THREE FOUR FIVE SIX SEVEN EIGHT NINE".split()


def spell_digits(text: str) -> str:
    """Recognisers trained on written text say "2 6 4 8" where speechocean762's transcripts
    say TWO SIX FOUR EIGHT: spell each digit (the corpus reads digit strings digit by digit).

    >>> spell_digits("call 911 now")
    'call NINE ONE ONE now'
    """
    return " ".join(" ".join(DIGITS[int(c)] if c.isdigit() else c for c in word)
                    if any(c.isdigit() for c in word) else word for word in text.split())
