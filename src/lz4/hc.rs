//! liblz4's high-compression compressor (`LZ4_compress_HC_destSize`): a hash chain over every
//! position, a match finder that can widen a match backwards and recognises runs of one byte,
//! and at levels 1-9 a lazy parser that weighs up to three overlapping matches.

use super::{
    count, last_literals, push_length, read16, read32, DISTANCE_MAX, HC_LEVEL_DEFAULT,
    LASTLITERALS, MAX_INPUT, MFLIMIT, MINMATCH, MIN_LENGTH, ML_MASK, RUN_MASK,
};

const HASH_LOG: u32 = 15;
/// Positions are numbered from here: liblz4 starts a fresh context 64 KiB up, so that an
/// empty hash slot (0) is always out of reach.
const BASE: u32 = 65536;
/// Matches are shortened to this where the next one overlaps them.
const OPTIMAL_ML: usize = ML_MASK - 1 + MINMATCH;

/// Searches per position at each level, and whether the level uses the optimal parser and
/// its "good enough" length.
struct Level {
    searches: i32,
    optimal: Option<usize>,
}

fn level(l: i32) -> Level {
    let l = if l < 1 { HC_LEVEL_DEFAULT } else { l.min(12) };
    let (searches, optimal) = match l {
        1 | 2 => (2, None),
        3 => (4, None),
        4 => (8, None),
        5 => (16, None),
        6 => (32, None),
        7 => (64, None),
        8 => (128, None),
        9 => (256, None),
        10 => (96, Some(64)),
        11 => (512, Some(128)),
        _ => (16384, Some(super::optimal::OPT_NUM)),
    };
    Level { searches, optimal }
}

/// The match-finding state: the newest position of each hash and each position's distance
/// to the previous one with its hash.
pub(super) struct Chain<'a> {
    pub src: &'a [u8],
    hash: Vec<u32>,
    chain: Vec<u16>,
    next_to_update: u32,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Repeat {
    Untested,
    Confirmed,
    Not,
}

fn idx(pos: usize) -> u32 {
    pos as u32 + BASE
}

fn pos(idx: u32) -> usize {
    (idx - BASE) as usize
}

impl<'a> Chain<'a> {
    pub fn new(src: &'a [u8]) -> Self {
        Chain {
            src,
            hash: vec![0; 1 << HASH_LOG],
            // liblz4 zeroes the whole context, the chain too.
            chain: vec![0; 1 << 16],
            next_to_update: BASE,
        }
    }

    fn hash_at(&self, p: usize) -> usize {
        (read32(self.src, p).wrapping_mul(2_654_435_761) >> (32 - HASH_LOG)) as usize
    }

    fn delta(&self, i: u32) -> u32 {
        u32::from(self.chain[(i & 0xFFFF) as usize])
    }

    fn insert(&mut self, ip: usize) {
        let target = idx(ip);
        while self.next_to_update < target {
            let i = self.next_to_update;
            let h = self.hash_at(pos(i));
            let delta = (i.wrapping_sub(self.hash[h]) as usize).min(DISTANCE_MAX);
            self.chain[(i & 0xFFFF) as usize] = delta as u16;
            self.hash[h] = i;
            self.next_to_update += 1;
        }
    }

    /// Bytes equal to `b` from `p` up to `end`.
    fn run_forward(&self, mut p: usize, end: usize, b: u8) -> usize {
        let start = p;
        while p < end && self.src.get(p) == Some(&b) {
            p += 1;
        }
        p - start
    }

    /// Bytes equal to `b` before `p`.
    fn run_backward(&self, mut p: usize, b: u8) -> usize {
        let start = p;
        while p > 0 && self.src[p - 1] == b {
            p -= 1;
        }
        start - p
    }

