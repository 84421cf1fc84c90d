"""Raw text to words with offsets, and BIO tags to entity spans."""

import pytest

from xdray.serve.text import entities, split_words


def words_of(line):
    return [(w.text, w.start, w.end) for w in split_words(line)]


def test_punctuation_is_split_off_and_offsets_point_into_the_line():
    line = "  Paris, (France) said Anna."
    ws = split_words(line)
    assert [w.text for w in ws] == ["Paris", ",", "(", "France", ")", "said", "Anna", "."]
    assert all(line[w.start:w.end] == w.text for w in ws)


def test_scripts_without_spaces_and_combining_marks():
    assert [w for w, _, _ in words_of("习近平访问北京。")] == ["习", "近", "平", "访", "问", "北", "京", "。"]
    assert [w for w, _, _ in words_of("東京タワーへ")] == ["東", "京", "タ", "ワ", "ー", "へ"]
    # Devanagari vowel signs and Arabic letters stay inside their words
    assert [w for w, _, _ in words_of("नरेंद्र मोदी दिल्ली में")] == ["नरेंद्र", "मोदी", "दिल्ली", "में"]
    assert [w for w, _, _ in words_of("القاهرة، مصر")] == ["القاهرة", "،", "مصر"]
    assert words_of("") == [] and words_of(" \t ") == []


def test_bio_decoding_never_starts_an_entity_with_i():
    line = "Anna Schmidt and Acme Corp in Berlin"
    ws = split_words(line)
    tags = ["B-PER", "I-PER", "O", "I-ORG", "I-ORG", "O", "B-LOC"]
    scores = [0.9, 0.7, 1.0, 0.6, 0.8, 1.0, 0.5]
    out = entities(line, ws, tags, scores)
    assert [(e["text"], e["label"]) for e in out] == [("Anna Schmidt", "PER"), ("Acme Corp", "ORG"), ("Berlin", "LOC")]
    assert out[0]["score"] == pytest.approx(0.8) and out[1]["start"] == line.index("Acme")
    assert all(line[e["start"]:e["end"]] == e["text"] for e in out)


def test_a_type_change_or_a_new_b_starts_a_new_entity():
    line = "A B C D"
    ws = split_words(line)
    out = entities(line, ws, ["B-PER", "I-LOC", "B-LOC", "B-LOC"], [1.0] * 4)
    assert [(e["text"], e["label"]) for e in out] == [("A", "PER"), ("B", "LOC"), ("C", "LOC"), ("D", "LOC")]


def texts_of(line):
    return [w.text for w in split_words(line)]


@pytest.mark.parametrize("line, words", [
    ("see https://example.com/path?q=Paris&lang=fr#top now",
     ["see", "https://example.com/path?q=Paris&lang=fr#top", "now"]),
    ("see https://x.org/a.", ["see", "https://x.org/a", "."]),
    ("(see https://en.wikipedia.org/wiki/Paris_(France)).",
     ["(", "see", "https://en.wikipedia.org/wiki/Paris_(France)", ")", "."]),
    ("Go to www.example.com, or FTP://files.example.org/a/b!", ["Go", "to", "www.example.com", ",", "or",
                                                              "FTP://files.example.org/a/b", "!"]),
    ("链接https://x.org/a。谢谢", ["链", "接", "https://x.org/a", "。", "谢", "谢"]),
    ("«http://x.org/»", ["«", "http://x.org/", "»"]),
    ("http:// and www. are not URLs", ["http", ":", "/", "/", "and", "www", ".", "are", "not", "URLs"]),
])
def test_urls_stay_whole_without_the_punctuation_after_them(line, words):
    assert texts_of(line) == words


def test_emails_handles_and_hashtags_stay_whole():
    assert texts_of("Mail anna.schmidt+news@example.co.uk, or @anna_s (#Paris2024)!") == [
        "Mail", "anna.schmidt+news@example.co.uk", ",", "or", "@anna_s", "(", "#Paris2024", ")", "!"]
    assert texts_of("请联系anna@example.org谢谢") == ["请", "联", "系", "anna@example.org", "谢", "谢"]
    assert texts_of("#नरेंद्र_मोदी और @राहुल") == ["#नरेंद्र_मोदी", "और", "@राहुल"]
    # not where a word starts, or not an address: split the PAN-X way
    assert texts_of("user@localhost a@ @ b") == ["user", "@", "localhost", "a", "@", "@", "b"]
    assert texts_of("x@y@z.org") == ["x", "@", "y@z.org"]


def test_numbers_with_separators_stay_whole():
    assert texts_of("1,000.5 people, 3.14, 1.000.000 at 12:30pm on 10/12/2024.") == [
        "1,000.5", "people", ",", "3.14", ",", "1.000.000", "at", "12:30pm", "on", "10/12/2024", "."]
    assert texts_of("٣٫١٤ and $5, 2024. v1.2.3 abc1,000") == [
        "٣٫١٤", "and", "$", "5", ",", "2024", ".", "v1", ".", "2", ".", "3", "abc1", ",", "000"]
    assert texts_of("1, 2 and 3.") == ["1", ",", "2", "and", "3", "."]


def test_emoji_sequences_stay_whole():
    line = "👩‍💻 🇩🇪🇫🇷 👍🏽 1️⃣2️⃣ #️⃣ ❤️‍🔥 🏴󠁧󠁢󠁳󠁣󠁴󠁿 🏳️‍🌈 😀😀 ok👍"
    assert texts_of(line) == [
        "👩\u200d💻", "🇩🇪", "🇫🇷", "👍🏽", "1️⃣", "2️⃣", "#️⃣", "❤️\u200d🔥",
        "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f", "🏳️\u200d🌈", "😀", "😀", "ok", "👍"]


