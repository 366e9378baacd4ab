//! `std::sort` as GNU libstdc++ implements it (introsort: median-of-three quicksort down to
//! runs of 16, heapsort past the depth limit, then one insertion sort). Zucchini sorts
//! equivalences by source offset with `std::sort`, which is not stable: when two share a
//! source, which one survives the pruning depends on this exact order, and with it every
//! reference the patch corrects. AOSP's `zucchini` oracle (`../shared/tools/aosp-delta`) is
//! built against libstdc++, so this is the order its patches are made in.

/// `_S_threshold`.
const THRESHOLD: usize = 16;

/// Sorts `v` by `less`, moving elements exactly as libstdc++'s `std::sort` does.
pub(super) fn sort<T: Copy>(v: &mut [T], less: impl Fn(&T, &T) -> bool) {
    if v.len() > 1 {
        // `__lg(n) * 2`.
        let depth = 2 * (usize::BITS - 1 - v.len().leading_zeros()) as usize;
        introsort_loop(v, depth, &less);
        final_insertion_sort(v, &less);
    }
}

fn introsort_loop<T: Copy>(mut v: &mut [T], mut depth: usize, less: &impl Fn(&T, &T) -> bool) {
    while v.len() > THRESHOLD {
        if depth == 0 {
            heap_sort(v, less);
            return;
        }
        depth -= 1;
        let cut = partition_pivot(v, less);
        let (left, right) = v.split_at_mut(cut);
        introsort_loop(right, depth, less);
        v = left;
    }
}

/// `__unguarded_partition_pivot`: the median of the second, middle and last elements moved
/// to the front, then Hoare's partition of the rest around it.
fn partition_pivot<T: Copy>(v: &mut [T], less: &impl Fn(&T, &T) -> bool) -> usize {
    let (a, b, c) = (1, v.len() / 2, v.len() - 1);
    let median = if less(&v[a], &v[b]) {
        if less(&v[b], &v[c]) {
            b
        } else if less(&v[a], &v[c]) {
            c
        } else {
            a
        }
    } else if less(&v[a], &v[c]) {
        a
    } else if less(&v[b], &v[c]) {
        c
    } else {
        b
    };
    v.swap(0, median);
    let (mut first, mut last) = (1, v.len());
    loop {
        // The pivot stops both scans (it is in the slice), as in the unguarded original.
        while less(&v[first], &v[0]) {
            first += 1;
        }
        last -= 1;
        while less(&v[0], &v[last]) {
            last -= 1;
        }
        if first >= last {
            return first;
        }
        v.swap(first, last);
        first += 1;
    }
}

/// `__final_insertion_sort`: insertion sort of the first 16, then of the rest (whose
/// elements never move past the front, which already holds a minimum).
fn final_insertion_sort<T: Copy>(v: &mut [T], less: &impl Fn(&T, &T) -> bool) {
    for i in 1..v.len() {
        let value = v[i];
        if i < THRESHOLD && less(&value, &v[0]) {
            v.copy_within(0..i, 1);
            v[0] = value;
            continue;
        }
        let mut hole = i;
        while hole > 0 && less(&value, &v[hole - 1]) {
            v[hole] = v[hole - 1];
            hole -= 1;
        }
        v[hole] = value;
    }
}

/// `__partial_sort(first, last, last)`: `__make_heap` then `__sort_heap`.
fn heap_sort<T: Copy>(v: &mut [T], less: &impl Fn(&T, &T) -> bool) {
    let len = v.len();
    if len >= 2 {
        let mut parent = (len - 2) / 2;
        loop {
            let value = v[parent];
            adjust_heap(v, parent, len, value, less);
            if parent == 0 {
                break;
            }
            parent -= 1;
        }
    }
    let mut last = len;
    while last > 1 {
        last -= 1;
        // `__pop_heap(first, last, last)`.
        let value = v[last];
        v[last] = v[0];
        adjust_heap(v, 0, last, value, less);
    }
}

/// `__adjust_heap` and `__push_heap`.
fn adjust_heap<T: Copy>(
    v: &mut [T],
    mut hole: usize,
    len: usize,
    value: T,
    less: &impl Fn(&T, &T) -> bool,
) {
    let top = hole;
    let mut child = hole;
    while child < len.saturating_sub(1) / 2 {
        child = 2 * (child + 1);
        if less(&v[child], &v[child - 1]) {
            child -= 1;
        }
        v[hole] = v[child];
        hole = child;
    }
    if len % 2 == 0 && len >= 2 && child == (len - 2) / 2 {
        child = 2 * (child + 1);
        v[hole] = v[child - 1];
        hole = child - 1;
    }
    while hole > top {
        let parent = (hole - 1) / 2;
        if !less(&v[parent], &value) {
            break;
        }
        v[hole] = v[parent];
        hole = parent;
    }
    v[hole] = value;
}

#[cfg(test)]
mod tests {
    use super::super::sort_oracle::{self, Keys, SORT};
    use super::*;

    #[test]
    fn ties_end_up_where_libstdcxx_std_sort_puts_them() {
        let mut keys = Keys(0x1234_5678);
        let mut cases = vec![];
        for len in [0usize, 1, 2, 5, 16, 17, 33, 40, 300, 5000] {
            for distinct in [2u32, 8, 1000] {
                for mode in [0, 1] {
                    let v: Vec<u32> = (0..len).map(|_| keys.next() % distinct).collect();
                    cases.push((mode, v));
                }
            }
        }
        sort_oracle::check("g++", &["-O1"], &cases, |mode, v| {
            if mode == SORT {
                sort(v, |a, b| a.0 < b.0);
            } else {
                heap_sort(v, &|a: &(u32, usize), b: &(u32, usize)| a.0 < b.0);
            }
        });
    }
}