    /// liblz4's `LZ4HC_InsertAndGetWiderMatch`: the longest match for `ip` longer than
    /// `longest`, allowed to start as far back as `low`; updates `mpos`/`spos` (the match
    /// and where it starts in the input) when it finds one. Returns the best length.
    #[allow(clippy::too_many_arguments)]
    pub fn wider_match(
        &mut self,
        ip: usize,
        low: usize,
        high: usize,
        mut longest: usize,
        mpos: &mut usize,
        spos: &mut usize,
        searches: i32,
        pattern_analysis: bool,
        chain_swap: bool,
    ) -> usize {
        let src = self.src;
        let ip_index = idx(ip);
        let lowest = if BASE + DISTANCE_MAX as u32 + 1 > ip_index {
            BASE
        } else {
            ip_index - DISTANCE_MAX as u32
        };
        let look_back = ip - low;
        let mut attempts = searches;
        let mut chain_pos: u32 = 0;
        let pattern = read32(src, ip);
        let mut repeat = Repeat::Untested;
        let mut pattern_len = 0usize;
        self.insert(ip);
        let mut mi = self.hash[self.hash_at(ip)];
        while mi >= lowest && attempts > 0 {
            let mut match_len = 0usize;
            attempts -= 1;
            let mp = pos(mi);
            // A quick look at the two bytes that would make the match longer.
            let probe = (mp + longest - 1).checked_sub(look_back);
            if probe.is_some_and(|p| read16(src, low + longest - 1) == read16(src, p))
                && read32(src, mp) == pattern
            {
                let back = if look_back > 0 {
                    let limit = look_back.min(mp);
                    let mut b = 0;
                    while b < limit && src[ip - b - 1] == src[mp - b - 1] {
                        b += 1;
                    }
                    b
                } else {
                    0
                };
                match_len = MINMATCH + count(src, ip + MINMATCH, mp + MINMATCH, high) + back;
                if match_len > longest {
                    longest = match_len;
                    *mpos = mp - back;
                    *spos = ip - back;
                }
            }
            if chain_swap && match_len == longest && mi + longest as u32 <= ip_index {
                // Follow the chain of the match's position whose predecessor is farthest.
                let end = (longest - MINMATCH + 1) as u32;
                let mut farthest = 1u32;
                let mut accel = 1u32 << 4;
                let mut p = 0u32;
                while p < end {
                    let candidate = self.delta(mi + p);
                    let step = accel >> 4;
                    accel += 1;
                    if candidate > farthest {
                        farthest = candidate;
                        chain_pos = p;
                        accel = 1 << 4;
                    }
                    p += step;
                }
                if farthest > 1 {
                    if farthest > mi {
                        break;
                    }
                    mi -= farthest;
                    continue;
                }
            }
            if pattern_analysis && self.delta(mi) == 1 && chain_pos == 0 {
                let candidate = mi - 1;
                if repeat == Repeat::Untested {
                    // Only a run of one byte passes liblz4's test for a repeated pattern.
                    if (pattern & 0xFFFF) == (pattern >> 16) && (pattern & 0xFF) == (pattern >> 24)
                    {
                        repeat = Repeat::Confirmed;
                        pattern_len = self.run_forward(ip + 4, high, pattern as u8) + 4;
                    } else {
                        repeat = Repeat::Not;
                    }
                }
                if repeat == Repeat::Confirmed && candidate >= lowest {
                    let mp = pos(candidate);
                    if read32(src, mp) == pattern {
                        let forward = self.run_forward(mp + 4, high, pattern as u8) + 4;
                        let mut back = self.run_backward(mp, pattern as u8);
                        back = (candidate - (candidate - back as u32).max(lowest)) as usize;
                        let segment = back + forward;
                        if segment >= pattern_len && forward <= pattern_len {
                            mi = candidate + forward as u32 - pattern_len as u32;
                        } else {
                            mi = candidate - back as u32;
                            if look_back == 0 {
                                let max_ml = segment.min(pattern_len);
                                if longest < max_ml {
                                    if ip_index - mi > DISTANCE_MAX as u32 {
                                        break;
                                    }
                                    longest = max_ml;
                                    *mpos = pos(mi);
                                    *spos = ip;
                                }
                                let d = self.delta(mi);
                                if d > mi {
                                    break;
                                }
                                mi -= d;
                            }
                        }
                        continue;
                    }
                }
            }
            mi -= self.delta(mi + chain_pos);
        }
        longest
    }
}

/// The output so far and where the next sequence starts.
pub(super) struct Encoder {
    pub out: Vec<u8>,
    pub ip: usize,
    pub anchor: usize,
    /// The output budget minus the last literals' 5 bytes (liblz4's `oend` in fill mode).
    pub oend: usize,
}

