//! `std::sort` as LLVM libc++ implements it since its pdqsort-style rewrite (after LLVM 16;
//! checked against libc++ 19, while libc++ 16 still orders ties another way) for a type that
//! is not arithmetic or a comparator that is not `std::less` (so never its branchless bitset
//! partition): introsort with insertion sort below 24 elements, median of three or, past 128,
//! Tukey's ninther, partitions that put equal elements on the right (or on the left when the
//! pivot equals the element before the range), an abandoned insertion sort after a partition
//! that moved nothing, and Floyd's heapsort past the depth limit. AOSP builds
//! `delta_generator` (host) and `update_engine` (device) with clang and libc++ (LLVM 17 in
//! Android 14, 18 in 15), so this is the order real ZUCCHINI operations break equal-source
//! ties in, as far as their libc++ postdates the rewrite; see [`super::gnu_sort`] for
//! libstdc++'s.

/// `__limit`: ranges shorter than this are insertion-sorted.
const LIMIT: usize = 24;
/// `__ninther_threshold`: ranges longer than this take the ninther as their pivot.
const NINTHER: usize = 128;
/// `__insertion_sort_incomplete` gives up after moving this many elements.
const INCOMPLETE_LIMIT: usize = 8;

/// Sorts `v` by `less`, moving elements exactly as libc++'s `std::sort` does.
pub(super) fn sort<T: Copy>(v: &mut [T], less: impl Fn(&T, &T) -> bool) {
    // `2 * __log2i(n)`; `__log2i(0)` is 0.
    let depth = match v.len() {
        0 => 0,
        n => 2 * (usize::BITS - 1 - n.leading_zeros()) as usize,
    };
    introsort(v, 0, v.len(), &less, depth, true);
}

/// `__introsort` over `v[first..last]`; when not `leftmost`, `v[first - 1]` is not greater
/// than any element of the range (it is the pivot of an earlier partition).
fn introsort<T: Copy>(
    v: &mut [T],
    mut first: usize,
    last: usize,
    less: &impl Fn(&T, &T) -> bool,
    mut depth: usize,
    mut leftmost: bool,
) {
    let mut last = last;
    loop {
        let len = last - first;
        match len {
            0 | 1 => return,
            2 => {
                if less(&v[first + 1], &v[first]) {
                    v.swap(first, first + 1);
                }
                return;
            }
            3 => return sort3(v, first, first + 1, first + 2, less),
            4 => return sort4(v, first, first + 1, first + 2, first + 3, less),
            5 => return sort5(v, first, less),
            _ => {}
        }
        if len < LIMIT {
            // The unguarded variant moves elements exactly as the guarded one: the element
            // before the range stops the scan where the range's start would.
            return insertion_sort(v, first, last, less);
        }
        if depth == 0 {
            return heap_sort(&mut v[first..last], less);
        }
        depth -= 1;
        let half = len / 2;
        if len > NINTHER {
            sort3(v, first, first + half, last - 1, less);
            sort3(v, first + 1, first + half - 1, last - 2, less);
            sort3(v, first + 2, first + half + 1, last - 3, less);
            sort3(v, first + half - 1, first + half, first + half + 1, less);
            v.swap(first, first + half);
        } else {
            sort3(v, first + half, first, last - 1, less);
        }
        if !leftmost && !less(&v[first - 1], &v[first]) {
            // The pivot equals the previous partition's: everything up to it is equal too.
            first = partition_with_equals_on_left(v, first, last, less);
            continue;
        }
        let (pivot, already_partitioned) = partition_with_equals_on_right(v, first, last, less);
        if already_partitioned {
            let left_done = insertion_sort_incomplete(v, first, pivot, less);
            if insertion_sort_incomplete(v, pivot + 1, last, less) {
                if left_done {
                    return;
                }
                last = pivot;
                continue;
            } else if left_done {
                first = pivot + 1;
                continue;
            }
        }
        introsort(v, first, pivot, less, depth, leftmost);
        leftmost = false;
        first = pivot + 1;
    }
}

