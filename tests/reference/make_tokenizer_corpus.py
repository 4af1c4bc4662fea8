#!/usr/bin/env python3
"""Writes tests/golden/tokenizer/corpus.txt: the deterministic tokenizer test corpus.

One sample per line. Inside a line, "\\n", "\\r", "\\t" and "\\\\" stand for a newline,
a carriage return, a tab and a backslash (so samples can hold line breaks); every other
character is literal. The text is our own; fragments are combined with a fixed xorshift
generator (not `random`, whose algorithms may change between Python versions), so the
file is identical on every run.

Deliberately absent (the references disagree on them, see docs/TOKENIZERS.md): U+0085 and
U+FEFF (whitespace in one regex dialect, not in the other), U+001C..U+001F, characters
newer than Unicode 14, U+017F (case folding of 's), and "<|endoftext|>".

Usage: python3 tests/reference/make_tokenizer_corpus.py [output path]
"""
import os
import sys

LATIN = [
    "The quick brown fox jumps over the lazy dog.",
    "Once upon a time, there was a little girl named Lily who loved to play outside.",
    "Quantization maps each weight to one of 256 levels; the scale comes from the row maximum.",
    "Café, naïve, résumé, façade, jalapeño, Zürich, Ångström, São Paulo, Kraków, Malmö.",
    "Le cœur a ses raisons que la raison ne connaît point, disait-il à l'hôtel.",
    "Über den Wolken muss die Freiheit wohl grenzenlos sein, sagt die Straßenbahnfahrerin.",
    "¿Dónde está la biblioteca? ¡Está al lado de la estación de trenes!",
    "Zażółć gęślą jaźń — pchnąć w tę łódź jeża lub ośm skrzyń fig.",
    "Tiếng Việt có nhiều dấu: ả, ẫ, ợ, ự, ỹ và đ.",
    "Şimdi İstanbul'da ılık bir rüzgâr esiyor; ğ, ş, ç, ö, ü.",
    "Příliš žluťoučký kůň úpěl ďábelské ódy.",
    "Høstens æbler og blåbær smager bedst i Århus.",
    "Það er ekki þægilegt að þýða þetta á íslensku.",
    "Vamos à praia amanhã? Não, obrigado; está frio.",
    "A small model, trained for twenty minutes, still writes: \"The cat sat.\"",
    "she sells sea shells by the sea shore",
    "HELLO WORLD, THIS IS A SHOUTING LINE WITH CAPITALS",
    "mIxEd CaSe WoRdS aRe HaRd To ReAd",
    "Per-token scales, per-channel scales, and the cross of both.",
    "e-mail: someone@example.com, web: https://example.org/path?q=1&r=two#frag",
]
CYRILLIC_GREEK = [
    "Привет, мир! Как дела у тебя сегодня?",
    "Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "Україна, Київ, їжак, ґанок, є.",
    "Българският език използва кирилица.",
    "Γειά σου κόσμε! Η γρήγορη καφέ αλεπού.",
    "Ξεσκεπάζω την ψυχοφθόρα βδελυγμία.",
    "ΑΒΓΔ αβγδ ΩΨΧ ωψχ ά έ ή ί ό ύ ώ ϊ ϋ ΐ ΰ",
    "Σήμερα είναι 3 Μαΐου 2024.",
]
CJK = [
    "日本語のテキストを分割します。",
    "東京は日本の首都です。人口は約1400万人。",
    "ひらがな、カタカナ、漢字を混ぜて書く。",
    "我们今天去公园散步，天气很好。",
    "中文没有空格分隔单词。",
    "繁體中文：臺灣、香港。",
    "한국어 문장입니다. 서울은 대한민국의 수도예요.",
    "ハンカクｶﾀｶﾅ と 全角ＡＢＣ１２３",
    "「引用」と『二重引用』、そして【括弧】。",
]
RTL_INDIC = [
    "مرحبا بالعالم! كيف حالك اليوم؟",
    "اللغة العربية تكتب من اليمين إلى اليسار ١٢٣٤٥٦٧٨٩٠",
    "עברית: שלום עולם, מה שלומך?",
    "नमस्ते दुनिया! आप कैसे हैं?",
    "हिन्दी में संयुक्ताक्षर: क्ष त्र ज्ञ श्र, और अंक १२३४५।",
    "বাংলা ভাষা সুন্দর।",
    "தமிழ் மொழி மிகவும் பழமையானது.",
    "ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ",
    "ქართული ენა",
    "Հայերեն լեզու",
    "አማርኛ ቋንቋ",
]
EMOJI = [
    "😀😃😄😁", "👍🏻👍🏼👍🏽👍🏾👍🏿", "👨‍👩‍👧‍👦 family", "🏳️‍🌈 flag", "👩🏽‍💻 coder",
    "🧑‍🤝‍🧑", "❤️‍🔥", "🇫🇷🇩🇪🇯🇵", "✨🚀🔥💯", "☕️ and 🍰", "🤷‍♀️ 🤦🏼‍♂️", "1️⃣2️⃣#️⃣",
    "⚠️ warning ⚠", "🐈‍⬛", "👁️‍🗨️",
]
COMBINING = [
    "e\u0301 a\u0300 o\u0302 u\u0308 n\u0303",        # decomposed accents
    "Ame\u0301lie and Zoe\u0308",
    "Z\u0335\u0321a\u0336\u0322l\u0337g\u0338o\u0334",   # stacked marks
    "q\u0323\u0307 \u1e0b\u0323",
    "\u0915\u094d\u0937 \u0928\u093f",
    "a\u20dd b\u20de",
]
CONTRACTIONS = [
    "it's", "IT'S", "It'S", "don't", "DON'T", "DoN't", "we're", "WE'RE", "We'Re",
    "you've", "YOU'VE", "I'm", "I'M", "we'll", "WE'LL", "We'Ll", "she'd", "SHE'D",
    "'tis", "'Twas", "rock 'n' roll", "o'clock", "the dogs' bowls", "y'all'd've",
    "can't", "won't", "shouldn't've", "'s", "''s", "'''", "it''s", "L'amour",
]
CODE = [
    "int main() { return 0; }",
    "for (size_t i = 0; i < n; ++i) { sum += x[i] * w[i]; }",
    "def forward(self, x):\\n    return self.proj(x) + self.bias",
    "if (a != b && c >= d || !e) { throw std::runtime_error(\"bad\"); }",
    "std::vector<int32_t> ids = tokenizer->encode(text);",
    "{\"key\": [1, 2.5, -3e-7, true, null], \"nested\": {\"a\": \"b\"}}",
    "x = [i**2 for i in range(10) if i % 3 == 0]",
    "SELECT name, COUNT(*) FROM users WHERE age > 21 GROUP BY name;",
    "$ cmake -S . -B build && cmake --build build -j2",
    "printf(\"%d\\\\n\", value); // prints a newline",
    "const re = /^[a-z0-9_]+$/i;",
    "<div class=\"note\">Hello &amp; goodbye</div>",
    "a->b.c::d<e>(f)[g] ?: h",
    "#include <nlohmann/json.hpp>",
    "__init__ __name__ == \"__main__\"",
    "C:\\\\Users\\\\test\\\\file.txt",
    "lambda x: x if x > 0 else -x",
    "fn main() { println!(\"{}\", 42); }",
    "<s>not a real bos</s> <unk> [CLS] [SEP]",
    "<|begin_of_text|>system<|eot_id|> <|start_header_id|>user<|end_header_id|>",
]
WORDS = [
    "model", "weight", "activation", "token", "outlier", "channel", "scale", "matrix",
    "kernel", "layer", "the", "a", "of", "and", "to", "in", "is", "quantization",
    "perplexity", "accuracy", "Hello", "World", "tokenizer", "BPE", "merge", "byte",
    "über", "straße", "мир", "слово", "λόγος", "数据", "データ", "데이터", "عالم", "शब्द",
    "naïve", "coöperate", "AI", "GPU", "CPU", "int8", "fp16", "bf16", "x86_64",
]
PUNCT = [".", ",", "!", "?", "...", "…", ";", ":", "—", "–", "-", "(", ")", "[", "]",
         "\"", "'", "«", "»", "„", "“", "”", "‘", "’", "•", "§", "¶", "©", "®", "™",
         "%", "‰", "€", "$", "£", "¥", "₹", "±", "×", "÷", "≠", "≤", "≥", "∞", "√",
         "→", "⇒", "↔", "∀", "∃", "∑", "∫", "°", "µ", "Ω", "½", "¾", "²", "³", "¹"]
