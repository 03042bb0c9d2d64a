//! Zeller's ddmin over a list of items: the smallest subset (1-minimal:
//! removing any one item loses the failure) for which `test` still says
//! "fails", found by testing subsets and complements at a granularity that
//! doubles when neither reproduces.

/// What a test said about a subset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The failure reproduced with this subset.
    Fails,
    /// It did not.
    Passes,
    /// Stop here (budget spent, interrupted): keep the best so far.
    Stop,
}

/// Reduces `items` (which must fail) with `test`. Returns the smallest
/// failing subset found, in the original order, and whether the search ran
/// to its end (false when `test` said [`Verdict::Stop`]).
pub fn ddmin<T: Clone>(items: &[T], mut test: impl FnMut(&[T]) -> Verdict) -> (Vec<T>, bool) {
    let mut c: Vec<T> = items.to_vec();
    let mut n = 2usize;
    while c.len() >= 2 {
        let chunks = split(&c, n);
        let mut next = None;
        // Reduce to a subset...
        for ch in &chunks {
            match test(ch) {
                Verdict::Fails => {
                    next = Some((ch.clone(), 2));
                    break;
                }
                Verdict::Stop => return (c, false),
                Verdict::Passes => {}
            }
        }
        // ...or to a complement.
        if next.is_none() && chunks.len() > 2 {
            for i in 0..chunks.len() {
                let comp: Vec<T> = chunks
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .flat_map(|(_, ch)| ch.iter().cloned())
                    .collect();
                match test(&comp) {
                    Verdict::Fails => {
                        next = Some((comp, (n - 1).max(2)));
                        break;
                    }
                    Verdict::Stop => return (c, false),
                    Verdict::Passes => {}
                }
            }
        }
        match next {
            Some((smaller, granularity)) => {
                c = smaller;
                n = granularity;
            }
            None if n >= c.len() => break,
            None => n = (n * 2).min(c.len()),
        }
    }
    (c, true)
}

/// `c` in `n` nearly equal consecutive chunks.
fn split<T: Clone>(c: &[T], n: usize) -> Vec<Vec<T>> {
    let n = n.min(c.len()).max(1);
    let mut out = Vec::with_capacity(n);
    let mut start = 0;
    for i in 0..n {
        let end = start + (c.len() - start) / (n - i);
        out.push(c[start..end].to_vec());
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_two_items_that_matter() {
        let items: Vec<u32> = (0..40).collect();
        let mut tests = 0;
        let (min, whole) = ddmin(&items, |s| {
            tests += 1;
            if s.contains(&7) && s.contains(&31) {
                Verdict::Fails
            } else {
                Verdict::Passes
            }
        });
        assert!(whole);
        assert_eq!(min, vec![7, 31]);
        assert!(tests < 100, "{tests} tests");
    }

    #[test]
    fn one_item_alone_and_a_stop_keeps_the_best_so_far() {
        let items: Vec<u32> = (0..10).collect();
        let (min, _) = ddmin(&items, |s| {
            if s.contains(&3) {
                Verdict::Fails
            } else {
                Verdict::Passes
            }
        });
        assert_eq!(min, vec![3]);
        let mut left = 2;
        let (best, whole) = ddmin(&items, |s| {
            if left == 0 {
                return Verdict::Stop;
            }
            left -= 1;
            if s.contains(&3) {
                Verdict::Fails
            } else {
                Verdict::Passes
            }
        });
        assert!(!whole);
        assert!(best.contains(&3) && best.len() < 10, "{best:?}");
    }

    #[test]
    fn splits_evenly() {
        assert_eq!(split(&[1, 2, 3, 4, 5], 2), vec![vec![1, 2], vec![3, 4, 5]]);
        assert_eq!(split(&[1, 2], 5), vec![vec![1], vec![2]]);
    }
}