/// `__sort3`: sorts three elements with at most two swaps.
fn sort3<T: Copy>(v: &mut [T], x: usize, y: usize, z: usize, less: &impl Fn(&T, &T) -> bool) {
    if !less(&v[y], &v[x]) {
        if !less(&v[z], &v[y]) {
            return;
        }
        v.swap(y, z);
        if less(&v[y], &v[x]) {
            v.swap(x, y);
        }
        return;
    }
    if less(&v[z], &v[y]) {
        v.swap(x, z);
        return;
    }
    v.swap(x, y);
    if less(&v[z], &v[y]) {
        v.swap(y, z);
    }
}

/// `__sort4`: three sorted, then the fourth sunk into them.
fn sort4<T: Copy>(
    v: &mut [T],
    a: usize,
    b: usize,
    c: usize,
    d: usize,
    less: &impl Fn(&T, &T) -> bool,
) {
    sort3(v, a, b, c, less);
    sink(v, &[a, b, c, d], less);
}

/// `__sort5` of five consecutive elements from `at`: four sorted, then the fifth sunk.
fn sort5<T: Copy>(v: &mut [T], at: usize, less: &impl Fn(&T, &T) -> bool) {
    sort4(v, at, at + 1, at + 2, at + 3, less);
    sink(v, &[at, at + 1, at + 2, at + 3, at + 4], less);
}

/// Swaps the last of `at` down while it is less than the one before it.
fn sink<T: Copy>(v: &mut [T], at: &[usize], less: &impl Fn(&T, &T) -> bool) {
    for w in at.windows(2).rev() {
        if !less(&v[w[1]], &v[w[0]]) {
            return;
        }
        v.swap(w[0], w[1]);
    }
}

/// `__insertion_sort` of `v[first..last]`.
fn insertion_sort<T: Copy>(v: &mut [T], first: usize, last: usize, less: &impl Fn(&T, &T) -> bool) {
    for i in first + 1..last {
        insert(v, first, i, less);
    }
}

/// Moves `v[i]` down into the sorted `v[first..i]` past every element greater than it;
/// returns whether it moved.
fn insert<T: Copy>(v: &mut [T], first: usize, i: usize, less: &impl Fn(&T, &T) -> bool) -> bool {
    let value = v[i];
    if !less(&value, &v[i - 1]) {
        return false;
    }
    let mut hole = i;
    loop {
        v[hole] = v[hole - 1];
        hole -= 1;
        if hole == first || !less(&value, &v[hole - 1]) {
            break;
        }
    }
    v[hole] = value;
    true
}

/// `__insertion_sort_incomplete`: sorts `v[first..last]` unless more than eight elements
/// need moving, in which case it stops after the eighth and returns false (unless that
/// was the last one).
fn insertion_sort_incomplete<T: Copy>(
    v: &mut [T],
    first: usize,
    last: usize,
    less: &impl Fn(&T, &T) -> bool,
) -> bool {
    match last - first {
        0 | 1 => return true,
        2 => {
            if less(&v[first + 1], &v[first]) {
                v.swap(first, first + 1);
            }
            return true;
        }
        3 => {
            sort3(v, first, first + 1, first + 2, less);
            return true;
        }
        4 => {
            sort4(v, first, first + 1, first + 2, first + 3, less);
            return true;
        }
        5 => {
            sort5(v, first, less);
            return true;
        }
        _ => {}
    }
    sort3(v, first, first + 1, first + 2, less);
    let mut moved = 0;
    for i in first + 3..last {
        if insert(v, first, i, less) {
            moved += 1;
            if moved == INCOMPLETE_LIMIT {
                return i + 1 == last;
            }
        }
    }
    true
}