impl Encoder {
    /// liblz4's `LZ4HC_encodeSequence`: literals from `anchor` to `ip`, then a match of `ml`
    /// at `m`. `false` (nothing kept) when `limited` and it would not fit.
    pub fn sequence(&mut self, src: &[u8], ml: usize, m: usize, limited: bool) -> bool {
        let start = self.out.len();
        let lit = self.ip - self.anchor;
        if limited && start + 1 + lit / 255 + lit + 2 + 1 + LASTLITERALS > self.oend {
            return false;
        }
        let token = start;
        self.out.push(0);
        if lit >= RUN_MASK {
            self.out[token] = (RUN_MASK << 4) as u8;
            push_length(&mut self.out, lit - RUN_MASK);
        } else {
            self.out[token] = (lit << 4) as u8;
        }
        self.out.extend_from_slice(&src[self.anchor..self.ip]);
        self.out
            .extend_from_slice(&((self.ip - m) as u16).to_le_bytes());
        let len = ml - MINMATCH;
        if limited && self.out.len() + len / 255 + 1 + LASTLITERALS > self.oend {
            self.out.truncate(start);
            return false;
        }
        if len >= ML_MASK {
            self.out[token] += ML_MASK as u8;
            push_length(&mut self.out, len - ML_MASK);
        } else {
            self.out[token] += len as u8;
        }
        self.ip += ml;
        self.anchor = self.ip;
        true
    }

    /// [`Self::sequence`] within the budget, or else its shortened form if one fits and
    /// `false`: the parser stops there and the last literals follow.
    pub fn sequence_or_fill(&mut self, src: &[u8], ml: usize, m: usize) -> bool {
        let saved = self.out.len();
        if self.sequence(src, ml, m, true) {
            return true;
        }
        self.overflow(src, saved, ml, m);
        false
    }

    /// After a sequence did not fit: the longest shortened form of it that does (liblz4's
    /// `_dest_overflow`), if any. `saved` is where the failed sequence began in the output.
    fn overflow(&mut self, src: &[u8], saved: usize, ml: usize, m: usize) {
        self.out.truncate(saved);
        let ll = self.ip - self.anchor;
        let ll_total = 1 + (ll + 240) / 255 + ll;
        let Some(max_lit_pos) = self.oend.checked_sub(3) else {
            return;
        };
        let op = self.out.len();
        if op + ll_total <= max_lit_pos {
            let left = max_lit_pos - (op + ll_total);
            let ml = ml.min(MINMATCH + (ML_MASK - 1) + left * 255);
            if (self.oend + LASTLITERALS) as i64 - (op + ll_total + 2) as i64 - 1 + ml as i64
                >= MFLIMIT as i64
            {
                self.sequence(src, ml, m, false);
            }
        }
    }

    fn finish(mut self, src: &[u8], limit: usize) -> Option<(Vec<u8>, usize)> {
        let consumed = last_literals(src, self.anchor, &mut self.out, Some(limit))?;
        Some((self.out, consumed))
    }
}

/// Compresses as much of `src` as fits in `target` bytes, as `LZ4_compress_HC_destSize` at
/// `level`. Returns the block and how many input bytes it holds, or `None` where liblz4
/// returns 0.
pub fn compress_hc_dest_size(src: &[u8], target: usize, level_: i32) -> Option<(Vec<u8>, usize)> {
    if src.len() > MAX_INPUT || target == 0 {
        return None;
    }
    let lv = level(level_);
    let mut enc = Encoder {
        out: Vec::with_capacity(target),
        ip: 0,
        anchor: 0,
        oend: target.saturating_sub(LASTLITERALS),
    };
    // liblz4 subtracts 5 from its end pointer; with a budget under 5 the checks below can
    // never pass, as there.
    let tiny = target < LASTLITERALS;
    if src.len() >= MIN_LENGTH && !tiny {
        let mut chain = Chain::new(src);
        match lv.optimal {
            None => hash_chain(&mut chain, &mut enc, lv.searches),
            Some(sufficient) => super::optimal::compress(
                &mut chain,
                &mut enc,
                lv.searches,
                sufficient,
                lv.searches == 16384,
            ),
        }
    }
    enc.finish(src, target)
}

/// Where the next match (at `s2`, from `r2`, `ml2` long) starts less than `OPTIMAL_ML` after
/// `ip`: the current match capped at `OPTIMAL_ML` (and so that the next keeps `MINMATCH`
/// bytes), the next one moved to start after it. Returns the capped length.
fn cap_overlap(ip: usize, ml: usize, s2: &mut usize, r2: &mut usize, ml2: &mut usize) -> usize {
    let mut new_ml = ml.min(OPTIMAL_ML);
    if ip + new_ml > *s2 + *ml2 - MINMATCH {
        new_ml = *s2 - ip + *ml2 - MINMATCH;
    }
    let correction = new_ml as isize - (*s2 - ip) as isize;
    if correction > 0 {
        let c = correction as usize;
        *s2 += c;
        *r2 += c;
        *ml2 -= c;
    }
    new_ml
}

