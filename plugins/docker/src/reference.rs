//! The Docker reference grammar: repository names, tags and digests.

/// Longest repository name the distribution spec lets clients use.
const MAX_NAME: usize = 255;

/// A repository name: lowercase path components separated by `/`, each
/// `[a-z0-9]+` joined by `.`, `_`, `__` or runs of `-` (the distribution
/// grammar, so every name `docker push` accepts is valid here too).
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME && name.split('/').all(is_valid_component)
}

fn is_valid_component(component: &str) -> bool {
    let b = component.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let mut i = 0;
    loop {
        let start = i;
        while i < b.len() && alnum(b[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == b.len() {
            return true;
        }
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if b.get(i) == Some(&b'_') {
                    i += 1;
                }
            }
            b'-' => {
                while b.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            _ => return false,
        }
    }
}

/// A tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn is_valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    let word = |c: &u8| c.is_ascii_alphanumeric() || *c == b'_';
    !b.is_empty()
        && b.len() <= 128
        && word(&b[0])
        && b[1..].iter().all(|c| word(c) || *c == b'.' || *c == b'-')
}

/// `sha256:<64 lowercase hex>`, the only digests the host stores.
pub fn is_sha256_digest(digest: &str) -> bool {
    digest
        .strip_prefix("sha256:")
        .is_some_and(|hex| is_lower_hex(hex, 64))
}

/// A digest clients may send: sha256 or sha512 with lowercase hex. A
/// well-formed sha512 digest is merely unknown, not invalid.
pub fn is_valid_digest(digest: &str) -> bool {
    is_sha256_digest(digest)
        || digest
            .strip_prefix("sha512:")
            .is_some_and(|hex| is_lower_hex(hex, 128))
}

pub fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

/// The tag of a full reference (`docker.io/library/busybox:1.36`): the part
/// after the last `:` that follows the last `/`, so registry ports are not
/// mistaken for tags. `None` when the reference names no tag.
pub fn tag_of_reference(reference: &str) -> Option<&str> {
    let reference = reference.split('@').next().unwrap_or(reference);
    let last_component = reference.rsplit('/').next().unwrap_or(reference);
    last_component.rsplit_once(':').map(|(_, tag)| tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in [
            "a",
            "my/app",
            "library/busybox",
            "a.b_c__d---e/f9",
            "x/y/z",
            "0",
        ] {
            assert!(is_valid_name(ok), "{ok}");
        }
        for bad in [
            "", "My/app", "a//b", "/a", "a/", "a..b", "a___b", "-a", "a-", "a_", "a b", "a:b",
        ] {
            assert!(!is_valid_name(bad), "{bad}");
        }
        assert!(!is_valid_name(&"a".repeat(256)));
    }

    #[test]
    fn tags() {
        for ok in ["latest", "1.36.1", "_x", "A-b.c", &"a".repeat(128)] {
            assert!(is_valid_tag(ok), "{ok}");
        }
        for bad in ["", ".x", "-x", "a:b", "a/b", "a@b", &"a".repeat(129)] {
            assert!(!is_valid_tag(bad), "{bad}");
        }
    }

    #[test]
    fn digests() {
        let hex = "a".repeat(64);
        assert!(is_sha256_digest(&format!("sha256:{hex}")));
        assert!(!is_sha256_digest(&format!("sha256:{}", "A".repeat(64))));
        assert!(!is_sha256_digest(&format!("sha256:{}", "a".repeat(63))));
        assert!(!is_sha256_digest("sha256:"));
        assert!(is_valid_digest(&format!("sha512:{}", "0".repeat(128))));
        assert!(!is_valid_digest("md5:abc"));
    }

    #[test]
    fn reference_tags() {
        assert_eq!(tag_of_reference("my/app:latest"), Some("latest"));
        assert_eq!(tag_of_reference("localhost:5000/my/app:v1"), Some("v1"));
        assert_eq!(tag_of_reference("localhost:5000/my/app"), None);
        assert_eq!(
            tag_of_reference("docker.io/library/busybox:1.36@sha256:abc"),
            Some("1.36")
        );
        assert_eq!(tag_of_reference("app"), None);
    }
}
