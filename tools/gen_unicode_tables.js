#!/usr/bin/env node
// tools/gen_unicode_tables.js: writes core/unicode_tables.c, the Unicode
// classes the GPT-2 pre-tokenizer needs (core/tokenizer.c):
//   L  = \p{L}  (general category Letter: Lu Ll Lt Lm Lo)
//   N  = \p{N}  (general category Number: Nd Nl No)
//   WS = \p{White_Space}; this is what Rust's regex crate means by \s. It is
//        NOT JavaScript's \s, which also matches U+FEFF.
// The sets come from Node's own ICU tables (/\p{...}/u), then codepoints
// assigned after the Unicode version that tiktoken's regex crate was built
// with are removed, because tiktoken treats them as unassigned (no class).
//
// Usage (from the repo root):
//   node tools/gen_unicode_tables.js [--check-wasm path/to/tiktoken_bg.wasm] > core/unicode_tables.c
// --check-wasm compares the result with the \p{L}, \p{N} and White_Space
// tables compiled into the npm "tiktoken" package (regex-syntax stores them
// as little-endian (u32 lo, u32 hi) pairs) and fails on any difference.
'use strict';
const fs = require('fs');

// tiktoken (npm tiktoken 1.0.22, Python tiktoken built with the same crates)
// uses regex-syntax 0.8.5, whose tables are Unicode 16.0.
const TIKTOKEN_UNICODE = '16.0';
// Letters and numbers first assigned in Unicode 17.0 (DerivedAge.txt, Age=17.0,
// intersected with gc=L|N). Extend this when Node moves past 17.0.
const NEWER_THAN_TIKTOKEN = {
    '17.0': [
        [0x088F, 0x088F], [0x0C5C, 0x0C5C], [0x0CDC, 0x0CDC], [0xA7CE, 0xA7CF],
        [0xA7D2, 0xA7D2], [0xA7D4, 0xA7D4], [0xA7F1, 0xA7F1], [0x10940, 0x10959],
        [0x10EC5, 0x10EC7], [0x11DB0, 0x11DDB], [0x11DE0, 0x11DE9], [0x16EA0, 0x16EB8],
        [0x16EBB, 0x16ED3], [0x16FF2, 0x16FF6], [0x187F8, 0x187FF], [0x18D09, 0x18D1E],
        [0x18D80, 0x18DF2], [0x1E6C0, 0x1E6DE], [0x1E6E0, 0x1E6E2], [0x1E6E4, 0x1E6E5],
        [0x1E6E7, 0x1E6ED], [0x1E6F0, 0x1E6F4], [0x1E6FE, 0x1E6FF], [0x2B73A, 0x2B73F],
        [0x2CEA2, 0x2CEAD], [0x323B0, 0x33479],
    ],
};

const CLS_L = 1, CLS_N = 2, CLS_WS = 3;

function die(msg) {
    process.stderr.write('gen_unicode_tables: ' + msg + '\n');
    process.exit(1);
}

const nodeUnicode = process.versions.unicode;
const cmpVer = (a, b) => {
    const x = a.split('.').map(Number), y = b.split('.').map(Number);
    return x[0] - y[0] || (x[1] || 0) - (y[1] || 0);
};
for (const v of Object.keys(NEWER_THAN_TIKTOKEN))
    if (cmpVer(v, TIKTOKEN_UNICODE) <= 0) die('bad exclusion list ' + v);
if (cmpVer(nodeUnicode, TIKTOKEN_UNICODE) > 0 && !NEWER_THAN_TIKTOKEN[nodeUnicode])
    die(`Node's Unicode is ${nodeUnicode}; list its new L/N codepoints in NEWER_THAN_TIKTOKEN`);

const excluded = new Set();
for (const [v, ranges] of Object.entries(NEWER_THAN_TIKTOKEN)) {
    if (cmpVer(v, nodeUnicode) > 0) continue; // Node does not know them anyway
    for (const [lo, hi] of ranges) for (let c = lo; c <= hi; c++) excluded.add(c);
}