/// `__partition_with_equals_on_right` with the pivot at `v[first]`: elements less than it
/// end up left of its final position (returned), the others right. Also returns whether
/// the range was already partitioned (no swap needed). The median of three put an element
/// not less than the pivot at the end, which bounds the first scan.
fn partition_with_equals_on_right<T: Copy>(
    v: &mut [T],
    first: usize,
    last: usize,
    less: &impl Fn(&T, &T) -> bool,
) -> (usize, bool) {
    let pivot = v[first];
    let (mut lo, mut hi) = (first + 1, last);
    while less(&v[lo], &pivot) {
        lo += 1;
    }
    if lo == first + 1 {
        // Nothing less than the pivot stops the scan from the right: bound it.
        loop {
            if lo >= hi {
                break;
            }
            hi -= 1;
            if less(&v[hi], &pivot) {
                break;
            }
        }
    } else {
        // An element less than the pivot lies left of `lo`.
        loop {
            hi -= 1;
            if less(&v[hi], &pivot) {
                break;
            }
        }
    }
    let already_partitioned = lo >= hi;
    while lo < hi {
        v.swap(lo, hi);
        loop {
            lo += 1;
            if !less(&v[lo], &pivot) {
                break;
            }
        }
        loop {
            hi -= 1;
            if less(&v[hi], &pivot) {
                break;
            }
        }
    }
    let at = lo - 1;
    v[first] = v[at];
    v[at] = pivot;
    (at, already_partitioned)
}

/// `__partition_with_equals_on_left` with the pivot at `v[first]`, used when the pivot
/// equals the element before the range (so nothing in the range is less than it): elements
/// equal to it stay left. Returns where the elements greater than it start.
fn partition_with_equals_on_left<T: Copy>(
    v: &mut [T],
    first: usize,
    last: usize,
    less: &impl Fn(&T, &T) -> bool,
) -> usize {
    let pivot = v[first];
    let (mut lo, mut hi) = (first, last);
    if less(&pivot, &v[last - 1]) {
        // The last element stops the scan.
        loop {
            lo += 1;
            if less(&pivot, &v[lo]) {
                break;
            }
        }
    } else {
        loop {
            lo += 1;
            if lo >= last || less(&pivot, &v[lo]) {
                break;
            }
        }
    }
    if lo < last {
        // The pivot itself stops this scan.
        loop {
            hi -= 1;
            if !less(&pivot, &v[hi]) {
                break;
            }
        }
    }
    while lo < hi {
        v.swap(lo, hi);
        loop {
            lo += 1;
            if less(&pivot, &v[lo]) {
                break;
            }
        }
        loop {
            hi -= 1;
            if !less(&pivot, &v[hi]) {
                break;
            }
        }
    }
    let at = lo - 1;
    v[first] = v[at];
    v[at] = pivot;
    lo
}

/// `__partial_sort(first, last, last)`: `__make_heap` (sift-downs), then `__sort_heap`
/// (`__pop_heap` with Floyd's sift-down to a leaf and a sift-up from there).
fn heap_sort<T: Copy>(v: &mut [T], less: &impl Fn(&T, &T) -> bool) {
    let len = v.len();
    if len > 1 {
        for start in (0..=(len - 2) / 2).rev() {
            sift_down(v, len, start, less);
        }
    }
    for n in (2..=len).rev() {
        pop_heap(v, n, less);
    }
}

/// `__sift_down` of `v[start]` in the heap `v[..len]`.
fn sift_down<T: Copy>(v: &mut [T], len: usize, mut start: usize, less: &impl Fn(&T, &T) -> bool) {
    // Callers pass `start <= (len - 2) / 2` with `len >= 2`.
    let last_parent = (len - 2) / 2;
    let mut child = larger_child(v, len, start, less);
    if less(&v[child], &v[start]) {
        return;
    }
    let top = v[start];
    loop {
        v[start] = v[child];
        start = child;
        if last_parent < child {
            break;
        }
        child = larger_child(v, len, child, less);
        if less(&v[child], &top) {
            break;
        }
    }
    v[start] = top;
}

/// The left child of `parent`, or the right one when it exists and the left is less.
fn larger_child<T: Copy>(
    v: &[T],
    len: usize,
    parent: usize,
    less: &impl Fn(&T, &T) -> bool,
) -> usize {
    let child = 2 * parent + 1;
    if child + 1 < len && less(&v[child], &v[child + 1]) {
        child + 1
    } else {
        child
    }
}

