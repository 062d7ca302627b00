#!/usr/bin/env node
// tools/gen_tokenizer_cases.js: writes tests/fixtures/tokenizer/cases.jsonl,
// the oracle for tests/test_core_tokenizer.c: texts encoded by tiktoken's
// "gpt2" encoding (npm package "tiktoken", Rust core compiled to WASM).
//
// One JSON object per line:
//   {"text": "...", "ids": [...]}                       encode_ordinary(text)
//   {"text": "...", "allow_special": true, "ids": [...]} encode(text, "all")
//
// Corpus: hand-written edge cases, every Unicode class boundary of
// core/unicode_tables.c, seeded random strings mixing character classes, and
// tests/fixtures/tokenizer/english.txt (whole and by paragraph).
//
// Usage (tiktoken is NOT a dependency of the repo; install it elsewhere):
//   (cd /tmp/tk && npm install tiktoken)
//   NODE_PATH=/tmp/tk/node_modules node tools/gen_tokenizer_cases.js
// Run from the repository root. Output is deterministic.
'use strict';
const fs = require('fs');
let get_encoding;
try {
    ({ get_encoding } = require('tiktoken'));
} catch (e) {
    process.stderr.write('gen_tokenizer_cases: cannot load the npm package "tiktoken"; install it ' +
                         'outside the repo and set NODE_PATH (see the header of this file)\n');
    process.exit(1);
}

const enc = get_encoding('gpt2');
const out = [];
const seen = new Set();

function add(text, allowSpecial = false) {
    const key = (allowSpecial ? 'S' : 'O') + text;
    if (seen.has(key)) return;
    seen.add(key);
    const ids = allowSpecial ? enc.encode(text, 'all') : enc.encode_ordinary(text);
    const rec = { text };
    if (allowSpecial) rec.allow_special = true;
    rec.ids = Array.from(ids);
    // tiktoken must round-trip too, or the text was not what we meant.
    const back = Buffer.from(enc.decode(ids)).toString('utf8');
    if (back !== text) throw new Error('tiktoken does not round-trip ' + JSON.stringify(text));
    out.push(JSON.stringify(rec));
}

