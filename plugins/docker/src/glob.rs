//! Shell-style patterns for the importer's tag filters.

/// Match `text` against `pattern`, where `*` matches any run of characters
/// and `?` exactly one.
pub fn matches(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was and how much text it has swallowed: on a
    // mismatch we let it take one more character instead of recursing.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Which upstream tags a sync takes.
#[derive(Debug, Default, Clone)]
pub struct TagFilter {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

impl TagFilter {
    /// No include patterns means "all tags"; exclusions win over inclusions.
    pub fn allows(&self, tag: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| matches(p, tag)))
            && !self.exclude.iter().any(|p| matches(p, tag))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(matches("*", ""));
        assert!(matches("*", "latest"));
        assert!(matches("1.*", "1.36"));
        assert!(!matches("1.*", "2.1"));
        assert!(matches("v?", "v1"));
        assert!(!matches("v?", "v10"));
        assert!(matches("*-alpine", "3.18-alpine"));
        assert!(matches("a*b*c", "aXXbYYbc"));
        assert!(!matches("a*b*c", "aXXbYYb"));
        assert!(matches("latest", "latest"));
        assert!(!matches("latest", "latest2"));
        assert!(matches("**x", "x"));
    }

    #[test]
    fn filter() {
        let all = TagFilter::default();
        assert!(all.allows("anything"));
        let f = TagFilter {
            include: vec!["1.*".into(), "latest".into()],
            exclude: vec!["*-rc*".into()],
        };
        assert!(f.allows("1.2"));
        assert!(f.allows("latest"));
        assert!(!f.allows("1.3-rc1"));
        assert!(!f.allows("2.0"));
    }
}