/// `__pop_heap` of the heap `v[..len]` (`len >= 2`): its top moves to `v[len - 1]`.
fn pop_heap<T: Copy>(v: &mut [T], len: usize, less: &impl Fn(&T, &T) -> bool) {
    let top = v[0];
    // `__floyd_sift_down`: the hole at the root follows the larger child to a leaf.
    let mut hole = 0;
    loop {
        let child = larger_child(v, len, hole, less);
        v[hole] = v[child];
        hole = child;
        if child > (len - 2) / 2 {
            break;
        }
    }
    let last = len - 1;
    if hole == last {
        v[hole] = top;
        return;
    }
    v[hole] = v[last];
    v[last] = top;
    // `__sift_up` of `v[hole]` in `v[..=hole]`.
    let value = v[hole];
    let mut parent = (hole - 1) / 2;
    if !less(&v[parent], &value) {
        return;
    }
    loop {
        v[hole] = v[parent];
        hole = parent;
        if hole == 0 {
            break;
        }
        parent = (hole - 1) / 2;
        if !less(&v[parent], &value) {
            break;
        }
    }
    v[hole] = value;
}

#[cfg(test)]
mod tests {
    use super::super::sort_oracle::{self, Keys, SORT};
    use super::*;

    /// Random, sorted, reversed, nearly sorted and organ-pipe keys of many sizes with few or
    /// many distinct values: every path of the introsort (ninther, both partitions, the
    /// abandoned insertion sort) sees ties.
    fn cases() -> Vec<(u32, Vec<u32>)> {
        let mut keys = Keys(0x9e37_79b9_7f4a_7c15);
        let mut next = move || keys.next();
        let mut lens: Vec<usize> = (0..=40)
            .chain([127, 128, 129, 130, 255, 256, 257])
            .collect();
        lens.extend((0..60).map(|_| (next() % 2001) as usize));
        let mut cases = vec![];
        for &len in &lens {
            for keys in [1u32, 2, 3, 8, 50, 1000] {
                for shape in 0..5 {
                    let mut v: Vec<u32> = (0..len).map(|_| next() % keys).collect();
                    match shape {
                        1 => v.sort_unstable(),
                        2 => v.sort_unstable_by(|a, b| b.cmp(a)),
                        3 => {
                            v.sort_unstable();
                            for _ in 0..len / 20 + 1 {
                                if len > 0 {
                                    let (i, j) = (next() as usize % len, next() as usize % len);
                                    v.swap(i, j);
                                }
                            }
                        }
                        4 => {
                            v.sort_unstable();
                            let tail: Vec<u32> = v.split_off(len / 2);
                            v.extend(tail.iter().rev());
                        }
                        _ => {}
                    }
                    cases.push((0, v.clone()));
                    if shape == 0 {
                        cases.push((1, v));
                    }
                }
            }
        }
        cases
    }

    #[test]
    fn ties_end_up_where_libcxx_std_sort_puts_them() {
        // CI installs clang-19 and libc++-19-dev; `ZUCCHINI_LIBCXX_CLANG` names another.
        let clang =
            std::env::var("ZUCCHINI_LIBCXX_CLANG").unwrap_or_else(|_| "clang++-19".to_string());
        let flags = ["-std=c++17", "-stdlib=libc++", "-O1"];
        let mut differ_from_gnu = 0;
        sort_oracle::check(&clang, &flags, &cases(), |mode, v| {
            if mode == SORT {
                let mut gnu = v.to_vec();
                sort(v, |a, b| a.0 < b.0);
                super::super::gnu_sort::sort(&mut gnu, |a, b| a.0 < b.0);
                differ_from_gnu += usize::from(*v != *gnu);
            } else {
                heap_sort(v, &|a: &(u32, usize), b: &(u32, usize)| a.0 < b.0);
            }
        });
        // The two orders really differ on ties (else this test checks nothing new).
        assert!(differ_from_gnu > 100, "{differ_from_gnu}");
    }
}