// mulberry32: small seeded PRNG so the corpus is reproducible.
function rng(seed) {
    let a = seed >>> 0;
    return () => {
        a = (a + 0x6D2B79F5) >>> 0;
        let t = a;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
}

// ---------------------------------------------------------------------------
// Hand-written edge cases

const edge = [
    '', ' ', '  ', '\n', '\t', '\r\n', 'a', 'A', '0', '!', "'", '"',
    'Hello world', 'Hello, world!', 'hello  world', '  hello', '   hello', 'hello  ', 'hello \n',
    'hello\n\nworld', 'hello \n\n world', 'a\r\nb\r\n', 'a \t b', 'a\t\tb', ' \t\n x', 'x \t\n',
    '\n\n\n', '    ', ' \n ', '\t \t', 'a   ', 'a\n  \n', 'end with spaces   ', 'end with tab\t',
    // contractions: case-sensitive, so upper case splits differently
    "I'm", "I'M", "don't", "DON'T", "Don'T", "we'll", "WE'LL", "We'Ll", "they're", "THEY'RE",
    "they've", "THEY'VE", "he'd", "HE'D", "it's", "IT'S", "John's", "JOHN'S", "'s", "'S", "'ll",
    "'LL", "'re", "'ve", "'d", "'m", "'t", "'x", "''s", "'''", "' s", "x'", "?'s", "'s'", "rock'n'roll",
    "o'clock", " 's", "a 's", "A 'LL", "'sss", "'llama", "'reed", "'vex", "'dog", "'mom", "'tea", "l'amour", "can't've",
    '\u2019s', "It\u2019s fine", "ain't", "y'all'd've",
    // digits and numbers
    '123', '1234567890', '3.14159', '1,000,000', '12345678901234567890123456789', 'v1.2.3',
    '2023-01-01', '0x1F', '1e10', '-42', '+7', '100%', '$9.99', 'a1b2c3', ' 123', '1 2 3',
    '\u00b2\u00b3', '\u00bd \u00be', '\u2167 \u216b', '\u0661\u0662\u0663', '\uff11\uff12\uff13',
    '\u0967\u0968', '\u0e51\u0e52', 'x\u00b2+y\u00b2',
    // punctuation runs
    '...', '!!!', '?!?!', '---', '***', '<<>>', '()[]{}', '#$%&', '@@@', '~~~', '``` code ```',
    '!!! !!!', ' ...', ' !!', '.\n.', '",', "'.'", '\\n', '\\\\', '/**/', '=>', '!==', '<|', '|>',
    // special-token text is plain text in encode_ordinary
    '<|endoftext|>', 'a<|endoftext|>b', ' <|endoftext|> ', '<|endoftext|><|endoftext|>',
    '<|endoftext', 'endoftext|>', '<|startoftext|>', '<|endoftext|>\n\nNext document',
    // Unicode whitespace (White_Space, what Rust's \s matches)
    'a\u00a0b', 'a \u00a0b', '\u00a0\u00a0', 'x\u2003y', 'x \u2003 y', '\u3000\u3000text',
    'a\u2028b', 'a\u2029b', 'a\u0085b', 'a\u1680b', 'a\u202fb', 'a\u205fb', 'a\u200ab',
    'a\u000bb', 'a\u000cb', 'a\u001cb', 'a\u001fb',
    // U+FEFF and U+200B are NOT White_Space (JS \s wrongly includes U+FEFF)
    '\ufeffhello', 'a\ufeff b', 'a \ufeffb', 'a\u200bb', 'a \u200b b', '\u200d', '\u2060',
    // emoji, ZWJ sequences, flags, skin tones, keycaps
    '\ud83d\ude00', 'hi \ud83d\ude00', '\ud83d\ude00\ud83d\ude00\ud83d\ude00',
    '\ud83d\udc68\u200d\ud83d\udc69\u200d\ud83d\udc67\u200d\ud83d\udc66',
    '\ud83c\uddfa\ud83c\uddf8\ud83c\uddef\ud83c\uddf5', '\ud83d\udc4d\ud83c\udffd', '1\ufe0f\u20e3',
    '\u2764\ufe0f', 'I \u2764\ufe0f NY', '\ud83c\udff3\ufe0f\u200d\ud83c\udf08',
    // scripts
    '\u4f60\u597d\uff0c\u4e16\u754c\uff01', '\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8',
    '\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8', '\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645',
    '\u0627\u0644\u0633\u0644\u0627\u0645 \u0639\u0644\u064a\u0643\u0645 123',
    '\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e',
    '\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35\u0e0a\u0e32\u0e27\u0e42\u0e25\u0e01',
    '\u0417\u0434\u0440\u0430\u0432\u0441\u0442\u0432\u0443\u0439, \u043c\u0438\u0440!',
    '\u0393\u03b5\u03b9\u03ac \u03c3\u03bf\u03c5 \u039a\u03cc\u03c3\u03bc\u03b5',
    '\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd', 'na\u00efve caf\u00e9 r\u00e9sum\u00e9',
    'Stra\u00dfe \u00c4rger \u00f6l', '\u1e9e', 'e\u0301', 'cafe\u0301', 'a\u0300\u0301\u0302\u0303',
    'Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034dA\u036b\u0357\u0334\u0362\u0335\u031c\u0330\u0354L',
    '\u0915\u094d\u0937', '\u00e0 la', '\u0130stanbul', '\u01c5', '\u02b0\u02b1',
    // astral and unusual codepoints
    '\ud835\udc00\ud835\udc01', '\ud840\udc00\ud840\udc01', '\ud800\udf30', '\ue000\uf8ff',
    '\ufffd', '\uffff', '\u0378', '\u0000', 'a\u0000b', '\u0001\u0002\u0003', '\u007f',
    '\u0080\u0081\u009f', '\u00ad', 'x\u00adz',
    // letters new in Unicode 16.0 (tiktoken knows) and 17.0 (it does not yet)
    '\ud803\udd50\ud803\udd51 x', 'a\ud803\udd4ab', '\ud802\udd40\ud802\udd41', 'a\ud802\udd40b',
    ' \ud802\udd40', '\ua7ce\ua7cf', 'a\ua7ceb', '\ud807\uddb0 1\ud807\udde0',
    // code and URLs
    'int main(void) { return 0; }', 'for (int i = 0; i < n; i++) {\n    x[i] = 0;\n}\n',
    'def f(x):\n    return x ** 2\n\n\nprint(f(3))\n', '\tif (a && b || !c) {\n\t\tfoo();\n\t}',
    'const s = `${a}-${b}`;', '#include <stdio.h>\n', 'SELECT * FROM t WHERE id = 1;',
    '<div class="x">Hi</div>', '{"key": [1, 2.5, null, true]}',
    'https://www.example.com/path/to/page?query=1&x=%20y#frag', 'mailto:someone@example.org',
    'C:\\Users\\name\\file.txt', '/usr/local/bin/', 'git commit -m "fix: it\'s done"',
    '    indented code\n        more', 'x = y+z*2//3', '\u00a9 2024 \u2014 All rights reserved\u2122',
    // mixed
    'The year 2024 was great!!! Wasn\'t it?', 'Mr. O\'Neil\'s 3rd cat\'s toy', 'HELLO WORLD',
    'CamelCaseIdentifier', 'snake_case_identifier', 'kebab-case-id', 'UPPER_CASE_99',
    'a.b.c', 'x,y;z:w', '\u201cquoted\u201d \u2018single\u2019', '\u2014dash\u2013en',
    'Tab\tseparated\tvalues\n1\t2\t3\n',
];
for (const t of edge) add(t);

// Long runs take the heap path in core/tokenizer.c.
{
    const r = rng(7);
    const letters = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';
    let s = '';
    for (let i = 0; i < 3000; i++) s += letters[Math.floor(r() * letters.length)];
    add(s);
    add(' ' + s.slice(0, 500));
    add('a'.repeat(1000));
    add('ab'.repeat(700));
    add('\u00e9'.repeat(300));
    add('\u4e00\u4e01\u4e02'.repeat(200));
    let d = '';
    for (let i = 0; i < 2000; i++) d += String(Math.floor(r() * 10));
    add(d);
    add('!?'.repeat(400));
    add(' '.repeat(1000) + 'x');
    add('\n'.repeat(500));
    add(' \t'.repeat(300) + 'end');
    add('\ud83d\ude00'.repeat(200));
}

// ---------------------------------------------------------------------------
// Every class boundary of the generated tables: each range's first and last
// codepoint and their outside neighbours, in contexts where the class decides
// the split (joins with a letter, a digit, a space or punctuation).
{
    const src = fs.readFileSync('core/unicode_tables.c', 'utf8');
    const re = /\{0x([0-9A-F]+), 0x([0-9A-F]+), MECH_UNI_[A-Z]+\}/g;
    const ok = (c) => c >= 0 && c <= 0x10FFFF && !(c >= 0xD800 && c <= 0xDFFF);
    let m;
    let n = 0;
    while ((m = re.exec(src))) {
        const lo = parseInt(m[1], 16), hi = parseInt(m[2], 16);
        const cps = [lo - 1, lo, hi, hi + 1].filter(ok).map((c) => String.fromCodePoint(c));
        let t = '';
        for (const c of cps) t += 'a' + c + 'b ' + c + '1' + c + c + ' ' + c + '!' + c + '  ' + c + '\n';
        add(t);
        n++;
    }
    if (n < 500) throw new Error('could not read core/unicode_tables.c (' + n + ' ranges)');
}

// ---------------------------------------------------------------------------
// Random strings mixing classes (seeded)
{
    const r = rng(20240601);
    const pick = (a) => a[Math.floor(r() * a.length)];
    const atoms = [
        'the', 'The', 'THE', 'hello', 'World', 'a', 'I', 'x', 'foo', 'BAR', 'naïve', 'über', 'Ωmega',
        "'s", "'S", "'ll", "'LL", "'re", "'RE", "'ve", "'d", "'D", "'m", "'t", "'T", "'", "''",
        '0', '7', '42', '2024', '3.5', '1,000', '²', '½', 'Ⅻ', '٣', '１',
        ' ', ' ', ' ', '  ', '   ', '\t', '\n', '\n\n', '\r\n', ' \n', '\u00a0', '\u2003', '\u3000',
        '\u2028', '\u0085', '\ufeff', '\u200b', '\u200d',
        '.', ',', '!', '?', '...', '-', '--', '(', ')', '"', '#', '@', '$', '%', '&', '*', '/',
        '\\', '<', '>', '|', '_', '~', '`', '^', '{', '}', '[', ']', ';', ':', '+', '=',
        '<|endoftext|>', '<|', '|>',
        '😀', '👍🏽', '👨‍👩‍👧', '🇫🇷', '❤️', '✨', '🙂🙃',
        '中文', '日本', 'カタカナ', 'ひらがな', '한국어', 'مرحبا', 'سلام', 'नमस्ते', 'हिन्दी', 'สวัสดี',
        'Привет', 'Γειά', 'שלום', 'é', 'e\u0301', '\u0301', '\u0300\u0301', 'ñ', 'ß', 'ǅ',
        '\ud835\udc00', '\ud840\udc00', '\ue000', '\ufffd', '\u0378', '\u0000', '\u0007', '\u007f',
        '\ud802\udd40', '\ud803\udd50',
    ];
    for (let k = 0; k < 400; k++) {
        const len = 1 + Math.floor(r() * 30);
        let s = '';
        for (let i = 0; i < len; i++) s += pick(atoms);
        add(s);
    }
    // ASCII soup, heavy on whitespace and punctuation, for the pre-tokenizer.
    const soup = " \t\n\r'sdmtlvreSDMTLVRE0123456789.,!?-'\"()<>|" + 'abcxyzABC';
    for (let k = 0; k < 200; k++) {
        const len = 1 + Math.floor(r() * 40);
        let s = '';
        for (let i = 0; i < len; i++) s += soup[Math.floor(r() * soup.length)];
        add(s);
    }
    // Random codepoints from the whole range (assigned or not).
    for (let k = 0; k < 100; k++) {
        const len = 1 + Math.floor(r() * 12);
        let s = '';
        for (let i = 0; i < len; i++) {
            let c;
            do {
                const u = r();
                c = u < 0.3 ? Math.floor(r() * 0x80) : u < 0.6 ? Math.floor(r() * 0x800)
                  : u < 0.9 ? Math.floor(r() * 0x10000) : Math.floor(r() * 0x110000);
            } while (c >= 0xD800 && c <= 0xDFFF);
            s += String.fromCodePoint(c);
            if (r() < 0.3) s += pick([' ', 'a', '1', '!', "'s", '  ']);
        }
        add(s);
    }
}

// ---------------------------------------------------------------------------
// English prose
{
    const eng = fs.readFileSync('tests/fixtures/tokenizer/english.txt', 'utf8');
    add(eng);
    for (const para of eng.split(/\n\s*\n/)) if (para.trim()) add(para);
}

// ---------------------------------------------------------------------------
// allow_special: <|endoftext|> becomes its id
for (const t of [
    '<|endoftext|>', 'Hello<|endoftext|>World', 'a  <|endoftext|>  b', '<|endoftext|><|endoftext|>',
    'end.\n\n<|endoftext|>\n\nStart', '<|endoftext', '<|<|endoftext|>|>', 'x <|endoftext|>',
    '<|endoftext|> x', 'no special here', ' \n<|endoftext|>\n ',
]) add(t, true);

enc.free();
const path = 'tests/fixtures/tokenizer/cases.jsonl';
fs.writeFileSync(path, out.join('\n') + '\n');
process.stderr.write(`gen_tokenizer_cases: wrote ${out.length} cases to ${path}\n`);