SEPARATORS = [" ", " ", " ", "  ", "   ", "\\t", "\\n", "\\r\\n", "\\n\\n", " \\n ", "",
              "\u00a0", "\u3000", "\u2003", " \\t ", "\\r", "\u2028"]


class XorShift:
    """xorshift64*: a fixed, documented generator so the corpus never changes."""

    def __init__(self, seed):
        self.state = seed

    def next(self):
        x = self.state
        x ^= (x >> 12)
        x ^= (x << 25) & 0xFFFFFFFFFFFFFFFF
        x ^= (x >> 27)
        self.state = x
        return (x * 0x2545F4914F6CDD1D) & 0xFFFFFFFFFFFFFFFF

    def below(self, n):
        return (self.next() >> 33) % n

    def pick(self, items):
        return items[self.below(len(items))]


def number(rng):
    kind = rng.below(10)
    if kind == 0:
        return str(rng.next() % 10 ** (1 + rng.below(19)))            # long integers
    if kind == 1:
        return f"{rng.below(100000)}.{rng.below(1000000):06d}"       # decimals
    if kind == 2:
        return f"{1990 + rng.below(40)}-{1 + rng.below(12):02d}-{1 + rng.below(28):02d}"
    if kind == 3:
        return f"{1 + rng.below(28)}/{1 + rng.below(12)}/{rng.below(100):02d}"
    if kind == 4:
        return f"{rng.below(1000)},{rng.below(1000):03d},{rng.below(1000):03d}.{rng.below(100):02d}"
    if kind == 5:
        return f"+1 ({rng.below(900) + 100}) {rng.below(900) + 100}-{rng.below(9000) + 1000}"
    if kind == 6:
        return f"{rng.below(24):02d}:{rng.below(60):02d}:{rng.below(60):02d}"
    if kind == 7:
        return f"-{rng.below(1000)}.{rng.below(1000)}e-{rng.below(40)}"
    if kind == 8:
        return f"v{rng.below(10)}.{rng.below(30)}.{rng.below(100)}"
    return f"{rng.below(100)}%"