def test_zero_width_space_separates_and_marks_stay_with_their_character():
    assert texts_of("\ufeffParis\u200bBerlin\u3000東京") == ["Paris", "Berlin", "東", "京"]
    assert texts_of("葛\U000e0100城 か\u3099") == ["葛\U000e0100", "城", "か\u3099"]


def test_entities_are_trimmed_of_punctuation():
    line = "Moscow (Russia) is big."
    ws = split_words(line)
    assert [w.text for w in ws] == ["Moscow", "(", "Russia", ")", "is", "big", "."]
    out = entities(line, ws, ["O", "B-LOC", "B-LOC", "I-LOC", "O", "O", "O"], [1.0, 0.2, 0.9, 0.1, 1, 1, 1])
    assert out == [{"text": "Russia", "label": "LOC", "start": 8, "end": 14, "score": 0.9}]
    out = entities(line, ws, ["B-LOC", "I-LOC", "I-LOC", "I-LOC", "O", "O", "B-PER"], [0.8, 0.1, 0.6, 0.1, 1, 1, 1])
    assert [(e["text"], e["score"]) for e in out] == [("Moscow (Russia", 0.5)], "inner punctuation stays"
    line = "« Anna » , « »"
    ws = split_words(line)
    out = entities(line, ws, ["B-PER", "I-PER", "I-PER", "I-PER", "B-ORG", "I-ORG"], [0.5] * 6)
    assert [(e["text"], e["label"]) for e in out] == [("Anna", "PER")], "a span of only punctuation is dropped"


def random_line(rng):
    """A random line mixing what raw text holds, often with nothing between the pieces."""
    pieces = [
        lambda: rng.choice(["Paris", "Anna", "O'Neil", "x", "Ab3", "_", "naïve"]),
        lambda: rng.choice(".,;:!?()[]{}\"'«»“”—-…/\\@#%&*+=<>|~`^$€¥¿¡。，、「」『』・！？"),
        lambda: rng.choice(["https://", "http://", "ftp://", "www.", "HTTPS://"]) + rng.choice(
            ["x.org", "example.com/a_(b)", "a.b/c?d=e&f=g#h", "北京.cn/路"]) + rng.choice(["", ".", ").", ",", "!?"]),
        lambda: rng.choice(["anna@example.org", "a.b+c@x-y.co.uk", "@anna", "#tag", "@", "a@b", "x.@y.z"]),
        lambda: rng.choice(["1,000.5", "12:30", "3.14", "1.000.000", "10/12/2024", "٣٫١٤", "1.", ",5", "7"]),
        lambda: rng.choice(["👩\u200d💻", "🇩🇪", "🇩", "👍🏽", "1️⃣", "#️⃣", "❤️\u200d🔥", "🏴\U000e0067\U000e007f",
                            "\u200d", "\ufe0f", "🏽", "\U000e0067"]),
        lambda: rng.choice(["\u0301", "\u0903", "\u093f", "\u20e3", "\u3099", "\U000e0100"]),
        lambda: rng.choice(["القاهرة", "مصر", "שלום", "\u200f", "\u202b", "\u061f"]),
        lambda: rng.choice(["東京", "习近平", "タワー", "へ", "ภาษาไทย", "नरेंद्र"]),
        lambda: rng.choice([" ", "  ", "\t", "\u200b", "\u3000", "\xa0", "\ufeff", "\u2028", "\u200c"]),
        lambda: chr(rng.choice([rng.randrange(0x20, 0xD800), rng.randrange(0xE000, 0x30000)])),
    ]
    return "".join(rng.choice(pieces)() for _ in range(rng.randrange(0, 25)))


PROPERTY_CASES = 3000


def test_offsets_stay_exact_on_random_text():
    import random
    import unicodedata

    def is_punctuation(text):  # P*, with any combining marks after it
        return unicodedata.category(text[0])[0] == "P" and all(unicodedata.category(c)[0] in "PM" for c in text)

    rng = random.Random(20240611)
    for _ in range(PROPERTY_CASES):
        line = random_line(rng)
        ws = split_words(line)
        end = 0
        for w in ws:
            assert w.text and line[w.start:w.end] == w.text, (line, w)
            assert w.start >= end, (line, ws)
            assert all(line[i].isspace() or line[i] in "\u200b\ufeff" for i in range(end, w.start)), (line, ws)
            assert not any(c.isspace() or c in "\u200b\ufeff" for c in w.text), (line, w)
            end = w.end
        assert all(c.isspace() or c in "\u200b\ufeff" for c in line[end:]), (line, ws)
        tags = [rng.choice(["O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC"]) for _ in ws]
        scores = [rng.random() for _ in ws]
        starts, ends = {w.start: w for w in ws}, {w.end: w for w in ws}
        previous = 0
        for e in entities(line, ws, tags, scores):
            assert line[e["start"]:e["end"]] == e["text"] and e["start"] >= previous, (line, e)
            assert e["start"] in starts and e["end"] in ends, (line, e)
            assert not is_punctuation(starts[e["start"]].text) and not is_punctuation(ends[e["end"]].text), (line, e)
            assert 0 <= e["score"] <= 1
            previous = e["end"]
