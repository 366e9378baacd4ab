//! liblz4's fast compressor (`LZ4_compress_destSize`, acceleration 1): one hash table of
//! recent positions, skipping ahead faster the longer nothing matches.

use super::{
    count, last_literals, push_length, read32, read64, DISTANCE_MAX, LASTLITERALS, MAX_INPUT,
    MFLIMIT, MINMATCH, MIN_LENGTH, ML_MASK, RUN_MASK,
};

/// Inputs below this use 16-bit positions and a 13-bit hash of 4 bytes; larger ones 32-bit
/// positions and a 12-bit hash of 5 bytes (liblz4 on 64-bit hosts).
const LIMIT_64K: usize = 65536 + MFLIMIT - 1;
/// Searches without a match before the stride grows.
const SKIP_TRIGGER: u32 = 6;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Table {
    Small,
    Large,
}

struct Hashes {
    table: Vec<u32>,
    kind: Table,
}

impl Hashes {
    fn new(kind: Table) -> Self {
        let bits = match kind {
            Table::Small => 13,
            Table::Large => 12,
        };
        Hashes {
            table: vec![0; 1 << bits],
            kind,
        }
    }

    fn hash(&self, src: &[u8], pos: usize) -> usize {
        match self.kind {
            Table::Small => (read32(src, pos).wrapping_mul(2_654_435_761) >> (32 - 13)) as usize,
            Table::Large => {
                ((read64(src, pos) << 24).wrapping_mul(889_523_592_379) >> (64 - 12)) as usize
            }
        }
    }
}

/// Compresses as much of `src` as fits in `target` bytes, as `LZ4_compress_destSize`.
/// Returns the block and how many input bytes it holds, or `None` where liblz4 returns 0.
pub fn compress_dest_size(src: &[u8], target: usize) -> Option<(Vec<u8>, usize)> {
    if src.len() > MAX_INPUT || target == 0 {
        return None;
    }
    let bound = src.len() + src.len() / 255 + 16;
    let kind = if src.len() < LIMIT_64K {
        Table::Small
    } else {
        Table::Large
    };
    // With room for the worst case liblz4 compresses without the budget checks.
    let budget = (target < bound).then_some(target);
    compress(src, budget, kind)
}

fn compress(src: &[u8], budget: Option<usize>, kind: Table) -> Option<(Vec<u8>, usize)> {
    let len = src.len();
    let mut out = Vec::with_capacity(budget.unwrap_or(len + len / 255 + 16));
    if len == 0 {
        out.push(0);
        return Some((out, 0));
    }
    let mut anchor = 0usize;
    let mut ht = Hashes::new(kind);
    if len >= MIN_LENGTH {
        main_loop(src, budget, &mut ht, &mut out, &mut anchor)?;
    }
    let consumed = last_literals(src, anchor, &mut out, budget)?;
    Some((out, consumed))
}

/// The sequences before the last literals; leaves `anchor` at the first byte not encoded.
fn main_loop(
    src: &[u8],
    budget: Option<usize>,
    ht: &mut Hashes,
    out: &mut Vec<u8>,
    anchor_out: &mut usize,
) -> Option<()> {
    let len = src.len();
    let mflimit_p1 = len - MFLIMIT + 1;
    let matchlimit = len - LASTLITERALS;
    let mut anchor = 0usize;
    let h0 = ht.hash(src, 0);
    ht.table[h0] = 0;
    let mut ip = 1usize;
    let mut forward_h = ht.hash(src, ip);
    loop {
        // Find a match, striding ahead faster after every 64 misses.
        let mut forward_ip = ip;
        let mut step = 1usize;
        let mut searches = 1u32 << SKIP_TRIGGER;
        let mut m;
        loop {
            let h = forward_h;
            let current = forward_ip;
            let match_index = ht.table[h] as usize;
            ip = forward_ip;
            forward_ip += step;
            step = (searches >> SKIP_TRIGGER) as usize;
            searches += 1;
            if forward_ip > mflimit_p1 {
                *anchor_out = anchor;
                return Some(());
            }
            m = match_index;
            forward_h = ht.hash(src, forward_ip);
            ht.table[h] = current as u32;
            if ht.kind == Table::Large && match_index + DISTANCE_MAX < current {
                continue;
            }
            if read32(src, m) == read32(src, ip) {
                break;
            }
        }
        // Extend backwards.
        let filled_ip = ip;
        while ip > anchor && m > 0 && src[ip - 1] == src[m - 1] {
            ip -= 1;
            m -= 1;
        }
        let lit = ip - anchor;
        let mut token = out.len();
        if let Some(limit) = budget {
            if token + 1 + (lit + 240) / 255 + lit + 2 + 1 + MFLIMIT - MINMATCH > limit {
                *anchor_out = anchor;
                return Some(());
            }
        }
        out.push(0);
        if lit >= RUN_MASK {
            out[token] = (RUN_MASK << 4) as u8;
            push_length(out, lit - RUN_MASK);
        } else {
            out[token] = (lit << 4) as u8;
        }
        out.extend_from_slice(&src[anchor..ip]);
        // One match, then as many as follow at once.
        loop {
            if let Some(limit) = budget {
                if out.len() + 2 + 1 + MFLIMIT - MINMATCH > limit {
                    out.truncate(token);
                    *anchor_out = anchor;
                    return Some(());
                }
            }
            out.extend_from_slice(&((ip - m) as u16).to_le_bytes());
            let mut code = count(src, ip + MINMATCH, m + MINMATCH, matchlimit);
            ip += code + MINMATCH;
            if let Some(limit) = budget {
                if out.len() + 1 + LASTLITERALS + (code + 240) / 255 > limit {
                    // Shorten the match to what the budget can describe.
                    let room = limit.checked_sub(out.len() + 1 + LASTLITERALS)?;
                    let new_code = 14 + room * 255;
                    ip -= code.checked_sub(new_code)?;
                    code = new_code;
                    if ip <= filled_ip {
                        for p in ip..=filled_ip {
                            let h = ht.hash(src, p);
                            ht.table[h] = 0;
                        }
                    }
                }
            }
            if code >= ML_MASK {
                out[token] += ML_MASK as u8;
                push_length(out, code - ML_MASK);
            } else {
                out[token] += code as u8;
            }
            anchor = ip;
            if ip >= mflimit_p1 {
                *anchor_out = anchor;
                return Some(());
            }
            let h = ht.hash(src, ip - 2);
            ht.table[h] = (ip - 2) as u32;
            let h = ht.hash(src, ip);
            let current = ip;
            let match_index = ht.table[h] as usize;
            ht.table[h] = current as u32;
            if (ht.kind == Table::Small || match_index + DISTANCE_MAX >= current)
                && read32(src, match_index) == read32(src, ip)
            {
                token = out.len();
                out.push(0);
                m = match_index;
                continue;
            }
            ip += 1;
            forward_h = ht.hash(src, ip);
            break;
        }
    }
}
