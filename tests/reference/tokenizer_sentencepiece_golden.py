#!/usr/bin/env python3
"""SentencePiece reference ids for the tokenizer corpus (run by tests/js/make_tokenizer_golden.mjs).

Usage: /usr/bin/python3 tokenizer_sentencepiece_golden.py tokenizer.model corpus.json ids.jsonl decoded.jsonl
corpus.json holds the unescaped samples as one JSON list. Ids get BOS prepended, as
LlamaTokenizer does with tokenizer_config.json's add_bos_token (true for stories260k).
"""
import json
import sys

import sentencepiece


def main():
    model_path, corpus_path, ids_path, decoded_path = sys.argv[1:5]
    processor = sentencepiece.SentencePieceProcessor(model_file=model_path)
    with open(corpus_path, encoding="utf-8") as f:
        samples = json.load(f)
    with open(ids_path, "w", encoding="utf-8") as ids_file, \
            open(decoded_path, "w", encoding="utf-8") as decoded_file:
        for text in samples:
            ids = processor.encode(text)
            ids_file.write(json.dumps([processor.bos_id()] + ids, separators=(",", ":")) + "\n")
            decoded = processor.decode(ids)
            decoded_file.write(json.dumps(None if decoded == text else decoded, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