// Sorted inclusive ranges of the codepoints for which pred holds.
function ranges(pred) {
    const out = [];
    let start = -1;
    for (let c = 0; c <= 0x110000; c++) {
        const m = c < 0x110000 && !(c >= 0xD800 && c <= 0xDFFF) && !excluded.has(c) &&
                  pred(String.fromCodePoint(c));
        if (m && start < 0) start = c;
        if (!m && start >= 0) {
            out.push([start, c - 1]);
            start = -1;
        }
    }
    return out;
}

const reL = /^\p{L}$/u, reN = /^\p{N}$/u, reWS = /^\p{White_Space}$/u;
const tables = {
    L: ranges((s) => reL.test(s)),
    N: ranges((s) => reN.test(s)),
    WS: ranges((s) => reWS.test(s)),
};

// The classes are disjoint; check it rather than assume it.
const all = [];
for (const [name, cls] of [['L', CLS_L], ['N', CLS_N], ['WS', CLS_WS]])
    for (const [lo, hi] of tables[name]) all.push([lo, hi, cls]);
all.sort((a, b) => a[0] - b[0]);
for (let i = 1; i < all.length; i++)
    if (all[i][0] <= all[i - 1][1]) die('classes overlap at U+' + all[i][0].toString(16));

function checkWasm(path) {
    const b = fs.readFileSync(path);
    const read = (off) => {
        const out = [];
        let prev = -1;
        for (let p = off; p + 8 <= b.length; p += 8) {
            const lo = b.readUInt32LE(p), hi = b.readUInt32LE(p + 4);
            if (lo <= prev || hi < lo || hi > 0x10FFFF) break;
            out.push([lo, hi]);
            prev = hi;
        }
        return out;
    };
    const same = (a, c) => a.length === c.length && a.every((r, i) => r[0] === c[i][0] && r[1] === c[i][1]);
    for (const name of ['L', 'N', 'WS']) {
        const mine = tables[name];
        const pat = Buffer.alloc(32);
        mine.slice(0, 4).forEach(([lo, hi], i) => {
            pat.writeUInt32LE(lo, i * 8);
            pat.writeUInt32LE(hi, i * 8 + 4);
        });
        let found = false;
        for (let off = b.indexOf(pat); off >= 0; off = b.indexOf(pat, off + 1))
            if (same(read(off), mine)) found = true;
        if (!found) die(`${name}: no table in ${path} equals Node's (${mine.length} ranges)`);
        process.stderr.write(`gen_unicode_tables: ${name}: ${mine.length} ranges match ${path}\n`);
    }
}

const argv = process.argv.slice(2);
if (argv[0] === '--check-wasm') {
    if (!argv[1]) die('--check-wasm needs a path');
    checkWasm(argv[1]);
} else if (argv.length) {
    die('usage: node tools/gen_unicode_tables.js [--check-wasm tiktoken_bg.wasm]');
}

const hex = (c) => '0x' + c.toString(16).toUpperCase().padStart(4, '0');
let out = '';
out += `/*
** core/unicode_tables.c: GENERATED by tools/gen_unicode_tables.js; do not edit.
** Codepoint classes for the GPT-2 pre-tokenizer: MECH_UNI_L (\\p{L}),
** MECH_UNI_N (\\p{N}) and MECH_UNI_WS (\\p{White_Space}, Rust regex's \\s).
** Source: Node ${process.versions.node} (ICU ${process.versions.icu}, Unicode ${nodeUnicode}),
** limited to Unicode ${TIKTOKEN_UNICODE}, the version of tiktoken's regex tables.
** Invariant: ranges are inclusive, sorted, disjoint; codepoints not listed
** have no class. Counts: L ${tables.L.length}, N ${tables.N.length}, WS ${tables.WS.length} ranges.
*/
#include "core/tokenizer_int.h"

const mech_uni_range mech_uni_ranges[] = {
`;
for (const [lo, hi, cls] of all) {
    const name = cls === CLS_L ? 'MECH_UNI_L' : cls === CLS_N ? 'MECH_UNI_N' : 'MECH_UNI_WS';
    out += `    {${hex(lo)}, ${hex(hi)}, ${name}},\n`;
}
out += `};

const size_t mech_uni_n_ranges = sizeof mech_uni_ranges / sizeof mech_uni_ranges[0];
`;
process.stdout.write(out);
