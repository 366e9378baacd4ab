//! liblz4's optimal parser (`LZ4HC_compress_optimal`, HC levels 10-12): prices every way of
//! reaching each position of a window (literals or one of the matches found on the way, in
//! output bytes) and keeps the cheapest path.

use super::hc::{Chain, Encoder};
use super::{LASTLITERALS, MFLIMIT, MINMATCH, ML_MASK, RUN_MASK};

/// Window of positions priced at once.
pub(super) const OPT_NUM: usize = 1 << 12;
const TRAILING_LITERALS: usize = 3;

#[derive(Clone, Copy, Default)]
struct Node {
    price: i32,
    off: usize,
    mlen: usize,
    litlen: usize,
}

fn literals_price(litlen: usize) -> i32 {
    let mut price = litlen as i32;
    if litlen >= RUN_MASK {
        price += 1 + ((litlen - RUN_MASK) / 255) as i32;
    }
    price
}

fn sequence_price(litlen: usize, mlen: usize) -> i32 {
    let mut price = 3 + literals_price(litlen);
    if mlen >= ML_MASK + MINMATCH {
        price += 1 + ((mlen - (ML_MASK + MINMATCH)) / 255) as i32;
    }
    price
}

/// A match longer than `min_len` at `ip`, as (offset, length); length 0 if none.
fn longer_match(
    c: &mut Chain,
    ip: usize,
    high: usize,
    min_len: usize,
    searches: i32,
) -> (usize, usize) {
    let mut m = 0usize;
    let mut start = ip;
    let len = c.wider_match(
        ip, ip, high, min_len, &mut m, &mut start, searches, true, true,
    );
    if len <= min_len {
        return (0, 0);
    }
    (start - m, len)
}

pub(super) fn compress(
    c: &mut Chain,
    e: &mut Encoder,
    searches: i32,
    sufficient: usize,
    full_update: bool,
) {
    let src = c.src;
    let len = src.len();
    let mflimit = len - MFLIMIT;
    let matchlimit = len - LASTLITERALS;
    let sufficient = sufficient.min(OPT_NUM - 1);
    let mut opt = vec![Node::default(); OPT_NUM + TRAILING_LITERALS];
    while e.ip <= mflimit {
        let ip = e.ip;
        let llen = ip - e.anchor;
        let (first_off, first_len) = longer_match(c, ip, matchlimit, MINMATCH - 1, searches);
        if first_len == 0 {
            e.ip += 1;
            continue;
        }
        if first_len > sufficient {
            if !e.sequence_or_fill(src, first_len, ip - first_off) {
                return;
            }
            continue;
        }
        for (r, node) in opt.iter_mut().enumerate().take(MINMATCH) {
            *node = Node {
                price: literals_price(llen + r),
                off: 0,
                mlen: 1,
                litlen: llen + r,
            };
        }
        for (ml, node) in opt
            .iter_mut()
            .enumerate()
            .take(first_len + 1)
            .skip(MINMATCH)
        {
            *node = Node {
                price: sequence_price(llen, ml),
                off: first_off,
                mlen: ml,
                litlen: llen,
            };
        }
        let mut last_match_pos = first_len;
        trailing(&mut opt, last_match_pos);
        let mut best = None;
        let mut cur = 1;
        while cur < last_match_pos {
            let cur_ptr = ip + cur;
            if cur_ptr > mflimit {
                break;
            }
            let skip = if full_update {
                opt[cur + 1].price <= opt[cur].price
                    && opt[cur + MINMATCH].price < opt[cur].price + 3
            } else {
                opt[cur + 1].price <= opt[cur].price
            };
            if skip {
                cur += 1;
                continue;
            }
            let min_len = if full_update {
                MINMATCH - 1
            } else {
                last_match_pos - cur
            };
            let (off, mlen) = longer_match(c, cur_ptr, matchlimit, min_len, searches);
            if mlen == 0 {
                cur += 1;
                continue;
            }
            if mlen > sufficient || mlen + cur >= OPT_NUM {
                best = Some((cur, mlen, off));
                last_match_pos = cur + 1;
                break;
            }
            let base_lit = opt[cur].litlen;
            for lit in 1..MINMATCH {
                let price =
                    opt[cur].price - literals_price(base_lit) + literals_price(base_lit + lit);
                let p = cur + lit;
                if price < opt[p].price {
                    opt[p] = Node {
                        price,
                        off: 0,
                        mlen: 1,
                        litlen: base_lit + lit,
                    };
                }
            }
            for ml in MINMATCH..=mlen {
                let p = cur + ml;
                let (ll, price) = if opt[cur].mlen == 1 {
                    let ll = opt[cur].litlen;
                    let before = if cur > ll { opt[cur - ll].price } else { 0 };
                    (ll, before + sequence_price(ll, ml))
                } else {
                    (0, opt[cur].price + sequence_price(0, ml))
                };
                if p > last_match_pos + TRAILING_LITERALS || price <= opt[p].price {
                    if ml == mlen && last_match_pos < p {
                        last_match_pos = p;
                    }
                    opt[p] = Node {
                        price,
                        off,
                        mlen: ml,
                        litlen: ll,
                    };
                }
            }
            trailing(&mut opt, last_match_pos);
            cur += 1;
        }
        let (cur, best_mlen, best_off) = match best {
            Some(b) => b,
            None => {
                let n = opt[last_match_pos];
                (last_match_pos - n.mlen, n.mlen, n.off)
            }
        };
        // Walk back from the end, leaving each step's sequence at its start.
        let mut candidate = cur;
        let mut sel_ml = best_mlen;
        let mut sel_off = best_off;
        loop {
            let next_ml = opt[candidate].mlen;
            let next_off = opt[candidate].off;
            opt[candidate].mlen = sel_ml;
            opt[candidate].off = sel_off;
            sel_ml = next_ml;
            sel_off = next_off;
            if next_ml == 0 || next_ml > candidate {
                break;
            }
            candidate -= next_ml;
        }
        let mut r = 0;
        while r < last_match_pos {
            let ml = opt[r].mlen;
            let off = opt[r].off;
            if ml == 1 {
                e.ip += 1;
                r += 1;
                continue;
            }
            r += ml;
            if !e.sequence_or_fill(src, ml, e.ip - off) {
                return;
            }
        }
    }
}

/// Prices the three positions after the last match as literals following it.
fn trailing(opt: &mut [Node], last: usize) {
    for add in 1..=TRAILING_LITERALS {
        opt[last + add] = Node {
            price: opt[last].price + literals_price(add),
            off: 0,
            mlen: 1,
            litlen: add,
        };
    }
}