def mixed_case(rng, text):
    mode = rng.below(4)
    if mode == 0:
        return text.upper()
    if mode == 1:
        return text.lower()
    if mode == 2:
        return text.title()
    return "".join(c.upper() if rng.below(2) else c.lower() for c in text)


def whitespace_run(rng):
    return "".join(rng.pick([" ", " ", "\\t", "\\n", "\\r\\n", "\u00a0"]) for _ in range(1 + rng.below(8)))


def fragment(rng):
    kind = rng.below(13)
    if kind <= 1:
        return rng.pick(LATIN)
    if kind == 2:
        return rng.pick(CYRILLIC_GREEK)
    if kind == 3:
        return rng.pick(CJK)
    if kind == 4:
        return rng.pick(RTL_INDIC)
    if kind == 5:
        return rng.pick(EMOJI)
    if kind == 6:
        return rng.pick(COMBINING)
    if kind == 7:
        return mixed_case(rng, rng.pick(CONTRACTIONS))
    if kind == 8:
        return rng.pick(CODE)
    if kind == 9:
        return number(rng)
    if kind == 10:
        return " ".join(rng.pick(WORDS) for _ in range(1 + rng.below(6)))
    if kind == 11:
        return "".join(rng.pick(PUNCT) for _ in range(1 + rng.below(4)))
    return whitespace_run(rng)


def sample(rng):
    parts = [fragment(rng) for _ in range(1 + rng.below(3))]
    text = ""
    for i, part in enumerate(parts):
        text += (rng.pick(SEPARATORS) if i else "") + part
    decoration = rng.below(8)
    if decoration == 0:
        text = whitespace_run(rng) + text
    elif decoration == 1:
        text = text + whitespace_run(rng)
    elif decoration == 2:
        text = " " * (1 + rng.below(5)) + text + " " * (1 + rng.below(5))
    return text


def fixed_samples():
    """Hand-written edge cases that random combination might miss."""
    samples = ["", " ", "  ", "\\n", "\\r\\n", "\\t", " \\n ", "a", "A", "1", "12", "123",
               "1234", "12345678901234567890", "3.14159265358979", "0.5", ".5", "5.",
               "Hello world", " Hello world", "Hello world ", "  Hello   world  ",
               "hello\\n\\nworld", "hello\\r\\n\\r\\nworld", "line1\\nline2\\n", "\\n\\n\\n",
               "tab\\tseparated\\tvalues", "\\t\\tindented", "trailing tab\\t",
               "I'M YOU'RE WE'VE HE'LL SHE'D IT'S DON'T", "i'm you're we've he'll she'd it's",
               "x's y'S z'T w'Re v'VE u'lL t'D", "''", "'", "' s", "a 's", "!!!???", "...",
               "😀", "👍🏽", "👨‍👩‍👧‍👦", "e\u0301", "日本", "한국어", "مرحبا", "नमस्ते",
               "<s>", "</s>", "<unk>", "<s>Hello</s>", "Hello<s>world", " <s> spaced </s> ",
               "<|begin_of_text|>", "<|eot_id|>Hi", "a<|start_header_id|>b",
               "     leading", "trailing     ", "  \\t  \\n  mixed  \\r\\n  ", "a\u0001b",
               "\u00a0nbsp\u00a0", "ideographic\u3000space", "em\u2003space", "a\u2028b"]
    for width in (1, 2, 3, 4, 5, 7, 16, 33):
        samples.append(" " * width + "x")
        samples.append("x" + " " * width)
        samples.append("x" + " " * width + "y")
        samples.append("9" * width)
    return samples


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(__file__), "..", "golden", "tokenizer", "corpus.txt")
    rng = XorShift(0x9E3779B97F4A7C15)
    lines = fixed_samples()
    while len(lines) < 2100:
        lines.append(sample(rng))
    with open(out, "w", encoding="utf-8", newline="\n") as f:
        for line in lines:
            assert "\n" not in line and "\r" not in line and "\t" not in line
            f.write(line + "\n")
    print(f"{out}: {len(lines)} samples")


if __name__ == "__main__":
    main()