/// The lazy parser of levels 1-9 (`LZ4HC_compress_hashChain`).
fn hash_chain(c: &mut Chain, e: &mut Encoder, searches: i32) {
    let src = c.src;
    let len = src.len();
    let mflimit = len - MFLIMIT;
    let matchlimit = len - LASTLITERALS;
    let pa = searches > 128;
    let (mut ml, mut ml2, mut ml3);
    let (mut r, mut r2, mut r3) = (0usize, 0usize, 0usize);
    let (mut s2, mut s3) = (0usize, 0usize);
    let (mut start0, mut ref0, mut ml0);
    'main: while e.ip <= mflimit {
        let ip = e.ip;
        let mut dummy = ip;
        ml = c.wider_match(
            ip,
            ip,
            matchlimit,
            MINMATCH - 1,
            &mut r,
            &mut dummy,
            searches,
            pa,
            false,
        );
        if ml < MINMATCH {
            e.ip += 1;
            continue;
        }
        start0 = e.ip;
        ref0 = r;
        ml0 = ml;
        // `_Search2`
        'search2: loop {
            if e.ip + ml <= mflimit {
                ml2 = c.wider_match(
                    e.ip + ml - 2,
                    e.ip,
                    matchlimit,
                    ml,
                    &mut r2,
                    &mut s2,
                    searches,
                    pa,
                    false,
                );
            } else {
                ml2 = ml;
            }
            if ml2 == ml {
                if !e.sequence_or_fill(src, ml, r) {
                    break 'main;
                }
                continue 'main;
            }
            if start0 < e.ip && s2 < e.ip + ml0 {
                e.ip = start0;
                r = ref0;
                ml = ml0;
            }
            if s2 - e.ip < 3 {
                ml = ml2;
                e.ip = s2;
                r = r2;
                continue 'search2;
            }
            // `_Search3`
            loop {
                if s2 - e.ip < OPTIMAL_ML {
                    cap_overlap(e.ip, ml, &mut s2, &mut r2, &mut ml2);
                }
                if s2 + ml2 <= mflimit {
                    ml3 = c.wider_match(
                        s2 + ml2 - 3,
                        s2,
                        matchlimit,
                        ml2,
                        &mut r3,
                        &mut s3,
                        searches,
                        pa,
                        false,
                    );
                } else {
                    ml3 = ml2;
                }
                if ml3 == ml2 {
                    if s2 < e.ip + ml {
                        ml = s2 - e.ip;
                    }
                    if !e.sequence_or_fill(src, ml, r) {
                        break 'main;
                    }
                    e.ip = s2;
                    if !e.sequence_or_fill(src, ml2, r2) {
                        break 'main;
                    }
                    continue 'main;
                }
                if s3 < e.ip + ml + 3 {
                    if s3 >= e.ip + ml {
                        if s2 < e.ip + ml {
                            let c = e.ip + ml - s2;
                            s2 += c;
                            r2 += c;
                            // ml2 - c may go below MINMATCH (and below zero in liblz4's ints).
                            let new_ml2 = ml2 as isize - c as isize;
                            if new_ml2 < MINMATCH as isize {
                                s2 = s3;
                                r2 = r3;
                                ml2 = ml3;
                            } else {
                                ml2 = new_ml2 as usize;
                            }
                        }
                        if !e.sequence_or_fill(src, ml, r) {
                            break 'main;
                        }
                        e.ip = s3;
                        r = r3;
                        ml = ml3;
                        start0 = s2;
                        ref0 = r2;
                        ml0 = ml2;
                        continue 'search2;
                    }
                    s2 = s3;
                    r2 = r3;
                    ml2 = ml3;
                    continue;
                }
                if s2 < e.ip + ml {
                    if s2 - e.ip < OPTIMAL_ML {
                        ml = cap_overlap(e.ip, ml, &mut s2, &mut r2, &mut ml2);
                    } else {
                        ml = s2 - e.ip;
                    }
                }
                if !e.sequence_or_fill(src, ml, r) {
                    break 'main;
                }
                e.ip = s2;
                r = r2;
                ml = ml2;
                s2 = s3;
                r2 = r3;
                ml2 = ml3;
            }
        }
    }
}
