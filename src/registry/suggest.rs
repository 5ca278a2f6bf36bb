//! Nearest existing tags for a tag that does not exist ("did you mean …?").

/// Up to `max` tags closest to `wanted` by edit distance (adjacent transpositions count
/// once, so `latset` is one edit from `latest`), nearest first, ties by name. Tags further
/// than a third of the longer string (at least 2 edits) are not suggestions.
pub fn nearest_tags<'a>(
    wanted: &str,
    tags: impl IntoIterator<Item = &'a str>,
    max: usize,
) -> Vec<String> {
    let mut scored: Vec<(usize, &str)> = tags
        .into_iter()
        .filter(|t| *t != wanted)
        .filter_map(|t| {
            let limit = (wanted.chars().count().max(t.chars().count()) / 3).max(2);
            let d = osa_distance(wanted, t);
            (d <= limit).then_some((d, t))
        })
        .collect();
    scored.sort();
    scored.dedup();
    scored
        .into_iter()
        .take(max)
        .map(|(_, t)| t.to_string())
        .collect()
}

/// Optimal string alignment distance (Levenshtein plus adjacent transposition).
fn osa_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for i in 0..=a.len() {
        d[i * width] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(width) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[(i - 1) * width + j] + 1)
                .min(d[i * width + j - 1] + 1)
                .min(d[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[(i - 2) * width + j - 2] + 1);
            }
            d[i * width + j] = v;
        }
    }
    d[a.len() * width + b.len()]
}

/// `"a"`, `"a" or "b"`, `"a", "b" or "c"`.
pub fn quoted_alternatives(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transposition_is_one_edit() {
        assert_eq!(osa_distance("latset", "latest"), 1);
        assert_eq!(osa_distance("", "abc"), 3);
        assert_eq!(osa_distance("1.25", "1.26"), 1);
    }

    #[test]
    fn suggests_nearest_first_and_at_most_three() {
        let tags = [
            "latest", "1.25", "1.25.1", "1.24", "1.26", "stable", "alpine",
        ];
        assert_eq!(nearest_tags("latset", tags, 3), ["latest"]);
        assert_eq!(nearest_tags("1.27", tags, 3), ["1.24", "1.25", "1.26"]);
    }

    #[test]
    fn unrelated_tags_are_not_suggested() {
        assert!(nearest_tags("v1", ["latest", "stable"], 3).is_empty());
    }

    #[test]
    fn alternatives_read_naturally() {
        let s =
            |v: &[&str]| quoted_alternatives(&v.iter().map(|x| x.to_string()).collect::<Vec<_>>());
        assert_eq!(s(&["a"]), "\"a\"");
        assert_eq!(s(&["a", "b"]), "\"a\" or \"b\"");
        assert_eq!(s(&["a", "b", "c"]), "\"a\", \"b\" or \"c\"");
    }
}
