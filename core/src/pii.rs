//! Keeping personal data out of logs.

use sha2::{Digest, Sha256};

/// A short, stable fingerprint of an email or login for log lines: the same person gives the same
/// fingerprint, so an operator can follow one user through the logs without the log holding the
/// address itself.
pub fn fingerprint(value: &str) -> String {
    let digest = Sha256::digest(value.trim().to_lowercase().as_bytes());
    format!("sha256:{}", &hex::encode(digest)[..12])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_stable_case_insensitive_and_hides_the_address() {
        let a = fingerprint("Jane.Doe@Example.com");
        assert_eq!(a, fingerprint("jane.doe@example.com"));
        assert!(!a.contains("jane"));
        assert!(!a.contains('@'));
        assert_ne!(a, fingerprint("john.doe@example.com"));
    }
}

/// Replaces every word that looks like an email address, for error texts that echo input
/// (a target's "userName jane@… already exists") before they reach a log or a dead letter.
pub fn redact_emails(text: &str) -> String {
    text.split(' ')
        .map(|word| {
            if word.contains('@') {
                let trimmed = word.trim_matches(|c: char| !c.is_alphanumeric());
                word.replace(trimmed, &fingerprint(trimmed))
            } else {
                word.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod redact_tests {
    use super::*;

    #[test]
    fn emails_in_text_are_replaced_by_fingerprints() {
        let out = redact_emails("userName \"jane@example.com\" already exists");
        assert!(!out.contains("jane@example.com"), "{out}");
        assert!(out.starts_with("userName \"sha256:"), "{out}");
        assert!(out.ends_with("\" already exists"), "{out}");
        assert_eq!(redact_emails("no address here"), "no address here");
    }
}
